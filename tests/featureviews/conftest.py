"""The world of the feature-view tests: project ``bank`` (Data Owner alice, Data Scientist
bob) with two online feature groups of 40 accounts, committed through the one pipeline
(history, then a latest row an hour old), and a view over them with every transformation.
Each member logs in with their own certificate.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pandas as pd
import pytest

import fstore
from tests.retrieval.conftest import commit_rows, create_group

ACCOUNTS = range(1, 41)
FEATURES = ["activity:*", "profile:age", "profile:country", "profile:segment", "profile:is_business"]
TRANSFORMS = {
    "tx_count": "standard_scaler", "amount_7d": "log1p", "balance": "min_max_scaler", "age": "robust_scaler",
    "country": "one_hot", "segment": "label_encoder", "amount": ("bucketize", [10, 100, 1000]),
}
PASSED = {"amount": "double precision"}


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def build_bank(project: Any) -> Any:
    """Groups ``activity`` (tx_count, amount_7d, balance) and ``profile`` (age, country, segment,
    is_business) of ``project``, online, keyed on account_id; their ids in ``project.groups``."""
    rng = random.Random(7)
    at = now()
    with project.connect("alice") as alice:
        activity = create_group(alice, project.name, "activity", {
            "account_id": "bigint", "event_time": "timestamptz", "tx_count": "integer",
            "amount_7d": "double precision", "balance": "double precision"}, ["account_id"], online=True)
        profile = create_group(alice, project.name, "profile", {
            "account_id": "bigint", "event_time": "timestamptz", "age": "integer", "country": "text",
            "segment": "text", "is_business": "boolean"}, ["account_id"], online=True)
        history = [(a, at - dt.timedelta(days=d), rng.randint(0, 50), rng.random() * 900, rng.random() * 5000)
                   for a in ACCOUNTS for d in (30, 20, 10)]
        commit_rows(alice, activity, history)
        commit_rows(alice, activity, [(a, at - dt.timedelta(hours=1), rng.randint(0, 50), rng.random() * 900,
                                       rng.random() * 5000) for a in ACCOUNTS])
        commit_rows(alice, profile, [(a, at - dt.timedelta(days=60), 20 + a % 50, rng.choice(["DE", "FR", "NL"]),
                                      rng.choice(["retail", "sme", "corp"]), a % 3 == 0) for a in ACCOUNTS])
    project.groups = {"activity": activity, "profile": profile}
    return project


def spine(accounts: list[int], at: dt.datetime | None = None, seed: int = 3) -> pd.DataFrame:
    """Serving keys, event time, the passed amount and a label, one row per account."""
    rng = random.Random(seed)
    at = at or now()
    return pd.DataFrame({"account_id": accounts, "event_time": [at] * len(accounts),
                         "amount": [rng.random() * 2000 for _ in accounts],
                         "is_fraud": [i % 2 for i in range(len(accounts))]})


@pytest.fixture
def bank(make_project: Any) -> Any:
    """Project bank with alice (Data Owner), bob (Data Scientist) and the two groups."""
    return build_bank(make_project(owner="alice", scientists=["bob"], prefix="bank"))


@pytest.fixture
def bob(bank: Any) -> Any:
    """bob's feature store handle (his own certificate)."""
    with fstore.connect(bank.name, "bob", home=bank.home) as fs:
        yield fs


@pytest.fixture
def alice(bank: Any) -> Any:
    """alice's feature store handle (her own certificate)."""
    with fstore.connect(bank.name, "alice", home=bank.home) as fs:
        yield fs
