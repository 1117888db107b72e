"""Feature-view benchmark: serving model-ready vectors and building training data through a view.

One run, one JSON document on stdout (or --output). As a Data Scientist over TLS with
a client certificate, on one psycopg connection, over 4 online feature groups (8
features, 6 of them transformed: standard, min-max and robust scalers, log1p, bucketize
and a second standard scaler):

* (a) 1 entity: ``fv.get_feature_vector({"account_id": k})`` (list out) against
  ``fs.get_online_features(features, {"account_id": k})`` plus the same transformations in
  numpy with the same fitted parameters (a float64 vector out); p50, p99, ratio;
* (b) 100 entities: ``fv.get_feature_vectors(entities, return_type="numpy")`` against
  ``get_online_features`` with 100 entity rows (an Arrow table) plus numpy (a 2-D array);
* (c) the training-data build through the view (``fv.create_training_dataset``: the
  point-in-time join, stored, then fitted on the training split) against the same build
  without transformations (``fs.create_training_dataset`` with the same features, label
  and split); median seconds of ``--builds`` builds each (after one unmeasured build of
  each), interleaved, and the ratio.

Both contenders of (a) and (b) give identical numbers (checked). The served-vector log's
cost: the same 1-entity call on twin views logging 1% and 100% of what they serve
(sampled vectors go to the log in batches of 100). Calls are interleaved
round-robin so that background load hits every contender alike.

It starts its own server in a temporary home unless ``--home`` names a running one;
either way it works in a new project that it deletes at the end.

    python bench/featureview.py                                  # 100k entities, 5000 rounds, 200k spine rows
    python bench/featureview.py --entities 2000 --rounds 200 --spine 5000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql

import fstore
from fstore import online, projects
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from fstore.sandbox import create_project, print_report, start_home

GROUPS = {  # group -> {feature: SQL over i (the entity) and d (weeks back); %% is a query's %}
    "activity": {"tx_count": "((i * 7 + d) %% 50)::int", "amount_7d": "(i %% 900) * 1.5 + d"},
    "balances": {"balance": "(i %% 5000) * 1.1 + d", "limit_used": "((i + d) %% 100) / 100.0"},
    "profile": {"age": "(18 + (i + d) %% 60)::int", "tenure_days": "((i * 13) %% 3650)::int"},
    "risk": {"score": "((i * 31 + d) %% 1000) / 10.0", "alerts": "((i + d) %% 7)::int"},
}
TRANSFORMS: dict[str, Any] = {
    "tx_count": "standard_scaler", "amount_7d": "log1p", "balance": "min_max_scaler", "age": "robust_scaler",
    "score": ("bucketize", [10.0, 25.0, 50.0, 75.0, 90.0]), "tenure_days": "standard_scaler",
}
TARGETS = {"serving_vs_lookup_max": 1.2, "p99_1_entity_ms": 1.0, "build_vs_plain_max": 1.1}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (sizes, rounds, where to run)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entities", type=int, default=100_000, help="entities in each feature group")
    p.add_argument("--history", type=int, default=3, help="offline rows per entity and group")
    p.add_argument("--rounds", type=int, default=5000, help="measured calls per serving contender")
    p.add_argument("--batch", type=int, default=100, help="entities per multi-entity call")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--spine", type=int, default=200_000, help="spine rows of the training-data builds")
    p.add_argument("--builds", type=int, default=3, help="builds per contender")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--home", default=None, help="use this running fstore home instead of a temporary one")
    p.add_argument("--output", default=None, help="write the JSON here too")
    return p.parse_args(argv)


def load(home: FstoreHome, project: str, entities: int, history: int, spine: int, seed: int) -> None:
    """The four online groups (``history`` rows per entity, the newest a minute old) and the spine table."""
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        for name, features in GROUPS.items():
            columns = [{"name": "account_id", "type": "bigint"}, {"name": "event_time", "type": "timestamptz"}]
            columns += [{"name": f, "type": "integer" if "::int" in e else "double precision"}
                        for f, e in features.items()]
            with alice.transaction():
                alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{project}__owner")))
                fg_id = alice.execute(
                    "select fstore.create_feature_group(%s, %s, 1, array['account_id'], 'event_time', %s::jsonb,"
                    " true, null, '', '{}', false)", (project, name, json.dumps(columns))).fetchone()[0]
            select = sql.SQL(", ").join(sql.SQL("{} as {}").format(sql.SQL(e), sql.Identifier(f))
                                        for f, e in features.items())
            with alice.transaction():
                alice.execute(sql.SQL(
                    "create temp table _bench_stage on commit drop as select i::bigint as account_id,"
                    " now() - interval '1 minute' - d * interval '7 days' as event_time, {} "
                    "from generate_series(1, %s) i, generate_series(0, %s) d").format(select),
                    (entities, history - 1))
                alice.execute("select fstore.commit_feature_rows(%s, 'pg_temp._bench_stage'::regclass, 'append',"
                              " 'bench', '{}')", (fg_id,))
        with alice.transaction():
            alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{project}__owner")))
            alice.execute("select setseed(%s)", (seed / 1e9,))
            alice.execute(sql.SQL(
                "create table {} as select (1 + floor(random() * %s))::bigint as account_id,"
                " now() - random() * interval '30 days' as event_time, (random() < 0.05)::int as is_fraud "
                "from generate_series(1, %s)").format(sql.Identifier(project, "spine")), (entities, spine))
    with connect_operator(home, autocommit=True) as op:
        op.execute(sql.SQL("analyze {}").format(sql.Identifier(project, "spine")))
        for name in GROUPS:
            op.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(project, f"{name}__v1__online")))
            op.execute(sql.SQL("vacuum (analyze) {}").format(sql.Identifier(project, f"{name}__v1")))


class NumpyTransform:
    """The view's transformations in numpy, with its fitted parameters: the contender's code."""

    def __init__(self, columns: list[str], params: dict[str, Any]) -> None:
        self.columns = columns
        shift, scale = np.zeros(len(columns)), np.ones(len(columns))
        self.log1p: list[int] = []
        self.buckets: list[tuple[int, np.ndarray]] = []
        for i, column in enumerate(columns):
            spec = TRANSFORMS.get(column)
            p = params.get(column, {})
            if spec == "standard_scaler":
                shift[i], scale[i] = p["mean"], p["std"]
            elif spec == "min_max_scaler":
                shift[i], scale[i] = p["min"], p["range"]
            elif spec == "robust_scaler":
                shift[i], scale[i] = p["median"], p["iqr"]
            elif spec == "log1p":
                self.log1p.append(i)
            elif isinstance(spec, tuple):
                self.buckets.append((i, np.asarray(spec[1], dtype=np.float64)))
        self.shift, self.scale = shift, scale

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = (x - self.shift) / self.scale
        for i in self.log1p:
            x[..., i] = np.log1p(x[..., i])
        for i, edges in self.buckets:
            x[..., i] = np.searchsorted(edges, x[..., i], side="right")  # width_bucket
        return x


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p99, mean (ms) of call durations in seconds."""
    ordered = sorted(samples)
    return {"p50_ms": round(ordered[len(ordered) // 2] * 1e3, 4),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3, 4),
            "mean_ms": round(statistics.fmean(ordered) * 1e3, 4)}


def measure(calls: dict[str, Callable[[], Any]], rounds: int, warmup: int) -> dict[str, dict[str, float]]:
    """Round-robin: every contender once per round."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            samples[name].append(time.perf_counter() - started)
    return {name: summary(values) for name, values in samples.items()}


def serving(fs: fstore.FeatureStore, fv: Any, logged: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """(a) and (b): the view's vectors against lookups plus numpy; and the cost of the sampled log."""
    features = [f"{g}:*" for g in GROUPS]
    columns = fv.columns
    transform = NumpyTransform(columns, fv.fits()[-1]["params"])
    rng = random.Random(args.seed)

    def keys(n: int) -> list[dict[str, int]]:
        return [{"account_id": rng.randint(1, args.entities)} for _ in range(n)]

    def lookup_one() -> np.ndarray:
        row = fs.get_online_features(features, keys(1)[0])
        return transform(np.array([row[c] for c in columns], dtype=np.float64))

    def lookup_many() -> np.ndarray:
        table = fs.get_online_features(features, keys(args.batch))
        return transform(np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                                          for c in columns]))

    probe = [{"account_id": k} for k in (1, 2, args.entities)]
    table = fs.get_online_features(features, probe)
    expected = transform(np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float64)
                                          for c in columns]))
    served = fv.get_feature_vectors(probe, return_type="numpy")
    gap = float(np.max(np.abs(served - expected)))
    assert gap < 1e-9, f"the view serves other numbers than lookups + numpy: {gap}"
    calls = {
        "lookup_numpy_1": lookup_one,
        "view_1": lambda: fv.get_feature_vector(keys(1)[0]),
        f"lookup_numpy_{args.batch}": lookup_many,
        f"view_{args.batch}": lambda: fv.get_feature_vectors(keys(args.batch), return_type="numpy"),
    }
    for label, view in logged.items():
        calls[f"view_1_{label}"] = lambda view=view: view.get_feature_vector(keys(1)[0])
    results: dict[str, Any] = measure(calls, args.rounds, args.warmup)
    b = args.batch
    results["ratios"] = {
        "view_1_vs_lookup_numpy_p50": round(results["view_1"]["p50_ms"] / results["lookup_numpy_1"]["p50_ms"], 3),
        "view_1_vs_lookup_numpy_p99": round(results["view_1"]["p99_ms"] / results["lookup_numpy_1"]["p99_ms"], 3),
        f"view_{b}_vs_lookup_numpy_p50": round(results[f"view_{b}"]["p50_ms"]
                                               / results[f"lookup_numpy_{b}"]["p50_ms"], 3),
        f"view_{b}_vs_lookup_numpy_p99": round(results[f"view_{b}"]["p99_ms"]
                                               / results[f"lookup_numpy_{b}"]["p99_ms"], 3),
    }
    for label in logged:
        results["ratios"][f"view_1_{label}_vs_view_1_p50"] = round(results[f"view_1_{label}"]["p50_ms"]
                                                                  / results["view_1"]["p50_ms"], 3)
        results["ratios"][f"view_1_{label}_vs_view_1_p99"] = round(results[f"view_1_{label}"]["p99_ms"]
                                                                  / results["view_1"]["p99_ms"], 3)
    results["max_abs_difference"] = gap
    return results


