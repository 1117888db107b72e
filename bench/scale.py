"""Scale-out benchmark: a single node vs a Citus coordinator with workers, and online reads
with one read replica vs none. One run, one JSON document on stdout (or --output).

On each platform (a temporary home of its own unless --single-home / --cluster-home name a
running one), in a new project deleted at the end:

* **commit**: one ``fstore.commit_feature_rows`` of ``--rows`` rows (default 10M) staged by
  ``generate_series`` on the server (the staging is timed apart);
* **PIT**: ``get_historical_features`` of a ``--spine`` spine (1M) against a history of
  ``--history`` rows (10M) over ``--entities`` entities, loaded as bench/pit.py does; the
  result's checksum (the same on both platforms, or the run says so); fstore's strategy
  per group (``explain_historical_features``) and the ``EXPLAIN`` of the LATERAL join of a
  spine table to the history (on the cluster it shows whether Citus pushes it down,
  whatever placement the feature-group tables have today);
* **online**: p50/p99 of ``get_online_features`` for 1 entity and ``--batch`` entities
  (bench/online.py's interleaved measurement), and the ``EXPLAIN`` of a 1-key lookup (one
  shard, a router plan, when the online table is distributed);
* **per-node work**: ``pg_stat_user_tables`` of the project's tables (and their shards) on
  the coordinator and every worker: scans, tuples read and inserted.

On the single node it also measures **online reads per second** of ``--threads`` threads
for ``--seconds`` through ``OnlineStore`` with no replica and with one (a streaming
replica started for the run). Ratios are cluster / single node and one replica / none;
the load average is reported per phase. Two cores cannot show a speedup: the figures
show the cost of the extra hops and where the work goes.

    python bench/scale.py                                   # defaults: 10M commit, 1M x 10M PIT
    python bench/scale.py --rows 20000 --spine 2000 --history 20000 --entities 500 --workers 2
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fstore  # noqa: E402
from fstore import citus, cluster, online, projects, replica  # noqa: E402
from fstore.connection import connect, connect_operator  # noqa: E402
from fstore.home import FstoreHome  # noqa: E402
from fstore.sandbox import create_project, print_report, start_home  # noqa: E402
from fstore.serving_pool import OnlineStore  # noqa: E402


def _bench(name: str) -> ModuleType:
    """A sibling bench script as a module (bench/ is not a package): its helpers are reused."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


PIT = _bench("pit")
ONLINE = _bench("online")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (sizes, platforms)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="rows of the timed commit")
    p.add_argument("--spine", type=int, default=1_000_000, help="spine rows of the PIT")
    p.add_argument("--history", type=int, default=10_000_000, help="history rows of the PIT")
    p.add_argument("--entities", type=int, default=100_000)
    p.add_argument("--commit-rows", type=int, default=2_500_000, help="rows per commit while loading the history")
    p.add_argument("--workers", type=int, default=2, help="workers of the cluster (0: single node only)")
    p.add_argument("--rounds", type=int, default=2000, help="measured online calls per contender")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--batch", type=int, default=100, help="entities per multi-entity online call")
    p.add_argument("--threads", type=int, default=4, help="reader threads of the reads-per-second run")
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each reads-per-second run")
    p.add_argument("--repeat", type=int, default=1, help="runs of the PIT; best and median are reported")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--single-home", default=None, help="a running single-node home to use")
    p.add_argument("--cluster-home", default=None, help="a running coordinator home to use")
    p.add_argument("--local-groups", action="store_true",
                   help="keep the cluster's groups on the coordinator (default: distributed by their key)")
    p.add_argument("--output", default=None, help="write the JSON here too")
    return p.parse_args(argv)


def load() -> list[float]:
    """The load average (1, 5, 15 min)."""
    return [round(x, 2) for x in os.getloadavg()]


