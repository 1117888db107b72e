"""bench/scale.py at a tiny scale: a single node (its own, temporary) against the cluster of
these tests, and one read replica against none; the document has the shape it promises and
the point-in-time answer is the same on both platforms."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from fstore import replica
from fstore.home import FstoreHome

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_scale_bench_small_run(cluster_home: FstoreHome, tmp_path: Path, capsys: Any) -> None:
    output = tmp_path / "scale.json"
    _bench_module().main(["--cluster-home", str(cluster_home.root), "--workers", "2", "--rows", "5000",
                          "--spine", "500", "--history", "5000", "--entities", "200", "--commit-rows", "5000",
                          "--rounds", "20", "--warmup", "2", "--batch", "10", "--threads", "2", "--seconds", "1",
                          "--output", str(output)])
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads(output.read_text())
    assert (document["benchmark"], document["rows"], document["spine"], document["workers"]) == ("scale", 5000, 500, 2)
    for name, nodes in (("single", 1), ("cluster", 3)):
        entry = document[name]
        assert entry["nodes"] == nodes
        assert entry["commit"]["rows_committed"] == 5000 and entry["commit"]["commit_s"] > 0
        assert entry["pit"]["rows_out"] == 500 and entry["pit"]["pit"]["best_s"] > 0
        assert entry["pit"]["explain_lateral_join"] and entry["pit"]["strategies"][0]["strategy"] in ("probe", "merge")
        for call in ("fstore_1", "fstore_10"):
            stats = entry["online"]["latency"][call]
            assert 0 < stats["p50_ms"] <= stats["p99_ms"]
        assert entry["online"]["explain_1_key"]
        work = {w["node"]: w for w in entry["node_work"] if "node" in w}
        assert set(work) == ({"single"} if name == "single" else {"coordinator", "worker1", "worker2"})
        assert sum(w["n_tup_ins"] for w in work.values()) >= 5000 + 5000  # the commit and the history, somewhere
    assert document["pit_results_identical"] is True
    assert all(v is None or v > 0 for v in document["ratios_cluster_vs_single"].values())
    reads = document["single"]["reads_per_second"]
    assert reads["no_replica"]["served_by"] == {"primary": reads["no_replica"]["reads"], "replica failures": 0}
    assert reads["one_replica"]["served_by"]["replica 1"] == reads["one_replica"]["reads"] > 0
    assert document["ratio_reads_per_s_one_replica_vs_none"] > 0
    assert replica.replicas(cluster_home) == []  # the bench's replica was on its own single node
    # on the cluster the bench's groups are distributed by their key: shards on the workers, and
    # a lookup of one key is a router query (one task, one shard)
    tables = next(w["citus_tables"] for w in document["cluster"]["node_work"] if "citus_tables" in w)
    distributed = {t["table"].split(".")[1]: t for t in tables if t["type"] == "distributed"}
    assert {"bulk__v1", "hist__v1", "serving__v1", "serving__v1__online"} <= set(distributed)
    assert {distributed[t]["distribution_column"] for t in ("bulk__v1", "hist__v1")} == {"entity_id"}
    assert distributed["serving__v1__online"]["distribution_column"] == "account_id"
    assert any("Task Count: 1" in line for line in document["cluster"]["online"]["explain_1_key"])
    assert not any("Task Count" in line for line in document["single"]["online"]["explain_1_key"])
