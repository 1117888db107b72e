"""Point-in-time training data from Python: a spine goes in, an Arrow table comes out.

The join itself is SQL, written once: ``fstore.training_data_sql`` in
``sql/functions/70_point_in_time.sql`` (the definition is in DESIGN.md). This module only
moves data: it loads the spine into a temporary table by binary COPY (ADBC bulk
ingest, in record batches), asks the database for the query, runs it and reads
the result back as Arrow, all on one ADBC connection (temporary tables belong to
one connection) with the caller's certificate identity.

Example::

    fs = fstore.connect("fraud", "bob")
    spine = pd.DataFrame({"account_id": [1, 2], "event_time": pd.to_datetime(["2024-01-04", "2024-01-05"])})
    table = fs.get_historical_features(spine, ["activity:*", "risk@2:score"])
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from typing import Any, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from fstore.connection import adbc_session
from fstore.errors import InvalidInput
from fstore.session import Session
from fstore.spines import distributed_spine, select_statement, spine_placement, spine_reader  # noqa: F401 (re-exported)

#: What a spine may be: a pandas or polars DataFrame, Arrow data, a table name or a query.
Spine = Union["pa.Table", "pa.RecordBatchReader", "pa.RecordBatch", str, Any]

SPINE_TABLE = "_fstore_spine"
ROW_COLUMN = "_fstore_row"  # spine order, while shards of the spine are joined in parallel
PARALLEL_MIN_ROWS = 100_000
DEFAULT_WORKERS = 2
INGEST_BATCH_ROWS = 65_536
WORK_MEM = "256MB"  # the final sort into spine order stays in memory for ~1M rows
STRATEGIES = ("auto", "probe", "merge", "asof")
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def load_spine(conn: Any, cursor: Any, spine: Spine) -> str:
    """Make the spine a relation on this ADBC connection; return its name for ``::regclass``.

    * a table name (``"spine"`` or ``"schema.spine"``) is used in place;
    * a SQL query runs as the caller, in a READ ONLY transaction, into a
      temporary table (so it cannot change data);
    * DataFrames and Arrow data are bulk-loaded (binary COPY) in record batches
      into a temporary table.

    The connection must not be in autocommit mode; a query spine is committed
    before this returns (the temporary table lives until the connection closes).
    """
    if isinstance(spine, str):
        text = spine.strip()
        if TABLE_NAME.match(text):
            return sql.Identifier(*text.split(".")).as_string(None)
        text = select_statement(text)
        target = sql.Identifier("pg_temp", SPINE_TABLE)
        cursor.execute(sql.SQL("drop table if exists {}").format(target).as_string(None))
        cursor.execute(
            sql.SQL("create temp table {} as {}\nwith no data").format(sql.Identifier(SPINE_TABLE), sql.SQL(text))
            .as_string(None)
        )
        conn.commit()
        cursor.execute("set transaction read only")
        cursor.execute(sql.SQL("insert into {} {}").format(target, sql.SQL(text)).as_string(None))
        conn.commit()
        return target.as_string(None)
    reader = spine_reader(spine)
    cursor.execute(sql.SQL("drop table if exists {}").format(sql.Identifier("pg_temp", SPINE_TABLE)).as_string(None))
    cursor.adbc_ingest(SPINE_TABLE, reader, mode="create", temporary=True)
    return sql.Identifier("pg_temp", SPINE_TABLE).as_string(None)


def ttl_text(ttl: dt.timedelta | str | None) -> str | None:
    """A TTL as PostgreSQL interval text (``timedelta(days=30)`` -> ``'2592000000000 microseconds'``)."""
    if ttl is None or isinstance(ttl, str):
        return ttl
    if isinstance(ttl, dt.timedelta):
        return f"{(ttl.days * 86_400 + ttl.seconds) * 1_000_000 + ttl.microseconds} microseconds"
    raise InvalidInput(f"ttl must be a timedelta or an interval string like '30 days', not {type(ttl).__name__}")


def feature_list(features: str | Sequence[str]) -> list[str]:
    """Feature references as a list (one reference may be given as a string)."""
    if isinstance(features, str):
        return [features]
    refs = list(features)
    if not all(isinstance(f, str) for f in refs):
        raise InvalidInput("feature references must be strings like 'group:feature' or 'group:*'")
    return refs


def builder_arguments(
    features: str | Sequence[str],
    event_time_column: str,
    ttl: dt.timedelta | str | None,
    full_feature_names: bool,
    keys: Mapping[str, str] | None,
    strategy: str = "auto",
) -> dict[str, Any]:
    """The builder's arguments, checked; sent as one JSON parameter (ADBC binds text reliably).

    ``strategy`` is ``"auto"`` (the database's planner picks per feature group), ``"probe"``
    (an index probe per spine row), ``"merge"`` (one pass over spine and history, window
    functions) or ``"asof"`` (that pass in C: the fstore_asof extension, where installed).
    """
    if keys is not None and not (
        isinstance(keys, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items())
    ):
        raise InvalidInput('keys must map spine columns to feature-group keys, e.g. {"customer": "account_id"}')
    if not isinstance(strategy, str) or not set(strategy.replace(" ", "").split(",")) <= set(STRATEGIES):
        raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)} (or one per group: 'merge,probe'),"
                           f" not {strategy!r}")
    return {
        "features": feature_list(features), "event_time_column": event_time_column,
        "ttl": ttl_text(ttl), "full_feature_names": bool(full_feature_names),
        "keys": dict(keys) if keys is not None else None, "strategy": strategy,
    }


BUILD_QUERY = """
select fstore.training_data_sql(
  $1::regclass, array(select jsonb_array_elements_text(a->'features')), a->>'event_time_column',
  (a->>'ttl')::interval, (a->>'full_feature_names')::boolean, nullif(a->'keys', 'null'::jsonb),
  p_order_column => a->>'order_column', p_sorted => a->>'order_column' is null,
  p_strategy => coalesce(a->>'strategy', 'auto'))
  from (select $2::jsonb as a) args
"""

EXPLAIN_QUERY = """
select fstore.explain_historical_features(
  $1::regclass, array(select jsonb_array_elements_text(a->'features')), a->>'event_time_column',
  (a->>'ttl')::interval, (a->>'full_feature_names')::boolean, coalesce(a->>'strategy', 'auto'),
  nullif(a->'spine_stats', 'null'::jsonb))
  from (select $2::jsonb as a) args
"""

PLAN_QUERY = """
select fstore.resolve_features(array(select jsonb_array_elements_text(a->'features')),
                               (a->>'full_feature_names')::boolean)
  from (select $1::jsonb as a) args
"""


def point_in_time_query(cursor: Any, spine_relation: str, arguments: Mapping[str, Any],
                        order_column: str | None = None) -> str:
    """Ask the database for the point-in-time query over ``spine_relation``.

    Without ``order_column`` the query returns rows in spine order; with it, the
    rows come unsorted with ``order_column`` first, for the caller to restore order.
    """
    cursor.execute(BUILD_QUERY, parameters=(spine_relation, json.dumps({**arguments, "order_column": order_column})))
    return cursor.fetchone()[0]


def session_settings(cursor: Any) -> None:
    """Settings of the query's transaction: the final sort in memory, no JIT (it only adds
    compile time to a plan made of index probes)."""
    cursor.execute(sql.SQL("set local work_mem = {}").format(sql.Literal(WORK_MEM)).as_string(None))
    cursor.execute("set local jit = off")


def run_join(cursor: Any, relation: str, arguments: Mapping[str, Any], order_column: str | None = None) -> pa.Table:
    """Build the point-in-time query over ``relation`` (:func:`point_in_time_query`), run it with
    :func:`session_settings` and fetch the result as Arrow: what every shard and a whole spine do."""
    query = point_in_time_query(cursor, relation, arguments, order_column=order_column)
    session_settings(cursor)
    # on a cluster: the distributed groups' commit barrier, in this transaction, before the read
    # (docs/cluster.md, "Commits and readers across workers"); takes nothing on a single node
    cursor.execute("select fstore.commit_barrier_features(array(select jsonb_array_elements_text($1::jsonb)))",
                   parameters=(json.dumps(arguments["features"]),))
    cursor.execute(query)
    return cursor.fetch_arrow_table()


def workers_for(rows: int, workers: int | None) -> int:
    """How many connections share the join: ``workers``, or 2 from 100k spine rows on."""
    if workers is None:
        return DEFAULT_WORKERS if rows >= PARALLEL_MIN_ROWS else 1
    if not isinstance(workers, int) or workers < 1:
        raise InvalidInput(f"workers must be a positive integer, not {workers!r}")
    return max(1, min(workers, rows))


def _presorted(fs_cursor: Any, table: pa.Table, arguments: Mapping[str, Any]) -> pa.Table:
    """The spine sorted by the first feature group's keys and time (latest first: the index's
    order, so probes walk it forward and the asof merge's sort finds its input in order).

    Spine order is kept in :data:`ROW_COLUMN`; columns the builder will report as
    missing are simply not sorted on.
    """
    fs_cursor.execute(PLAN_QUERY, parameters=(json.dumps(arguments),))
    plan = json.loads(fs_cursor.fetchone()[0])
    mapped = {group_key: column for column, group_key in (arguments.get("keys") or {}).items()}
    columns = [mapped.get(k, k) for k in plan[0]["keys"]] + [arguments["event_time_column"]]
    if not all(c in table.column_names for c in columns):
        return table
    return table.sort_by([(c, "ascending") for c in columns[:-1]] + [(columns[-1], "descending")])


def spine_stats(table: pa.Table, event_time_column: str) -> dict[str, Any] | None:
    """The whole spine's sizes for the planner (rows, earliest and latest time, UTC), when the
    event time is a timestamp or date column; else None (the builder reports the column)."""
    if event_time_column not in table.column_names:
        return None
    column = table.column(event_time_column)
    kind = column.type
    if not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        return None
    # microseconds are enough for the planner's estimate (and as_py keeps them)
    column = column.cast(pa.timestamp("us", tz=None if pa.types.is_date(kind) else kind.tz), safe=False)
    bounds = pc.min_max(column)
    low, high = bounds["min"].as_py(), bounds["max"].as_py()

    def iso(value: Any) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:  # timestamps without a time zone are UTC
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat()
    return {"rows": table.num_rows, "min": iso(low), "max": iso(high)}


def _explained(cursor: Any, relation: str, arguments: Mapping[str, Any],
               stats: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The planner's choice per feature group (``fstore.explain_historical_features``)."""
    cursor.execute(EXPLAIN_QUERY, parameters=(relation, json.dumps({**arguments, "spine_stats": stats})))
    return json.loads(cursor.fetchone()[0])


