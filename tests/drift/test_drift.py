"""Feature drift between two windows of a feature group's rows: every measure checked
against numpy on the same rows; windows by commit, time and training dataset; clear
errors; and row-level security deciding what a Data Scientist's windows hold."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner

import fstore
from fstore import InvalidInput
from fstore.cli import main
from bench.drift import categorical_measures, numeric_measures
from fstore.policies import RowPolicy, apply_policies

T0 = pd.Timestamp("2024-01-01", tz="UTC")
BINS = 10


def frame(rng: np.random.Generator, rows: int, *, shift: float, day: int, channels: list[str],
          weights: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "account_id": np.arange(rows, dtype="int64") % 200,
        "event_time": T0 + pd.Timedelta(days=day) + pd.to_timedelta(np.arange(rows), unit="s"),
        "amount": np.where(rng.random(rows) < 0.05, np.nan, rng.normal(shift, 1.0, rows)),
        "tx_count": rng.integers(0, 5, rows).astype("int64"),
        "channel": rng.choice(channels, rows, p=weights),
    })


FEATURES = {"account_id": "bigint", "amount": "double precision", "tx_count": "bigint", "channel": "text"}


@pytest.fixture
def drifting(alice):
    """Commit 1: the baseline; commit 2: the same distributions (no drift); commit 3:
    amount shifted by +0.5 and a new channel."""
    rng = np.random.default_rng(3)
    fg = alice.create_feature_group("payments", 1, keys=["account_id"], features=FEATURES)
    same = dict(channels=["web", "app", "atm"], weights=[0.6, 0.3, 0.1])
    frames = [frame(rng, 4000, shift=0.0, day=0, **same), frame(rng, 4000, shift=0.0, day=10, **same),
              frame(rng, 4000, shift=0.5, day=20, channels=["web", "app", "atm", "crypto"],
                    weights=[0.4, 0.3, 0.1, 0.2])]
    commits = [fg.insert(f).id for f in frames]
    return fg, frames, commits


def reference_numeric(base: np.ndarray, cur: np.ndarray) -> dict[str, float]:
    """PSI, JS distance and KS as fstore.feature_drift defines them, in numpy (bench/drift.py's)."""
    return numeric_measures(base, cur, BINS)


def reference_categorical(base: pd.Series, cur: pd.Series) -> dict[str, float]:
    return categorical_measures(base.to_numpy(dtype=object), cur.to_numpy(dtype=object))


def test_every_measure_agrees_with_numpy(alice, drifting) -> None:
    fg, frames, commits = drifting
    report = alice.drift("payments", baseline=commits[0], current=commits[2])
    by_name = {f.feature: f for f in report.features}
    assert list(by_name) == ["amount", "tx_count", "channel"]
    base, cur = frames[0], frames[2]

    amount = by_name["amount"]
    expected = reference_numeric(base["amount"].to_numpy(), cur["amount"].to_numpy())
    for measure, value in expected.items():
        assert getattr(amount, measure) == pytest.approx(value, abs=1e-9), measure
    assert amount.kind == "numeric" and amount.baseline_rows == amount.current_rows == 4000
    assert amount.baseline_null_rate == pytest.approx(base["amount"].isna().mean())
    assert amount.current_mean == pytest.approx(cur["amount"].mean())
    assert amount.drifted and amount.psi > 0.2  # a half-sigma shift

    counts = by_name["tx_count"]  # few distinct values: equal quantile edges are merged
    expected = reference_numeric(base["tx_count"].to_numpy(float), cur["tx_count"].to_numpy(float))
    for measure, value in expected.items():
        assert getattr(counts, measure) == pytest.approx(value, abs=1e-9), measure

    channel = by_name["channel"]
    expected = reference_categorical(base["channel"], cur["channel"])
    for measure, value in expected.items():
        assert getattr(channel, measure) == pytest.approx(value, abs=1e-9), measure
    assert channel.kind == "categorical" and channel.new_values == 1 and channel.ks is None
    assert report.drifted == ["amount", "channel"]


def test_the_same_distribution_does_not_drift(alice, drifting) -> None:
    _, _, commits = drifting
    report = alice.drift("payments", baseline={"commit": commits[0]}, current={"commit": commits[1]},
                         features=["channel", "amount"])
    assert [f.feature for f in report.features] == ["channel", "amount"]  # in the order asked
    assert report.drifted == []
    assert all(f.psi < 0.02 for f in report.features)


def test_windows_by_time_and_by_commits_agree(alice, drifting) -> None:
    _, _, commits = drifting
    by_time = alice.drift("payments", baseline=(T0, T0 + pd.Timedelta(days=15)),
                          current=(T0 + pd.Timedelta(days=15), None))
    by_commits = alice.drift("payments", baseline={"commits": commits[:2]}, current={"after_commit": commits[1]})
    implied = alice.drift("payments", baseline={"up_to_commit": commits[1]})  # current: what came after
    assert by_time.features[0].baseline_rows == 8000 and by_time.features[0].current_rows == 4000
    for other in (by_commits, implied):
        assert [(f.feature, f.psi, f.ks) for f in other.features] == \
            [(f.feature, f.psi, f.ks) for f in by_time.features]



def test_drift_since_a_training_dataset_was_made(alice) -> None:
    """The baseline is what the dataset saw of the group; the current window what came after."""
    rng = np.random.default_rng(5)
    fg = alice.create_feature_group("scored", 1, keys=["account_id"], features=FEATURES)
    seen = fg.insert(frame(rng, 3000, shift=0.0, day=0, channels=["web", "app"], weights=[0.5, 0.5])).id
    spine = pd.DataFrame({"account_id": [1, 2], "event_time": [T0 + pd.Timedelta(days=1)] * 2})
    alice.create_training_dataset("before_shift", spine, ["scored:amount"])

    unchanged = alice.drift("scored", baseline=alice.training_dataset("before_shift"))  # nothing committed since
    assert unchanged.features == [] and unchanged.drifted == [] and unchanged.current == {"after_commit": seen}
    assert unchanged.note == (f"nothing was committed to {fg.project}.scored@1 after commit {seen} "
                              "(the baseline's last): no drift to measure yet")
    fg.insert(frame(rng, 3000, shift=1.0, day=5, channels=["web", "app"], weights=[0.5, 0.5]))

    since = alice.drift("scored", baseline=alice.training_dataset("before_shift"))
    assert since.note is None
    assert since.baseline == {"up_to_commit": seen} and since.current == {"after_commit": seen}
    assert since.drifted == ["amount"]
    with pytest.raises(InvalidInput, match="does not use feature group"):
        alice.drift("scored", baseline=_dataset_of_other_group(alice))


def _dataset_of_other_group(alice):
    other = alice.create_feature_group("unrelated", 1, keys=["account_id"], features=FEATURES)
    other.insert(frame(np.random.default_rng(6), 10, shift=0.0, day=0, channels=["web"], weights=[1.0]))
    spine = pd.DataFrame({"account_id": [1], "event_time": [T0 + pd.Timedelta(days=1)]})
    return alice.create_training_dataset("unrelated_set", spine, ["unrelated:amount"])


def test_bad_windows_and_features_are_named(alice, drifting) -> None:
    _, _, commits = drifting
    with pytest.raises(InvalidInput, match="feature group .*payments@1 has no feature nope"):
        alice.drift("payments", baseline=commits[0], current=commits[1], features=["nope"])
    with pytest.raises(InvalidInput, match="has no feature account_id"):  # a key is not a feature
        alice.drift("payments", baseline=commits[0], current=commits[1], features=["account_id"])
    with pytest.raises(InvalidInput, match="baseline: unknown key 'since'"):
        alice.drift("payments", baseline={"since": "2024-01-01"}, current=commits[1])
    with pytest.raises(InvalidInput, match="current window .*commits must be integers"):
        alice.drift("payments", baseline=commits[0], current={"commits": ["x"]})
    with pytest.raises(InvalidInput, match="the current window .* holds no rows"):
        alice.drift("payments", baseline=commits[0], current={"after_commit": commits[2]})
    with pytest.raises(InvalidInput, match="give the current window too"):
        alice.drift("payments", baseline=commits[0])
    with pytest.raises(InvalidInput, match="bins must be between 2 and 1000"):
        alice.drift("payments", baseline=commits[0], current=commits[1], bins=1)


def test_a_data_scientist_measures_drift_over_the_rows_they_may_read(fraud, alice, bob, drifting, home) -> None:
    _, frames, commits = drifting
    owner = alice.drift("payments", baseline=commits[0], current=commits[2])
    with fraud.connect("alice") as conn:  # Data Scientists see only the even accounts of this group
        apply_policies(conn, fraud.name, [RowPolicy(name="even_accounts", table="payments__v1",
                                                     roles=("data_scientist",), using="account_id % 2 = 0")])
    scientist = bob.drift("payments", baseline=commits[0], current=commits[2])
    assert scientist.features[0].baseline_rows == int((frames[0]["account_id"] % 2 == 0).sum()) == 2000
    assert owner.features[0].baseline_rows == 4000
    expected = reference_numeric(frames[0].loc[frames[0]["account_id"] % 2 == 0, "amount"].to_numpy(),
                                 frames[2].loc[frames[2]["account_id"] % 2 == 0, "amount"].to_numpy())
    assert scientist.features[0].psi == pytest.approx(expected["psi"], abs=1e-9)


def test_another_project_may_not_measure_drift_without_a_share(make_project, drifting, home) -> None:
    fg, _, commits = drifting
    other = make_project(owner="olga", scientists=["dave"], prefix="mkt")
    with fstore.connect(other.name, "dave", home=home) as dave:
        with pytest.raises(fstore.NotFound):
            dave.drift(f"{fg.project}.payments", baseline=commits[0], current=commits[2])
        # straight in SQL with dave's own certificate: the group is not visible, its table not readable
        with pytest.raises(psycopg.errors.NoDataFound):
            dave.conn.execute("select * from fstore.feature_drift(%s, %s, %s)",
                              (fg.id, json.dumps({"commit": commits[0]}), json.dumps({"commit": commits[2]})))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            dave.conn.execute(f'select count(*) from "{fg.project}".payments__v1')


def test_cli_drift(fraud, home, drifting) -> None:
    _, _, commits = drifting
    args = ["--home", str(home.root), "drift", "payments", "--baseline", f"commit={commits[0]}",
            "--current", f"after_commit={commits[1]}", "--as", fraud.role("bob")]
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "amount" in table.output and "drifted" in table.output
    as_json = CliRunner().invoke(main, [*args, "--json"])
    report = json.loads(as_json.output)
    assert [f["feature"] for f in report["features"] if f["drifted"]] == ["amount", "channel"]
    refused = CliRunner().invoke(main, [*args[:-2], "--baseline", "since=1", "--as", fraud.role("bob")])
    assert refused.exit_code != 0 and "since" in refused.output


def test_vectors_drift_by_their_norm_and_times_by_null_rate(alice) -> None:
    rng = np.random.default_rng(8)
    fg = alice.create_feature_group("embedded", 1, keys=["account_id"],
                                    features={"account_id": "bigint", "embedding": "vector(2)",
                                              "last_login": "timestamptz"})

    def rows(n: int, scale: float, day: int, missing: float) -> pd.DataFrame:
        vectors = rng.normal(0, scale, (n, 2))
        logins = [None if rng.random() < missing else T0 + pd.Timedelta(days=day) for _ in range(n)]
        return pd.DataFrame({"account_id": np.arange(n, dtype="int64"),
                             "event_time": T0 + pd.Timedelta(days=day) + pd.to_timedelta(np.arange(n), unit="s"),
                             "embedding": list(vectors.astype("float32")), "last_login": pd.Series(logins, dtype=object)}), vectors

    (first, v1), (second, v2) = rows(1000, 1.0, 0, 0.0), rows(1000, 2.0, 9, 0.5)
    commits = [fg.insert(first).id, fg.insert(second).id]
    report = alice.drift("embedded", baseline=commits[0], current=commits[1])
    embedding, login = report.features
    expected = reference_numeric(np.linalg.norm(v1.astype("float32").astype(float), axis=1),
                                 np.linalg.norm(v2.astype("float32").astype(float), axis=1))
    assert embedding.kind == "vector" and embedding.ks == pytest.approx(expected["ks"], abs=1e-6)
    assert embedding.psi == pytest.approx(expected["psi"], rel=1e-3) and embedding.drifted
    assert login.kind == "temporal" and login.psi is None and login.drifted is None
    assert login.baseline_null_rate == 0 and login.current_null_rate == pytest.approx(
        second["last_login"].isna().mean())


def test_features_without_values_in_a_window_have_no_measures(alice) -> None:
    fg = alice.create_feature_group("sparse", 1, keys=["account_id"], features=FEATURES)
    rng = np.random.default_rng(9)
    full = frame(rng, 200, shift=0.0, day=0, channels=["web"], weights=[1.0])
    empty = frame(rng, 200, shift=0.0, day=3, channels=["web"], weights=[1.0])
    empty["amount"] = np.nan
    empty["channel"] = None
    commits = [fg.insert(full).id, fg.insert(empty).id]
    for base, cur in ((commits[0], commits[1]), (commits[1], commits[0])):
        report = {f.feature: f for f in alice.drift("sparse", baseline=base, current=cur).features}
        assert report["amount"].psi is None and report["amount"].ks is None and report["amount"].drifted is None
        assert report["channel"].psi is None and report["channel"].drifted is None
        assert {report["amount"].baseline_null_rate, report["amount"].current_null_rate} == \
            {full["amount"].isna().mean(), 1.0}
        assert report["tx_count"].psi is not None  # the other features are measured as usual
