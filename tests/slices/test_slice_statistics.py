"""Statistics per slice of a feature group (fg.statistics(slice_by=...), fstore.slice_statistics):
every number checked against numpy/pandas on the same rows, the folding of small slices, the
PSI flags, and clear errors naming the bad column."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from fstore import InvalidInput
from fstore.cli import main

T0 = pd.Timestamp("2024-01-01", tz="UTC")
FEATURES = {"account_id": "bigint", "country": "text", "income": "double precision", "tx_count": "bigint",
            "channel": "text", "seen_at": "timestamptz"}
FLOOR = 0.0001


def accounts_frame(seed: int = 11) -> pd.DataFrame:
    """Countries of different sizes: DE and FR alike, MT (small, folded), XX shifted (income x3, other channels)."""
    rng = np.random.default_rng(seed)
    sizes = {"DE": 400, "FR": 300, "XX": 120, "MT": 12, "LU": 9}
    frames = []
    for country, n in sizes.items():
        shifted = country == "XX"
        frames.append(pd.DataFrame({
            "country": [country] * n,
            "income": rng.gamma(2.0, 1500.0 * (3 if shifted else 1), n),
            "tx_count": rng.integers(0, 20, n),
            "channel": rng.choice(["web", "app", "atm"], n, p=[0.1, 0.1, 0.8] if shifted else [0.6, 0.3, 0.1]),
        }))
    frame = pd.concat(frames, ignore_index=True)
    n = len(frame)
    frame.loc[rng.random(n) < 0.05, "income"] = np.nan
    frame.loc[rng.random(n) < 0.03, "country"] = None  # a NULL slice (about 25 rows: folded too)
    frame["account_id"] = np.arange(n, dtype="int64")
    frame["event_time"] = T0 + pd.to_timedelta(np.arange(n), unit="min")
    frame["seen_at"] = T0 + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")
    return frame[["account_id", "event_time", "country", "income", "tx_count", "channel", "seen_at"]]


def numeric_psi(whole: np.ndarray, part: np.ndarray, bins: int = 10) -> float:
    """PSI of part against whole over bins at the whole's quantiles, as fstore defines it."""
    whole, part = whole[~np.isnan(whole)], part[~np.isnan(part)]
    edges = np.unique(np.quantile(whole, np.arange(1, bins) / bins))
    b = np.bincount(np.searchsorted(edges, whole, side="right"), minlength=bins + 1) / len(whole)
    c = np.bincount(np.searchsorted(edges, part, side="right"), minlength=bins + 1) / len(part)
    present = b > 0
    b, c = np.maximum(b[present], FLOOR), np.maximum(c[present], FLOOR)
    return float(np.sum((c - b) * np.log(c / b)))


def categorical_psi(whole: pd.Series, part: pd.Series) -> float:
    values = sorted(set(whole.dropna()))
    b = whole.dropna().value_counts(normalize=True).reindex(values, fill_value=0).to_numpy()
    c = part.dropna().value_counts(normalize=True).reindex(values, fill_value=0).to_numpy()
    b, c = np.maximum(b, FLOOR), np.maximum(c, FLOOR)
    return float(np.sum((c - b) * np.log(c / b)))


@pytest.fixture
def profile(alice):
    fg = alice.create_feature_group("profile", 1, keys=["account_id"], features=FEATURES)
    frame = accounts_frame()
    fg.insert(frame)
    return fg, frame