def _parallel(fs: Session, workers: int, prepare: Any, job: Any) -> list[Any]:
    """``prepare(conn, cursor)`` on the first of ``workers`` connections, then ``job(i, conn,
    cursor)`` on each in parallel, all reading one exported snapshot (so every shard sees the
    same commits); the jobs' results in order."""
    with ExitStack() as stack:
        sessions = [stack.enter_context(adbc_session(fs.material)) for _ in range(workers)]
        first = sessions[0][1]
        first.execute("set transaction isolation level repeatable read")
        first.execute("select pg_export_snapshot()")
        snapshot = first.fetchone()[0]
        prepare(*sessions[0])
        results: list[Any] = [None] * workers

        def shard(i: int) -> None:
            try:
                conn, cursor = sessions[i]
                if i:
                    cursor.execute("set transaction isolation level repeatable read")
                    cursor.execute(sql.SQL("set transaction snapshot {}").format(sql.Literal(snapshot))
                                   .as_string(None))
                results[i] = job(i, conn, cursor)
            except BaseException as exc:  # re-raised by the caller's thread
                results[i] = exc

        threads = [threading.Thread(target=shard, args=(i,)) for i in range(1, workers)]
        for thread in threads:
            thread.start()
        shard(0)
        for thread in threads:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results


def _join_shards(fs: Session, table: pa.Table, arguments: Mapping[str, Any], workers: int,
                 plan: list[Any], want_plan: bool = False) -> pa.Table:
    """Join a DataFrame spine in ``workers`` contiguous shards of the presorted spine, one
    connection each; every shard gets the strategies planned for the whole spine; rows in
    spine order (restored from :data:`ROW_COLUMN`)."""
    table = table.append_column(ROW_COLUMN, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    state: dict[str, Any] = {}

    def prepare(conn: Any, cursor: Any) -> None:
        state["table"] = _presorted(cursor, table, arguments)
        state["arguments"] = dict(arguments)
        auto = arguments.get("strategy", "auto") == "auto"
        if (auto and workers > 1) or want_plan:
            load_spine(conn, cursor, table.slice(0, 0))  # for the column types; replaced by the shard
            plan[:] = _explained(cursor, sql.Identifier("pg_temp", SPINE_TABLE).as_string(None), arguments,
                                 spine_stats(table, arguments["event_time_column"]))
            if auto:
                state["arguments"]["strategy"] = ",".join(g["strategy"] for g in plan)

    def job(i: int, conn: Any, cursor: Any) -> pa.Table:
        step = -(-table.num_rows // workers) or 1
        relation = load_spine(conn, cursor, state["table"].slice(i * step, step))
        return run_join(cursor, relation, state["arguments"], order_column=ROW_COLUMN)

    joined = pa.concat_tables(_parallel(fs, workers, prepare, job))
    rows = joined.column(ROW_COLUMN).to_numpy()
    order = np.empty_like(rows)
    order[rows] = np.arange(len(rows), dtype=rows.dtype)
    return joined.take(order).drop_columns([ROW_COLUMN])


def _join_distributed(conn: Any, cursor: Any, spine: Any, arguments: Mapping[str, Any], placement: Mapping[str, Any],
                      plan: list[Any], want_plan: bool) -> pa.Table:
    """Join a DataFrame, Arrow or query spine on a cluster whose groups are all distributed and
    co-located: the spine (numbered in :data:`ROW_COLUMN`) goes into a distributed table
    co-located with them (:func:`fstore.spines.distributed_spine`), the join runs per shard on
    the workers, and the rows come back in spine order."""
    target = sql.Identifier("pg_temp", SPINE_TABLE).as_string(None)
    if isinstance(spine, pa.Table):
        load_spine(conn, cursor, spine.append_column(ROW_COLUMN, pa.array(np.arange(spine.num_rows, dtype=np.int64))))
    else:
        load_spine(conn, cursor, spine)  # the query, read-only, into the temporary spine
        cursor.execute(sql.SQL("create temp table {} as select s.*, row_number() over () as {} from {} s").format(
            sql.Identifier("_fstore_spine_rows"), sql.Identifier(ROW_COLUMN), sql.SQL(target)).as_string(None))
        cursor.execute(sql.SQL("drop table {}").format(sql.SQL(target)).as_string(None))
        cursor.execute(sql.SQL("alter table {} rename to {}").format(
            sql.Identifier("pg_temp", "_fstore_spine_rows"), sql.Identifier(SPINE_TABLE)).as_string(None))
    with distributed_spine(conn, cursor, target, placement) as (relation, nulls):
        if want_plan:
            plan[:] = _explained(cursor, relation, arguments)
        joined = run_join(cursor, relation, arguments, order_column=ROW_COLUMN)
        if nulls is not None:  # rows with a NULL key match nothing: joined on the coordinator
            conn.rollback()
            joined = pa.concat_tables([joined, run_join(cursor, nulls, arguments, order_column=ROW_COLUMN)])
    rows = joined.column(ROW_COLUMN).to_numpy()
    order = np.empty_like(rows)
    order[rows - (1 if isinstance(spine, str) else 0)] = np.arange(len(rows), dtype=rows.dtype)  # row_number() counts from 1
    return joined.take(order).drop_columns([ROW_COLUMN])


TABLE_SIZE = """
select c.relkind::text, greatest(c.reltuples, 0)::bigint,
       pg_relation_size(c.oid) / current_setting('block_size')::bigint
  from pg_class c where c.oid = $1::regclass
"""


def _join_table_shards(fs: Session, relation: str, arguments: Mapping[str, Any], workers: int, blocks: int,
                       rows: int, plan: list[Any]) -> pa.Table:
    """Join a spine table of the database as a DataFrame spine is joined: in ``workers``
    contiguous shards (TID range scans into temporary tables), one connection each, on one
    snapshot, every shard with the strategies planned for the whole table; shards' rows
    concatenated in order (each in its own physical order)."""
    bounds = [blocks * i // workers for i in range(workers)] + [None]
    state: dict[str, Any] = {"arguments": dict(arguments)}

    def prepare(conn: Any, cursor: Any) -> None:
        plan[:] = _explained(cursor, relation, arguments)
        state["arguments"]["strategy"] = ",".join(g["strategy"] for g in plan)

    def job(i: int, conn: Any, cursor: Any) -> pa.Table:
        target = sql.Identifier("pg_temp", SPINE_TABLE)
        cursor.execute(sql.SQL("drop table if exists {}").format(target).as_string(None))
        upper = sql.SQL(" and ctid < {}::tid").format(sql.Literal(f"({bounds[i + 1]},0)")) \
            if bounds[i + 1] is not None else sql.SQL("")
        cursor.execute(sql.SQL("create temp table {} as select * from {} where ctid >= {}::tid{}").format(
            sql.Identifier(SPINE_TABLE), sql.SQL(relation), sql.Literal(f"({bounds[i]},0)"), upper).as_string(None))
        return run_join(cursor, target.as_string(None), state["arguments"])

    return pa.concat_tables(_parallel(fs, workers, prepare, job))


def get_historical_features(
    fs: Session,
    spine: Spine,
    features: str | Sequence[str],
    *,
    event_time_column: str = "event_time",
    ttl: dt.timedelta | str | None = None,
    full_feature_names: bool = False,
    keys: Mapping[str, str] | None = None,
    workers: int | None = None,
    strategy: str = "auto",
    plan: list[Any] | None = None,
) -> pa.Table:
    """Point-in-time correct features for every spine row, as an Arrow table in spine order.

    ``spine`` holds the entity keys and ``event_time_column``; every spine column
    is kept. ``features`` are references ``"group:feature"``, ``"group:*"``,
    ``"group@2:feature"`` (a version) or ``"project.group:feature"`` (a shared
    project's group). ``keys`` maps spine columns to feature-group keys whose
    names differ; ``ttl`` (timedelta or ``'30 days'``) overrides each group's TTL.
    A DataFrame or Arrow spine, or a table of 100k rows or more, is joined by
    ``workers`` connections in parallel (default: 2 from 100k rows on), all reading
    the same snapshot. ``strategy``: ``"auto"`` (per feature group, from sizes),
    ``"probe"``, ``"merge"`` or ``"asof"``: the same rows either way. ``plan``, a list, receives
    the strategy each group got and why (when the spine was planned as a whole).

    Example::

        table = fs.get_historical_features(labels_df, ["activity:n_tx", "activity:amount"],
                                           ttl=dt.timedelta(days=30))
    """
    arguments = builder_arguments(features, event_time_column, ttl, full_feature_names, keys, strategy)
    want_plan = plan is not None
    plan = plan if plan is not None else []
    table = None
    if not isinstance(spine, str):
        table = spine_reader(spine).read_all()
        if ROW_COLUMN in table.column_names:
            raise InvalidInput(f"the spine may not have a column named {ROW_COLUMN} (fstore uses it)")
    if table is not None or not TABLE_NAME.match(spine.strip()):
        with adbc_session(fs.material) as (conn, cursor):
            placement = spine_placement(cursor, arguments["features"], keys, full_feature_names)
            if placement["distributed"]:
                return _join_distributed(conn, cursor, spine if table is None else table, arguments, placement,
                                         plan, want_plan)
    if table is not None:
        return _join_shards(fs, table, arguments, workers_for(table.num_rows, workers), plan, want_plan)
    with adbc_session(fs.material) as (conn, cursor):
        relation = load_spine(conn, cursor, spine)
        if relation != sql.Identifier("pg_temp", SPINE_TABLE).as_string(None):  # a table of the database
            cursor.execute(TABLE_SIZE, parameters=(relation,))
            kind, rows, blocks = cursor.fetchone()
            if kind == "r" and blocks > 1 and workers_for(rows, workers) > 1:
                conn.rollback()
                return _join_table_shards(fs, relation, arguments, workers_for(rows, workers), blocks, rows, plan)
        if want_plan:
            plan[:] = _explained(cursor, relation, arguments)
        return run_join(cursor, relation, arguments)


def explain_historical_features(
    fs: Session,
    spine: Spine,
    features: str | Sequence[str],
    *,
    event_time_column: str = "event_time",
    ttl: dt.timedelta | str | None = None,
    full_feature_names: bool = False,
    strategy: str = "auto",
) -> list[dict[str, Any]]:
    """How :func:`get_historical_features` joins each feature group to this spine: a list of
    ``{"group", "strategy" ("probe", "merge" or "asof"), "reason", "spine_rows", "history_rows",
    "history_rows_to_read"}``, from the database's planner (``fstore.point_in_time_strategies``).

    Example::

        for group in fs.explain_historical_features(labels_df, ["activity:*"]):
            print(group["group"], group["strategy"], group["reason"])
    """
    arguments = builder_arguments(features, event_time_column, ttl, full_feature_names, None, strategy)
    with adbc_session(fs.material) as (conn, cursor):
        if isinstance(spine, str):
            return _explained(cursor, load_spine(conn, cursor, spine), arguments)
        table = spine_reader(spine).read_all()
        relation = load_spine(conn, cursor, table.slice(0, 0))
        return _explained(cursor, relation, arguments, spine_stats(table, event_time_column))
