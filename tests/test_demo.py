"""The README's main job, at a small scale, against the session's server."""

from __future__ import annotations

import re
from pathlib import Path

import fstore
from fstore.demo import FEATURE_GROUPS, VIEW, VIEW_TRANSFORMS, hidden_rows_seen, run_demo, show_sensitive_feature
from fstore.home import FstoreHome
from tests.browser import assert_not_blank, page_attributes, screenshot


def test_demo_runs_end_to_end_and_reruns_cleanly(home: FstoreHome, tmp_path: Path) -> None:
    run_demo(home, transactions=3_000)
    with fstore.connect("fraud", "alice", home=home) as alice:
        groups = {g["name"]: g for g in alice.list_feature_groups() if g["project"] == "fraud"}
        assert set(FEATURE_GROUPS) <= set(groups)
        assert groups["account_activity"]["rows"] == 3_000
        before = {name: g["commits"] for name, g in groups.items()}
    assert (home.root / "demo" / "fraud_detection.parquet").exists()
    assert (home.root / "demo" / "fraud_detection.tfrecord").exists()
    # the governance step's drift report, looked at in a real browser: images loaded, no errors, not blank
    page = home.root / "demo" / "drift.html"
    text = page.read_text()
    assert "tx_amount_7d" in text and "statistics by country" in text
    shown = page_attributes(page, tmp_path)
    assert shown.get("data-images-loaded") == "true" and shown.get("data-errors") == "0", shown
    assert int(shown.get("data-images", "0")) == 2  # the two features of the demo's drift
    assert_not_blank(screenshot(page, tmp_path / "demo-drift.png", tmp_path))
    run_demo(home, transactions=3_000)  # a second run reuses everything and adds no rows
    with fstore.connect("fraud", "alice", home=home) as alice:
        groups = {g["name"]: g for g in alice.list_feature_groups() if g["project"] == "fraud"}
        assert groups["account_activity"]["rows"] == 3_000
        assert all(groups[name]["commits"] == before[name] for name in FEATURE_GROUPS)  # no empty commits
    with fstore.connect("fraud", "bob", home=home) as bob:
        versions = bob.conn.execute(
            "select count(*) from fstore.training_datasets where name = 'fraud_detection_v1'"
        ).fetchone()[0]
        assert versions == 2  # one feature view, reused; each run builds its dataset's next version
        # fraud_detection is a feature view: a passed amount, scalers, fitted on each dataset's train split
        [view] = bob.list_feature_views(VIEW)
        assert view.passed_features == [{"name": "amount", "type": "double precision"}]
        assert {t["fn"] for t in view.transformations.values()} >= {"standard_scaler", "robust_scaler"}
        assert set(view.transformations) == set(VIEW_TRANSFORMS)
        assert [f["fitted_on"] for f in view.fits()] == ["train", "train"]
        vector = view.get_feature_vector({"account_id": 1}, {"amount": 250.0}, return_type="dict")
        assert list(vector) == view.columns and "amount" in vector and vector["amount"] is not None
    with fstore.connect("fraud", "alice", home=home) as alice:
        report = alice.feature_usage(report=True)  # what the demo's last step prints
        assert report["features_used"] == len(view.features) and report["views"] == 1
        assert report["training_columns"] >= 2 * len(view.features)
    # the demo's entity policy holds in every feature group, online table, training dataset,
    # online lookup and statistic: bob sees no row of a hidden account; alice sees them. At
    # this scale few accounts are PEPs: make two busy accounts PEPs, which hides them at once
    with fstore.connect("fraud", "alice", home=home) as alice:
        alice.conn.execute("update fraud.accounts set is_pep = true where account_id in "
                           "(select account_id from fraud.labels group by 1 order by count(*) desc limit 2)")
    seen = hidden_rows_seen(home, "bob")
    assert len(seen) >= 2 * len(FEATURE_GROUPS) and set(seen.values()) == {0}, seen
    assert sum(hidden_rows_seen(home, "alice").values()) > 0
    # is_pep is sensitive from the dbt YAML's meta: bob is refused it by name
    refusal = show_sensitive_feature(home)
    assert "is_pep" in refusal and "sensitive" in refusal, refusal


def test_the_readme_feature_view_runs_as_written_on_the_demo_data(home: FstoreHome) -> None:
    """The README's feature view, from definition to training to serving, as a new user pastes it
    (after the demo has loaded fraud's data), and the same vector from SQL."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Feature views"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) < 15
    run_demo(home, transactions=3_000)  # a no-op when the test above ran: it reuses everything
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 -- the README's own code
    fv = scope["fv"]
    vector = fv.get_feature_vector({"account_id": 2}, passed_features={"amount": 120.5})
    sql = re.search(r"```sql\n(.*?)```", section, re.S).group(1).strip().rstrip(";")
    with fstore.connect("fraud", "bob", home=home) as bob:
        assert bob.conn.execute(sql.replace('"account_id": 42', '"account_id": 2')).fetchone()[0] == vector
    assert len(vector) == len(fv.columns) and fv.last_found is True
