"""Drift benchmark: ``fs.drift`` (the measures computed in PostgreSQL) vs fetching both
windows into Arrow over ADBC and computing the same measures with numpy.

One run, one JSON document on stdout (or --output). A feature group with numeric
features and one categorical feature gets two commits of ``--rows`` rows each (the
second one shifted); as its Data Scientist, over TLS with a client certificate:

* ``fstore``: ``fs.drift(group, baseline=<commit 1>, current=<commit 2>)``, exact;
* ``fstore_sampled``: the same with ``sample_rows`` (``--sample-rows``, default 100k): estimates;
* ``numpy``: ``select <features> ... where _commit_id = <commit>`` for each window over
  ADBC (the fastest way out of PostgreSQL measured here), then PSI, Jensen-Shannon
  distance, the exact two-sample KS and Wasserstein-1 in numpy, as ``fstore.feature_drift`` defines
  them (:func:`numeric_measures`, :func:`categorical_measures`; the drift tests use
  them as their reference too).

Every fstore figure is checked against numpy's (largest difference reported: absolute,
relative for values above 1), then
the medians of ``--repeat`` runs, ``ratio = fstore / numpy`` and ``sampled_ratio =
fstore_sampled / numpy`` are printed (targets at 2M + 2M rows: ratio <= 2, sampled_ratio <= 0.5),
with how far the sampled estimates are from numpy's exact figures.

It starts its own server in a temporary home unless ``--home`` names a running one;
either way it works in a new project that it deletes at the end.

    python bench/drift.py                      # 2M rows per window, 4 numeric + 1 categorical
    python bench/drift.py --rows 20000         # a quick run (the tests do this)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
from psycopg import sql

import fstore
from fstore import projects
from fstore.connection import adbc_session
from fstore.connection import connect
from fstore.sandbox import create_project, print_report, start_home

NUMERIC = ["amount", "ratio", "n_tx", "balance"]
CATEGORICAL = "channel"
BINS = 10
FLOOR = 1e-4  # each share floored before the PSI's logarithm, as fstore.feature_drift does


# --- the measures, as fstore.feature_drift defines them ---------------------------------------
def psi(b: np.ndarray, c: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    bf, cf = np.maximum(b, FLOOR), np.maximum(c, FLOOR)
    return float(np.sum((cf - bf) * np.log(cf / bf)))


def js_distance(b: np.ndarray, c: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) of two share vectors over the same bins."""
    m = (b + c) / 2

    def kl(p: np.ndarray) -> float:
        safe = np.where(p > 0, p, 1.0)
        return float(np.sum(np.where(p > 0, p * np.log(safe / m), 0.0)))

    return float(np.sqrt(max(0.5 * kl(b) + 0.5 * kl(c), 0.0) / np.log(2)))


def numeric_measures(base: np.ndarray, cur: np.ndarray, bins: int = BINS) -> dict[str, float]:
    """PSI and JS over bins at the baseline's quantiles (linear, as percentile_cont; equal
    edges merged), the exact two-sample KS statistic and the Wasserstein-1 distance; NaNs
    (NULLs) left out."""
    base, cur = base[~np.isnan(base)], cur[~np.isnan(cur)]
    edges = np.unique(np.quantile(base, np.arange(1, bins) / bins))
    in_base, in_cur = np.searchsorted(edges, base, side="right"), np.searchsorted(edges, cur, side="right")
    b = np.bincount(in_base, minlength=len(edges) + 1) / len(base)
    c = np.bincount(in_cur, minlength=len(edges) + 1) / len(cur)
    used = (b > 0) | (c > 0)
    values = np.union1d(base, cur)
    gaps = np.abs(np.searchsorted(np.sort(base), values, side="right") / len(base)
                  - np.searchsorted(np.sort(cur), values, side="right") / len(cur))
    wasserstein = float(np.sum(gaps[:-1] * np.diff(values)))  # the area between the two empirical CDFs
    return {"psi": psi(b[used], c[used]), "js_distance": js_distance(b[used], c[used]), "ks": float(gaps.max()),
            "wasserstein": wasserstein}


def categorical_measures(base: np.ndarray, cur: np.ndarray) -> dict[str, float]:
    """PSI and JS over one bin per value (fewer than 50 values: no lumping), and the
    number of current values the baseline never had; None (NULL) left out."""
    base, cur = base[base != None], cur[cur != None]  # noqa: E711 (element-wise)
    values = np.union1d(base.astype(str), cur.astype(str))
    b = np.array([np.count_nonzero(base == v) for v in values]) / len(base)
    c = np.array([np.count_nonzero(cur == v) for v in values]) / len(cur)
    return {"psi": psi(b, c), "js_distance": js_distance(b, c), "new_values": int(np.count_nonzero(b == 0))}


# --- the run -----------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (sizes, repeats, where to run)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000, help="rows in each window (commit)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each contender; medians are reported")
    p.add_argument("--sample-rows", type=int, default=100_000, help="sample_rows of the sampled mode")
    p.add_argument("--home", default=None, help="use this running fstore home instead of a temporary one")
    p.add_argument("--output", default=None, help="write the JSON here too")
    return p.parse_args(argv)


