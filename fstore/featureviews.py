"""Feature views: one definition of what a model consumes, for training and for serving.

A feature view (``fstore.feature_views``, built by ``fstore.create_feature_view`` in
``sql/functions/85_feature_views.sql``) names feature references pinned to their
groups' versions, a label, the serving keys, passed (request-time) features and
model-dependent transformations. Its training datasets (``<view>_v<version>``) come
from the one point-in-time builder; the transformations are fitted by the database
on each one's training split and stored with it. Training data and served vectors
are the same SQL expressions with the same parameters: this module only calls them.

Example::

    fs = fstore.connect("fraud", "bob")
    fv = fs.create_feature_view("fraud_detection", ["account_activity:*", "account_profile:customer_age"],
                                label="is_fraud", passed_features={"amount": "double precision"},
                                transformations={"tx_amount_7d": "log1p", "customer_age": "standard_scaler",
                                                 "amount": "robust_scaler"})
    td = fv.create_training_dataset("select account_id, event_time, amount, is_fraud from fraud.spine",
                                    split={"train": 0.8, "test": 0.2})
    table = fv.get_training_data()                      # model-ready columns, label, split
    fv.init_serving()
    fv.get_feature_vector({"account_id": 42}, passed_features={"amount": 120.5})
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from psycopg import sql
from psycopg.rows import dict_row

from fstore import serving_vectors
from fstore.connection import adbc_session, open_pool, open_psycopg
from fstore.datasets import TrainingDataset, find_training_dataset, record_export
from fstore.errors import FstoreError, InvalidInput, translated
from fstore.pointintime import Spine, load_spine, session_settings
from fstore.session import Session

if TYPE_CHECKING:
    from fstore.drift import DriftReport
    from fstore.export import ExportResult

TRANSFORMATIONS = ("standard_scaler", "min_max_scaler", "robust_scaler", "log1p", "one_hot", "label_encoder",
                   "bucketize")

_CREATE = """
select to_jsonb(v) from fstore.create_feature_view(%s, %s::text[], %s::text[], %s::text[], %s::jsonb, %s::jsonb,
                                                   %s, %s::text[], %s::jsonb, %s) v
"""
_BUILD = """
select fstore.training_dataset_json(t)
  from (select $3::jsonb as a) args,
       lateral fstore.create_feature_view_training_table(
         $1, $2::regclass, nullif(a->'split', 'null'::jsonb), (a->>'seed')::bigint, (a->>'version')::integer,
         a->>'event_time_column', a->>'description') t
"""
_FITS = """
select t.version as training_dataset_version, t.name as training_dataset, t.rows, f.fitted_on, f.fitted_rows,
       f.fitted_at, f.fitted_by, f.params
  from fstore.feature_view_fits f join fstore.training_datasets t on t.id = f.training_dataset_id
 where f.feature_view_id = %s order by t.version