def test_per_slice_statistics_agree_with_numpy(profile) -> None:
    fg, frame = profile
    stats = fg.statistics(slice_by="country")
    assert stats.slice_by == "country" and stats.min_slice_rows == 30
    kinds = [(s.slice_kind, s.slice) for s in stats.slices]
    assert kinds == [("all", "(all)"), ("value", "DE"), ("value", "FR"), ("value", "XX"), ("other", "(other)")]
    whole = stats.whole
    assert whole.rows == len(frame) and whole.share == 1 and whole.psi_max is None and not whole.flagged

    for s in stats.slices:
        if s.slice_kind == "all":
            rows = frame
        elif s.slice_kind == "value":
            rows = frame[frame["country"] == s.slice]
        else:
            counts = frame["country"].value_counts(dropna=False)
            small = [c for c, n in counts.items() if n < 30]
            rows = frame[frame["country"].isin([c for c in small if c is not None]) | (
                frame["country"].isna() if any(pd.isna(c) for c in small) else False)]
            assert s.folded_values == len(small) == 3  # MT, LU and the NULLs
        assert s.rows == len(rows), s.name
        assert s.share == pytest.approx(len(rows) / len(frame))
        assert set(s.features) == {"income", "tx_count", "channel", "seen_at"}  # no key, not the slice column
        income = s.features["income"]
        values = rows["income"].to_numpy()
        assert income["kind"] == "numeric"
        assert income["count"] == int(np.sum(~np.isnan(values))) and income["nulls"] == int(np.isnan(values).sum())
        assert income["mean"] == pytest.approx(np.nanmean(values), rel=1e-12)
        assert income["std"] == pytest.approx(np.nanstd(values, ddof=1), rel=1e-9)
        assert income["min"] == pytest.approx(np.nanmin(values)) and income["max"] == pytest.approx(np.nanmax(values))
        tx = s.features["tx_count"]
        assert tx["mean"] == pytest.approx(rows["tx_count"].mean(), rel=1e-12)
        channel = s.features["channel"]
        counts = rows["channel"].value_counts()
        assert channel["distinct"] == rows["channel"].nunique()
        assert [(t["value"], t["count"]) for t in channel["top_values"]] == sorted(
            counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        seen = s.features["seen_at"]
        assert pd.Timestamp(seen["min"]) == rows["seen_at"].min() and seen["count"] == len(rows)
        if s.slice_kind != "all":
            assert income["psi"] == pytest.approx(numeric_psi(frame["income"].to_numpy(), values), abs=1e-9)
            assert tx["psi"] == pytest.approx(
                numeric_psi(frame["tx_count"].to_numpy(float), rows["tx_count"].to_numpy(float)), abs=1e-9)
            assert channel["psi"] == pytest.approx(categorical_psi(frame["channel"], rows["channel"]), abs=1e-9)
            assert s.psi_max == pytest.approx(max(income["psi"], tx["psi"], channel["psi"]))
            assert "psi" not in seen  # time is not compared
            flagged = [f for f in ("income", "tx_count", "channel") if s.features[f]["psi"] >= 0.2]
            assert s.flagged_features == flagged and s.flagged == bool(flagged)
            assert all(s.features[f]["flagged"] == (f in flagged) for f in ("income", "tx_count", "channel"))
    assert "XX" in stats.flagged and "DE" not in stats.flagged  # the shifted slice, and only where it shifted
    assert set(stats.slice("XX").flagged_features) == {"income", "channel"}
    assert stats.folded is not None and stats.folded.slice == "(other)"


def test_small_slices_fold_by_min_slice_rows_and_nulls_are_a_slice(profile) -> None:
    fg, frame = profile
    stats = fg.statistics(slice_by="country", min_slice_rows=10, features=["income"])
    by_kind = {(s.slice_kind, s.slice): s for s in stats.slices}
    assert ("value", "MT") in by_kind and ("null", None) in by_kind  # 12 rows and ~25 NULLs: slices of their own
    assert by_kind[("null", None)].rows == int(frame["country"].isna().sum())
    assert by_kind[("other", "(other)")].folded_values == 1 and by_kind[("other", "(other)")].rows == 9  # LU
    assert stats.slice(None).name == "(null)"
    assert list(stats.slice("MT").features) == ["income"]
    alone = fg.statistics(slice_by="country", min_slice_rows=1)
    assert stats.folded is not None and alone.folded is None
    assert sum(s.rows for s in alone.slices if s.slice_kind != "all") == len(frame)
    table = stats.to_pandas()
    assert set(table["feature"]) == {"income"} and "MT" in set(table["slice"])


def test_a_commit_and_the_key_as_slices(alice, profile) -> None:
    fg, frame = profile
    second = accounts_frame(seed=12).assign(account_id=lambda f: f["account_id"] + 10_000)
    commit = fg.insert(second).id
    only = fg.statistics(commit, slice_by="channel", features=["income"])
    assert only.commit == commit and only.whole.rows == len(second)
    assert only.slice("atm").features["income"]["mean"] == pytest.approx(
        second.loc[second["channel"] == "atm", "income"].mean())
    everything = fg.statistics(slice_by="channel", features=["income"])
    assert everything.whole.rows == len(frame) + len(second)


def test_a_group_without_rows_and_a_boolean_slice(alice, profile) -> None:
    fg, frame = profile
    empty = alice.create_feature_group("empty", 1, keys=["account_id"], features=FEATURES)
    nothing = empty.statistics(slice_by="country")
    assert [(s.slice_kind, s.rows) for s in nothing.slices] == [("all", 0)] and nothing.flagged == []
    flagged = alice.create_feature_group("flags", 1, keys=["account_id"], features={
        "account_id": "bigint", "is_pep": "boolean", "income": "double precision"})
    flagged.insert(frame[["account_id", "event_time", "income"]].assign(is_pep=frame["account_id"] % 3 == 0))
    by_flag = flagged.statistics(slice_by="is_pep")
    assert by_flag.slice(True).rows == int((frame["account_id"] % 3 == 0).sum())
    assert by_flag.slice(False).features["income"]["mean"] == pytest.approx(
        frame.loc[frame["account_id"] % 3 != 0, "income"].mean())


def test_bad_slice_options_are_named(profile) -> None:
    fg, _ = profile
    with pytest.raises(InvalidInput, match="has no column 'contry' to slice by; slice by one of: account_id, country"):
        fg.statistics(slice_by="contry")
    with pytest.raises(InvalidInput, match="no column 'country; drop table x' to slice by"):
        fg.statistics(slice_by="country; drop table x")
    with pytest.raises(InvalidInput, match="has no column 'event_time' to slice by"):
        fg.statistics(slice_by="event_time")
    with pytest.raises(InvalidInput, match="no feature incme to describe per slice"):
        fg.statistics(slice_by="country", features=["incme"])
    with pytest.raises(InvalidInput, match="no feature country to describe per slice"):
        fg.statistics(slice_by="country", features=["country"])
    with pytest.raises(InvalidInput, match="min_slice_rows must be a positive integer, not 0"):
        fg.statistics(slice_by="country", min_slice_rows=0)
    with pytest.raises(InvalidInput, match="min_slice_rows.*give slice_by"):
        fg.statistics(min_slice_rows=3)
    with pytest.raises(Exception, match="commit 999999 is not a commit of feature group"):
        fg.statistics(999999, slice_by="country")


def test_cli_fg_stats_slice_by(fraud, home, profile) -> None:
    args = ["--home", str(home.root), "fg", "stats", "profile", "--slice-by", "country", "--as", fraud.role("bob")]
    shown = CliRunner().invoke(main, args)
    assert shown.exit_code == 0, shown.output
    assert "XX" in shown.output and "(other)" in shown.output and "flagged" in shown.output
    as_json = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert as_json["slice_by"] == "country" and "XX" in as_json["flagged"]
    assert [s["slice"] for s in as_json["slices"]][:2] == ["(all)", "DE"]
    refused = CliRunner().invoke(main, [*args[:5], "--slice-by", "nope", "--as", fraud.role("bob"), "--json"])
    assert refused.exit_code != 0 and "nope" in refused.output
