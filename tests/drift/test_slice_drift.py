"""Drift per slice: each value of a column gets the drift of every feature within its rows
(current slice against baseline slice), checked against numpy on the same rows; small values
folded into (other), which says so; thresholds flag slices; an unknown or unreadable slice
column is refused by name; ``fstore drift --slice-by``; the HTML report shows the slices."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner

from bench.drift import categorical_measures, numeric_measures
from fstore import InvalidInput, PermissionDenied
from fstore.cli import main

T0 = pd.Timestamp("2024-01-01", tz="UTC")
FEATURES = {"account_id": "bigint", "country": "text", "amount": "double precision", "n_tx": "bigint",
            "channel": "text"}
SIZES = {"DE": 900, "FR": 600, "MT": 80, "LU": 12, "CY": 8, None: 60}  # per window


def window(rng: np.random.Generator, day: int, shifted: set[str | None]) -> pd.DataFrame:
    parts = []
    for country, rows in SIZES.items():
        shift = 1.0 if country in shifted else 0.0
        parts.append(pd.DataFrame({
            "country": [country] * rows,
            "amount": np.where(rng.random(rows) < 0.05, np.nan, rng.normal(10 + shift * 3, 2.0, rows)),
            "n_tx": rng.integers(0, 4 + int(shift) * 3, rows).astype("int64"),  # ties: few distinct values
            "channel": rng.choice(["web", "app"] if country not in shifted else ["web", "app", "crypto"], rows),
        }))
    frame = pd.concat(parts, ignore_index=True)
    frame["account_id"] = np.arange(len(frame), dtype="int64")
    frame["event_time"] = T0 + pd.Timedelta(days=day) + pd.to_timedelta(np.arange(len(frame)), unit="s")
    return frame


@pytest.fixture
def countries(alice):
    """Baseline and current windows; in the current one MT and the NULL-country rows drift."""
    rng = np.random.default_rng(11)
    fg = alice.create_feature_group("by_country", 1, keys=["account_id"], features=FEATURES)
    frames = [window(rng, 0, set()), window(rng, 7, {"MT", None})]
    return fg, frames, [fg.insert(f).id for f in frames]


def rows_of(frame: pd.DataFrame, values: list[str | None]) -> pd.DataFrame:
    keep = frame["country"].isin([v for v in values if v is not None])
    if None in values:
        keep |= frame["country"].isna()
    return frame[keep]


def check_against_numpy(measured, base: pd.DataFrame, cur: pd.DataFrame) -> None:
    by_name = {f.feature: f for f in measured}
    for name in ("amount", "n_tx"):
        expected = numeric_measures(base[name].to_numpy(float), cur[name].to_numpy(float))
        for measure, value in expected.items():
            assert getattr(by_name[name], measure) == pytest.approx(value, abs=1e-9), (name, measure)
        assert by_name[name].baseline_mean == pytest.approx(base[name].mean())
        assert by_name[name].current_null_rate == pytest.approx(cur[name].isna().mean())
    for measure, value in categorical_measures(base["channel"].to_numpy(dtype=object),
                                               cur["channel"].to_numpy(dtype=object)).items():
        assert getattr(by_name["channel"], measure) == pytest.approx(value, abs=1e-9), measure


def test_each_slice_drifts_as_numpy_measures_its_rows(alice, countries) -> None:
    fg, frames, commits = countries
    report = alice.drift("by_country", commits[0], commits[1], slice_by="country")
    # the whole: every feature, the slice column too (the population moved between countries)
    assert [f.feature for f in report.features] == ["amount", "n_tx", "channel", "country"]
    check_against_numpy(report.features, frames[0], frames[1])
    assert [s.name for s in report.slices] == ["DE", "FR", "MT", "(null)", "(other)"]  # by size, NULLs, folded
    other = report.folded
    assert other is report.slices[-1] and other.slice_kind == "other" and other.folded_values == 2  # LU, CY
    assert (other.baseline_rows, other.current_rows) == (20, 20)
    for s, values in zip(report.slices, (["DE"], ["FR"], ["MT"], [None], ["LU", "CY"])):
        base, cur = rows_of(frames[0], values), rows_of(frames[1], values)
        assert (s.baseline_rows, s.current_rows) == (len(base), len(cur))
        assert [f.feature for f in s.features] == ["amount", "n_tx", "channel"]  # not the slice column
        assert all(f.baseline_rows == len(base) for f in s.features)
        check_against_numpy(s.features, base, cur)
    assert {"MT", "(null)"} <= set(report.drifted_slices) and not {"DE", "FR"} & set(report.drifted_slices)
    assert report.slice("MT").drifted and report.slice(None).drifted and not report.slice("DE").drifted


def test_slices_take_thresholds_features_sampling_and_the_minimum_size(alice, countries) -> None:
    fg, frames, commits = countries
    report = alice.drift("by_country", commits[0], commits[1], slice_by="country", features=["amount"],
                         min_slice_rows=100, thresholds={"amount": {"psi": 1e9, "ks": 0.99}})
    assert [f.feature for f in report.features] == ["amount"]  # features named: the slice column not added
    assert [s.name for s in report.slices] == ["DE", "FR", "(other)"]
    assert report.folded.folded_values == 4 and report.drifted_slices == []  # KS never reaches 0.99
    assert report.slices[0].features[0].thresholds == {"psi": 1e9, "ks": 0.99}
    flagged = alice.drift("by_country", commits[0], commits[1], slice_by="country", features=["amount"],
                          thresholds={"amount": {"psi": 1e9, "wasserstein": 2.0}})
    assert flagged.drifted_slices == ["MT", "(null)"] and flagged.slice("MT").features[0].tripped == ["wasserstein"]
    sampled = alice.drift("by_country", commits[0], commits[1], slice_by="country", features=["amount"],
                          sample_rows=1000)
    assert all(f.estimated for s in sampled.slices for f in s.features)
    assert sampled.slice("DE").baseline_rows == 900  # the slice's real size; its measures from the sample


def test_an_unknown_or_bad_slice_request_is_refused_by_name(alice, countries) -> None:
    fg, _, commits = countries
    with pytest.raises(InvalidInput, match="has no column 'nope' to slice by; slice by one of: account_id"):
        alice.drift("by_country", commits[0], commits[1], slice_by="nope")
    with pytest.raises(InvalidInput, match="min_slice_rows must be a positive integer"):
        alice.drift("by_country", commits[0], commits[1], slice_by="country", min_slice_rows=0)
    with pytest.raises(psycopg.errors.UndefinedColumn, match="no feature country to measure per slice"):
        alice.conn.execute("select * from fstore.slice_drift(%s, 'country', '{\"commit\": 1}', '{\"commit\": 2}', "
                           "array['country'])", (fg.id,))
    alice.conn.rollback()


def test_a_slice_column_the_reader_may_not_read_is_refused_by_name(fraud, alice, bob, countries) -> None:
    fg, frames, commits = countries
    fg.set_sensitive(["country"])
    with pytest.raises(PermissionDenied, match="permission denied for feature country of feature group"):
        bob.drift("by_country", commits[0], commits[1], slice_by="country")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="feature country"):  # straight in SQL too
        bob.conn.execute("select * from fstore.slice_drift(%s, 'country', %s::jsonb, %s::jsonb)",
                         (fg.id, json.dumps({"commit": commits[0]}), json.dumps({"commit": commits[1]})))
    bob.conn.rollback()
    sliced = bob.drift("by_country", commits[0], commits[1], slice_by="channel", features=["amount"])
    assert [f.feature for f in sliced.features] == ["amount"]
    assert {s.name for s in sliced.slices} == {"web", "app", "(other)"}
    new = sliced.folded  # crypto only came in the current window: folded, nothing to compare it with
    assert (new.baseline_rows, new.folded_values) == (0, 1) and new.features[0].psi is None
    everything = bob.drift("by_country", commits[0], commits[1], slice_by="channel")
    assert "country" not in {f.feature for s in everything.slices for f in s.features}  # left out, unasked


def test_cli_drift_by_slice_and_the_html_report(fraud, home, alice, countries, tmp_path) -> None:
    fg, _, commits = countries
    args = ["--home", str(home.root), "drift", "by_country", "--baseline", f"commit={commits[0]}",
            "--current", f"commit={commits[1]}", "--slice-by", "country", "--as", fraud.role("bob")]
    table = CliRunner().invoke(main, [*args, "--html", str(tmp_path / "drift.html")])
    assert table.exit_code == 0, table.output
    assert "(other) [2 values folded]" in table.output and "drifted slices: MT, (null)" in table.output
    page = (tmp_path / "drift.html").read_text()
    assert "slices of the drift report" in page and "(other)" in page and "MT" in page
    as_json = CliRunner().invoke(main, [*args, "--json", "--fail-on-drift", "--feature", "amount",
                                        "--min-slice-rows", "100"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["slices"][0]["slice"] == "DE" and report["slices"][-1]["folded_values"] == 4
    assert report["slice_by"] == "country" and report["drifted_slices"] == [
        s["slice"] for s in report["slices"] if s["drifted"]]
