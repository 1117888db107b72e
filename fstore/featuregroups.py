"""Feature groups: create, find, list, search, insert into, and read their statistics.

A feature group (name, version) lives in a project: an offline history table
``<project>.<name>__v<version>`` and, when online, a latest-row-per-entity table
``<project>.<name>__v<version>__online``. The SQL in ``sql/005``-``008`` is the
interface; this module wraps it for Python.

Example::

    import fstore
    fs = fstore.connect("fraud", "alice")
    fg = fs.create_feature_group("account_activity", 1, keys=["account_id"],
                                 features=df, online=True, description="per-account activity")
    fg.insert(df)
    fs.get_feature_group("account_activity").statistics()["amount"]["mean"]
    fs.search("activity")
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from fstore import ingest
from fstore.connection import adbc_session
from fstore.errors import InvalidInput, NotFound, PermissionDenied, translated
from fstore.ingest import Commit
from fstore.pgarrow import base_type
from fstore.roles import group_role
from fstore.sensitive import readable_features
from fstore.sensitive import set_sensitive as mark_sensitive
from fstore.session import Session

if TYPE_CHECKING:
    import pyarrow as pa

    from fstore.slices import SliceStatistics

VALIDATION_POLICIES = ("strict", "warn")


@dataclass(frozen=True)
class Feature:
    """One stored column of a feature group (entity keys included)."""

    name: str
    type: str          # as declared
    description: str
    position: int
    is_key: bool
    pg_type: str       # as PostgreSQL prints the stored column's type (format_type)
    sensitive: bool = False  # Data Owners (and the roles a grant in policies/ names) read it only


@dataclass
class FeatureGroup:
    """A feature-group version as the catalog records it, bound to the handle that read it."""

    id: int
    project: str
    name: str
    version: int
    keys: list[str]
    event_time: str
    features: list[Feature]
    online: bool
    ttl: dt.timedelta | None
    description: str
    tags: list[str]
    offline_table: str
    online_table: str | None
    statistics_enabled: bool
    options: dict[str, Any]
    upstream: list[Any]
    created_at: dt.datetime | None
    created_by: str | None
    store: Session = field(repr=False, compare=False)

    @property
    def full_name(self) -> str:
        """``project.name v<version>``, as messages name it."""
        return f"{self.project}.{self.name} v{self.version}"

    @property
    def feature_names(self) -> list[str]:
        """Names of the non-key features, in storage order."""
        return [f.name for f in self.features if not f.is_key]

    @property
    def sensitive_features(self) -> list[str]:
        """Names of the features marked sensitive (for every version of the group)."""
        return [f.name for f in self.features if f.sensitive]

    def set_sensitive(self, features: str | Iterable[str], sensitive: bool = True) -> "FeatureGroup":
        """Mark features sensitive (``sensitive=False``: unmark them), for every version of this
        group, and return the group as the catalog now records it. Data Owners only; see
        :mod:`fstore.sensitive` and docs/sensitive.md.

        Example::

            fg = fg.set_sensitive(["is_pep"])
            fg.sensitive_features            # ['is_pep']
        """
        mark_sensitive(self.store, self.name, [features] if isinstance(features, str) else list(features),
                       sensitive, project=self.project)
        return self.refresh()

    def offline_relation(self) -> sql.Identifier:
        """The offline table, as a quoted ``project.table`` identifier."""
        return sql.Identifier(self.project, self.offline_table)

    def online_relation(self) -> sql.Identifier:
        """The online table (raises :class:`InvalidInput` when the group is offline only)."""
        if not self.online_table:
            raise InvalidInput(f"feature group {self.full_name} is not online")
        return sql.Identifier(self.project, self.online_table)

    # --- writing ------------------------------------------------------------------
    def insert(self, data: Any, mode: str = "append", *, assume_utc: bool = False,
               batch_rows: int | None = None) -> Commit:
        """Commit ``data`` (pandas DataFrame, Arrow table or stream) as one commit.

        See :mod:`fstore.ingest` for the checks and type rules. ``mode`` is
        ``append``, ``merge`` (a re-run adds nothing) or ``incremental`` (only rows
        newer than what was committed before).

        Example::

            commit = fg.insert(df, mode="merge")
            print(commit.id, commit.rows, commit.online_rows)
        """
        return ingest.insert(self, data, mode, assume_utc=assume_utc,
                             batch_rows=batch_rows or ingest.DEFAULT_BATCH_ROWS)

    # --- reading ------------------------------------------------------------------
    def commits(self) -> list[Commit]:
        """Every commit of this version, newest first."""
        query = sql.SQL("select {} from fstore.commits where feature_group_id = %s order by id desc").format(
            sql.SQL(", ").join(map(sql.Identifier, Commit.COLUMNS)))
        with translated():
            rows = self.store.conn.execute(query, (self.id,)).fetchall()
        return [Commit.from_row(r) for r in rows]

    def statistics(self, commit: int | None = None, *, slice_by: str | None = None,
                   **slice_options: Any) -> "dict[str, dict[str, Any]] | SliceStatistics":
        """Statistics per column of one commit (default: the latest commit that has them).

        With ``slice_by`` (a column of the group), per slice instead: a
        :class:`~fstore.slices.SliceStatistics` computed now over every offline row the caller
        may read (or ``commit``'s), with each slice's PSI against the whole; ``slice_options``
        are :func:`fstore.slices.slice_statistics`'s (``features``, ``min_slice_rows``,
        ``threshold``, ``bins``). Example: ``fg.statistics(slice_by="country").flagged``.

        Definitions are in ``sql/functions/50_statistics.sql`` (``fstore.batch_statistics``):
        ``count`` is non-NULL values, ``stddev`` the sample standard deviation,
        percentiles use linear interpolation, histograms have 20 equal-width bins.
        A reader bound by a row policy on the group never sees the stored statistics
        (they describe rows the policy hides from them): theirs are computed now, over
        the commit's rows they may read, and each column says so (``"scope": "visible rows"``).

        Example::

            fg.statistics()["amount"]["percentiles"]["p50"]
        """
        if slice_by is not None:
            from fstore import slices

            return slices.slice_statistics(self, slice_by, commit=commit, **slice_options)
        if slice_options:
            raise InvalidInput(f"{', '.join(slice_options)}: options of statistics per slice (give slice_by)")
        with translated(), self.store.conn.cursor() as cur:
            if not cur.execute("select fstore.statistics_visible(%s)", (self.id,)).fetchone()[0]:
                return self._statistics_of_visible_rows(cur, commit)
            if commit is None:
                found = cur.execute(
                    "select max(c.id) from fstore.commits c where c.feature_group_id = %s "
                    "and exists (select 1 from fstore.commit_statistics s where s.commit_id = c.id)",
                    (self.id,)).fetchone()[0]
                if found is None:
                    raise NotFound(f"feature group {self.full_name} has no commit with statistics yet")
                commit = found
            elif not cur.execute("select 1 from fstore.commits where id = %s and feature_group_id = %s",
                                 (commit, self.id)).fetchone():
                raise NotFound(f"commit {commit} is not a commit of feature group {self.full_name}")
            rows = cur.execute("select feature, stats from fstore.commit_statistics where commit_id = %s "
                               "order by feature", (commit,)).fetchall()
        return {name: stats for name, stats in rows}

    def _statistics_of_visible_rows(self, cur: psycopg.Cursor[Any], commit: int | None) -> dict[str, dict[str, Any]]:
        """fstore.batch_statistics over the rows of one commit that this reader may read."""
        if commit is None:
            commit = cur.execute("select max(id) from fstore.commits where feature_group_id = %s and rows > 0",
                                 (self.id,)).fetchone()[0]
            if commit is None:
                raise NotFound(f"feature group {self.full_name} has no commit with rows yet")
        elif not cur.execute("select 1 from fstore.commits where id = %s and feature_group_id = %s",
                             (commit, self.id)).fetchone():
            raise NotFound(f"commit {commit} is not a commit of feature group {self.full_name}")
        readable = cur.execute("select fstore.check_readable_features(%s, null)", (self.id,)).fetchone()[0]
        columns = [*self.keys, *readable, self.event_time]  # a sensitive feature stays out
        with self.store.conn.transaction(force_rollback=True):
            cur.execute("drop table if exists pg_temp._fstore_visible_rows")
            cur.execute(sql.SQL("create temp table _fstore_visible_rows as select {} from {} where _commit_id = %s")
                        .format(sql.SQL(", ").join(map(sql.Identifier, columns)), self.offline_relation()), (commit,))
            stats = cur.execute("select fstore.batch_statistics(%s, 'pg_temp._fstore_visible_rows'::regclass)",
                                (self.id,)).fetchone()[0] or {}
        return {name: {**column, "scope": "visible rows"} for name, column in sorted(stats.items())}

    def read(self, online: bool = False) -> "pa.Table":
        """Every row of the offline (or online) table as a pyarrow Table (for small groups and tests).

        Vector features come back as lists of float32.
        """
        relation = self.online_relation() if online else self.offline_relation()
        readable_features(self, self.feature_names)  # a sensitive feature: refused by name
        columns = [
            sql.SQL("{0}::real[] as {0}").format(sql.Identifier(f.name)) if base_type(f.pg_type) == "vector"
            else sql.Identifier(f.name) for f in self.features
        ] + [sql.Identifier(self.event_time), sql.Identifier("_commit_id")]
        query = sql.SQL("select {} from {} order by {}").format(
            sql.SQL(", ").join(columns), relation,
            sql.SQL(", ").join(sql.Identifier(k) for k in [*self.keys, self.event_time, "_commit_id"]))
        with adbc_session(self.store.material) as (_, cursor):
            cursor.execute(query.as_string(None))
            return cursor.fetch_arrow_table()

    def add_features(self, features: Mapping[str, Any]) -> "FeatureGroup":
        """Add features to this version without a new version (a Data Owner's change).

        ``features`` is ``{column: type}`` or ``{column: {"type", "description"}}``. Each
        becomes a nullable column offline (and online): rows committed before read NULL.
        Returns the group as the catalog now records it.

        Example::

            fg = fg.add_features({"amount_30d": "double precision"})
        """
        if not isinstance(features, Mapping) or not features:
            raise InvalidInput("give the features to add as {column: type}")
        columns = _columns(features, [])
        with translated(), as_project_owner(self.store, "add features to"):
            self.store.conn.execute("select fstore.add_features(%s, %s::jsonb)", (self.id, json.dumps(columns)))
        return self.refresh()

    @property
    def drift_thresholds(self) -> dict[str, dict[str, float]]:
        """The stored default drift thresholds of this version, ``{feature or "*": {measure: value}}``."""
        return dict(self.options.get("drift_thresholds") or {})

    def set_drift_thresholds(self, thresholds: Mapping[str, Mapping[str, float]] | None) -> dict[str, Any]:
        """Store this version's default drift thresholds (Data Owners; ``None`` or ``{}`` clears them).

        ``fs.drift`` applies them under the thresholds of its call, measure by measure;
        the measures are those of :data:`fstore.drift.MEASURES`.

        Example::

            fg.set_drift_thresholds({"tx_amount_7d": {"psi": 0.1, "wasserstein": 50}, "*": {"ks": 0.3}})
        """
        with translated():
            stored = self.store.conn.execute("select fstore.set_drift_thresholds(%s, %s::jsonb)",
                                             (self.id, json.dumps(dict(thresholds or {})))).fetchone()[0]
        self.options = {**self.options, "drift_thresholds": stored}
        return stored

    def refresh(self) -> "FeatureGroup":
        """The same version as the catalog records it now."""
        return get_feature_group(self.store, f"{self.project}.{self.name}", self.version)


# --- functions behind the FeatureStore handle ----------------------------------------------

# the catalog row's ttl (typed) and the one JSON description of the group, with its features' stored types
_BY_NAME = "select g.ttl, fstore.feature_group_json(g.id) from fstore.find_feature_group(%s, %s, %s) g"
_BY_ID = "select g.ttl, fstore.feature_group_json(g.id) from fstore.feature_group_by_id(%s) g"


def _split_name(fs: Session, name: str) -> tuple[str, str]:
    if not isinstance(name, str) or not name:
        raise InvalidInput("give a feature group name")
    project, dot, short = name.partition(".")
    return (project, short) if dot else (fs.project, name)


def get_feature_group(fs: Session, name: str, version: int | None = None) -> FeatureGroup:
    """A feature group by name (``project.name`` for a shared project's), latest version by default.

    Example::

        fg = fs.get_feature_group("account_activity", version=2)
        fg = fs.get_feature_group("payments.card_profile")   # shared with this project
    """
    return _load(fs, _BY_NAME, _split_name(fs, name) + (version,))


def _load(fs: Session, query: str, params: tuple[Any, ...]) -> FeatureGroup:
    with translated():
        ttl, row = fs.conn.execute(query, params).fetchone()
    return FeatureGroup(
        id=row["id"], project=row["project"], name=row["name"], version=row["version"],
        keys=list(row["entity_keys"]), event_time=row["event_time"],
        features=[Feature(f["name"], f["data_type"], f["description"], f["position"], f["is_key"],
                          f["pg_type"], bool(f.get("sensitive"))) for f in row["features"]],
        online=row["online"], ttl=ttl, description=row["description"], tags=list(row["tags"]),
        offline_table=row["offline_table"], online_table=row["online_table"],
        statistics_enabled=row["statistics_enabled"], options=row["options"] or {},
        upstream=row["upstream"] or [], created_by=row["created_by"], store=fs,
        created_at=dt.datetime.fromisoformat(row["created_at"]) if row.get("created_at") else None,
    )


def _columns(features: Any, keys: list[str]) -> list[dict[str, str]]:
    """The ``[{"name", "type", "description"}]`` list create_feature_group and add_features take
    (the SQL side skips the event-time column on create and refuses it on add)."""
    if features is None:
        raise InvalidInput("give features: a dict of column name -> type, or a DataFrame or Arrow "
                           "table/schema to infer the types from")
    if isinstance(features, Mapping):
        columns = []
        for name, spec in features.items():
            if isinstance(spec, str):
                columns.append({"name": name, "type": spec, "description": ""})
            elif isinstance(spec, Mapping) and "type" in spec:
                columns.append({"name": name, "type": spec["type"], "description": spec.get("description", "")})
            else:
                raise InvalidInput(f"feature {name!r}: give a type name or {{'type': ..., 'description': ...}}")
    else:
        columns = ingest.infer_columns(features)
    names = [c["name"] for c in columns]
    for key in keys:
        if key not in names:
            raise InvalidInput(f"entity key column {key!r} is not among the columns {names}")
    return columns


def create_feature_group(
    fs: Session,
    name: str,
    version: int | None = None,
    keys: Iterable[str] = (),
    event_time: str = "event_time",
    online: bool = False,
    ttl: dt.timedelta | str | None = None,
    description: str = "",
    tags: Iterable[str] = (),
    features: Any = None,
    statistics: bool = True,
    validation: Any = None,
    validation_policy: str = "strict",
    options: Mapping[str, Any] | None = None,
    feature_descriptions: Mapping[str, str] | None = None,
) -> FeatureGroup:
    """Create a feature-group version: its offline (and online) table and catalog entry.

    ``features`` is a dict ``{column: type}`` (or ``{column: {"type", "description"}}``)
    covering the keys and features, or a DataFrame / Arrow table / schema whose
    column types are mapped (int64 -> bigint, float64 -> double precision, string
    -> text, bool -> boolean, timestamp -> timestamptz, list<float> -> vector(n)).
    ``version=None`` takes the next free version. ``options={"hnsw": ["embedding"]}``
    adds an HNSW index on an online vector column. On a Citus cluster every group's
    tables are distributed by an entity key: ``options={"distribution_key": "k"}`` names
    it (default the first key; it must be a key, on a single node too), and
    ``options={"distribution_key": None}`` keeps the group on the coordinator (ignored
    on a single node). A group an entity policy governs stays on the coordinator too
    (docs/cluster.md, "Data placement"). Only a Data Owner may create (the tables are
    created as ``<project>__owner``).

    Example::

        fg = fs.create_feature_group("account_activity", 1, keys=["account_id"],
                                     features={"account_id": "bigint", "amount_1d": "double precision"},
                                     online=True, ttl="7 days", tags=["aml"])
    """
    keys = [keys] if isinstance(keys, str) else list(keys)
    if not keys:
        raise InvalidInput("give at least one entity key column (keys=[...])")
    if validation_policy not in VALIDATION_POLICIES:
        raise InvalidInput(f"invalid validation_policy {validation_policy!r}: use strict or warn")
    columns = _columns(features, keys)
    for column in columns:
        if feature_descriptions and column["name"] in feature_descriptions:
            column["description"] = feature_descriptions[column["name"]]
    opts = dict(options or {})
    if validation is not None:
        opts["validation"] = validation
        opts["validation_policy"] = validation_policy
    if isinstance(ttl, dt.timedelta) or ttl is None:
        ttl_param: Any = ttl
    else:
        ttl_param = str(ttl)
    with translated(), as_project_owner(fs, "create feature groups in"):  # no version: the next, under a lock
        group_id = fs.conn.execute(
            "select fstore.create_feature_group(%s, %s, %s, %s, %s, %s::jsonb, %s, %s::interval, %s, "
            "%s, %s, %s::jsonb)",
            (fs.project, name, version, keys, event_time, json.dumps(columns), online, ttl_param,
             description, list(tags), statistics, json.dumps(opts))).fetchone()[0]
    return _load(fs, _BY_ID, (group_id,))


@contextmanager
def as_project_owner(fs: Session, action: str) -> Iterator[None]:
    """One transaction acting as the project's owner role (SET LOCAL ROLE), as table DDL needs.

    Only Data Owners may: anyone else gets :class:`PermissionDenied` saying so (a refused
    SET ROLE can mean nothing else). The role reverts when the transaction ends, error or not.
    """
    with fs.conn.transaction():
        try:
            fs.conn.execute(sql.SQL("set local role {}").format(sql.Identifier(group_role(fs.project, "owner"))))
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermissionDenied(
                f"{fs.role} may not {action} project {fs.project}: only its Data Owners "
                "can (they act as the project's owner role)", sqlstate=exc.sqlstate,
                primary=exc.diag.message_primary) from exc
        yield


def list_feature_groups(fs: Session) -> list[dict[str, Any]]:
    """Every feature-group version the caller can see (own and shared projects), with commit totals.

    Example::

        for g in fs.list_feature_groups():
            print(g["project"], g["name"], g["version"], g["rows"])
    """
    with translated(), fs.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select project, name, version, online, ttl, description, tags, commits, rows, last_commit_id, "
            "last_commit_at, upstream from fstore.feature_group_overview order by project, name, version"
        ).fetchall()


def search(fs: Session, text: str, limit: int = 50) -> list[dict[str, Any]]:
    """Feature groups matching ``text`` in names, descriptions, tags or feature names, best first.

    Searches the caller's project and the projects shared with it (the catalog's
    row-level security decides). Words use web-search syntax; a fragment of a
    name (``txn_cou``) also matches.

    Example::

        [r["name"] for r in fs.search("transaction count")]
    """
    with translated(), fs.conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select project, name, version, versions, description, tags, online, features, matched_features, "
            "rank from fstore.search_feature_groups(%s, %s)", (text, limit)).fetchall()
