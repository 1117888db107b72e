"""Commit benchmark: one feature-group commit of N rows vs a bare CREATE TABLE AS.

Both read the same already-loaded source table (N rows: an entity key, an event
time and six features of mixed types) in the same run, on the same server:

* ``ctas``: ``CREATE TABLE <project>.ctas_copy AS SELECT * FROM <source>``;
* ``commit``: ``fstore.commit_feature_rows(fg, <source>, 'append')`` for an online
  feature group: offline append (indexed for point-in-time lookups), online
  newer-only upsert, statistics, commit record, in one transaction; the tables start
  empty (or hold ``--existing-rows`` rows, committed untimed before each run), so the
  offline append takes the bulk path (index dropped, rows appended, index rebuilt)
  unless the table holds more than the commit brings (then row by row); each run also reports the pipeline's own step durations
  (``commit_steps_seconds``, from its RAISE DEBUG lines), how the server built the
  index (serially or with parallel workers) and the 1-minute load average before
  and after the commit;
* ``statistics``: ``fstore.batch_statistics`` alone on the same rows (part of the
  commit; shown to see where the time goes);
* with ``--python``, also ``fg.insert`` of the same rows from an Arrow table
  (checks, binary COPY over TLS into a temporary table, then the same commit).

A checkpoint runs before each timed step; with ``--repeat`` the pair runs again on
emptied tables and the medians are reported (the machine may be shared). One JSON
document goes to stdout (or ``--output``) with the timings and
``ratio = commit / ctas`` (target <= 2) of the medians, and ``ratio_median_of_runs``,
the median of each run's own ratio (less swayed when other work slows one step of a run).

It starts its own server in a temporary home (CA, admin certificate, free port)
unless ``--home`` names a running one; either way it works in a new project that it
deletes at the end.

    python bench/commit.py                  # 10M rows, 100k entities
    python bench/commit.py --rows 5000      # a quick run (the tests do this)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from psycopg import sql

import fstore
from fstore import projects, sandbox
from fstore.connection import adbc_session
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome

FEATURES = {
    "account_id": "bigint", "amount": "double precision", "ratio": "double precision",
    "n_tx": "integer", "balance": "bigint", "category": "text", "flagged": "boolean",
}
TARGET_RATIO = 2.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (sizes and where to run)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000_000, help="rows in the commit")
    p.add_argument("--entities", type=int, default=100_000, help="distinct entity keys")
    p.add_argument("--repeat", type=int, default=1, help="runs of (CTAS, commit); medians are reported")
    p.add_argument("--home", default=None, help="use this running fstore home instead of a temporary one")
    p.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting for the bench's own server, e.g. maintenance_work_mem=1GB (repeatable;"
                        " default: the server's own, sized to the machine)")
    p.add_argument("--offline-index", choices=("covering", "keys"), default="covering",
                   help="the feature group's offline_index option (default covering)")
    p.add_argument("--existing-rows", type=int, default=0,
                   help="rows already in the feature group before each timed commit (committed untimed from the"
                        " start of the source); with more than --rows the commit goes row by row, not bulk")
    p.add_argument("--python", action="store_true", help="also time fg.insert of the same rows from Arrow")
    p.add_argument("--local", action="store_true",
                   help="on a Citus cluster keep the group on the coordinator (options.distribution_key null)")
    p.add_argument("--output", default=None, help="write the JSON here too")
    return p.parse_args(argv)


def start_home(args: argparse.Namespace) -> tuple[FstoreHome, Callable[[], None]]:
    """A running home: the given one, or a new temporary one (server settings as asked)."""
    return sandbox.start_home(args.home, prefix="fst-cbench-",
                              settings=dict(setting.split("=", 1) for setting in args.server_setting))


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def checkpoint(home: FstoreHome) -> None:
    with connect_operator(home, autocommit=True) as op:
        op.execute("checkpoint")


def run(home: FstoreHome, args: argparse.Namespace) -> dict[str, Any]:
    """Load the source, then time CTAS, the commit and the statistics alone."""
    project = f"cbench{uuid.uuid4().hex[:8]}"
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, project, "alice")
    try:
        return _measure(home, project, args)
    finally:
        with connect(home, "fstore_admin", autocommit=True) as admin:
            projects.delete_project(home, admin, project)


def _measure(home: FstoreHome, project: str, args: argparse.Namespace) -> dict[str, Any]:
    source = sql.Identifier(project, "source")
    copy = sql.Identifier(project, "ctas_copy")
    owner = sql.Identifier(f"{project}__owner")
    with fstore.connect(project, "alice", home=home) as fs:
        conn = fs.conn
        load_s, _ = timed(lambda: _load_source(conn, owner, source, args))
        fg = _bench_group(fs, args)
        conn.execute(sql.SQL("select count(*) from {}").format(source))  # same cache state for both

        runs = []
        for run_number in range(args.repeat):
            if run_number:
                fg = _reset(fs, owner, copy, fg, args)
            if args.existing_rows:
                _prefill(conn, owner, source, fg, project, args.existing_rows)
            checkpoint(home)
            ctas_s, _ = timed(lambda: _ctas(conn, owner, copy, source))
            index_s, _ = timed(lambda: _index_copy(conn, owner, copy, args.offline_index))
            checkpoint(home)
            load_before = os.getloadavg()[0]
            commit_s, (commit_id, steps, index_builds) = timed(lambda: _commit(conn, fg.id, f"{project}.source"))
            runs.append({"ctas_seconds": round(ctas_s, 3), "ctas_index_seconds": round(index_s, 3),
                         "commit_seconds": round(commit_s, 3),
                         "ratio": round(commit_s / ctas_s, 3),
                         "floor_ratio": round((ctas_s + index_s) / ctas_s, 3),
                         "commit_steps_seconds": steps,
                         "index_builds": index_builds,
                         "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
        checkpoint(home)
        stats_s, _ = timed(lambda: conn.execute(
            "select fstore.batch_statistics(%s, %s::regclass)", (fg.id, f"{project}.source")).fetchone())
        commit = next(c for c in fg.commits() if c.id == commit_id)
        sizes = conn.execute(
            "select pg_total_relation_size(%s::regclass), pg_total_relation_size(%s::regclass), "
            "pg_total_relation_size(%s::regclass)",
            (f"{project}.ctas_copy", f"{project}.bench__v1", f"{project}.bench__v1__online")).fetchone()
        ctas_median = statistics.median(r["ctas_seconds"] for r in runs)
        commit_median = statistics.median(r["commit_seconds"] for r in runs)
        floor_median = statistics.median(r["ctas_seconds"] + r["ctas_index_seconds"] for r in runs)
        result: dict[str, Any] = {
            "rows": args.rows, "entities": args.entities, "features": FEATURES,
            "offline_index": args.offline_index,
            "existing_rows": args.existing_rows,
            "load_source_seconds": round(load_s, 3),
            "ctas_seconds": ctas_median,
            "commit_seconds": commit_median,
            "statistics_only_seconds": round(stats_s, 3),
            "ratio": round(commit_median / ctas_median, 3) if ctas_median else None,
            "ratio_median_of_runs": statistics.median(r["ratio"] for r in runs),  # steadier on a shared machine
            "ctas_plus_index_seconds": round(floor_median, 3),
            "floor_ratio": round(floor_median / ctas_median, 3) if ctas_median else None,
            "ratio_to_floor": round(commit_median / floor_median, 3) if floor_median else None,
            "target_ratio": TARGET_RATIO,
            "runs": runs,
            "cpus": os.cpu_count(),
            "commit": {"id": commit.id, "rows": commit.rows, "online_rows": commit.online_rows},
            "bytes": {"ctas_copy": sizes[0], "offline_with_index": sizes[1], "online": sizes[2]},
        }
        if args.python:
            result["python_insert"] = _python_insert(fs, source, args)
        return result


def _load_source(conn: Any, owner: sql.Identifier, source: sql.Identifier, args: argparse.Namespace) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(owner))
        conn.execute(sql.SQL(
            "create table {} as select (i %% %s)::bigint as account_id,"
            " timestamptz '2024-01-01' + (i * interval '1 second') as event_time,"
            " random() * 1000 as amount,"
            " case when random() < 0.1 then null else random() end as ratio,"
            " (random() * 50)::integer as n_tx,"
            " (random() * 1e9)::bigint as balance,"
            " (array['web', 'app', 'branch', 'atm', 'phone'])[1 + (i %% 5)] as category,"
            " random() < 0.05 as flagged"
            " from generate_series(1, %s) i").format(source),
            (args.entities, args.rows))
    conn.execute(sql.SQL("vacuum analyze {}").format(source))


def _ctas(conn: Any, owner: sql.Identifier, copy: sql.Identifier, source: sql.Identifier) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(owner))
        conn.execute(sql.SQL("create table {} as select * from {}").format(copy, source))


def _index_copy(conn: Any, owner: sql.Identifier, copy: sql.Identifier, offline_index: str) -> None:
    """The floor: the CTAS copy indexed for point-in-time lookups as the offline table is
    (keys, event time descending, plus the features for a covering index), same settings."""
    features = [sql.Identifier(name) for name in FEATURES if name != "account_id"]
    include = sql.SQL(" include ({})").format(sql.SQL(", ").join(features)) if offline_index == "covering" else sql.SQL("")
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(owner))
        conn.execute(sql.SQL("create index on {} (account_id, event_time desc){}").format(copy, include))


STEP = re.compile(r"^fstore commit \d+: (\w+) (\d+) ms(?: (.*))?$")


def _commit(conn: Any, fg_id: int, source: str) -> tuple[int, dict[str, Any], list[str]]:
    """One commit of ``source``, with the durations of its steps as the pipeline reports them.

    The commit runs with ``client_min_messages = debug1``: ``fstore.commit_feature_rows``
    reports each step (RAISE DEBUG), and the server says how each index is built (serially
    or with parallel workers). Returns the commit id, {step: seconds, step_detail: text}
    and the index-build lines.
    """
    messages: list[str] = []

    def collect(diagnostic: Any) -> None:
        messages.append(diagnostic.message_primary or "")

    conn.add_notice_handler(collect)
    try:
        with conn.transaction():
            conn.execute("set local client_min_messages = debug1")
            commit_id = conn.execute("select fstore.commit_feature_rows(%s, %s::regclass, 'append', 'bench')",
                                     (fg_id, source)).fetchone()[0]
    finally:
        conn.remove_notice_handler(collect)
    steps: dict[str, Any] = {}
    for message in messages:
        match = STEP.match(message)
        if match:
            name, ms, detail = match.groups()
            steps[name] = round(steps.get(name, 0.0) + int(ms) / 1000, 3)
            if detail:
                steps[f"{name}_detail"] = detail
    return commit_id, steps, [m for m in messages if m.startswith("building index")]


def _prefill(conn: Any, owner: sql.Identifier, source: sql.Identifier, fg: Any, project: str, rows: int) -> None:
    """Commit the first ``rows`` rows of the source (untimed), so the timed commit meets a filled table."""
    prefill = sql.Identifier(project, "prefill")
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(owner))
        conn.execute(sql.SQL("drop table if exists {}").format(prefill))
        conn.execute(sql.SQL("create table {} as select * from {} limit %s").format(prefill, source), (rows,))
    conn.execute("select fstore.commit_feature_rows(%s, %s::regclass, 'append', 'bench prefill')",
                 (fg.id, f"{project}.prefill"))


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """The group's options: the offline index, and with --local no distribution on a cluster."""
    return {"offline_index": args.offline_index, **({"distribution_key": None} if args.local else {})}


