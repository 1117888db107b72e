"""The exact numeric measures without sorting (fstore.drift_fine_bins) on the shapes that make
fine bins work hardest, each against numpy on the same rows: heavy tails (most values in a few
bins), many ties and few distinct values, a constant feature, windows that overlap (rows in
both), disjoint windows (the CDFs never cross), and a feature holding infinities (measured by
the sort instead)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.drift import numeric_measures

T0 = pd.Timestamp("2024-01-01", tz="UTC")
FEATURES = {"account_id": "bigint", "heavy": "double precision", "ties": "bigint", "constant": "double precision",
            "far": "double precision", "odd": "double precision"}


def frame(rng: np.random.Generator, rows: int, day: int, shift: float) -> pd.DataFrame:
    return pd.DataFrame({
        "account_id": np.arange(rows, dtype="int64"),
        "event_time": T0 + pd.Timedelta(days=day) + pd.to_timedelta(np.arange(rows), unit="s"),
        "heavy": rng.lognormal(2 + shift, 2.5, rows),              # values from ~1e-3 to ~1e5
        "ties": rng.poisson(3 + 2 * shift, rows).astype("int64"),
        "constant": np.full(rows, 7.25),
        "far": rng.normal(1000 * shift, 1.0, rows),                 # disjoint when shifted
        "odd": rng.normal(shift, 1.0, rows),
    })


@pytest.fixture
def shapes(alice):
    rng = np.random.default_rng(17)
    fg = alice.create_feature_group("shapes", 1, keys=["account_id"], features=FEATURES)
    frames = [frame(rng, 30000, 0, 0.0), frame(rng, 25000, 5, 1.0), frame(rng, 20000, 10, 0.0)]
    frames[2].loc[:5, "odd"] = [np.inf, -np.inf, np.nan, 1e300, -1e300, 0.0]
    return fg, frames, [fg.insert(f).id for f in frames]


def check(report, base: pd.DataFrame, cur: pd.DataFrame, features: list[str]) -> None:
    by_name = {f.feature: f for f in report.features}
    for name in features:
        b, c = base[name].to_numpy(float), cur[name].to_numpy(float)
        for measure, value in numeric_measures(b, c).items():
            got = getattr(by_name[name], measure)
            assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (name, measure, got, value)


def test_fine_bins_agree_with_numpy_on_hard_shapes(alice, shapes) -> None:
    fg, frames, commits = shapes
    names = ["heavy", "ties", "constant", "far"]
    check(alice.drift("shapes", commits[0], commits[1], features=names), frames[0], frames[1], names)
    # overlapping windows: commits 1-2 against 2-3 (commit 2's rows are in both)
    overlap = alice.drift("shapes", {"commits": commits[:2]}, {"commits": commits[1:]}, features=names)
    check(overlap, pd.concat(frames[:2]), pd.concat(frames[1:]), names)
    constant = {f.feature: f for f in overlap.features}["constant"]
    assert (constant.ks, constant.wasserstein, constant.psi) == (0.0, 0.0, 0.0)


def test_infinite_and_nan_values_are_measured_by_the_sort(alice, shapes) -> None:
    fg, frames, commits = shapes
    report = alice.drift("shapes", commits[0], commits[2], features=["odd", "heavy"])
    odd = report.features[0]
    assert odd.ks is not None and odd.psi is not None  # measured, not refused
    check(report, frames[0], frames[2], ["heavy"])
    assert odd.current_rows == 20000 and odd.current_null_rate == pytest.approx(1 / 20000)  # the NaN came in as NULL
    assert odd.wasserstein == np.inf and 0 < odd.ks < 1  # the area up to an infinite value is infinite