"""


@dataclass
class FeatureView:
    """One version of a feature view, as the catalog records it, with its training and serving.

    ``get_feature_vector`` and ``get_feature_vectors`` serve after :meth:`init_serving`
    (called on first use with the latest fitted training dataset). Whether the last
    request found every entity in every feature group is :attr:`last_found`.
    """

    id: int
    project: str
    name: str
    version: int
    features: list[str]                       # references pinned to their groups' versions
    label: list[str]
    serving_keys: list[str]
    passed_features: list[dict[str, str]]     # [{name, type}]
    transformations: dict[str, dict[str, Any]]
    outputs: list[dict[str, Any]]             # [{name, source, type, kind, transform, passed?}] in order
    description: str
    tags: list[str]
    options: dict[str, Any]
    created_at: str
    created_by: str
    app_id: str | None = None
    fs: Session | None = field(default=None, repr=False, compare=False)
    _server: serving_vectors.VectorServer | None = field(default=None, repr=False, compare=False)
    _pool: Any = field(default=None, repr=False, compare=False)
    _log_conn: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_record(cls, fs: Session | None, record: Mapping[str, Any]) -> "FeatureView":
        """Build from ``to_jsonb`` of a ``fstore.feature_views`` row."""
        names = set(cls.__dataclass_fields__) - {"fs", "_server", "_pool", "_log_conn"}
        return cls(fs=fs, **{k: v for k, v in record.items() if k in names})

    def __repr__(self) -> str:
        return f"FeatureView({self.project}.{self.name}@{self.version})"

    @property
    def log_rate(self) -> float:
        """The share of served vectors written to the view's log (0: no log)."""
        return float(self.options.get("log_rate") or 0)

    def _session(self) -> Session:
        if self.fs is None:
            raise InvalidInput(f"feature view {self.name} has no connection: get it with fs.get_feature_view")
        return self.fs

    def _own(self) -> None:
        if self.project != self._session().project:
            raise InvalidInput(f"feature view {self.project}.{self.name} belongs to project {self.project}: only its "
                               "members train and serve with it")

    # --- what it outputs ---------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        """The model-ready columns in the view's fixed order (``one_hot`` expands to
        ``column=value``): those being served, else those of the latest fitted training dataset."""
        if self._server is not None:
            return list(self._server.plan.columns)
        return self.columns_of()

    def columns_of(self, training_dataset_version: int | None = None) -> list[str]:
        """The model-ready columns with the parameters of one training-dataset version (the latest)."""
        with translated():
            return list(self._session().conn.execute(
                "select fstore.feature_view_columns(v, (fstore.feature_view_fit(v, %s)).params) "
                "from fstore.find_feature_view(%s, %s) v", (training_dataset_version, self.name, self.version)
            ).fetchone()[0])

    def fits(self) -> list[dict[str, Any]]:
        """The training datasets the view was fitted on: version, rows, split fitted on, parameters."""
        with translated(), self._session().conn.cursor(row_factory=dict_row) as cursor:
            return cursor.execute(_FITS, (self.id,)).fetchall()

    # --- training data -----------------------------------------------------------------------
    def create_training_dataset(self, spine: Spine, split: Mapping[str, Any] | None = None, seed: int = 0,
                                description: str = "", *, event_time_column: str = "event_time") -> TrainingDataset:
        """Build the next version of the view's training dataset (``<view>_v<version>``) by the
        point-in-time builder, and fit the transformations on its training split.

        ``spine`` is a DataFrame, Arrow data, a table name or a SELECT with the serving keys,
        the event time, the label and the passed features (their values at training time).

        Example::

            td = fv.create_training_dataset(labels_df, split={"train": 0.8, "test": 0.2}, seed=7)
            td.name, td.version, td.rows                  # ('fraud_detection_v1', 1, 10000)
        """
        self._own()
        fs = self._session()
        if split is not None and not isinstance(split, Mapping):
            raise InvalidInput('split must be a mapping like {"train": 0.8, "test": 0.2}')
        arguments = json.dumps({"split": dict(split) if split is not None else None, "seed": int(seed),
                                "version": self.version, "event_time_column": event_time_column,
                                "description": description}, default=str)
        with adbc_session(fs.material) as (conn, cursor):
            relation = load_spine(conn, cursor, spine)
            session_settings(cursor)
            cursor.execute(_BUILD, parameters=(self.name, relation, arguments))
            built = json.loads(cursor.fetchone()[0])
            conn.commit()
        return find_training_dataset(fs, built["name"], built["version"])

    def training_sql(self, training_dataset_version: int | None = None, with_keys: bool = False) -> str:
        """The query of the view's training data (``fstore.feature_view_training_sql``)."""
        self._own()
        with translated():
            return self._session().conn.execute(
                "select fstore.feature_view_training_sql(%s, %s, %s, %s)",
                (self.name, self.version, training_dataset_version, with_keys)).fetchone()[0]

    def get_training_data(self, training_dataset_version: int | None = None, with_keys: bool = False) -> pa.Table:
        """The view's training data as Arrow, in spine order: the model-ready columns (transformed
        with the parameters fitted on the training split), then the label and ``split``; with
        ``with_keys`` the serving keys and event time first.

        Example::

            table = fv.get_training_data()
            train = table.filter(pc.equal(table["split"], "train"))
        """
        query = self.training_sql(training_dataset_version, with_keys)
        with adbc_session(self._session().material) as (_, cursor):
            cursor.execute(query)
            return cursor.fetch_arrow_table()

    def export(self, path: str | Path, format: str | None = None, *, training_dataset_version: int | None = None,
               split: bool = True, **options: Any) -> "ExportResult":
        """Export the view's training data (model-ready columns in the view's order, label,
        split) like :func:`fstore.export.export`, and record the export with its training dataset.

        Example::

            fv.export("out/fraud_detection.tfrecord")      # a directory of split files
        """
        from fstore import export

        fs = self._session()
        dataset = self.training_dataset(training_dataset_version)
        result = export.export(fs, sql.SQL(self.training_sql(dataset.version)), path, format,
                               label=list(self.label) or None,
                               split_column=dataset.split_column if split else None, **options)
        record_export(fs, dataset, result.format, result.path, result.rows)
        return result

    def training_dataset(self, training_dataset_version: int | None = None) -> TrainingDataset:
        """The catalog record of one of the view's fitted training datasets (the latest)."""
        fits = self.fits()
        chosen = [f for f in fits if training_dataset_version in (None, f["training_dataset_version"])]
        if not chosen:
            raise InvalidInput(f"feature view {self.name} version {self.version} has no fitted training dataset"
                               + (f" version {training_dataset_version}" if training_dataset_version else "")
                               + ": build one with fv.create_training_dataset")
        return find_training_dataset(self._session(), chosen[-1]["training_dataset"],
                                     chosen[-1]["training_dataset_version"])

    # --- serving -----------------------------------------------------------------------------
    def init_serving(self, training_dataset_version: int | None = None, *, pool_size: int | None = None
                     ) -> "FeatureView":
        """Fix the fitted parameters served with (those of ``training_dataset_version``, by
        default the latest) and prepare the serving query once. Without ``pool_size`` it
        serves on the handle's connection; with it, on a pool of that many connections of
        the same identity (thread-safe). Call again to switch versions.

        Example::

            fv.init_serving(training_dataset_version=2, pool_size=4)
        """
        self._own()
        fs = self._session()
        self.close()
        plan = serving_vectors.prepare(fs.conn, self.name, self.version, training_dataset_version)
        if pool_size is not None:
            self._pool = open_pool(fs.material, 1, pool_size)
            connection = log_connection = self._pool.connection
        else:
            def connection() -> Any:
                return nullcontext(fs.conn)

            def log_connection() -> Any:  # the log's writer has a connection of its own
                if self._log_conn is None or self._log_conn.closed:
                    self._log_conn = open_psycopg(fs.material, autocommit=True)
                return nullcontext(self._log_conn)
        self._server = serving_vectors.VectorServer(plan, connection, on_refused=self._refusal,
                                                    log_connection=log_connection)
        return self

    def _refusal(self, exc: FstoreError) -> FstoreError:
        """A serving query refused: the view's own words when a share ended or a group went."""
        try:
            with translated():
                self._session().conn.execute("select fstore.find_feature_view(%s, %s)", (self.name, self.version))
        except FstoreError as clear:
            return clear
        return exc

    def _serving(self) -> serving_vectors.VectorServer:
        if self._server is None:
            self.init_serving()
        return self._server  # type: ignore[return-value]

    @property
    def serving_training_dataset_version(self) -> int | None:
        """The training-dataset version whose parameters are served (None before serving)."""
        return self._server.plan.training_dataset_version if self._server is not None else None

    @property
    def last_found(self) -> bool | list[bool] | None:
        """Whether the calling thread's last request found every entity in every feature group
        (a list, one per entity, after ``get_feature_vectors``); None before the first."""
        return self._server.last_found if self._server is not None else None

    def get_feature_vector(self, entity: Mapping[str, Any], passed_features: Mapping[str, Any] | None = None,
                           return_type: str = "list", strict: bool = False) -> Any:
        """The model-ready vector of one entity, in the view's order, transformed with the
        served training dataset's parameters (identical to its training rows).

        ``entity`` holds the serving keys; ``passed_features`` the request-time values (one
        named like a stored feature overrides it). ``return_type``: ``list`` (None where
        missing), ``numpy`` (NaN), ``dict`` (column -> value) or ``pandas`` (one row). A
        missing entity gives NULLs and ``last_found`` false, or with ``strict``
        :class:`~fstore.errors.NotFound` naming it (and every passed feature is required).

        Example::

            fv.get_feature_vector({"account_id": 42}, passed_features={"amount": 120.5}, return_type="numpy")
        """
        vector = self._serving().one(entity, passed_features, strict)
        if return_type == "list":
            return vector
        return serving_vectors.shaped([vector], self._server.plan.columns, return_type, True)  # type: ignore

    def get_feature_vectors(self, entities: Sequence[Mapping[str, Any]],
                            passed_features: Sequence[Mapping[str, Any] | None] | None = None,
                            return_type: str = "list", strict: bool = False) -> Any:
        """The vectors of many entities in one round trip, in request order (``numpy``: a 2-D
        array, ``pandas``: one row per entity); ``passed_features`` one dict per entity.

        Example::

            fv.get_feature_vectors([{"account_id": 1}, {"account_id": 2}], [{"amount": 5.0}, {"amount": 9.5}])
        """
        vectors = self._serving().many(entities, passed_features, strict)
        return serving_vectors.shaped(vectors, self._server.plan.columns, return_type, False)  # type: ignore

    def flush_log(self) -> int:
        """Write the sampled served vectors still waiting to the view's log now; returns how many.
        (Otherwise a background thread, on a connection of its own, writes them in batches of
        :data:`fstore.serving_vectors.LOG_BATCH`, or after :data:`~fstore.serving_vectors.LOG_MAX_AGE_S`
        seconds, handed over by a request.)"""
        return self._server.flush() if self._server is not None else 0

    def close(self) -> None:
        """Flush the served-vector log and release the serving pool (serving restarts on next use)."""
        server, pool, self._server, self._pool = self._server, self._pool, None, None
        try:
            if server is not None:
                server.flush()
        finally:
            if pool is not None:
                pool.close()
            if self._log_conn is not None:
                self._log_conn.close()
                self._log_conn = None

    def __enter__(self) -> "FeatureView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- training/serving skew ---------------------------------------------------------------
    def drift(self, window: Any = None, *, training_dataset_version: int | None = None, bins: int = 10,
              threshold: float = 0.2) -> "DriftReport":
        """What the view served (its log, in ``window``: a ``(from, to)`` pair of served times)
        against its training split: see :func:`fstore.drift.feature_view_drift`."""
        from fstore import drift

        return drift.feature_view_drift(self._session(), self.name, window, version=self.version,
                                        training_dataset_version=training_dataset_version, bins=bins,
                                        threshold=threshold)


