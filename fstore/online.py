"""Online serving: the latest feature vector of entities, in one round trip.

A request names features (``"group:feature"``, ``"group:*"``, ``"group@2:feature"``,
``"project.group:feature"``) and entity keys. It becomes ONE prepared SQL statement:
the requested keys are unnested (``WITH ORDINALITY``, so rows come back in request
order) and left-joined to the online table of every feature group, with each
group's TTL applied in the join (``event_time >= now() - ttl``). One statement is one
snapshot: a commit that touched several groups is seen entirely or not at all.
Entities a group does not have (or whose row has expired) get NULL features and
``<group>__found = false``. The statement runs with the caller's identity, so
grants and row-level security decide what comes back.

Example::

    table = get_online_features(fs, ["activity:*", "risk:score"], [{"account_id": 1}, {"account_id": 7}])
    row = get_online_features(fs, ["activity:amount_7d"], {"account_id": 1})   # a dict

The resolved statement is cached per identity and feature list; call
:func:`clear_plans` after a new feature-group version should be picked up.
Long-lived serving processes use :class:`fstore.serving_pool.OnlineStore`.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from fstore.errors import InvalidInput, NotFound, translated

REFERENCE = re.compile(
    r"^(?:(?P<project>[a-z][a-z0-9_]*)\.)?(?P<group>[a-z][a-z0-9_]*)(?:@(?P<version>[0-9]{1,9}))?"
    r":(?P<feature>[a-z_][a-z0-9_]*|\*)$")
FOUND_SUFFIX = "__found"

# PostgreSQL type (pg_type.typname) -> Arrow type of the output column
_ARROW_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(), "float4": pa.float32(),
    "float8": pa.float64(), "bool": pa.bool_(), "text": pa.string(), "varchar": pa.string(),
    "bpchar": pa.string(), "name": pa.string(), "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"), "date": pa.date32(), "bytea": pa.binary(), "numeric": pa.float64(),
    "vector": pa.list_(pa.float32()), "uuid": pa.string(), "interval": pa.duration("us"),
}
# how a column is selected so that psycopg returns what the Arrow type above expects
_SELECT_AS: dict[str, sql.SQL] = {
    "vector": sql.SQL("::float4[]"), "numeric": sql.SQL("::float8"), "uuid": sql.SQL("::text"),
}


@dataclass(frozen=True)
class FeatureRef:
    """A parsed feature reference ``[project.]group[@version]:feature`` (feature may be ``*``)."""

    project: str
    group: str
    version: int | None
    feature: str

    @classmethod
    def parse(cls, text: str, project: str) -> "FeatureRef":
        """Parse ``text``; ``project`` is the default project."""
        match = REFERENCE.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise InvalidInput(f"invalid feature reference {text!r}: use group:feature, group:*, "
                               "group@2:feature or project.group:feature")
        version = match["version"]
        return cls(match["project"] or project, match["group"], int(version) if version else None,
                   match["feature"])


@dataclass
class Column:
    """A column of an online table: name and its PostgreSQL type."""

    name: str
    type_schema: str
    type_name: str
    typmod: int = -1

    @property
    def dimension(self) -> int | None:
        """The declared dimension of a ``vector(n)`` column."""
        return self.typmod if self.type_name == "vector" and self.typmod > 0 else None

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type lookups return this column as (text for types without a mapping)."""
        if self.type_name.startswith("_") and self.type_name[1:] in _ARROW_TYPES:
            return pa.list_(_ARROW_TYPES[self.type_name[1:]])
        return _ARROW_TYPES.get(self.type_name, pa.string())

    def selected(self, alias: str | None = None) -> sql.Composable:
        """The select-list expression returning this column in its Arrow-friendly form."""
        expr = sql.Identifier(alias, self.name) if alias else sql.Identifier(self.name)
        if self.type_name in _SELECT_AS:
            return sql.Composed([expr, _SELECT_AS[self.type_name]])
        if self.type_name not in _ARROW_TYPES and not self.type_name.startswith("_"):
            return sql.Composed([expr, sql.SQL("::text")])
        return expr


