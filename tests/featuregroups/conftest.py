"""Fixtures for feature-group stories: a project ``fraud`` with a Data Owner (alice)
and a Data Scientist (bob), their FeatureStore handles, and small synthetic data."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

import fstore


@pytest.fixture
def fraud(make_project):
    """A fresh project with owner alice and scientist bob."""
    return make_project(owner="alice", scientists=["bob"], prefix="fraud")


@pytest.fixture
def alice(fraud, home) -> Iterator[fstore.FeatureStore]:
    with fstore.connect(fraud.name, "alice", home=home) as fs:
        yield fs


@pytest.fixture
def bob(fraud, home) -> Iterator[fstore.FeatureStore]:
    with fstore.connect(fraud.name, "bob", home=home) as fs:
        yield fs


def activity_frame(rows: int = 200, accounts: int = 20, seed: int = 7) -> pd.DataFrame:
    """Per-account activity rows: keys, a UTC event time, numeric and categorical features."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    amount = rng.gamma(2.0, 50.0, rows)
    amount[rng.random(rows) < 0.1] = np.nan  # some missing amounts
    return pd.DataFrame({
        "account_id": rng.integers(0, accounts, rows).astype("int64"),
        "event_time": start + pd.to_timedelta(rng.integers(0, 30 * 24 * 3600, rows), unit="s"),
        "amount": amount,
        "tx_count": rng.integers(0, 50, rows).astype("int64"),
        "channel": rng.choice(["web", "app", "branch", "atm"], rows, p=[0.5, 0.3, 0.15, 0.05]),
        "flagged": rng.random(rows) < 0.2,
    })


ACTIVITY_TYPES = {
    "account_id": "bigint", "amount": "double precision", "tx_count": "bigint",
    "channel": "text", "flagged": "boolean",
}