def load(fs: fstore.FeatureStore, project: str, rows: int) -> list[int]:
    """The feature group and its two commits (the second shifted); returns the commit ids."""
    features = {"account_id": "bigint", "amount": "double precision", "ratio": "double precision",
                "n_tx": "integer", "balance": "bigint", "channel": "text"}
    fg = fs.create_feature_group("drifting", 1, keys=["account_id"], features=features)
    commits = []
    for window, shift in enumerate((0.0, 0.3)):
        with fs.conn.transaction():
            fs.conn.execute("drop table if exists pg_temp.stage")
            fs.conn.execute(sql.SQL(
                "create temp table stage on commit drop as select (i %% 50000)::bigint as account_id,"
                " timestamptz '2024-01-01' + (%s * interval '30 days') + i * interval '1 second' as event_time,"
                " random() * 100 + %s * 100 as amount,"
                " case when random() < 0.05 then null else random() + %s end as ratio,"
                " (random() * 20 + %s * 10)::integer as n_tx, (random() * 1e6)::bigint as balance,"
                " (array['web', 'app', 'atm', 'branch', 'crypto'])[1 + floor(random() * (4 + %s))::int] as channel"
                " from generate_series(1, %s) i"), (window, shift, shift, shift, window, rows))
            commits.append(fs.conn.execute("select fstore.commit_feature_rows(%s, 'pg_temp.stage'::regclass,"
                                           " 'append', 'bench')", (fg.id,)).fetchone()[0])
    return commits


def fetch_window(fs: fstore.FeatureStore, project: str, commit: int) -> Any:
    """One window's features as an Arrow table, over ADBC."""
    with adbc_session(fs.material) as (_, cursor):
        query = sql.SQL("select {} from {} where _commit_id = {}").format(
            sql.SQL(", ").join(map(sql.Identifier, [*NUMERIC, CATEGORICAL])),
            sql.Identifier(project, "drifting__v1"), sql.Literal(commit))
        cursor.execute(query.as_string(None))
        return cursor.fetch_arrow_table()


def with_numpy(fs: fstore.FeatureStore, project: str, commits: list[int]) -> dict[str, dict[str, float]]:
    """The baseline: both windows fetched over ADBC, the measures computed in numpy."""
    base, cur = fetch_window(fs, project, commits[0]), fetch_window(fs, project, commits[1])
    measures = {name: numeric_measures(base.column(name).to_numpy(zero_copy_only=False).astype(float),
                                       cur.column(name).to_numpy(zero_copy_only=False).astype(float))
                for name in NUMERIC}
    measures[CATEGORICAL] = categorical_measures(np.array(base.column(CATEGORICAL).to_pylist(), dtype=object),
                                                 np.array(cur.column(CATEGORICAL).to_pylist(), dtype=object))
    return measures


def _differences(report: Any, reference: dict[str, dict[str, float]]) -> dict[str, float]:
    """The largest difference per measure between a report and numpy's figures (absolute; relative
    above 1, as the Wasserstein distance is in the feature's units)."""
    differences: dict[str, float] = {}
    for feature in report.features:
        for measure, value in reference[feature.feature].items():
            gap = abs(getattr(feature, measure) - value) / max(1.0, abs(value))
            differences[measure] = max(differences.get(measure, 0.0), gap)
    return differences


def run(home: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Load, then time both contenders ``--repeat`` times, interleaved."""
    project = create_project(home, prefix="dbench")
    try:
        with fstore.connect(project, "alice", home=home) as alice:
            started = time.perf_counter()
            commits = load(alice, project, args.rows)
            load_seconds = time.perf_counter() - started
        with fstore.connect(project, "bob", home=home) as bob:
            times: dict[str, list[float]] = {"fstore": [], "fstore_sampled": [], "numpy": []}
            for _ in range(args.repeat):
                started = time.perf_counter()
                report = bob.drift("drifting", baseline=commits[0], current=commits[1])
                times["fstore"].append(time.perf_counter() - started)
                started = time.perf_counter()
                sampled = bob.drift("drifting", baseline=commits[0], current=commits[1], sample_rows=args.sample_rows)
                times["fstore_sampled"].append(time.perf_counter() - started)
                started = time.perf_counter()
                reference = with_numpy(bob, project, commits)
                times["numpy"].append(time.perf_counter() - started)
        differences, sampled_differences = _differences(report, reference), _differences(sampled, reference)
        medians = {name: statistics.median(values) for name, values in times.items()}
        return {
            "benchmark": "drift", "rows_per_window": args.rows, "features": [*NUMERIC, CATEGORICAL],
            "load_seconds": round(load_seconds, 3),
            "fstore_seconds": round(medians["fstore"], 3), "numpy_seconds": round(medians["numpy"], 3),
            "ratio": round(medians["fstore"] / medians["numpy"], 3),
            "sample_rows": args.sample_rows, "fstore_sampled_seconds": round(medians["fstore_sampled"], 3),
            "sampled_ratio": round(medians["fstore_sampled"] / medians["numpy"], 3),
            "sampled_estimated": all(f.estimated for f in sampled.features),
            "sampled_max_difference": sampled_differences,  # estimates: how far from the exact figures
            "runs": {name: [round(v, 3) for v in values] for name, values in times.items()},
            "max_difference": differences,  # absolute, relative above 1
            "drifted": report.drifted,
            "cpus": os.cpu_count(), "machine": {"platform": platform.platform(), "python": platform.python_version()},
        }
    finally:
        with connect(home, "fstore_admin", autocommit=True) as admin:
            projects.delete_project(home, admin, project)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its JSON document."""
    args = parse_args(argv)
    home, cleanup = start_home(args.home, prefix="fst-dbench-")
    try:
        result = run(home, args)
    finally:
        cleanup()
    print_report(result, args.output)


if __name__ == "__main__":
    sys.exit(main())
