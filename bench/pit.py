"""Point-in-time join benchmark: fstore vs DuckDB ASOF JOIN vs range join + ROW_NUMBER.

One run, one JSON document on stdout (or --output):

* fstore end to end: a pandas DataFrame spine in, an Arrow table out
  (``fs.get_historical_features``: bulk load of the spine, the LATERAL point-in-time
  query built by ``fstore.training_data_sql``, Arrow back over ADBC);
* (a) DuckDB ``ASOF LEFT JOIN`` on the same data, in memory (the same DataFrame
  spine in, Arrow out; feature tables already loaded in DuckDB);
* (b) the range join + ``ROW_NUMBER`` shape (Feast, Hopsworks) on the same
  database, loaded and fetched the same way as fstore, with a 30-day bound;
* the same three with ``--groups`` feature groups joined at once.

It starts its own server in a temporary home (CA, admin certificate, free port,
one project) unless ``--home`` names a running one; either way it works in a new
project that it deletes at the end. Every result is checked against DuckDB's.

    python bench/pit.py                                   # 1M spine x 10M rows, 100k entities
    python bench/pit.py --spine-rows 10000 --feature-rows 100000 --entities 1000
    python bench/pit.py --scaling --spines 20000,200000 --histories 200000,2000000   # bench/pit_scaling.py
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
from psycopg import sql

import fstore
from fstore import pointintime, projects, sandbox
from fstore.connection import adbc_session
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from fstore.sandbox import create_project, print_report

FEATURES = {"amount": "double precision", "n_tx": "integer", "ratio": "double precision", "category": "bigint"}
START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
YEAR_US = 365 * 86_400 * 1_000_000
RANGE_BOUND = "30 days"
TARGETS = {"fstore_vs_duckdb_max": 1.5, "range_join_vs_fstore_min": 3.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (sizes, repetitions, where to run)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spine-rows", type=int, default=1_000_000)
    p.add_argument("--feature-rows", type=int, default=10_000_000, help="rows per feature group")
    p.add_argument("--entities", type=int, default=100_000)
    p.add_argument("--groups", type=int, default=3, help="feature groups for the multi-group run")
    p.add_argument("--commit-rows", type=int, default=2_500_000, help="rows per commit while loading")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--home", default=None, help="use this running fstore home instead of a temporary one")
    p.add_argument("--shared-buffers", default="2GB", help="for the bench's own server")
    p.add_argument("--skip-range-join-multi", action="store_true", help="skip (b) with several groups")
    p.add_argument("--output", default=None, help="write the JSON here too")
    p.add_argument("--scaling", action="store_true",
                   help="the scaling grid against DuckDB instead (bench/pit_scaling.py; --spines, --histories)")
    p.add_argument("--spines", default="100000,1000000,3000000", help="spine rows of the scaling grid")
    p.add_argument("--histories", default="1000000,10000000,30000000", help="history rows of the scaling grid")
    p.add_argument("--strategy", default="auto", help="point-in-time strategy of the fstore runs: auto, probe, merge, asof")
    p.add_argument("--scaling-strategies", default="probe,merge,asof",
                   help="with --scaling: also time each of these strategies forced at every point ('' for none)")
    p.add_argument("--compare-strategies", action="store_true",
                   help="also time probe, merge and asof forced, and the spine as a table of the database (the SQL path)")
    p.add_argument("--cluster-spine", type=int, default=0, metavar="WORKERS",
                   help="on a cluster of WORKERS workers: the coordinator spine (before) against the distributed "
                        "co-located spine (probe, merge, auto), one group distributed by entity_id")
    p.add_argument("--cluster-training", default="", metavar="ROWS,...",
                   help="with --cluster-spine: also time training datasets of these spine sizes kept on the "
                        "coordinator against distributed (build, then read back)")
    p.add_argument("--keep", action="store_true", help="keep the server, home and project (to re-run with --project)")
    p.add_argument("--project", default=None,
                   help="re-use this project of --home, loaded by an earlier --keep run with the same sizes and seed")
    return p.parse_args(argv)


# --- data ---------------------------------------------------------------------------------


def feature_table(rng: np.random.Generator, rows: int, entities: int) -> pa.Table:
    """One feature group's history: random entities and instants over a year."""
    micros = rng.integers(0, YEAR_US, rows)
    return pa.table({
        "entity_id": pa.array(rng.integers(0, entities, rows), pa.int64()),
        "event_time": pa.array(pd.Timestamp(START).value // 1000 + micros, pa.timestamp("us", tz="UTC")),
        "amount": pa.array(rng.normal(100, 30, rows)),
        "n_tx": pa.array(rng.integers(0, 1000, rows).astype(np.int32)),
        "ratio": pa.array(rng.random(rows)),
        "category": pa.array(rng.integers(0, 50, rows), pa.int64()),
    })


def spine_frame(rng: np.random.Generator, rows: int, entities: int) -> pd.DataFrame:
    """Label events: a request id, an entity, an instant (UTC), a label."""
    micros = rng.integers(0, YEAR_US, rows)
    return pd.DataFrame({
        "request_id": np.arange(rows, dtype=np.int64),
        "entity_id": rng.integers(0, entities, rows).astype(np.int64),
        "event_time": pd.to_datetime(pd.Timestamp(START).value // 1000 + micros, unit="us", utc=True),
        "label": rng.integers(0, 2, rows).astype(np.int32),
    })


# --- setup --------------------------------------------------------------------------------


def start_home(args: argparse.Namespace) -> tuple[FstoreHome, Callable[[], None]]:
    """A running home: the given one, or a new temporary one with its own server."""
    if args.project and not args.home:
        raise SystemExit("--project needs --home")
    home, cleanup = sandbox.start_home(args.home, settings={"shared_buffers": args.shared_buffers})
    if args.keep and not args.home:
        print(f"keeping the server running in {home.root}", file=sys.stderr)
        return home, lambda: None
    return home, cleanup


def load_group(home: FstoreHome, project: str, name: str, table: pa.Table, commit_rows: int,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create a feature group (``options``: the group's options, e.g. its distribution key) and commit
    ``table`` through the one commit pipeline."""
    columns = [{"name": "entity_id", "type": "bigint"}, {"name": "event_time", "type": "timestamptz"}]
    columns += [{"name": n, "type": t} for n, t in FEATURES.items()]
    started = time.perf_counter()
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        alice.execute(sql.SQL("set role {}").format(sql.Identifier(f"{project}__owner")))
        fg_id = alice.execute(
            "select fstore.create_feature_group(%s, %s, 1, array['entity_id'], 'event_time', %s::jsonb,"
            " false, null, '', '{}', false, %s::jsonb)",
            (project, name, json.dumps(columns), json.dumps(options or {}))).fetchone()[0]
        alice.execute("reset role")
    fs = fstore.connect(project, "alice", home=home)
    with adbc_session(fs.material) as (conn, cursor):
        for offset in range(0, table.num_rows, commit_rows):
            cursor.execute("drop table if exists pg_temp._bench_stage")
            cursor.adbc_ingest("_bench_stage", table.slice(offset, commit_rows), mode="create", temporary=True)
            cursor.execute("select fstore.commit_feature_rows($1::bigint, 'pg_temp._bench_stage'::regclass,"
                           " 'append', 'bench', '{}')", parameters=(str(fg_id),))
            cursor.fetchall()
            conn.commit()
    loaded = time.perf_counter() - started
    with connect_operator(home, autocommit=True) as op:
        op.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(project, f"{name}__v1")))
    return {"name": name, "rows": table.num_rows, "load_s": round(loaded, 2),
            "vacuum_s": round(time.perf_counter() - started - loaded, 2)}


# --- the contenders -----------------------------------------------------------------------


def timed(fn: Callable[[], pa.Table], repeat: int) -> tuple[dict[str, Any], pa.Table]:
    """Run ``fn`` ``repeat`` times; best and median seconds, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return {"best_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times]}, result


def duckdb_query(groups: list[str]) -> str:
    select = ["s.*"] + [f"{g}.{f} as {g}__{f}" for g in groups for f in FEATURES]
    joins = "".join(f" asof left join {g} on s.entity_id = {g}.entity_id and s.event_time >= {g}.event_time"
                    for g in groups)
    return f"select {', '.join(select)} from spine s{joins} order by s.request_id"


def range_join_query(spine: str, project: str, groups: list[str]) -> str:
    """Range join + ROW_NUMBER per group (the Feast/Hopsworks shape), joined on request_id."""
    ident, q = sql.Identifier, sql.SQL
    spine_rel = q(spine)  # already quoted by pointintime.load_spine
    ctes, joins = [], []
    select = [q("s.{}").format(ident(c)) for c in ("request_id", "entity_id", "event_time", "label")]
    for i, g in enumerate(groups):
        ranked = ident(f"r{i}")
        ctes.append(q(
            "{r} as (select * from (select s.request_id, {feats}, row_number() over (partition by s.request_id"
            " order by f.event_time desc, f._commit_id desc) as rn from {spine} s join {table} f"
            " on f.entity_id = s.entity_id and f.event_time <= s.event_time"
            " and f.event_time >= s.event_time - {bound}::interval) x where rn = 1)").format(
                r=ranked, feats=q(", ").join(q("f.{}").format(ident(f)) for f in FEATURES), spine=spine_rel,
                table=ident(project, f"{g}__v1"), bound=sql.Literal(RANGE_BOUND)))
        joins.append(q(" left join {r} on {r}.request_id = s.request_id").format(r=ranked))
        select += [q("{}.{} as {}").format(ranked, ident(f), ident(f"{g}__{f}")) for f in FEATURES]
    return q("with {} select {} from {} s{} order by s.request_id").format(
        q(", ").join(ctes), q(", ").join(select), spine_rel, q("").join(joins)).as_string(None)


def run_range_join(fs: fstore.FeatureStore, spine: pd.DataFrame, project: str, groups: list[str]) -> pa.Table:
    """(b): the spine loaded and the result fetched as fstore's one-connection path does; only the SQL differs."""
    with adbc_session(fs.material) as (conn, cursor):
        relation = pointintime.load_spine(conn, cursor, spine)
        pointintime.session_settings(cursor)
        cursor.execute(range_join_query(relation, project, groups))
        return cursor.fetch_arrow_table()


def sql_path_breakdown(fs: fstore.FeatureStore, spine: pd.DataFrame, refs: list[str]) -> dict[str, float]:
    """The one-connection path a SQL client takes (ordered by the database): connect, spine
    load, query build, query + Arrow fetch."""
    marks = [time.perf_counter()]
    with adbc_session(fs.material) as (conn, cursor):
        marks.append(time.perf_counter())
        relation = pointintime.load_spine(conn, cursor, spine)
        marks.append(time.perf_counter())
        query = pointintime.point_in_time_query(
            cursor, relation, pointintime.builder_arguments(refs, "event_time", None, True, None))
        marks.append(time.perf_counter())
        pointintime.session_settings(cursor)
        cursor.execute(query)
        cursor.fetch_arrow_table()
        marks.append(time.perf_counter())
    names = ["connect_s", "spine_load_s", "build_s", "query_and_fetch_s"]
    return {n: round(b - a, 3) for n, a, b in zip(names, marks, marks[1:])}


def agree(ours: pa.Table, reference: pa.Table, columns: list[str]) -> bool:
    """Same feature values, row by row (NULL where the other has NULL)."""
    if ours.num_rows != reference.num_rows:
        return False
    for column in columns:
        a = ours.column(column).combine_chunks()
        b = reference.column(column).combine_chunks().cast(a.type)
        if not a.equals(b):
            return False
    return True


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON document."""
    rng = np.random.default_rng(args.seed)
    group_names = [f"g{i + 1}" for i in range(max(1, args.groups))]
    tables = {g: feature_table(rng, args.feature_rows, args.entities) for g in group_names}
    spine = spine_frame(rng, args.spine_rows, args.entities)

    home, cleanup = start_home(args)
    project = None
    try:
        if args.project:
            project, loads = args.project, [{"name": g, "rows": tables[g].num_rows, "reused": True} for g in group_names]
        else:
            project = create_project(home)
            loads = [load_group(home, project, g, tables[g], args.commit_rows) for g in group_names]
        fs = fstore.connect(project, "bob", home=home)

        duck = duckdb.connect()
        duck.execute(f"set threads = {max(1, len(__import__('os').sched_getaffinity(0)))}")
        for g, table in tables.items():
            duck.register("src", table)
            duck.execute(f"create table {g} as select * from src")
            duck.unregister("src")

        def fstore_run(groups: list[str], source: Any = spine, **kwargs: Any) -> Callable[[], pa.Table]:
            refs = [f"{g}:*" for g in groups]
            kwargs.setdefault("strategy", args.strategy)
            return lambda: fs.get_historical_features(source, refs, full_feature_names=True, **kwargs)

        spine_table = _spine_table(home, project, spine) if args.compare_strategies else None

        def duck_run(groups: list[str]) -> Callable[[], pa.Table]:
            query = duckdb_query(groups)

            def go() -> pa.Table:
                duck.register("spine", spine)
                try:
                    return duck.sql(query).to_arrow_table()
                finally:
                    duck.unregister("spine")
            return go

        results: dict[str, Any] = {}
        for label, groups in (("one_group", group_names[:1]), ("multi_group", group_names)):
            if label == "multi_group" and len(groups) < 2:
                continue
            columns = [f"{g}__{f}" for g in groups for f in FEATURES]
            entry: dict[str, Any] = {"groups": len(groups)}
            entry["fstore"], ours = timed(fstore_run(groups), args.repeat)
            entry["duckdb_asof"], reference = timed(duck_run(groups), args.repeat)
            entry["results_agree_with_duckdb"] = agree(ours, reference, columns)
            entry["fstore_one_worker"], single = timed(fstore_run(groups, workers=1), args.repeat)
            entry["one_worker_agrees"] = agree(single, reference, columns)
            entry["rows_out"] = ours.num_rows
            entry["plan"] = fs.explain_historical_features(spine, [f"{g}:*" for g in groups], full_feature_names=True,
                                                           strategy=args.strategy)
            if spine_table:
                for forced in ("probe", "merge", "asof"):
                    entry[f"fstore_{forced}"], forced_result = timed(fstore_run(groups, strategy=forced), args.repeat)
                    entry[f"{forced}_agrees"] = agree(forced_result, reference, columns)
                entry["fstore_table_spine"], from_table = timed(fstore_run(groups, spine_table), args.repeat)
                entry["table_spine_agrees"] = agree(from_table, reference, columns)
                entry["ratio_table_spine_vs_dataframe"] = round(
                    entry["fstore_table_spine"]["best_s"] / entry["fstore"]["best_s"], 2)
            if label == "one_group" or not args.skip_range_join_multi:
                entry["range_join_row_number"], ranged = timed(
                    lambda: run_range_join(fs, spine, project, groups), max(1, min(args.repeat, 2)))
                ttl_run = lambda: fs.get_historical_features(spine, [f"{g}:*" for g in groups],
                                                             full_feature_names=True, ttl=RANGE_BOUND)
                entry["fstore_ttl_30d"], bounded = timed(ttl_run, args.repeat)
                entry["range_join_agrees_with_fstore_ttl_30d"] = agree(bounded, ranged, columns)
                entry["ratio_range_join_vs_fstore"] = round(
                    entry["range_join_row_number"]["best_s"] / entry["fstore"]["best_s"], 2)
                entry["ratio_range_join_vs_fstore_same_ttl"] = round(
                    entry["range_join_row_number"]["best_s"] / entry["fstore_ttl_30d"]["best_s"], 2)
                entry["ratio_range_join_vs_fstore_one_worker"] = round(
                    entry["range_join_row_number"]["best_s"] / entry["fstore_one_worker"]["best_s"], 2)
            entry["ratio_fstore_vs_duckdb"] = round(entry["fstore"]["best_s"] / entry["duckdb_asof"]["best_s"], 2)
            entry["ratio_fstore_one_worker_vs_duckdb"] = round(
                entry["fstore_one_worker"]["best_s"] / entry["duckdb_asof"]["best_s"], 2)
            entry["sql_path_breakdown"] = sql_path_breakdown(fs, spine, [f"{g}:*" for g in groups])
            results[label] = entry

        one = results["one_group"]
        return {
            "benchmark": "point_in_time_join",
            "sizes": {"spine_rows": args.spine_rows, "feature_rows_per_group": args.feature_rows,
                      "entities": args.entities, "groups": len(group_names), "features_per_group": len(FEATURES)},
            "load": loads,
            "results": results,
            "targets": {
                "fstore_vs_duckdb": {"target_max": TARGETS["fstore_vs_duckdb_max"],
                                     "measured": one["ratio_fstore_vs_duckdb"],
                                     "met": one["ratio_fstore_vs_duckdb"] <= TARGETS["fstore_vs_duckdb_max"]},
                "range_join_vs_fstore": {"target_min": TARGETS["range_join_vs_fstore_min"],
                                         "measured": one["ratio_range_join_vs_fstore"],
                                         "met": one["ratio_range_join_vs_fstore"] >= TARGETS["range_join_vs_fstore_min"]},
            },
            "notes": {
                "fstore": "fs.get_historical_features as a Data Scientist over TLS: pandas spine -> Arrow,"
                          " sorted by the first group's keys and time, split in 2 shards (workers) joined on 2"
                          " ADBC connections in parallel on one exported snapshot: bulk load into a temp table,"
                          " LATERAL ... LIMIT 1 per group (fstore.training_data_sql), Arrow back, spine order"
                          " restored in Arrow",
                "fstore_one_worker": "the same with workers=1 (one connection)",
                "sql_path_breakdown": "one connection, rows ordered by the database (what a SQL client runs)",
                "duckdb_asof": "pandas spine registered in DuckDB, feature tables already in DuckDB memory,"
                               " ASOF LEFT JOIN, ordered by request_id, fetched as Arrow",
                "range_join_row_number": f"same load and fetch as fstore; join on key and"
                                         f" event_time in (t - {RANGE_BOUND}, t], ROW_NUMBER per spine row",
            },
            "environment": {"python": platform.python_version(), "duckdb": duckdb.__version__,
                            "pyarrow": pa.__version__, "cpus": len(__import__("os").sched_getaffinity(0)),
                            "server": _server_version(home), "own_server": not args.home,
                            "shared_buffers": None if args.home else args.shared_buffers,
                            "home": str(home.root) if args.keep else None, "project": project if args.keep else None},
        }
    finally:
        if project is not None and not args.keep and not args.project:
            try:
                with connect(home, "fstore_admin", autocommit=True) as admin:
                    projects.delete_project(home, admin, project)
            except Exception as exc:  # report, but keep the figures
                print(f"could not delete project {project}: {exc}", file=sys.stderr)
        cleanup()


def _spine_table(home: FstoreHome, project: str, spine: pd.DataFrame) -> str:
    """The spine as a table of the project (the SQL path), created by the Data Owner as the owner."""
    fs = fstore.connect(project, "alice", home=home)
    with adbc_session(fs.material) as (conn, cursor):
        cursor.adbc_ingest("_bench_spine", pa.Table.from_pandas(spine, preserve_index=False), mode="create",
                           temporary=True)
        cursor.execute(sql.SQL("grant select on pg_temp._bench_spine to {}").format(
            sql.Identifier(f"{project}__owner")).as_string(None))
        cursor.execute(sql.SQL("set role {}").format(sql.Identifier(f"{project}__owner")).as_string(None))
        cursor.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(project, "bench_spine")).as_string(None))
        cursor.execute(sql.SQL("create table {} as select * from pg_temp._bench_spine").format(
            sql.Identifier(project, "bench_spine")).as_string(None))
        cursor.execute(sql.SQL("analyze {}").format(sql.Identifier(project, "bench_spine")).as_string(None))
        conn.commit()
    return f"{project}.bench_spine"


def _server_version(home: FstoreHome) -> str:
    with connect_operator(home, autocommit=True) as op:
        return op.execute("select current_setting('server_version')").fetchone()[0]


def cluster_spine_run(args: argparse.Namespace) -> dict[str, Any]:
    """The PIT of a ``--spine-rows`` DataFrame spine against ``--feature-rows`` of history on a cluster:
    the spine on the coordinator (the merge on the workers, what every join did before distributed
    spines) against the spine distributed and co-located (probe, merge, auto), with the results'
    agreement and the EXPLAIN ANALYZE of the probe over a distributed spine."""
    home, cleanup = sandbox.start_home(args.home, prefix="fsc-spine-", workers=args.cluster_spine)
    try:
        project = create_project(home, prefix="spine")
        rng = np.random.default_rng(args.seed)
        history = feature_table(rng, args.feature_rows, args.entities)
        spine = spine_frame(rng, args.spine_rows, args.entities)
        loaded = load_group(home, project, "hist", history, args.commit_rows, {"distribution_key": "entity_id"})
        fs = fstore.connect(project, "bob", home=home)
        table = pa.Table.from_pandas(spine, preserve_index=False)
        out: dict[str, Any] = {"benchmark": "pit_cluster_spine", "workers": args.cluster_spine,
                               "spine_rows": args.spine_rows, "history_rows": args.feature_rows,
                               "entities": args.entities, "load": loaded, "runs": {}}
        arguments = pointintime.builder_arguments(["hist:*"], "event_time", None, True, None, "merge")
        plan: list[Any] = []
        before, reference = timed(lambda: pointintime._join_shards(
            fs, table, arguments, pointintime.workers_for(table.num_rows, None), plan), args.repeat)
        out["runs"]["coordinator_spine_merge (before)"] = before
        out["agree"] = {}
        for strategy in ("probe", "merge", "auto"):
            plan = []
            timing, result = timed(lambda: fs.get_historical_features(spine, ["hist:*"], full_feature_names=True,
                                                                      strategy=strategy, plan=plan), args.repeat)
            out["runs"][f"distributed_spine_{strategy}"] = {**timing, "plan": plan}
            out["agree"][strategy] = agree(result, reference, [f"hist__{f}" for f in FEATURES])
        with adbc_session(fs.material) as (conn, cursor):
            pointintime.load_spine(conn, cursor, table.append_column(
                "_fstore_row", pa.array(np.arange(table.num_rows, dtype=np.int64))))
            placement = pointintime.spine_placement(cursor, ["hist:*"], None)
            with pointintime.distributed_spine(conn, cursor, "pg_temp._fstore_spine", placement) as (relation, _):
                query = pointintime.point_in_time_query(cursor, relation, {**arguments, "strategy": "probe"},
                                                        order_column="_fstore_row")
                # ADBC fetches through COPY (query) TO STDOUT, which EXPLAIN cannot be: psycopg, as bob
                with connect(home, f"{project}__bob", autocommit=True) as bob:
                    out["explain_analyze_probe"] = [r[0] for r in bob.execute(
                        "explain (analyze, costs off, timing off, summary on) " + query)]
        fs.close()
        if args.cluster_training:
            out["training"] = _training_placement(project, home, spine, args)
        return out
    finally:
        if not args.keep:
            cleanup()


def _training_placement(project: str, home: FstoreHome, spine: pd.DataFrame, args: argparse.Namespace) -> dict:
    """Build and read back a training dataset of each size, kept on the coordinator and distributed
    (``fstore.training_distribute_min_rows`` through PGOPTIONS): seconds of each step."""
    import os

    out: dict[str, Any] = {}
    for rows in (int(r) for r in args.cluster_training.split(",")):
        for mode, min_rows in (("coordinator", "1000000000000"), ("distributed", "0")):
            os.environ["PGOPTIONS"] = f"-c fstore.training_distribute_min_rows={min_rows}"
            try:
                fs = fstore.connect(project, "bob", home=home)
                name = f"t_{mode[:4]}_{rows}"
                build_s, _ = timed(lambda: fs.create_training_dataset(name, spine.head(rows), ["hist:*"]), 1)
                read_s, _ = timed(lambda: fs.get_training_dataset(name), max(args.repeat, 3))
                fs.close()
            finally:
                os.environ.pop("PGOPTIONS", None)
            out[f"{mode}_{rows}"] = {"build_s": build_s["best_s"], "read": read_s}
    return out


def main(argv: list[str] | None = None) -> None:
    """Run and print the JSON document."""
    args = parse_args(argv)
    if args.cluster_spine:
        print_report(cluster_spine_run(args), args.output)
        return
    if args.scaling:
        import importlib.util
        from pathlib import Path
        from types import SimpleNamespace

        spec = importlib.util.spec_from_file_location("bench_pit_scaling", Path(__file__).with_name("pit_scaling.py"))
        scaling = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(scaling)  # type: ignore[union-attr]
        print_report(scaling.run_scaling(args, SimpleNamespace(**globals())), args.output)
        return
    print_report(run(args), args.output)


if __name__ == "__main__":
    main()
