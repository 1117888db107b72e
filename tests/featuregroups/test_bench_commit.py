"""bench/commit.py at a small size against the session's server: the JSON has the
timings, the ratio and a commit that really holds every row (shape only, no timing checks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_commit_bench_small_run(home) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "commit.py"), "--rows", "5000", "--entities", "100",
         "--home", str(home.root), "--python", "--repeat", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 5000 and report["entities"] == 100
    for key in ("ctas_seconds", "commit_seconds", "statistics_only_seconds", "ratio", "load_source_seconds",
                "ctas_plus_index_seconds", "floor_ratio", "ratio_to_floor"):
        assert isinstance(report[key], float) and report[key] > 0, key
    assert report["ctas_plus_index_seconds"] > report["ctas_seconds"]
    steps = report["runs"][0]["commit_steps_seconds"]  # into empty tables: the bulk path and its skip scan
    assert steps["offline_append_detail"].startswith("bulk") and steps["online_upsert_detail"] == "skip scan"
    assert report["target_ratio"] == 2.0 and len(report["runs"]) == 2
    assert report["commit"]["rows"] == 5000 and report["commit"]["online_rows"] == 100
    assert report["python_insert"]["rows"] == 5000 and report["python_insert"]["online_rows"] == 100
    assert report["bytes"]["offline_with_index"] > report["bytes"]["ctas_copy"] > 0
    assert report["server"]["server_version"].startswith("15")