def builds(fs: fstore.FeatureStore, fv: Any, project: str, args: argparse.Namespace) -> dict[str, Any]:
    """(c): the build through the view against the same build without transformations."""
    split = {"train": 0.8, "test": 0.2}
    features = [f"{g}:*" for g in GROUPS]
    spine = f"{project}.spine"
    times: dict[str, list[float]] = {"view": [], "plain": []}
    fv.create_training_dataset(spine, split=split)  # warm-up, unmeasured: caches, plans, the first catalog rows
    fs.create_training_dataset("plain", spine, features, label="is_fraud", split=split)
    for i in range(args.builds):
        for name in ("plain", "view") if i % 2 else ("view", "plain"):
            started = time.perf_counter()
            if name == "view":
                fv.create_training_dataset(spine, split=split, seed=i)
            else:
                fs.create_training_dataset("plain", spine, features, label="is_fraud", split=split, seed=i,
                                           new_version=True)
            times[name].append(time.perf_counter() - started)
    view_s, plain_s = statistics.median(times["view"]), statistics.median(times["plain"])
    return {"spine_rows": args.spine, "view_s": round(view_s, 3), "plain_s": round(plain_s, 3),
            "ratio": round(view_s / plain_s, 3), "runs": {k: [round(t, 3) for t in v] for k, v in times.items()}}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up, measure, report."""
    home, cleanup = start_home(args.home)
    project = None
    try:
        project = create_project(home)
        started = time.perf_counter()
        load(home, project, args.entities, args.history, args.spine, args.seed)
        setup_s = time.perf_counter() - started
        load_before = os.getloadavg()
        with fstore.connect(project, "bob", home=home) as fs:
            fv = fs.create_feature_view("bench", [f"{g}:*" for g in GROUPS], label="is_fraud",
                                        transformations=TRANSFORMS)
            built = builds(fs, fv, project, args)
            fv.init_serving()
            logged = {}
            for label, rate in (("log_1pct", 0.01), ("log_all", 1.0)):  # the same view, logging
                logged[label] = fs.create_feature_view(f"bench_{label}", [f"{g}:*" for g in GROUPS], label="is_fraud",
                                                       transformations=TRANSFORMS, log_rate=rate)
                logged[label].create_training_dataset(f"{project}.spine", split={"train": 0.8, "test": 0.2})
            served = serving(fs, fv, logged, args)
            for view in logged.values():
                view.flush_log()
            served["logged_vectors"] = {label: _logged(fs, view) for label, view in logged.items()}
        load_after = os.getloadavg()
        b = args.batch
        ratios = served["ratios"]
        met = {
            "view_1_within_1.2x": ratios["view_1_vs_lookup_numpy_p50"] <= TARGETS["serving_vs_lookup_max"],
            f"view_{b}_within_1.2x": ratios[f"view_{b}_vs_lookup_numpy_p50"] <= TARGETS["serving_vs_lookup_max"],
            "p99_1_entity_under_1ms": served["view_1"]["p99_ms"] < TARGETS["p99_1_entity_ms"],
            "build_within_1.1x": built["ratio"] <= TARGETS["build_vs_plain_max"],
        }
        return {
            "benchmark": "featureview", "entities": args.entities, "groups": len(GROUPS),
            "features": sum(len(f) for f in GROUPS.values()), "transformations": len(TRANSFORMS),
            "rounds": args.rounds, "batch": b,
            "connection": "psycopg over TLS with a client certificate, prepared statements, one connection",
            "setup_s": round(setup_s, 1), "serving": served, "build": built, "targets": TARGETS,
            "targets_met": met,
            "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                            "load_average_before": [round(x, 2) for x in load_before],
                            "load_average_after": [round(x, 2) for x in load_after],
                            "server": _server_version(home)},
        }
    finally:
        if project is not None:
            online.clear_plans()
            with connect(home, "fstore_admin", autocommit=True) as admin:
                projects.delete_project(home, admin, project)
        cleanup()


def _logged(fs: fstore.FeatureStore, view: Any) -> int:
    """Vectors of ``view`` in its log, counted by the operator's side: the Data Owner (alice)."""
    with fstore.connect(view.project, "alice", home=fs.home) as alice:
        return alice.conn.execute("select count(*) from fstore.served_vectors where feature_view_id = %s",
                                  (view.id,)).fetchone()[0]


def _server_version(home: FstoreHome) -> str:
    with connect_operator(home) as op:
        return op.execute("show server_version").fetchone()[0]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its JSON."""
    args = parse_args(argv)
    print_report(run(args), args.output)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