@dataclass
class OnlineGroup:
    """A resolved feature-group version: its online table and the features asked of it."""

    id: int
    project: str
    name: str
    version: int
    keys: list[str]
    event_time: str
    ttl: dt.timedelta | None
    online_table: str | None
    columns: dict[str, Column]
    available: list[str] = field(default_factory=list)             # every non-key feature, in order
    features: list[tuple[str, str]] = field(default_factory=list)  # asked for: (feature, output name)

    @property
    def label(self) -> str:
        """``project.name@version``, as errors name the group."""
        return f"{self.project}.{self.name}@{self.version}"


def resolve_features(conn: psycopg.Connection[Any], project: str, features: Sequence[str], *,
                     full_feature_names: bool = False, online: bool = True) -> list[OnlineGroup]:
    """Resolve feature references with the catalog's resolver (``fstore.resolve_features``).

    Latest version unless ``@version`` is given; ``group:*`` is every non-key feature.
    Errors name the reference: unknown group or feature, a key asked for as a feature,
    another project not shared with ``project``, an ambiguous output name (use
    ``full_feature_names`` to get ``group__feature``), and here also a group without an
    online table (``online=True``). ``project`` is the caller's session project (the
    resolver reads it from the session); it is checked to match.
    """
    if isinstance(features, str) or not features:
        raise InvalidInput("give a list of feature references, e.g. ['activity:*']")
    for text in features:
        FeatureRef.parse(text, project)  # the same grammar, checked before the round trip
    with translated():
        plan = conn.execute("select fstore.resolve_features(%s::text[], %s)",
                            (list(features), full_feature_names)).fetchone()[0]
        available = dict(conn.execute(
            """select f.feature_group_id, array_agg(f.name order by f.position) from fstore.features f
                where f.feature_group_id = any(%s) and not f.is_key group by 1""",
            ([entry["id"] for entry in plan],)).fetchall())
    groups = []
    for entry in plan:
        label = f"{entry['project']}.{entry['name']}@{entry['version']}"
        if online and not entry["online_table"]:
            raise InvalidInput(f"feature group {label} is not online: create it with online=True")
        table = entry["online_table"] if online else entry["table"]
        ttl = entry["ttl_seconds"]
        groups.append(OnlineGroup(
            id=entry["id"], project=entry["project"], name=entry["name"], version=entry["version"],
            keys=list(entry["keys"]), event_time=entry["event_time"],
            ttl=dt.timedelta(seconds=float(ttl)) if ttl is not None else None, online_table=table,
            columns=_table_columns(conn, entry["project"], table), available=list(available.get(entry["id"], [])),
            features=[(f["name"], f["output"]) for f in entry["features"]]))
    return groups


def _table_columns(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, Column]:
    rows = conn.execute(
        """select a.attname, tn.nspname, t.typname, a.atttypmod
             from pg_attribute a join pg_class c on c.oid = a.attrelid
             join pg_namespace n on n.oid = c.relnamespace
             join pg_type t on t.oid = a.atttypid join pg_namespace tn on tn.oid = t.typnamespace
            where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped
            order by a.attnum""", (schema, table)).fetchall()
    if not rows:
        raise NotFound(f"table {schema}.{table} does not exist")
    return {name: Column(name, type_schema, type_name, typmod) for name, type_schema, type_name, typmod in rows}


# --- the lookup statement -----------------------------------------------------------------------
@dataclass
class LookupPlan:
    """The prepared statements of one feature list, and the Arrow schema of their rows."""

    groups: list[OnlineGroup]
    keys: list[Column]          # the request's key columns (union over groups, in order)
    query_one: bytes            # one entity: keys as scalar parameters
    query_many: bytes           # any number: keys as arrays, unnested with ordinality
    schema: pa.Schema           # keys, features, then <group>__found per group
    row_type: pa.StructType = field(init=False)

    def __post_init__(self) -> None:
        self.row_type = pa.struct(list(self.schema))


