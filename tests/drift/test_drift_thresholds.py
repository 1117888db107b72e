"""Wasserstein-1 against numpy, per-feature thresholds on any measure (given and stored per
feature group, and which one applies), clear errors for unknown features and measures, and
``fstore drift --fail-on-drift`` exiting 1 only when something drifted."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fstore import InvalidInput, NotFound
from fstore.cli import main
from tests.drift.test_drift import drifting, reference_numeric  # noqa: F401 (fixture)


def test_wasserstein_agrees_with_numpy_in_the_features_units(alice, drifting) -> None:
    fg, frames, commits = drifting
    report = alice.drift("payments", baseline=commits[0], current=commits[2])
    by_name = {f.feature: f for f in report.features}
    for name in ("amount", "tx_count"):
        expected = reference_numeric(frames[0][name].to_numpy(float), frames[2][name].to_numpy(float))
        assert by_name[name].wasserstein == pytest.approx(expected["wasserstein"], rel=1e-9, abs=1e-12), name
    # a +0.5 shift of a unit normal moves W1 by about 0.5, in the feature's units
    assert 0.4 < by_name["amount"].wasserstein < 0.6
    assert by_name["channel"].wasserstein is None  # categorical: no distance on values
    same = alice.drift("payments", baseline=commits[0], current=commits[1], features=["amount"])
    assert same.features[0].wasserstein < 0.1


def test_thresholds_on_any_measure_per_feature_and_for_all(alice, drifting) -> None:
    _, _, commits = drifting
    # PSI alone (the default 0.2): amount and channel drift
    default = alice.drift("payments", baseline=commits[0], current=commits[2])
    assert default.drifted == ["amount", "channel"]
    assert {f.feature: f.tripped for f in default.features}["amount"] == ["psi"]
    assert default.features[0].thresholds == {"psi": 0.2}
    # no PSI limit for amount, but a Wasserstein one it passes: it no longer drifts
    relaxed = alice.drift("payments", baseline=commits[0], current=commits[2],
                          thresholds={"amount": {"psi": 100, "wasserstein": 5}})
    assert relaxed.drifted == ["channel"]
    amount = relaxed.features[0]
    assert amount.thresholds == {"psi": 100, "wasserstein": 5} and amount.tripped == [] and amount.drifted is False
    # a Wasserstein limit it exceeds: it drifts by that measure only
    strict = alice.drift("payments", baseline=commits[0], current=commits[2],
                         thresholds={"amount": {"psi": 100, "wasserstein": 0.3}, "*": {"new_values": 1}})
    by_name = {f.feature: f for f in strict.features}
    assert by_name["amount"].tripped == ["wasserstein"]
    assert by_name["channel"].tripped == ["psi", "new_values"]  # "*" applies to every feature
    assert by_name["tx_count"].thresholds == {"psi": 0.2, "new_values": 1}
    # a measure that does not apply to a feature does not decide it (new_values is categorical only)
    assert "new_values" not in by_name["amount"].tripped


def test_stored_thresholds_apply_under_the_calls(alice, bob, drifting) -> None:
    fg, _, commits = drifting
    stored = fg.set_drift_thresholds({"amount": {"psi": 100, "ks": 0.5}, "*": {"js_distance": 0.9}})
    assert stored == {"amount": {"psi": 100, "ks": 0.5}, "*": {"js_distance": 0.9}}
    assert alice.get_feature_group("payments").drift_thresholds == stored  # in the catalog
    # a Data Scientist's drift applies the stored defaults too
    report = bob.drift("payments", baseline=commits[0], current=commits[2])
    by_name = {f.feature: f for f in report.features}
    assert by_name["amount"].thresholds == {"psi": 100, "ks": 0.5, "js_distance": 0.9}
    assert by_name["amount"].drifted is False and by_name["channel"].drifted  # channel: psi 0.2 still
    # the call's thresholds win, measure by measure, over the stored ones
    report = bob.drift("payments", baseline=commits[0], current=commits[2], thresholds={"amount": {"ks": 0.01}})
    assert report.features[0].thresholds == {"psi": 100, "ks": 0.01, "js_distance": 0.9}
    assert report.features[0].tripped == ["ks"]
    fg.set_drift_thresholds(None)
    assert alice.get_feature_group("payments").drift_thresholds == {}
    assert bob.drift("payments", baseline=commits[0], current=commits[2]).drifted == ["amount", "channel"]


def test_bad_thresholds_are_named(alice, drifting) -> None:
    fg, _, commits = drifting
    cases = [({"amunt": {"psi": 0.1}}, "amunt"), ({"amount": {"wasserstien": 1}}, "wasserstien"),
             ({"amount": {"psi": -1}}, "amount.psi"), ({"amount": {"psi": "x"}}, "amount.psi"),
             ({"account_id": {"psi": 0.1}}, "account_id"), ({"amount": 0.1}, "amount")]
    for thresholds, named in cases:
        with pytest.raises((InvalidInput, NotFound), match=named):
            alice.drift("payments", baseline=commits[0], current=commits[2], thresholds=thresholds)
        with pytest.raises((InvalidInput, NotFound), match=named):
            fg.set_drift_thresholds(thresholds)
    assert alice.get_feature_group("payments").drift_thresholds == {}  # nothing stored by a refusal


def test_cli_limits_and_fail_on_drift(home, alice, drifting) -> None:
    _, _, commits = drifting
    runner = CliRunner()
    bob, owner_role = f"{alice.project}__bob", f"{alice.project}__alice"
    base = ["--home", str(home.root), "drift", "payments", "--baseline", f"commit={commits[0]}", "--as", bob]
    drifted = runner.invoke(main, [*base, "--current", f"commit={commits[2]}", "--fail-on-drift", "--json"])
    assert drifted.exit_code == 1, drifted.output
    document = json.loads(drifted.stdout)
    assert {f["feature"] for f in document["features"] if f["drifted"]} == {"amount", "channel"}
    quiet = runner.invoke(main, [*base, "--current", f"commit={commits[1]}", "--fail-on-drift"])
    assert quiet.exit_code == 0, quiet.output
    assert "none" in quiet.output
    # --limit relaxes amount and channel: nothing drifted, exit 0
    relaxed = runner.invoke(main, [*base, "--current", f"commit={commits[2]}", "--fail-on-drift",
                                   "--limit", "*.psi=100", "--json"])
    assert relaxed.exit_code == 0, relaxed.output
    assert all(f["thresholds"] == {"psi": 100} for f in json.loads(relaxed.stdout)["features"])
    wrong = runner.invoke(main, [*base, "--current", f"commit={commits[2]}", "--limit", "amount.psi"])
    assert wrong.exit_code == 2 and "FEATURE.MEASURE=VALUE" in wrong.output
    # stored from the CLI by the Data Owner, then applied to the Data Scientist's drift
    owner = ["--home", str(home.root), "fg", "set-drift-thresholds", "payments"]
    stored = runner.invoke(main, [*owner, "--limit", "amount.psi=100", "--limit", "channel.psi=100",
                                  "--as", owner_role, "--json"])
    assert stored.exit_code == 0, stored.output
    assert json.loads(stored.stdout)["drift_thresholds"] == {"amount": {"psi": 100}, "channel": {"psi": 100}}
    now = runner.invoke(main, [*base, "--current", f"commit={commits[2]}", "--fail-on-drift"])
    assert now.exit_code == 0, now.output
    cleared = runner.invoke(main, [*owner, "--clear", "--as", owner_role])
    assert cleared.exit_code == 0 and "cleared" in cleared.output
    refused = runner.invoke(main, [*owner, "--limit", "amount.psi=1", "--as", bob])
    assert refused.exit_code == 1 and "Data Owner" in refused.output, refused.output


def test_sampled_windows_give_estimates_and_say_so(alice, drifting) -> None:
    _, _, commits = drifting
    exact = alice.drift("payments", baseline=commits[0], current=commits[2])
    sampled = alice.drift("payments", baseline=commits[0], current=commits[2], sample_rows=1500)
    assert all(f.estimated for f in sampled.features) and not any(f.estimated for f in exact.features)
    for e, s in zip(exact.features, sampled.features):
        assert (s.feature, s.baseline_rows, s.current_rows) == (e.feature, 4000, 4000)  # real window sizes
    amount_exact, amount_sampled = exact.features[0], sampled.features[0]
    assert amount_sampled.ks == pytest.approx(amount_exact.ks, abs=0.08)  # a two-sample KS on ~1500 rows each
    assert amount_sampled.wasserstein == pytest.approx(amount_exact.wasserstein, abs=0.15)
    assert "channel" in sampled.drifted  # a new category in a fifth of the rows shows in any sample
    # windows no larger than sample_rows are measured exactly
    whole = alice.drift("payments", baseline=commits[0], current=commits[2], sample_rows=4000)
    assert not any(f.estimated for f in whole.features)
    assert [(f.psi, f.ks) for f in whole.features] == [(f.psi, f.ks) for f in exact.features]
    with pytest.raises(InvalidInput, match="sample_rows must be at least 1000"):
        alice.drift("payments", baseline=commits[0], current=commits[2], sample_rows=10)


def test_one_pass_twice_in_one_transaction_and_overlapping_windows(alice, drifting) -> None:
    """The pass's temporary table is the function's own: two calls in one transaction, and a row
    in both windows counts in both."""
    _, _, commits = drifting
    with alice.conn.transaction():
        first = alice.drift("payments", baseline={"up_to_commit": commits[1]}, current={"commits": commits[1:]})
        second = alice.drift("payments", baseline={"up_to_commit": commits[1]}, current={"commits": commits[1:]})
    assert [(f.psi, f.ks) for f in first.features] == [(f.psi, f.ks) for f in second.features]
    assert first.features[0].baseline_rows == first.features[0].current_rows == 8000  # commit 2 in both
