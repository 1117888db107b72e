"""The README's main job, at a small scale, against the session's server."""

from __future__ import annotations

import fstore
from fstore.demo import FEATURE_GROUPS, hidden_rows_seen, run_demo
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
        assert all(groups[name]["commits"] == before[name] for name in FEATURE_GROUPS)  # no empty commits
    with fstore.connect("fraud", "bob", home=home) as bob:
        versions = bob.conn.execute(
            "select count(*) from fstore.training_datasets where name = 'fraud_detection'"
        ).fetchone()[0]
        assert versions == 2
    # the demo's entity policy holds in every feature group, online table, training dataset,
    # online lookup and statistic: bob sees no row of a hidden account; alice sees them. At
    # this scale few accounts are PEPs: make two busy accounts PEPs, which hides them at once
    with fstore.connect("fraud", "alice", home=home) as alice:
        alice.conn.execute("update fraud.accounts set is_pep = true where account_id in "
                           "(select account_id from fraud.labels group by 1 order by count(*) desc limit 2)")
    seen = hidden_rows_seen(home, "bob")
    assert len(seen) >= 2 * len(FEATURE_GROUPS) and set(seen.values()) == {0}, seen
    assert sum(hidden_rows_seen(home, "alice").values()) > 0
