"""Online serving: the latest feature vector of entities, in one round trip.

A request names features (``"group:feature"``, ``"group:*"``, ``"group@2:feature"``,
``"project.group:feature"``) and entity keys. It becomes ONE prepared SQL statement:
the requested keys are unnested (``WITH ORDINALITY``, so rows come back in request
order) and left-joined to the online table of every feature group, with each
group's TTL applied in the join (``event_time >= now() - ttl``). One statement is one
snapshot: a commit that touched several groups is seen entirely or not at all. On a
Citus cluster a lookup that reads shards on several workers (many entities, or groups
distributed by different keys) first takes the groups' commit barrier
(``fstore.commit_barrier``, docs/cluster.md "Commits and readers across workers") in the
same transaction, pipelined with the lookup: no commit is then half applied across
workers while it reads. A one-entity lookup of co-located groups reads one shard and
needs nothing.
Entities a group does not have (or whose row has expired) get NULL features and
``<group>__found = false``. The statement runs with the caller's identity, so
grants and row-level security decide what comes back.

Example::

    table = get_online_features(fs, ["activity:*", "risk:score"], [{"account_id": 1}, {"account_id": 7}])
    row = get_online_features(fs, ["activity:amount_7d"], {"account_id": 1})   # a dict

Feature references are resolved by the catalog (:mod:`fstore.resolve`). The resolved
statement is cached per identity and feature list; call :func:`clear_plans` after a
new feature-group version should be picked up. Long-lived serving processes use
:class:`fstore.serving_pool.OnlineStore` (``fs.online_store()``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
from psycopg import sql

from fstore.errors import InvalidInput, NotFound, PermissionDenied, translated
from fstore.resolve import Column, ResolvedGroup, resolve_features
from fstore.session import Session

FOUND_SUFFIX = "__found"


# --- the lookup statement -----------------------------------------------------------------------
@dataclass
class LookupPlan:
    """The prepared statements of one feature list, and the Arrow schema of their rows."""

    groups: list[ResolvedGroup]
    keys: list[Column]          # the request's key columns (union over groups, in order)
    query_one: bytes            # one entity: keys as scalar parameters
    query_many: bytes           # any number: keys as arrays, unnested with ordinality
    schema: pa.Schema           # keys, features, then <group>__found per group
    barrier: tuple[int, ...] = ()   # distributed groups (ids) a multi-shard lookup takes the barrier of
    barrier_one: bool = False       # a one-entity lookup spans shards too (groups distributed by other keys)
    many_filters: tuple[int, ...] = ()  # query_many's extra parameters: these key arrays again
    row_type: pa.StructType = field(init=False)
    names: tuple[str, ...] = field(init=False)      # the schema's names (read from Arrow once)
    key_names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.row_type = pa.struct(list(self.schema))
        self.names = tuple(self.schema.names)
        self.key_names = tuple(k.name for k in self.keys)


def build_plan(conn: psycopg.Connection[Any], groups: list[ResolvedGroup]) -> LookupPlan:
    """The statements joining the requested keys to every group's online table.

    Rendered once (psycopg prepares them by their text). Key types come from the
    online table itself, as schema-qualified type identifiers.
    """
    keys: list[Column] = []
    for group in groups:
        for key in group.keys:
            if key not in [k.name for k in keys]:
                keys.append(group.columns[key])
    types = [k.type_sql() for k in keys]
    names = [sql.Identifier(k.name) for k in keys]
    # a VALUES row, not a sub-select: the planner joins it like constants (measured: the
    # sub-select costs about 40 us more per lookup over 4 groups)
    one = sql.SQL("(values ({})) r({})").format(
        sql.SQL(", ").join(sql.SQL("%s::{}").format(t) for t in types), sql.SQL(", ").join(names))
    many = sql.SQL("unnest({}) with ordinality as r({}, _ord)").format(
        sql.SQL(", ").join(sql.SQL("%s::{}[]").format(t) for t in types), sql.SQL(", ").join(names))
    select: list[sql.Composable] = [sql.Identifier("r", k.name) for k in keys]
    joins: list[sql.Composable] = []
    joins_many: list[sql.Composable] = []
    many_filters: list[int] = []
    fields = [pa.field(k.name, k.arrow_type) for k in keys]
    key_index = {k.name: j for j, k in enumerate(keys)}
    for i, (group, distributed) in enumerate(zip(groups, _distributed_tables(conn, groups))):
        alias = f"g{i}"
        conditions = [sql.SQL("{} = {}").format(sql.Identifier(alias, k), sql.Identifier("r", k)) for k in group.keys]
        if group.ttl is not None:
            conditions.append(sql.SQL("{} >= now() - {}").format(sql.Identifier(alias, group.event_time),
                                                                  sql.Literal(group.ttl)))
        table = sql.Identifier(group.project, group.table)
        joins.append(sql.SQL("left join {} {} on {}").format(table, sql.Identifier(alias),
                                                             sql.SQL(" and ").join(conditions)))
        if distributed:
            # Citus pulls a distributed table joined to a local function scan to the coordinator
            # whole (a seq scan of every shard per lookup, measured: 0.6 s for 100 keys of 100k);
            # the keys as constants in the join prune it to their shards and index probes
            for k in group.keys:
                conditions.append(sql.SQL("{} = any(%s::{}[])").format(sql.Identifier(alias, k),
                                                                     keys[key_index[k]].type_sql()))
                many_filters.append(key_index[k])
        joins_many.append(sql.SQL("left join {} {} on {}").format(table, sql.Identifier(alias),
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
    return LookupPlan(groups=groups, keys=keys,
                      query_one=(body + one + sql.SQL(" ") + sql.SQL(" ").join(joins)).as_bytes(conn),
                      query_many=(body + many + sql.SQL(" ") + sql.SQL(" ").join(joins_many)
                                  + sql.SQL(" order by r._ord")).as_bytes(conn),
                      schema=pa.schema(fields), many_filters=tuple(many_filters))


def _distributed_tables(conn: psycopg.Connection[Any], groups: list[ResolvedGroup]) -> list[bool]:
    """Per group, whether its online table is a Citus distributed table (all false on a single node)."""
    names = [sql.Identifier(g.project, g.table).as_string(conn) for g in groups]
    with translated():
        row = conn.execute("select array(select fstore.is_distributed(t::regclass) from unnest(%s::text[])"
                           " with ordinality u(t, n) order by n)", (names,)).fetchone()
    return list(row[0]) if row else [False] * len(groups)


_PLANS: dict[tuple[Any, ...], LookupPlan] = {}
_PLANS_LOCK = threading.Lock()


def clear_plans() -> None:
    """Forget every cached lookup plan (the next lookup resolves the catalog again)."""
    with _PLANS_LOCK:
        _PLANS.clear()


def plan_for(conn: psycopg.Connection[Any], role: str, features: Sequence[str], full_feature_names: bool,
             cache: dict[tuple[Any, ...], LookupPlan] | None = None) -> LookupPlan:
    """The cached plan of a feature list for one identity (resolved on first use)."""
    cache = _PLANS if cache is None else cache
    key = (role, tuple(features) if not isinstance(features, str) else features, full_feature_names)
    plan = cache.get(key)
    if plan is None:
        plan = build_plan(conn, resolve_features(conn, features, full_feature_names=full_feature_names))
        plan.barrier, plan.barrier_one = _distributed(conn, features)
        with _PLANS_LOCK:
            cache[key] = plan
    return plan


DISTRIBUTED = "select fstore.distributed_feature_groups(%s::text[])"
BARRIER = "select fstore.commit_barrier(%s::bigint[])"


def _distributed(conn: psycopg.Connection[Any], features: Sequence[str]) -> tuple[tuple[int, ...], bool]:
    """The distributed groups of a feature list (ids, in order) and whether they are distributed by
    more than one key (then even a one-entity lookup reads several shards); ``((), False)`` on a
    single node."""
    with translated():
        found = conn.execute(DISTRIBUTED, ([features] if isinstance(features, str) else list(features),)
                             ).fetchone()[0]
    return tuple(sorted(int(i) for i in found)), len(set(found.values())) > 1


def _fetch(conn: psycopg.Connection[Any], plan: LookupPlan, query: bytes, params: Sequence[Any],
           many: bool) -> list[Any]:
    """Run a lookup statement; when it reads several workers' shards, after taking the commit
    barrier of its distributed groups in the same transaction (pipelined: one round trip)."""
    cursor = conn.cursor(binary=True)  # binary results: no text parsing of numbers and times
    if not plan.barrier or not (many or plan.barrier_one):
        return cursor.execute(query, params, prepare=True).fetchall()
    with conn.pipeline(), conn.transaction():
        conn.execute(BARRIER, (list(plan.barrier),))
        cursor.execute(query, params, prepare=True)
        return cursor.fetchall()


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
        if n == 1:
            rows = _fetch(conn, plan, plan.query_one, [c[0] for c in columns], many=False)
        else:
            rows = _fetch(conn, plan, plan.query_many, columns + [columns[j] for j in plan.many_filters], many=True)
    return _table(pa.array(rows, type=plan.row_type))


def _table(rows: pa.StructArray) -> pa.Table:
    """A table of a struct array's fields (one call: half the time of a record batch in between)."""
    if hasattr(pa.Table, "from_struct_array"):
        return pa.Table.from_struct_array(rows)
    return pa.Table.from_batches([pa.RecordBatch.from_struct_array(rows)])  # pragma: no cover