# --- the catalog ------------------------------------------------------------------------------
def transformation_spec(spec: Any) -> dict[str, Any]:
    """``"log1p"``, ``("bucketize", [10, 100])`` or ``{"fn": ..., "edges": [...]}`` as the catalog takes it."""
    if isinstance(spec, str):
        return {"fn": spec}
    if isinstance(spec, tuple) and len(spec) == 2 and spec[0] == "bucketize":
        return {"fn": "bucketize", "edges": list(spec[1])}
    if isinstance(spec, Mapping):
        return dict(spec)
    raise InvalidInput(f"a transformation is one of {', '.join(TRANSFORMATIONS)} (bucketize with edges), "
                       f"not {spec!r}")


def passed_spec(passed: Any) -> list[dict[str, str]]:
    """``{"amount": "double precision"}`` or ``[{"name": ..., "type": ...}]`` as a list."""
    if passed is None:
        return []
    if isinstance(passed, Mapping):
        return [{"name": n, "type": t} for n, t in passed.items()]
    return [dict(p) for p in passed]


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


def create_feature_view(fs: Session, name: str, features: str | Sequence[str], *,
                        label: str | Sequence[str] | None = None, serving_keys: Sequence[str] | None = None,
                        passed_features: Any = None, transformations: Mapping[str, Any] | None = None,
                        description: str = "", tags: Sequence[str] = (), log_rate: float | None = None,
                        version: int | None = None) -> FeatureView:
    """Create a feature view (the next version of ``name`` unless ``version``); any member of
    the project may, over its groups and shared ones. References are pinned to their groups'
    current versions. ``log_rate`` samples served vectors into the view's log.

    Example::

        fv = create_feature_view(fs, "scoring", ["activity:*", "profile:country"], label="is_fraud",
                                 passed_features={"amount": "double precision"},
                                 transformations={"country": "one_hot", "amount": ("bucketize", [10, 100])})
    """
    options = {"log_rate": log_rate} if log_rate is not None else {}
    transforms = {c: transformation_spec(s) for c, s in (transformations or {}).items()}
    with translated():
        record = fs.conn.execute(_CREATE, (
            name, _names(features), _names(label) or [], _names(serving_keys), json.dumps(passed_spec(passed_features)),
            json.dumps(transforms), description, list(tags), json.dumps(options), version)).fetchone()[0]
    return FeatureView.from_record(fs, record)


