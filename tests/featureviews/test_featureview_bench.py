"""bench/featureview.py at a small scale against the test server: the JSON has the serving
figures of both contenders, their ratios, the build ratio and the targets (shape, and the
view's vectors equal lookups plus numpy; no timing checks)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench" / "featureview.py"


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_featureview", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_featureview_bench_small_run(home: Any, tmp_path: Path, capsys: Any) -> None:
    output = tmp_path / "featureview.json"
    _bench_module().main(["--home", str(home.root), "--entities", "500", "--rounds", "20", "--warmup", "2",
                          "--batch", "10", "--spine", "1000", "--builds", "1", "--output", str(output)])
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads(output.read_text())
    assert (document["benchmark"], document["groups"], document["transformations"]) == ("featureview", 4, 6)
    serving = document["serving"]
    for name in ("lookup_numpy_1", "view_1", "lookup_numpy_10", "view_10", "view_1_log_1pct", "view_1_log_all"):
        assert set(serving[name]) == {"p50_ms", "p99_ms", "mean_ms"}
        assert 0 < serving[name]["p50_ms"] <= serving[name]["p99_ms"]
    assert all(ratio > 0 for ratio in serving["ratios"].values()) and len(serving["ratios"]) == 8
    assert serving["logged_vectors"]["log_all"] == 22  # every measured and warm-up call of the logging twin
    assert serving["max_abs_difference"] < 1e-9
    build = document["build"]
    assert build["spine_rows"] == 1000 and build["ratio"] > 0 and len(build["runs"]["view"]) == 1
    assert set(document["targets_met"]) == {"view_1_within_1.2x", "view_10_within_1.2x", "p99_1_entity_under_1ms",
                                            "build_within_1.1x"}
    assert all(isinstance(v, bool) for v in document["targets_met"].values())