def build_plan(conn: psycopg.Connection[Any], groups: list[OnlineGroup]) -> LookupPlan:
    """The statements joining the requested keys to every group's online table.

    Rendered once (psycopg prepares them by their text). Key types come from the
    online table itself, as schema-qualified type identifiers.
    """
    keys: list[Column] = []
    for group in groups:
        for key in group.keys:
            if key not in [k.name for k in keys]:
                keys.append(group.columns[key])
    types = [sql.Identifier(k.type_schema, k.type_name) for k in keys]
    names = [sql.Identifier(k.name) for k in keys]
    one = sql.SQL("(select {}) r").format(sql.SQL(", ").join(
        sql.SQL("%s::{} as {}").format(t, n) for t, n in zip(types, names)))
    many = sql.SQL("unnest({}) with ordinality as r({}, _ord)").format(
        sql.SQL(", ").join(sql.SQL("%s::{}[]").format(t) for t in types), sql.SQL(", ").join(names))
    select: list[sql.Composable] = [sql.Identifier("r", k.name) for k in keys]
    joins: list[sql.Composable] = []
    fields = [pa.field(k.name, k.arrow_type) for k in keys]
    for i, group in enumerate(groups):
        alias = f"g{i}"
        conditions = [sql.SQL("{} = {}").format(sql.Identifier(alias, k), sql.Identifier("r", k)) for k in group.keys]
        if group.ttl is not None:
            conditions.append(sql.SQL("{} >= now() - {}").format(sql.Identifier(alias, group.event_time),
                                                                  sql.Literal(group.ttl)))
        joins.append(sql.SQL("left join {} {} on {}").format(
            sql.Identifier(group.project, group.online_table), sql.Identifier(alias),
            sql.SQL(" and ").join(conditions)))
        for feature, output in group.features:
            column = group.columns[feature]
            select.append(column.selected(alias))
            fields.append(pa.field(output, column.arrow_type))
    for i, group in enumerate(groups):
        select.append(sql.SQL("{} is not null").format(sql.Identifier(f"g{i}", group.keys[0])))
        fields.append(pa.field(f"{group.name}{FOUND_SUFFIX}", pa.bool_()))
    names_out = [f.name for f in fields]
    if len(set(names_out)) != len(names_out):
        raise InvalidInput(f"output columns clash: {', '.join(names_out)}; ask for full feature names")
    body = sql.SQL("select {} from ").format(sql.SQL(", ").join(select))
    joined = sql.SQL(" ").join(joins)
    return LookupPlan(groups=groups, keys=keys,
                      query_one=(body + one + sql.SQL(" ") + joined).as_bytes(conn),
                      query_many=(body + many + sql.SQL(" ") + joined + sql.SQL(" order by r._ord")).as_bytes(conn),
                      schema=pa.schema(fields))


_PLANS: dict[tuple[Any, ...], LookupPlan] = {}
_PLANS_LOCK = threading.Lock()


def clear_plans() -> None:
    """Forget every cached lookup plan (the next lookup resolves the catalog again)."""
    with _PLANS_LOCK:
        _PLANS.clear()


def plan_for(conn: psycopg.Connection[Any], project: str, role: str, features: Sequence[str],
             full_feature_names: bool, cache: dict[tuple[Any, ...], LookupPlan] | None = None) -> LookupPlan:
    """The cached plan of a feature list for one identity (resolved on first use)."""
    cache = _PLANS if cache is None else cache
    key = (role, tuple(features) if not isinstance(features, str) else features, full_feature_names)
    plan = cache.get(key)
    if plan is None:
        plan = build_plan(conn, resolve_features(conn, project, features, full_feature_names=full_feature_names))
        with _PLANS_LOCK:
            cache[key] = plan
    return plan


def _key_columns(entity_rows: Any, keys: list[Column]) -> tuple[list[list[Any]], int]:
    """The request's key values, column by column, from dicts, a DataFrame or an Arrow table."""
    names = [k.name for k in keys]
    if isinstance(entity_rows, dict):
        entity_rows = [entity_rows]
    if isinstance(entity_rows, list):
        try:  # the common case, fast: a list of dicts holding every key
            columns = [[row[n] for row in entity_rows] for n in names]
        except (KeyError, TypeError, IndexError):
            _explain_bad_rows(entity_rows, names)
            raise
        if entity_rows and any(isinstance(c[0], np.generic) for c in columns):  # numpy scalars
            columns = [[v.item() if isinstance(v, np.generic) else v for v in c] for c in columns]
        return columns, len(entity_rows)
    if isinstance(entity_rows, (pa.Table, pa.RecordBatch)):
        missing = [n for n in names if n not in entity_rows.column_names]
        columns = None if missing else [entity_rows.column(n).to_pylist() for n in names]
    elif hasattr(entity_rows, "columns") and hasattr(entity_rows, "__getitem__"):  # pandas or polars
        missing = [n for n in names if n not in list(entity_rows.columns)]
        columns = None if missing else [entity_rows[n].to_list() if hasattr(entity_rows[n], "to_list")
                                        else list(entity_rows[n]) for n in names]
    else:
        return _key_columns(list(entity_rows) if not isinstance(entity_rows, Mapping) else [dict(entity_rows)],
                            keys)
    if columns is None:
        raise InvalidInput(f"entity rows have no key column(s) {', '.join(missing)} (needed: {', '.join(names)})")
    return columns, len(columns[0]) if columns else 0