def get_feature_view(fs: Session, name: str, version: int | None = None) -> FeatureView:
    """A feature view of the caller's project (its latest version unless ``version``); refused
    by name when it uses groups of a project no longer shared with the caller's."""
    with translated():
        record = fs.conn.execute("select to_jsonb(v) from fstore.find_feature_view(%s, %s) v",
                                 (name, version)).fetchone()[0]
    return FeatureView.from_record(fs, record)


def list_feature_views(fs: Session, name: str | None = None) -> list[FeatureView]:
    """The feature views the caller can see (its project's and shared projects'), by name and version."""
    with translated():
        rows = fs.conn.execute("select to_jsonb(v) from fstore.feature_views v where %(n)s::text is null "
                               "or v.name = %(n)s order by v.project, v.name, v.version", {"n": name}).fetchall()
    return [FeatureView.from_record(fs, r) for (r,) in rows]


# --- usage and reuse ------------------------------------------------------------------------
def feature_usage(fs: Session, group: str | None = None) -> list[dict[str, Any]]:
    """Per feature of the caller's project (of one group, or all): the views and training
    datasets of the project that use it, the projects using it through shares with their
    training datasets' names (no data), and when a view over it last served
    (``fstore.feature_usage``).

    Example::

        [(u["feature"], u["views"], u["partner_projects"]) for u in fs.feature_usage("account_activity")]
    """
    with translated(), fs.conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute("select * from fstore.feature_usage(%s)", (group,)).fetchall()


