"""The scaling grid of the point-in-time join: fstore against DuckDB's ``ASOF JOIN``, for
every (spine rows x history rows) point, on the same data, in the same run.

Run through ``bench/pit.py --scaling`` (its data generators, loader and checks are reused):

    python bench/pit.py --scaling                                    # 100k/1M/3M x 1M/10M/30M
    python bench/pit.py --scaling --spines 20000,200000 --histories 200000,2000000

For each history size, one feature group of that many rows (``--entities`` entities over a
year) is committed through the pipeline and copied into DuckDB's memory; for each spine
size, a DataFrame spine is joined by ``fs.get_historical_features`` and by DuckDB
(``--repeat`` times each, best kept), the results are compared value by value, and the
ratio fstore / DuckDB is printed (stderr, one line per point) and reported in the JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

import fstore
from fstore import projects
from fstore.connection import connect

def sizes(text: str) -> list[int]:
    """``"20000,200000"`` -> ``[20000, 200000]`` (positive integers)."""
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) <= 0:
        raise SystemExit(f"sizes must be positive integers: {text!r}")
    return values


def run_scaling(args: argparse.Namespace, pit: Any) -> dict[str, Any]:
    """Every grid point; ``pit`` holds bench/pit.py's names (generators, loader, timer, comparison)."""
    spines, histories = sizes(args.spines), sizes(args.histories)
    forced_strategies = [f for f in (args.scaling_strategies or "").split(",") if f.strip()]
    rng = np.random.default_rng(args.seed)
    spine_frames = {s: pit.spine_frame(rng, s, args.entities) for s in spines}
    home, cleanup = pit.start_home(args)
    project = None
    grid: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    try:
        project = pit.create_project(home)
        fs = fstore.connect(project, "bob", home=home)
        duck = duckdb.connect()
        duck.execute(f"set threads = {max(1, len(os.sched_getaffinity(0)))}")
        columns = [f"g1__{f}" for f in pit.FEATURES]
        for index, history_rows in enumerate(histories):
            name = f"h{index + 1}"
            table = pit.feature_table(rng, history_rows, args.entities)
            loads.append(pit.load_group(home, project, name, table, args.commit_rows))
            duck.execute("drop table if exists g1")
            duck.register("src", table)
            duck.execute("create table g1 as select * from src")
            duck.unregister("src")
            del table
            query = pit.duckdb_query(["g1"])
            for spine_rows in spines:
                spine = spine_frames[spine_rows]

                def ours(strategy: str = args.strategy) -> pa.Table:
                    found = fs.get_historical_features(spine, [f"{name}:*"], full_feature_names=True,
                                                       strategy=strategy)
                    return found.rename_columns([c.replace(f"{name}__", "g1__", 1) for c in found.column_names])

                def theirs() -> pa.Table:
                    duck.register("spine", spine)
                    try:
                        return duck.sql(query).to_arrow_table()
                    finally:
                        duck.unregister("spine")

                fstore_t, mine = pit.timed(ours, args.repeat)
                duck_t, reference = pit.timed(theirs, args.repeat)
                point = {"spine_rows": spine_rows, "history_rows": history_rows, "fstore": fstore_t,
                         "duckdb_asof": duck_t, "results_agree": pit.agree(mine, reference, columns),
                         "ratio_fstore_vs_duckdb": round(fstore_t["best_s"] / duck_t["best_s"], 2)}
                for forced in forced_strategies:  # each strategy forced, against the same DuckDB run
                    forced_t, forced_result = pit.timed(lambda: ours(forced), args.repeat)
                    point[f"fstore_{forced}"] = forced_t
                    point[f"{forced}_agrees"] = pit.agree(forced_result, reference, columns)
                    point[f"ratio_{forced}_vs_duckdb"] = round(forced_t["best_s"] / duck_t["best_s"], 2)
                point["plan"] = fs.explain_historical_features(spine, [f"{name}:*"])[0]["strategy"]
                grid.append(point)
                print(f"[pit --scaling] spine {spine_rows:>9,} x history {history_rows:>11,}: fstore "
                      f"{fstore_t['best_s']:.3f} s, DuckDB {duck_t['best_s']:.3f} s, ratio "
                      f"{point['ratio_fstore_vs_duckdb']:.2f} (auto: {point['plan']}), agree {point['results_agree']}"
                      + "".join(f"; {f} {point[f'fstore_{f}']['best_s']:.3f} s ({point[f'ratio_{f}_vs_duckdb']:.2f}x,"
                                f" agree {point[f'{f}_agrees']})" for f in forced_strategies),
                      file=sys.stderr, flush=True)
        fs.close()
        duck.close()
    finally:
        if project is not None and not args.keep:
            with connect(home, "fstore_admin", autocommit=True) as admin:
                projects.delete_project(home, admin, project)
        cleanup()
    worst = max(p["ratio_fstore_vs_duckdb"] for p in grid)
    return {
        "benchmark": "point_in_time_join_scaling", "spines": spines, "histories": histories,
        "entities": args.entities, "repeat": args.repeat, "load": loads, "grid": grid,
        "all_agree": all(p["results_agree"] and all(p[f"{f}_agrees"] for f in forced_strategies) for p in grid),
        "strategies_forced": forced_strategies,
        "targets": {"fstore_vs_duckdb_max": pit.TARGETS["fstore_vs_duckdb_max"], "worst_ratio": worst,
                    "met": worst <= pit.TARGETS["fstore_vs_duckdb_max"]},
        "environment": {"duckdb": duckdb.__version__, "cpus": os.cpu_count(),
                        "load_average_before": [round(x, 2) for x in load_before],
                        "load_average_after": [round(x, 2) for x in os.getloadavg()],
                        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }
