"""No cost for security: row-level security vs none, as a real project-user, in one run.

A Data Scientist (logging in with its own certificate over TLS) runs the same two
queries on two identical tables of one project:

* ``rls``   -- what every project table is: RLS enabled and forced, fstore's base
  policy, plus a restrictive row policy for Data Scientists (``using (consent)``,
  true for every row so both tables return the same result);
* ``plain`` -- the same rows with row-level security disabled by the superuser
  (the DDL guard refuses that to every project role; the superuser's session sets
  ``session_replication_role = replica`` so the guard's event trigger stays quiet).

Measured: a prepared primary-key lookup (many iterations, p50/p99/mean) and a full
scan (``count(*), sum(v1)`` over all rows, median of several runs), interleaved
variant by variant so drift hits all alike. A third variant, ``plain_where``, runs
on ``plain`` with the policy's predicate written into the query (``and consent``):
``rls / plain`` is the whole price of the policy (target: within 10%), ``rls /
plain_where`` the price of enforcing it through RLS rather than by hand.

Usage::

    python -m bench.rls --rows 1000000                 # starts its own server in a temp home
    python -m bench.rls --home ~/.fstore --rows 100000 # uses a running server
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from fstore import projects, sandbox, server
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from fstore.policies import RowPolicy, apply_policies

TABLES = ("rls", "plain")
VARIANTS = {"rls": ("rls", ""), "plain": ("plain", ""), "plain_where": ("plain", " and consent")}
TARGET = 1.10  # RLS may cost at most 10%


@contextmanager
def bench_home(home: str | None) -> Iterator[FstoreHome]:
    """The given running home, or a fresh temporary one with its own server (stopped after)."""
    if home:
        fhome = FstoreHome.resolve(home)
        if not server.is_running(fhome):
            raise SystemExit(f"no running fstore server in {fhome.root}")
        yield fhome
        return
    fhome, cleanup = sandbox.start_home(None, prefix="fstb-")
    try:
        yield fhome
    finally:
        cleanup()


def prepare(home: FstoreHome, project: str, rows: int) -> None:
    """Create the project's two tables with ``rows`` identical rows; disable RLS on ``plain``."""
    owner = sql.Identifier(f"{project}__owner")
    with connect(home, f"{project}__dora", autocommit=True) as dora:
        dora.execute(sql.SQL("set role {}").format(owner))
        for table in TABLES:
            dora.execute(sql.SQL(
                "create table {}.{} (id bigint primary key, consent boolean not null, v1 float8, v2 integer)"
            ).format(sql.Identifier(project), sql.Identifier(table)))
        dora.execute("reset role")
        apply_policies(dora, project, [RowPolicy("consented", "rls", ("data_scientist",), "consent")])
        dora.execute(sql.SQL(
            "insert into {}.rls select g, true, g * 0.5, (g %% 1000)::int from generate_series(1, %s) g"
        ).format(sql.Identifier(project)), (rows,))
        dora.execute(sql.SQL("insert into {}.plain select * from {}.rls").format(
            sql.Identifier(project), sql.Identifier(project)))
    with connect_operator(home, autocommit=True) as operator:
        operator.execute("set session_replication_role = replica")  # event triggers do not fire
        operator.execute(sql.SQL("alter table {}.plain disable row level security, no force row level security")
                         .format(sql.Identifier(project)))
        operator.execute("reset session_replication_role")
        for table in TABLES:
            operator.execute(sql.SQL("vacuum (analyze) {}.{}").format(sql.Identifier(project), sql.Identifier(table)))


def _table_state(conn: psycopg.Connection[Any], project: str) -> dict[str, Any]:
    """RLS flags and policy count of both tables, as the catalog says."""
    state = {}
    for table in TABLES:
        enabled, forced, policies = conn.execute(
            "select c.relrowsecurity, c.relforcerowsecurity, (select count(*) from pg_policy p where p.polrelid = c.oid) "
            "from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s and c.relname = %s",
            (project, table)).fetchone()
        state[table] = {"rls_enabled": enabled, "rls_forced": forced, "policies": policies}
    return state


def _summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6  # noqa: E731
    return {"p50_ms": round(pick(0.50), 4), "p99_ms": round(pick(0.99), 4),
            "mean_ms": round(statistics.fmean(ordered) / 1e6, 4)}


