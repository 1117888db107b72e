"""Statistics recorded at every commit, checked against numpy on the same data.

Definitions (sql/functions/50_statistics.sql, fstore.batch_statistics): ``count`` = non-NULL
values, ``nulls`` = rows - count, ``completeness`` = count / rows, ``stddev`` =
SAMPLE standard deviation (n - 1, numpy ``ddof=1``), percentiles with linear
interpolation (numpy's default method), 20 equal-width histogram bins over
[min, max] with the last bin closed (numpy.histogram), top values by count
then value.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.featuregroups.conftest import activity_frame

PERCENTILES = {"p1": 1, "p5": 5, "p25": 25, "p50": 50, "p75": 75, "p95": 95, "p99": 99}


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def check_numeric(stats: dict, values: pd.Series) -> None:
    x = values.dropna().to_numpy(dtype="float64")
    assert stats["kind"] == "numeric"
    assert stats["rows"] == len(values)
    assert stats["count"] == len(x)
    assert stats["nulls"] == len(values) - len(x)
    assert close(stats["completeness"], len(x) / len(values))
    assert stats["distinct"] == len(np.unique(x))
    assert close(stats["min"], x.min()) and close(stats["max"], x.max())
    assert close(stats["mean"], x.mean())
    assert close(stats["stddev"], x.std(ddof=1))
    expected = np.percentile(x, list(PERCENTILES.values()))
    assert set(stats["percentiles"]) == set(PERCENTILES)
    for name, value in zip(PERCENTILES, expected):
        assert close(stats["percentiles"][name], value), name
    counts, edges = np.histogram(x, bins=20, range=(x.min(), x.max()))
    assert stats["histogram"]["counts"] == counts.tolist()
    assert len(stats["histogram"]["edges"]) == 21
    assert all(close(a, b) for a, b in zip(stats["histogram"]["edges"], edges))
    assert stats["sampled"] is False


def check_top_values(stats: dict, values: pd.Series, as_text=str) -> None:
    x = values.dropna()
    assert stats["kind"] == "categorical"
    assert stats["count"] == len(x) and stats["nulls"] == len(values) - len(x)
    assert stats["distinct"] == x.nunique()
    counts = x.map(as_text).value_counts()
    expected = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert [(t["value"], t["count"]) for t in stats["top_values"]] == expected


def test_statistics_match_numpy(alice) -> None:
    df = activity_frame(rows=3000, accounts=300, seed=11)
    df.loc[df.index[::7], "channel"] = None
    df["tx_count"] = df["tx_count"].astype("Int64")
    df.loc[df.index[::13], "tx_count"] = pd.NA
    df["code"] = [f"c{i % 37:02d}" for i in range(len(df))]  # more than 10 values, with ties
    fg = alice.create_feature_group("activity_stats", 1, keys=["account_id"], features=df)
    commit = fg.insert(df)
    stats = fg.statistics()
    assert stats == fg.statistics(commit.id)
    assert set(stats) == {"account_id", "amount", "tx_count", "channel", "flagged", "code", "event_time"}

    check_numeric(stats["amount"], df["amount"])
    check_numeric(stats["tx_count"], df["tx_count"].astype("float64"))
    check_numeric(stats["account_id"], df["account_id"])
    check_top_values(stats["channel"], df["channel"])
    check_top_values(stats["code"], df["code"])
    check_top_values(stats["flagged"], df["flagged"], as_text=lambda b: "true" if b else "false")
    assert len(stats["code"]["top_values"]) == 10

    et = stats["event_time"]
    assert et["kind"] == "temporal" and et["count"] == len(df)
    assert pd.Timestamp(et["min"]) == df["event_time"].min()
    assert pd.Timestamp(et["max"]) == df["event_time"].max()
    assert et["distinct"] == df["event_time"].nunique()
    assert commit.min_event_time == df["event_time"].min().to_pydatetime()
    assert commit.max_event_time == df["event_time"].max().to_pydatetime()


def test_statistics_of_a_second_commit_cover_only_its_rows(alice) -> None:
    df = activity_frame(rows=400, seed=3)
    fg = alice.create_feature_group("activity_two", 1, keys=["account_id"], features=df)
    first = fg.insert(df.iloc[:100])
    second = fg.insert(df.iloc[100:])
    check_numeric(fg.statistics(first.id)["amount"], df["amount"].iloc[:100])
    check_numeric(fg.statistics()["amount"], df["amount"].iloc[100:])
    assert [c.id for c in fg.commits()] == [second.id, first.id]


def test_constant_column_histogram_is_centred_like_numpy(alice) -> None:
    df = activity_frame(rows=50, seed=5)
    df["amount"] = 42.0
    fg = alice.create_feature_group("activity_const", 1, keys=["account_id"], features=df)
    fg.insert(df)
    stats = fg.statistics()["amount"]
    counts, edges = np.histogram(df["amount"], bins=20)
    assert stats["histogram"]["counts"] == counts.tolist()
    assert close(stats["histogram"]["edges"][0], edges[0]) and close(stats["histogram"]["edges"][-1], edges[-1])
    assert stats["stddev"] == 0 and stats["distinct"] == 1


def test_large_batches_sample_the_order_statistics(alice) -> None:
    df = activity_frame(rows=5000, accounts=500, seed=21)
    fg = alice.create_feature_group("activity_sampled", 1, keys=["account_id"], features=df,
                                    options={"statistics_sample_rows": 500})
    fg.insert(df)
    stats = fg.statistics()["amount"]
    x = df["amount"].dropna().to_numpy()
    # exact on every row, always
    assert stats["count"] == len(x) and stats["rows"] == len(df)
    assert close(stats["min"], x.min()) and close(stats["max"], x.max())
    # mean, stddev and the order statistics from a sample of about 500 rows, and flagged as such
    assert stats["sampled"] is True
    assert 250 <= stats["sample_rows"] <= 800
    assert not close(stats["mean"], x.mean())  # the sample's, not every row's
    assert abs(stats["mean"] - x.mean()) < 6 * x.std(ddof=1) / math.sqrt(stats["sample_rows"])
    assert 0.7 * x.std(ddof=1) < stats["stddev"] < 1.3 * x.std(ddof=1)
    assert sum(stats["histogram"]["counts"]) <= stats["sample_rows"]
    assert x.min() <= stats["percentiles"]["p50"] <= x.max()
    assert 1 <= stats["distinct"] <= len(x)
    channel = fg.statistics()["channel"]
    assert channel["sampled"] is True and channel["count"] == df["channel"].notna().sum()
    assert {t["value"] for t in channel["top_values"]} <= {"web", "app", "branch", "atm"}


def test_statistics_can_be_switched_off(alice) -> None:
    df = activity_frame(rows=20)
    fg = alice.create_feature_group("activity_nostats", 1, keys=["account_id"], features=df, statistics=False)
    commit = fg.insert(df)
    assert commit.rows == 20 and commit.max_event_time == df["event_time"].max().to_pydatetime()
    with pytest.raises(Exception, match="no commit with statistics"):
        fg.statistics()
