"""The RLS cost benchmark runs end to end at a small size (figures are not checked:
tests never judge wall-clock time, only that the run measured what it says)."""

from __future__ import annotations

import json
import numbers

from bench.rls import main
from fstore.home import FstoreHome


def test_rls_bench_small_run(home: FstoreHome, capsys) -> None:
    assert main(["--home", str(home.root), "--rows", "2000", "--lookups", "200", "--scans", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"] == 2000 and result["full_scan"]["rows_counted"] == 2000
    assert result["as"].endswith("__sam")  # measured as the project's Data Scientist
    assert result["tables"]["rls"] == {"rls_enabled": True, "rls_forced": True, "policies": 2}
    assert result["tables"]["plain"]["rls_enabled"] is False and result["tables"]["plain"]["rls_forced"] is False
    for table in ("rls", "plain", "plain_where"):
        assert set(result["pk_lookup"][table]) == {"p50_ms", "p99_ms", "mean_ms"}
        assert all(value > 0 for value in result["pk_lookup"][table].values())
        assert result["full_scan"][table]["median_ms"] > 0
    assert set(result["ratios"]) == {"lookup_p50", "lookup_p99", "lookup_mean", "scan_median"}
    for name, ratio in result["ratios"].items():
        assert isinstance(ratio, numbers.Real) and ratio > 0, name
        assert result["within_target"][name] is (ratio <= result["target_ratio"])
    assert set(result["ratios_vs_same_predicate_without_rls"]) == {"lookup_p50", "scan_median"}
    assert all(isinstance(r, numbers.Real) and r > 0 for r in result["ratios_vs_same_predicate_without_rls"].values())