def measure_lookups(conn: psycopg.Connection[Any], project: str, rows: int, lookups: int,
                    rounds: int = 10) -> dict[str, dict[str, float]]:
    """Prepared primary-key lookups of each variant, alternating in ``rounds`` blocks."""
    rng = random.Random(42)
    samples: dict[str, list[int]] = {v: [] for v in VARIANTS}
    queries = {v: sql.SQL("select v1, v2 from {}.{} where id = %s" + where).format(
        sql.Identifier(project), sql.Identifier(table)).as_string(conn) for v, (table, where) in VARIANTS.items()}
    per_round = max(1, lookups // rounds)
    with conn.cursor() as cur:
        for variant in VARIANTS:  # warm-up: plans prepared, pages cached
            for _ in range(200):
                cur.execute(queries[variant], (rng.randint(1, rows),), prepare=True)
                cur.fetchone()
        for _ in range(rounds):
            for variant in VARIANTS:
                query, out = queries[variant], samples[variant]
                for _ in range(per_round):
                    key = rng.randint(1, rows)
                    start = time.perf_counter_ns()
                    cur.execute(query, (key,), prepare=True)
                    row = cur.fetchone()
                    out.append(time.perf_counter_ns() - start)
                    if row is None:
                        raise RuntimeError(f"lookup of id {key} ({variant}) found nothing")
    return {t: _summary(s) for t, s in samples.items()}


def measure_scans(conn: psycopg.Connection[Any], project: str, repeats: int) -> dict[str, Any]:
    """``count(*), sum(v1)`` over each whole table, ``repeats`` times alternating; median ms."""
    queries = {v: sql.SQL("select count(*), sum(v1) from {}.{} where true" + where).format(
        sql.Identifier(project), sql.Identifier(table)) for v, (table, where) in VARIANTS.items()}
    results: dict[str, tuple[Any, ...]] = {}
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for variant in VARIANTS:  # warm-up
        results[variant] = conn.execute(queries[variant]).fetchone()
    for _ in range(repeats):
        for variant in VARIANTS:
            start = time.perf_counter_ns()
            results[variant] = conn.execute(queries[variant]).fetchone()
            times[variant].append((time.perf_counter_ns() - start) / 1e6)
    if len(set(results.values())) != 1:
        raise RuntimeError(f"the variants disagree: {results}")
    return {
        **{t: {"median_ms": round(statistics.median(v), 3), "min_ms": round(min(v), 3)} for t, v in times.items()},
        "rows_counted": results["rls"][0],
    }


def run(home: FstoreHome, rows: int, lookups: int, scans: int) -> dict[str, Any]:
    """Set up a throw-away project, measure as its Data Scientist, delete it; return the figures."""
    project = f"rlsbench{uuid.uuid4().hex[:8]}"
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, project, "dora")
    try:
        with connect(home, f"{project}__dora", autocommit=True) as dora:
            projects.add_member(home, dora, project, "sam", "data-scientist")
        prepare(home, project, rows)
        setup_s = time.perf_counter() - started
        with connect(home, f"{project}__sam", autocommit=True) as sam:
            user = sam.execute("select session_user").fetchone()[0]
            state = _table_state(sam, project)
            lookup = measure_lookups(sam, project, rows, lookups)
            scan = measure_scans(sam, project, scans)
    finally:
        with connect(home, "fstore_admin", autocommit=True) as admin:
            projects.delete_project(home, admin, project)
    ratios = {
        "lookup_p50": round(lookup["rls"]["p50_ms"] / lookup["plain"]["p50_ms"], 3),
        "lookup_p99": round(lookup["rls"]["p99_ms"] / lookup["plain"]["p99_ms"], 3),
        "lookup_mean": round(lookup["rls"]["mean_ms"] / lookup["plain"]["mean_ms"], 3),
        "scan_median": round(scan["rls"]["median_ms"] / scan["plain"]["median_ms"], 3),
    }
    # the same predicate written by hand: what RLS itself adds on top of evaluating it
    enforcement = {
        "lookup_p50": round(lookup["rls"]["p50_ms"] / lookup["plain_where"]["p50_ms"], 3),
        "scan_median": round(scan["rls"]["median_ms"] / scan["plain_where"]["median_ms"], 3),
    }
    return {
        "benchmark": "rls",
        "as": user,
        "rows": rows,
        "lookups_per_table": lookups,
        "scans_per_table": scans,
        "tables": state,
        "pk_lookup": lookup,
        "full_scan": scan,
        "ratios": ratios,
        "ratios_vs_same_predicate_without_rls": enforcement,
        "target_ratio": TARGET,
        "within_target": {k: v <= TARGET for k, v in ratios.items()},
        "setup_s": round(setup_s, 2),
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2),
                            "cpus": os.cpu_count()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry: parse sizes, run, print the JSON figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.rls", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each table (default 1M)")
    parser.add_argument("--lookups", type=int, default=20_000, help="primary-key lookups per table")
    parser.add_argument("--scans", type=int, default=7, help="full scans per table")
    parser.add_argument("--home", help="FSTORE_HOME of a running server (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.rows < 1 or args.lookups < 1 or args.scans < 1:
        parser.error("--rows, --lookups and --scans must be positive")
    with bench_home(args.home) as home:
        result = run(home, args.rows, args.lookups, args.scans)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
