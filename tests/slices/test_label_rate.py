"""The label rate of a training dataset per slice (fstore.training_dataset_slices,
fs.label_rate_by_slice, fstore train slices): rates, the two-proportion z test and the
flags checked against pandas and the formula on the same rows; folding; clear errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fstore import InvalidInput
from fstore.cli import main

T0 = pd.Timestamp("2024-01-01", tz="UTC")
RATES = {"DE": 0.05, "FR": 0.06, "XX": 0.30, "MT": 0.25, "LU": 0.0}
SIZES = {"DE": 600, "FR": 400, "XX": 150, "MT": 12, "LU": 8}


@pytest.fixture
def dataset(alice):
    """Accounts by country and a spine whose fraud rate is high in XX (and in the small MT)."""
    rng = np.random.default_rng(5)
    country = np.concatenate([[c] * n for c, n in SIZES.items()])
    n = len(country)
    accounts = pd.DataFrame({"account_id": np.arange(n, dtype="int64"), "event_time": T0,
                             "country": country, "income": rng.gamma(2.0, 1000.0, n)})
    fg = alice.create_feature_group("profile", 1, keys=["account_id"],
                                    features={"account_id": "bigint", "country": "text", "income": "double precision"})
    fg.insert(accounts)
    fraud = pd.array([bool(rng.random() < RATES[c]) for c in country], dtype="boolean")
    spine = pd.DataFrame({"account_id": accounts["account_id"], "event_time": T0 + pd.Timedelta(days=1),
                          "is_fraud": fraud, "fraud01": fraud.astype("int64"),
                          "amount": rng.normal(100, 10, n)})
    spine.loc[rng.random(n) < 0.02, "is_fraud"] = None  # a few unlabelled rows
    td = alice.create_training_dataset("fraud_train", spine, ["profile:country", "profile:income"],
                                       label=["is_fraud"], split={"train": 0.7, "test": 0.3}, seed=1)
    rows = alice.get_training_dataset("fraud_train").to_pandas()
    return td, rows


def expected_slice(rows: pd.DataFrame, inside: pd.Series) -> dict[str, float]:
    labelled = rows["is_fraud"].notna()
    y = rows["is_fraud"].astype("float")
    n1, n2 = int((inside & labelled).sum()), int((~inside & labelled).sum())
    p1, p2 = y[inside & labelled].mean(), y[~inside & labelled].mean()
    pooled = y[labelled].mean()
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return {"labelled": n1, "rate": p1, "rest_labelled": n2, "rest": p2, "z": z,
            "p": math.erfc(abs(z) / math.sqrt(2))}


def test_label_rates_per_slice_agree_with_pandas(alice, dataset) -> None:
    td, rows = dataset
    rates = alice.label_rate_by_slice("fraud_train", "country")
    assert rates.label == "is_fraud" and rates.training_dataset.endswith(f"fraud_train@{td.version}")
    assert [(s.slice_kind, s.slice) for s in rates.slices] == [
        ("all", "(all)"), ("value", "DE"), ("value", "FR"), ("value", "XX"), ("other", "(other)")]
    whole = rates.whole
    assert whole.rows == len(rows) and whole.labelled == int(rows["is_fraud"].notna().sum())
    assert whole.label_rate == pytest.approx(rows["is_fraud"].dropna().astype(float).mean())
    for s in rates.slices[1:]:
        inside = rows["country"] == s.slice if s.slice_kind == "value" else rows["country"].isin(["MT", "LU"])
        want = expected_slice(rows, inside)
        assert s.rows == int(inside.sum())
        assert s.labelled == want["labelled"] and s.rest_labelled == want["rest_labelled"]
        assert s.positives == int(rows.loc[inside, "is_fraud"].fillna(False).astype(bool).sum())
        assert s.label_rate == pytest.approx(want["rate"]) and s.rest_rate == pytest.approx(want["rest"])
        assert s.difference == pytest.approx(want["rate"] - want["rest"])
        assert s.z == pytest.approx(want["z"], rel=1e-9)
        assert s.p_value == pytest.approx(want["p"], rel=1e-6, abs=1e-12)
        assert s.flagged == (abs(s.difference) >= 0.1 and s.p_value < 0.05), s.name
    assert rates.flagged == ["XX"]  # 30% against about 6%
    assert rates.slices[-1].folded_values == 2  # MT and LU: fewer than 30 rows each
    assert set(rates.to_pandas()["name"]) == {"(all)", "DE", "FR", "XX", "(other)"}


def test_thresholds_split_and_a_numeric_label(alice, dataset) -> None:
    td, rows = dataset
    small = alice.label_rate_by_slice("fraud_train", "country", min_slice_rows=5)
    mt = next(s for s in small.slices if s.slice == "MT")
    assert mt.rows == 12 and small.slices[-1].slice != "(other)"  # nothing folded
    # MT's rate is far from the rest's, but on 12 rows the test does not rule out chance
    assert abs(mt.difference) >= 0.1 and mt.p_value >= 0.05 and not mt.flagged
    assert "MT" in alice.label_rate_by_slice("fraud_train", "country", min_slice_rows=5, alpha=None).flagged
    train = alice.label_rate_by_slice(f"fraud_train@{td.version}", "country", split="train")
    assert train.whole.rows == int((rows["split"] == "train").sum())
    de = rows[(rows["split"] == "train") & (rows["country"] == "DE")]
    assert next(s for s in train.slices if s.slice == "DE").label_rate == pytest.approx(
        de["is_fraud"].dropna().astype(float).mean())
    strict = alice.label_rate_by_slice("fraud_train", "country", max_difference=0.5)
    assert strict.flagged == []
    spine = rows[["account_id"]].assign(event_time=T0 + pd.Timedelta(days=1),
                                        fraud01=rows["is_fraud"].fillna(False).astype("int64"))
    alice.create_training_dataset("numeric_label", spine, ["profile:country"], label="fraud01")
    numeric = alice.label_rate_by_slice("numeric_label", "country")
    assert numeric.flagged == ["XX"] and numeric.whole.positives == int(spine["fraud01"].sum())


def test_bad_label_rate_requests_are_named(alice, dataset) -> None:
    with pytest.raises(InvalidInput, match="has no column 'contry' to slice by; slice by one of: account_id"):
        alice.label_rate_by_slice("fraud_train", "contry")
    with pytest.raises(InvalidInput, match="no column 'is_fraud' to slice by"):
        alice.label_rate_by_slice("fraud_train", "is_fraud")
    with pytest.raises(InvalidInput, match="has no label 'fraud'; its labels: is_fraud"):
        alice.label_rate_by_slice("fraud_train", "country", label="fraud")
    with pytest.raises(InvalidInput, match="has no split 'validation'; its splits: test, train"):
        alice.label_rate_by_slice("fraud_train", "country", split="validation")
    spine = pd.DataFrame({"account_id": [1, 2], "event_time": [T0 + pd.Timedelta(days=1)] * 2, "score": [0.5, 1.0],
                          "kind": ["a", "b"]})
    alice.create_training_dataset("unlabelled", spine, ["profile:country"])
    with pytest.raises(InvalidInput, match="has no label: a label rate per slice needs one"):
        alice.label_rate_by_slice("unlabelled", "country")
    alice.create_training_dataset("scored", spine, ["profile:country"], label="score")
    with pytest.raises(InvalidInput, match=r"label score of training dataset .*scored.* is not binary \(it holds 0.5\)"):
        alice.label_rate_by_slice("scored", "country")
    alice.create_training_dataset("kinds", spine, ["profile:country"], label="kind")
    with pytest.raises(InvalidInput, match="label kind .* is of type text: a label rate needs a boolean or 0/1"):
        alice.label_rate_by_slice("kinds", "country")
    with pytest.raises(InvalidInput, match="max_difference must be a rate difference in"):
        alice.label_rate_by_slice("fraud_train", "country", max_difference=2)


def test_cli_train_slices(fraud, home, dataset) -> None:
    args = ["--home", str(home.root), "train", "slices", "fraud_train", "--slice-by", "country",
            "--as", fraud.role("bob")]
    shown = CliRunner().invoke(main, args)
    assert shown.exit_code == 0, shown.output
    assert "XX" in shown.output and "(other)" in shown.output and "flagged" in shown.output
    document = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert document["flagged"] == ["XX"] and document["label"] == "is_fraud"
    assert document["slices"][0]["slice_kind"] == "all"
    refused = CliRunner().invoke(main, [*args[:4], "fraud_train", "--slice-by", "nope", "--json",
                                        "--as", fraud.role("bob")])
    assert refused.exit_code != 0 and "nope" in refused.output