def timed_s(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return round(time.perf_counter() - started, 3), result


# --- phases --------------------------------------------------------------------------------


def group_options(home: FstoreHome, key: str, args: argparse.Namespace) -> dict[str, Any]:
    """On a cluster the bench's groups are distributed by their entity key (unless --local-groups)."""
    return {"distribution_key": key} if citus.is_cluster(home) and not args.local_groups else {}


def commit_phase(home: FstoreHome, project: str, args: argparse.Namespace) -> dict[str, Any]:
    """Create an offline group and time one commit of ``--rows`` rows staged on the server."""
    columns = [{"name": "entity_id", "type": "bigint"}, {"name": "event_time", "type": "timestamptz"}]
    columns += [{"name": n, "type": t} for n, t in PIT.FEATURES.items()]
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        with alice.transaction():
            alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{project}__owner")))
            fg_id = alice.execute(
                "select fstore.create_feature_group(%s, 'bulk', 1, array['entity_id'], 'event_time', %s::jsonb,"
                " false, null, '', '{}', false, %s::jsonb)",
                (project, json.dumps(columns), json.dumps(group_options(home, "entity_id", args)))).fetchone()[0]
        with alice.transaction():
            stage_s, _ = timed_s(lambda: alice.execute(
                "create temp table _scale_stage on commit drop as select (i %% %s)::bigint as entity_id,"
                " timestamptz '2024-01-01' + i * interval '1 second' as event_time, (i %% 1000) * 0.5 as amount,"
                " (i %% 97)::int as n_tx, (i %% 89) / 89.0 as ratio, (i %% 50)::bigint as category"
                " from generate_series(1, %s) i", (args.entities, args.rows)))
            commit_s, _ = timed_s(lambda: alice.execute(
                "select fstore.commit_feature_rows(%s, 'pg_temp._scale_stage'::regclass, 'append', 'bench', '{}')",
                (fg_id,)).fetchone())
        count = alice.execute(sql.SQL("select count(*) from {}").format(
            sql.Identifier(project, "bulk__v1"))).fetchone()[0]
    return {"rows": args.rows, "stage_s": stage_s, "commit_s": commit_s, "rows_committed": count,
            "rows_per_s": round(args.rows / commit_s) if commit_s else None}


def _checksum(table: Any) -> str:
    """Order-independent digest of a PIT result (request id, amount), equal across platforms."""
    frame = table.select(["request_id", "hist__amount"]).to_pandas().sort_values("request_id")
    text = frame.to_csv(index=False, float_format="%.9g")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pit_phase(home: FstoreHome, project: str, args: argparse.Namespace) -> dict[str, Any]:
    """Load the history as bench/pit.py does, time the PIT, and explain it."""
    rng = np.random.default_rng(args.seed)
    history = PIT.feature_table(rng, args.history, args.entities)
    spine = PIT.spine_frame(rng, args.spine, args.entities)
    loaded = PIT.load_group(home, project, "hist", history, args.commit_rows,
                            group_options(home, "entity_id", args))
    fs = fstore.connect(project, "bob", home=home)
    try:
        timing, result = PIT.timed(lambda: fs.get_historical_features(spine, ["hist:*"], full_feature_names=True),
                                   args.repeat)
        strategies = fs.explain_historical_features(spine, ["hist:*"], full_feature_names=True)
    finally:
        fs.close()
    spine_table = PIT._spine_table(home, project, spine)
    lateral = sql.SQL(
        "explain (costs off) select s.request_id, f.amount from {spine} s left join lateral"
        " (select h.amount from {hist} h where h.entity_id = s.entity_id and h.event_time <= s.event_time"
        "  order by h.event_time desc limit 1) f on true").format(
        spine=sql.Identifier(*spine_table.split(".")), hist=sql.Identifier(project, "hist__v1"))
    with connect(home, f"{project}__bob", autocommit=True) as bob:
        try:
            plan = [r[0] for r in bob.execute(lateral)]
        except psycopg.Error as exc:  # a coordinator spine into a distributed group: Citus refuses the LATERAL
            plan = [f"refused: {exc.diag.message_primary}"]
    return {"spine_rows": args.spine, "history_rows": args.history, "load": loaded, "pit": timing,
            "rows_out": result.num_rows, "checksum": _checksum(result), "strategies": strategies,
            "explain_lateral_join": plan}


def online_phase(home: FstoreHome, project: str, args: argparse.Namespace) -> dict[str, Any]:
    """p50/p99 of 1 and ``--batch`` entities (bench/online.py), and the EXPLAIN of one key."""
    ONLINE.load_group(home, project, "serving", args.entities, group_options(home, "account_id", args))
    rng = np.random.default_rng(args.seed)

    def keys(n: int) -> list[int]:
        return [int(k) for k in rng.integers(1, args.entities + 1, n)]

    online.clear_plans()
    with fstore.connect(project, "bob", home=home) as fs:
        features = ["serving:*"]
        calls = {"fstore_1": lambda: fs.get_online_features(features, [{"account_id": keys(1)[0]}]),
                 f"fstore_{args.batch}": lambda: fs.get_online_features(
                     features, [{"account_id": k} for k in keys(args.batch)])}
        results = ONLINE.measure(calls, args.rounds, args.warmup)
        plan = online.plan_for(fs.conn, fs.role, features, False)
        explain = [r[0] for r in fs.conn.execute(b"explain (costs off) " + plan.query_one, [keys(1)[0]])]
    return {"entities": args.entities, "rounds": args.rounds, "latency": results, "explain_1_key": explain}


def node_work(home: FstoreHome, project: str) -> list[dict[str, Any]]:
    """Per node: scans, tuples read and inserted over the project's tables (shards included)."""
    nodes = [("coordinator" if citus.is_cluster(home) else "single", home)]
    nodes += [(n.name, n.home) for n in citus.workers(home)]
    out = []
    for name, node in nodes:
        with connect_operator(node) as op:
            if citus.is_cluster(home):  # Citus hides the shards from pg_class (and so from pg_stat_*) by default
                op.execute("set citus.override_table_visibility to off")
            row = op.execute(
                "select count(*), coalesce(sum(seq_scan), 0), coalesce(sum(seq_tup_read), 0),"
                " coalesce(sum(idx_scan), 0), coalesce(sum(idx_tup_fetch), 0), coalesce(sum(n_tup_ins), 0)"
                " from pg_stat_user_tables where schemaname = %s", (project,)).fetchone()
        out.append(dict(zip(("node", "tables", "seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch",
                             "n_tup_ins"), (name, *map(int, row)))))
    if citus.is_cluster(home):
        with connect_operator(home) as op:
            placement = [dict(zip(("table", "type", "distribution_column", "shards"), r)) for r in op.execute(
                "select table_name::text, citus_table_type, distribution_column, shard_count from citus_tables"
                " where table_name::text like %s order by 1", (f"{project}.%",))]
        out.append({"citus_tables": placement})
    return out


def reads_per_second(home: FstoreHome, project: str, args: argparse.Namespace) -> dict[str, Any]:
    """Online reads/s of ``--threads`` threads through OnlineStore, with no replica and with one."""
    rep = replica.start_replica(home)
    try:
        replica.wait_replayed(home)
        out: dict[str, Any] = {"threads": args.threads, "seconds": args.seconds}
        for label, replicas in (("no_replica", None), ("one_replica", [rep.name])):
            with fstore.connect(project, "bob", home=home) as fs, \
                    OnlineStore(fs, args.threads, args.threads, replicas=replicas) as store:
                counts = [0] * args.threads
                stop = threading.Event()

                def reader(i: int) -> None:
                    rng = np.random.default_rng(args.seed + i)
                    while not stop.is_set():
                        store.get_online_features(["serving:*"], {"account_id": int(rng.integers(1, args.entities))})
                        counts[i] += 1

                threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.threads)]
                before = load()
                for t in threads:
                    t.start()
                time.sleep(args.seconds)
                stop.set()
                for t in threads:
                    t.join()
                out[label] = {"reads": sum(counts), "reads_per_s": round(sum(counts) / args.seconds, 1),
                              "served_by": store.served(), "load_average_before": before,
                              "load_average_after": load()}
        out["ratio_one_replica_vs_none"] = round(out["one_replica"]["reads_per_s"] /
                                                 max(out["no_replica"]["reads_per_s"], 0.1), 3)
        out["replica_status"] = replica.replica_status(home)
        return out
    finally:
        replica.remove_replica(home, rep.name)