def lookup_one(conn: psycopg.Connection[Any], plan: LookupPlan, entity: Mapping[str, Any]) -> dict[str, Any]:
    """Run a plan for one entity and return a dict (keys, features, ``<group>__found``)."""
    try:  # the common case, fast: a dict holding every key
        params = [entity[n] for n in plan.key_names]
    except (KeyError, TypeError, IndexError):
        params = [c[0] for c in _key_columns(entity, plan.keys)[0]]
    if any(isinstance(v, np.generic) for v in params):  # numpy scalars
        params = [v.item() if isinstance(v, np.generic) else v for v in params]
    with translated():
        row = _fetch(conn, plan, plan.query_one, params, many=False)[0]
    return dict(zip(plan.names, row))


def run_lookup(conn: psycopg.Connection[Any], plan: LookupPlan, entity_rows: Any) -> pa.Table | dict[str, Any]:
    """Run a plan: a dict for one entity given as a mapping, else a table."""
    if isinstance(entity_rows, Mapping):
        return lookup_one(conn, plan, entity_rows)
    return lookup(conn, plan, entity_rows)


def lookup_fresh(conn: psycopg.Connection[Any], plan_of: Callable[[], LookupPlan], forget: Callable[[], None],
                 entity_rows: Any) -> pa.Table | dict[str, Any]:
    """Run the plan ``plan_of()`` gives; when its table or column is gone (a feature group
    changed) or refused (a feature marked sensitive since), ``forget()`` the cached plans and
    resolve once more (the resolver then names a refused feature)."""
    try:
        return run_lookup(conn, plan_of(), entity_rows)
    except (NotFound, InvalidInput, PermissionDenied) as exc:
        if exc.sqlstate not in ("42P01", "42703", "42501"):
            raise
        forget()
        return run_lookup(conn, plan_of(), entity_rows)


def get_online_features(fs: Session, features: Sequence[str], entity_rows: Any, *,
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
    return lookup_fresh(fs.conn, lambda: plan_for(fs.conn, fs.role, features, full_feature_names), clear_plans,
                        entity_rows)
