"""bench/pit.py at a small scale: it runs against the test server and reports the shape it promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench" / "pit.py"


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_pit", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_pit_bench_small_run(home: Any, tmp_path: Path, capsys: Any) -> None:
    bench = _bench_module()
    output = tmp_path / "pit.json"
    bench.main(["--home", str(home.root), "--spine-rows", "2000", "--feature-rows", "20000", "--entities", "300",
                "--groups", "2", "--commit-rows", "8000", "--repeat", "1", "--output", str(output)])
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads(output.read_text())
    assert document["sizes"] == {"spine_rows": 2000, "feature_rows_per_group": 20000, "entities": 300,
                                 "groups": 2, "features_per_group": 4}
    assert [load["rows"] for load in document["load"]] == [20000, 20000]
    for label, groups in (("one_group", 1), ("multi_group", 2)):
        entry = document["results"][label]
        assert entry["groups"] == groups and entry["rows_out"] == 2000
        assert entry["results_agree_with_duckdb"] is True and entry["one_worker_agrees"] is True
        assert entry["range_join_agrees_with_fstore_ttl_30d"] is True
        for contender in ("fstore", "fstore_one_worker", "duckdb_asof", "range_join_row_number", "fstore_ttl_30d"):
            assert entry[contender]["best_s"] > 0
        assert set(entry["sql_path_breakdown"]) == {"connect_s", "spine_load_s", "build_s", "query_and_fetch_s"}
    assert set(document["targets"]) == {"fstore_vs_duckdb", "range_join_vs_fstore"}
    assert all(isinstance(t["met"], bool) for t in document["targets"].values())


def test_pit_scaling_small_grid(home: Any, tmp_path: Path, capsys: Any) -> None:
    """``--scaling``: every (spine x history) point against DuckDB on the same data, results agreeing."""
    output = tmp_path / "scaling.json"
    _bench_module().main(["--home", str(home.root), "--scaling", "--spines", "300,1200", "--histories", "2000,6000",
                          "--entities", "150", "--commit-rows", "4000", "--repeat", "1", "--output", str(output)])
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document == json.loads(output.read_text())
    assert document["benchmark"] == "point_in_time_join_scaling"
    assert [(p["spine_rows"], p["history_rows"]) for p in document["grid"]] == [
        (300, 2000), (1200, 2000), (300, 6000), (1200, 6000)]
    assert document["all_agree"] is True
    for point in document["grid"]:
        assert point["results_agree"] is True and point["ratio_fstore_vs_duckdb"] > 0
        assert point["fstore"]["best_s"] > 0 and point["duckdb_asof"]["best_s"] > 0
        for forced in ("probe", "merge", "asof"):  # each strategy forced, on the same data, agreeing
            assert point[f"{forced}_agrees"] is True and point[f"ratio_{forced}_vs_duckdb"] > 0
        assert point["plan"] in ("probe", "merge", "asof")
    assert captured.err.count("[pit --scaling]") == 4  # each ratio printed as it is measured
    assert isinstance(document["targets"]["met"], bool)