def _explain_bad_rows(rows: list[Any], names: list[str]) -> None:
    """Raise :class:`InvalidInput` naming the first entity row without a key."""
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidInput(f"entity row {i} is a {type(row).__name__}: give dicts of key -> value")
        absent = [n for n in names if n not in row]
        if absent:
            raise InvalidInput(f"entity row {i} has no value for key column(s) {', '.join(absent)} "
                               f"(needed: {', '.join(names)})")


def lookup(conn: psycopg.Connection[Any], plan: LookupPlan, entity_rows: Any) -> pa.Table:
    """Run a plan for the given entities: one round trip, one snapshot, request order."""
    columns, n = _key_columns(entity_rows, plan.keys)
    with translated():
        cursor = conn.cursor(binary=True)  # binary results: no text parsing of numbers and times
        if n == 1:
            rows = cursor.execute(plan.query_one, [c[0] for c in columns], prepare=True).fetchall()
        else:
            rows = cursor.execute(plan.query_many, columns, prepare=True).fetchall()
    return pa.Table.from_batches([pa.RecordBatch.from_struct_array(pa.array(rows, type=plan.row_type))])


def lookup_one(conn: psycopg.Connection[Any], plan: LookupPlan, entity: Mapping[str, Any]) -> dict[str, Any]:
    """Run a plan for one entity and return a dict (keys, features, ``<group>__found``)."""
    columns, _ = _key_columns(entity, plan.keys)
    with translated():
        row = conn.cursor(binary=True).execute(plan.query_one, [c[0] for c in columns], prepare=True).fetchone()
    return dict(zip(plan.schema.names, row))


def _with_plan(fs: Any, features: Sequence[str], full_feature_names: bool, run: Any) -> Any:
    """Run with the cached plan; on a stale plan (table or column gone) resolve once more."""
    plan = plan_for(fs.conn, fs.project, fs.role, features, full_feature_names)
    try:
        return run(fs.conn, plan)
    except (NotFound, InvalidInput) as exc:
        if exc.sqlstate not in ("42P01", "42703"):
            raise
        clear_plans()
        return run(fs.conn, plan_for(fs.conn, fs.project, fs.role, features, full_feature_names))


def get_online_features(fs: Any, features: Sequence[str], entity_rows: Any, *,
                        full_feature_names: bool = False) -> pa.Table | dict[str, Any]:
    """The latest features of entities from the online store.

    ``entity_rows`` is a list of dicts, a pandas/polars DataFrame or an Arrow table
    holding the entity key columns (one row per entity, duplicates allowed): the
    result is an Arrow table in the same order, keys first, then the features, then
    ``<group>__found`` per feature group (false where the entity is missing or its
    row is older than the group's TTL, with NULL features). A single dict gives a
    dict back.

    Example::

        fs.get_online_features(["activity:*"], [{"account_id": 1}, {"account_id": 2}])
        fs.get_online_features(["activity:amount_7d", "risk@2:score"], {"account_id": 1})
    """
    if isinstance(entity_rows, Mapping):
        return _with_plan(fs, features, full_feature_names,
                          lambda conn, plan: lookup_one(conn, plan, entity_rows))
    return _with_plan(fs, features, full_feature_names, lambda conn, plan: lookup(conn, plan, entity_rows))


def nearest(fs: Any, group: str, vector_feature: str, query_vector: Sequence[float], k: int = 10,
            where: str | None = None, **kwargs: Any) -> pa.Table:
    """See :func:`fstore.vectors.nearest` (embedding search on an online table)."""
    from fstore.vectors import nearest as search

    return search(fs.conn, fs.project, group, vector_feature, query_vector, k, where, **kwargs)
