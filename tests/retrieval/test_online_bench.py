"""bench/online.py at a small scale: it runs against the test server and reports the shape it promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench" / "online.py"


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_online", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_online_bench_small_run(home: Any, tmp_path: Path, capsys: Any) -> None:
    output = tmp_path / "online.json"
    _bench_module().main(["--home", str(home.root), "--entities", "500", "--rounds", "20", "--warmup", "2",
                          "--batch", "10", "--output", str(output)])
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads(output.read_text())
    assert (document["benchmark"], document["entities"], document["rounds"], document["batch"]) == \
        ("online", 500, 20, 10)
    contenders = {"raw_1", "raw_binary_1", "fstore_1", "fstore_dict_1", "raw_10", "raw_binary_10", "fstore_10"}
    for label in ("rls_on", "rls_off"):
        entry = document["results"][label]
        assert set(entry) == contenders | {"ratios"}
        for name in contenders:
            assert set(entry[name]) == {"p50_ms", "p99_ms", "mean_ms"}
            assert 0 < entry[name]["p50_ms"] <= entry[name]["p99_ms"]
        assert all(ratio > 0 for ratio in entry["ratios"].values())
    multi = document["results"]["groups_4"]
    assert document["groups"] == 4
    assert set(multi) == {"raw_4groups_1", "raw_binary_4groups_1", "fstore_4groups_1", "fstore_dict_4groups_1",
                          "ratios"}
    assert set(multi["ratios"]) == {f"{form}_4groups_1_vs_{raw}_{q}" for form in ("fstore", "fstore_dict")
                                    for raw in ("raw", "raw_binary") for q in ("p50", "p99")}
    assert all(ratio > 0 for ratio in multi["ratios"].values())
    assert set(document["targets_met"]) == {"p99_1_entity", "p99_10_entities", "within_1.3x_raw_p50",
                                            "4_groups_within_1.3x_raw"}
    assert all(isinstance(v, bool) for v in document["targets_met"].values())
