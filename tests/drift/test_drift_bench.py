"""bench/drift.py at a small scale against the test server: the JSON has the timings, the
ratio, and fstore's measures agree with numpy's (shape and agreement, no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.drift import main


def test_drift_bench_small_run(home: Any, tmp_path: Path, capsys: Any) -> None:
    output = tmp_path / "drift.json"
    main(["--home", str(home.root), "--rows", "20000", "--repeat", "2", "--sample-rows", "5000",
          "--output", str(output)])
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads(output.read_text())
    assert document["benchmark"] == "drift" and document["rows_per_window"] == 20000
    for key in ("fstore_seconds", "fstore_sampled_seconds", "numpy_seconds", "ratio", "sampled_ratio", "load_seconds"):
        assert isinstance(document[key], float) and document[key] > 0, key
    assert len(document["runs"]["fstore"]) == len(document["runs"]["fstore_sampled"]) == len(document["runs"]["numpy"]) == 2
    assert document["sampled_estimated"] is True  # 20000 rows per window, sampled to about 5000
    assert set(document["sampled_max_difference"]) == set(document["max_difference"])
    assert set(document["max_difference"]) == {"psi", "js_distance", "ks", "wasserstein", "new_values"}
    assert all(gap < 1e-9 for gap in document["max_difference"].values()), document["max_difference"]
    assert "channel" in document["drifted"]  # a fifth channel appears in the current window