def is_reused(usage: Mapping[str, Any]) -> bool:
    """A feature is reused when more than one view (by name) or more than one project uses it
    (the own project counts when one of its views or training datasets does)."""
    views = {v.rpartition("@")[0] for v in usage["views"]}
    projects = set(usage["partner_projects"]) | ({"own"} if usage["views"] or usage["training_datasets"] else set())
    return len(views) > 1 or len(projects) > 1


def usage_report(fs: Session, group: str | None = None) -> dict[str, Any]:
    """The reuse summary of the caller's project, from :func:`feature_usage`: features defined,
    features used by more than one view or project, and the share of training columns (a
    feature in a training dataset, the project's or a partner's) that came from reused features.

    Example::

        report = fs.feature_usage(report=True)
        report["reused_features"], report["reused_training_column_share"]
    """
    usage = feature_usage(fs, group)
    reused = [u for u in usage if is_reused(u)]
    columns = sum(len(u["training_datasets"]) + len(u["partner_training_datasets"]) for u in usage)
    from_reused = sum(len(u["training_datasets"]) + len(u["partner_training_datasets"]) for u in reused)
    return {
        "project": fs.project, "feature_group": group,
        "feature_groups": len({(u["feature_group"], u["version"]) for u in usage}),
        "features_defined": len(usage), "features_used": sum(1 for u in usage if u["views"] or u["training_datasets"]
                                                             or u["partner_projects"]),
        "reused_features": len(reused),
        "reused": [f"{u['feature_group']}@{u['version']}:{u['feature']}" for u in reused],
        "views": len({v for u in usage for v in u["views"]}),
        "partner_projects": sorted({p for u in usage for p in u["partner_projects"]}),
        "training_columns": columns, "training_columns_from_reused": from_reused,
        "reused_training_column_share": round(from_reused / columns, 4) if columns else None,
    }


__all__ = ["TRANSFORMATIONS", "FeatureView", "create_feature_view", "feature_usage", "get_feature_view",
           "is_reused", "list_feature_views", "passed_spec", "transformation_spec", "usage_report"]
