"""bench/export.py at a small scale: it runs against the test server and reports the shape it promises."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench" / "export.py"


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_export", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_export_bench_small_run(home: Any, tmp_path: Path, capsys: Any) -> None:
    output = tmp_path / "export.json"
    _bench_module().main(["--home", str(home.root), "--rows", "3000", "--entities", "100",
                          "--formats", "parquet,tfrecord,npy,tfrecord_numpy", "--output", str(output)])
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads(output.read_text())
    assert document["benchmark"] == "export" and document["rows"] == 3000
    assert set(document["best"]) == {"bare", "parquet", "tfrecord", "npy", "tfrecord_numpy", "tf_example"}
    for name, measured in document["best"].items():
        assert measured["contender"] == name and measured["rows"] == 3000
        assert measured["seconds"] > 0 and measured["peak_rss_mb"] >= measured["rss_before_mb"] > 0
        assert (measured["bytes"] > 0) == (name != "bare")
    assert set(document["ratios"]) == {"parquet_vs_bare", "tfrecord_vs_bare", "npy_vs_bare", "tfrecord_numpy_vs_bare",
                                       "tfrecord_speedup_vs_tf_example"}
    # why fstore writes TFRecord itself: the same records as tf.train.Example + TFRecordWriter, faster
    assert document["tfrecord_records_identical"] == {"records_compared": 3000, "identical": True}
    assert document["ratios"]["tfrecord_speedup_vs_tf_example"] > 1
    assert set(document["targets_met"]) == {"peak_memory_under_1GB", "parquet_within_1.3x_bare",
                                            "tfrecord_within_2x_bare"}
    assert document["tfrecord_encoder"] == "native"
    assert all(isinstance(v, bool) for v in document["targets_met"].values())
