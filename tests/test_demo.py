"""The README's main job, at a small scale, against the session's server."""

from __future__ import annotations

import fstore
from fstore.demo import FEATURE_GROUPS, run_demo
from fstore.home import FstoreHome


def test_demo_runs_end_to_end_and_reruns_cleanly(home: FstoreHome) -> None:
    run_demo(home, transactions=3_000)
    with fstore.connect("fraud", "alice", home=home) as alice:
        groups = {g["name"]: g for g in alice.list_feature_groups() if g["project"] == "fraud"}
        assert set(FEATURE_GROUPS) <= set(groups)
        assert groups["account_activity"]["rows"] == 3_000
        before = {name: g["commits"] for name, g in groups.items()}
    assert (home.root / "demo" / "fraud_detection.parquet").exists()
    assert (home.root / "demo" / "fraud_detection.tfrecord").exists()
    run_demo(home, transactions=3_000)  # a second run reuses everything and adds no rows
    with fstore.connect("fraud", "alice", home=home) as alice:
        groups = {g["name"]: g for g in alice.list_feature_groups() if g["project"] == "fraud"}
        assert groups["account_activity"]["rows"] == 3_000
        assert all(groups[name]["commits"] > before[name] for name in FEATURE_GROUPS)
    with fstore.connect("fraud", "bob", home=home) as bob:
        versions = bob.conn.execute(
            "select count(*) from fstore.training_datasets where name = 'fraud_detection'"
        ).fetchone()[0]
        assert versions == 2