def _bench_group(fs: fstore.FeatureStore, args: argparse.Namespace) -> Any:
    """The benchmark's feature group, new and empty."""
    return fs.create_feature_group("bench", 1, keys=["account_id"], features=FEATURES, online=True,
                                   description="commit benchmark", options=_options(args))


def _reset(fs: fstore.FeatureStore, owner: sql.Identifier, copy: sql.Identifier, fg: Any,
           args: argparse.Namespace) -> Any:
    """Back to the starting state for another run: no CTAS copy, the feature group new and empty
    (history is append-only: the group is dropped, with fstore.drop_feature_group, and made again)."""
    conn = fs.conn
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(owner))
        conn.execute(sql.SQL("drop table {}").format(copy))
    conn.execute("select fstore.drop_feature_group(%s)", (fg.id,))
    return _bench_group(fs, args)


def _python_insert(fs: fstore.FeatureStore, source: sql.Identifier, args: argparse.Namespace) -> dict[str, Any]:
    """fg.insert of the same rows (read into Arrow first, not timed) into a second version."""
    with adbc_session(fs.material) as (_, cur):
        cur.execute(sql.SQL("select * from {}").format(source).as_string(None))
        table = cur.fetch_arrow_table()
    fg = fs.create_feature_group("bench", 2, keys=["account_id"], features=FEATURES, online=True,
                                 options=_options(args))
    seconds, commit = timed(lambda: fg.insert(table))
    return {"seconds": round(seconds, 3), "rows": commit.rows, "online_rows": commit.online_rows}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    home, cleanup = start_home(args)
    try:
        result = run(home, args)
        with connect_operator(home, autocommit=True) as op:
            settings = dict(op.execute(
                "select name, current_setting(name) from pg_settings where name in "
                "('server_version', 'shared_buffers', 'max_wal_size', 'work_mem', 'maintenance_work_mem', 'wal_level')").fetchall())
        result["server"] = settings
        result["machine"] = {"platform": platform.platform(), "python": platform.python_version()}
    finally:
        cleanup()
    sandbox.print_report(result, args.output)


if __name__ == "__main__":
    sys.exit(main())