def platform_run(home: FstoreHome, args: argparse.Namespace, replicas: bool) -> dict[str, Any]:
    """Every phase on one platform, in a project of its own."""
    project = create_project(home, prefix="scale")
    try:
        out: dict[str, Any] = {"nodes": 1 + len(citus.workers(home)), "load_average_start": load()}
        out["commit"] = commit_phase(home, project, args)
        out["load_average_after_commit"] = load()
        out["pit"] = pit_phase(home, project, args)
        out["load_average_after_pit"] = load()
        out["online"] = online_phase(home, project, args)
        out["node_work"] = node_work(home, project)
        if replicas:
            out["reads_per_second"] = reads_per_second(home, project, args)
        out["load_average_end"] = load()
        return out
    finally:
        online.clear_plans()
        try:
            with connect(home, "fstore_admin", autocommit=True) as admin:
                projects.delete_project(home, admin, project)
        except Exception as exc:  # noqa: BLE001 -- on a cluster deleting a project can fail (docs/cluster.md)
            print(f"could not delete project {project}: {exc}", file=sys.stderr)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both platforms, one after the other (never side by side), then the ratios."""
    document: dict[str, Any] = {
        "benchmark": "scale", "rows": args.rows, "spine": args.spine, "history": args.history,
        "entities": args.entities, "workers": args.workers,
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                        "load_average_start": load()},
    }
    home, cleanup = start_home(args.single_home, prefix="fsc-single-")
    try:
        document["single"] = platform_run(home, args, replicas=True)
    finally:
        cleanup()
    if args.workers:
        if not (args.cluster_home or cluster.citus_installed()):
            raise SystemExit("Citus is not installed: run scripts/setup.sh, or --workers 0")
        home, cleanup = start_home(args.cluster_home, prefix="fsc-cluster-", workers=args.workers)
        try:
            document["cluster"] = platform_run(home, args, replicas=False)
        finally:
            cleanup()
        s, c = document["single"], document["cluster"]
        b = args.batch
        document["ratios_cluster_vs_single"] = {
            "commit_s": _ratio(c["commit"]["commit_s"], s["commit"]["commit_s"]),
            "pit_best_s": _ratio(c["pit"]["pit"]["best_s"], s["pit"]["pit"]["best_s"]),
            **{f"online_{n}_{q}": _ratio(c["online"]["latency"][f"fstore_{n}"][f"{q}_ms"],
                                         s["online"]["latency"][f"fstore_{n}"][f"{q}_ms"])
               for n in (1, b) for q in ("p50", "p99")},
        }
        document["pit_results_identical"] = s["pit"]["checksum"] == c["pit"]["checksum"]
    document["ratio_reads_per_s_one_replica_vs_none"] = document["single"]["reads_per_second"][
        "ratio_one_replica_vs_none"]
    document["environment"]["load_average_end"] = load()
    return document


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its JSON."""
    args = parse_args(argv)
    print_report(run(args), args.output)


if __name__ == "__main__":
    main()
