"""The world of the erasure tests: project A (Data Owner alice, Data Scientist bob) whose
account ``ERASED`` has rows everywhere fstore keeps data of an entity:

* ``profile`` versions 1 and 2 (online, statistics, an HNSW-indexed embedding): the erased
  account holds the largest income, a country no one else has and its own embedding;
* ``pairs`` keyed (account_id, merchant_id), ``tx`` keyed tx_id with an account_id column;
* ``other`` keyed customer_id (no account_id: an erasure by account never touches it);
* training dataset ``train`` (versions 1 and 2, exported to Parquet) and the training
  dataset of feature view ``scoring``, which logs every vector it serves.

Every member logs in with their own certificate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import fstore
from tests.conftest import TEST_CLUSTER_WORKERS

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
ACCOUNTS = 20
ERASED = 20
UNIQUE_COUNTRY = "ZZ"
EMBEDDING = [0.9, 0.9, 0.9]
# on a cluster (FSTORE_TEST_CLUSTER) the account-keyed groups are distributed by account_id
ON_CLUSTER: dict[str, Any] = {"distribution_key": "account_id"} if TEST_CLUSTER_WORKERS else {}


def _profile(at: dt.datetime, bump: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    rows = []
    for i in range(1, ACCOUNTS + 1):
        embedding = (np.array(EMBEDDING) if i == ERASED else rng.uniform(-1, 0.2, 3)).astype("float32")
        rows.append({"account_id": i, "event_time": at, "country": UNIQUE_COUNTRY if i == ERASED else ("DE", "FR")[i % 2],
                     "income": 99999.0 + bump if i == ERASED else 1000.0 * i + bump, "embedding": embedding})
    return pd.DataFrame(rows)


@dataclass
class World:
    """Project A and the names the tests need."""

    project: Any
    export_path: Path
    groups: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.project.name

    def connect(self, user: str) -> fstore.FeatureStore:
        return fstore.connect(self.project.name, user, home=self.project.home)


def build(project: Any, tmp_path: Path) -> World:
    world = World(project, tmp_path / "train_v1.parquet")
    a = project.name
    with world.connect("alice") as alice:
        conn = alice.conn
        conn.execute(f"set role {a}__owner")
        conn.execute(f"create table {a}.labels (account_id bigint, event_time timestamptz, is_fraud boolean)")
        conn.execute("reset role")
        conn.execute(f"insert into {a}.labels select g, %s, g %% 3 = 0 from generate_series(1, {ACCOUNTS}) g",
                     (T0 + dt.timedelta(days=10),))
        features = {"account_id": "bigint", "event_time": "timestamptz", "country": "text",
                    "income": "double precision", "embedding": "vector(3)"}
        for version, bump in ((1, 0.0), (2, 0.5)):
            fg = alice.create_feature_group("profile", version, keys=["account_id"], features=features, online=True,
                                            options={"hnsw": ["embedding"], **ON_CLUSTER})
            fg.insert(_profile(T0, bump))
            fg.insert(_profile(T0 + dt.timedelta(days=1), bump + 1))  # two commits hold the entity
            world.groups[f"profile@{version}"] = fg
        pairs = alice.create_feature_group("pairs", 1, keys=["account_id", "merchant_id"], features={
            "account_id": "bigint", "merchant_id": "bigint", "event_time": "timestamptz", "spend": "double precision"},
            options=ON_CLUSTER)
        pairs.insert(pd.DataFrame([{"account_id": acc, "merchant_id": m, "event_time": T0, "spend": 1.0 * m}
                                   for acc in (1, 2, ERASED) for m in (7, 8)]))
        tx = alice.create_feature_group("tx", 1, keys=["tx_id"], features={
            "tx_id": "bigint", "account_id": "bigint", "event_time": "timestamptz", "amount": "double precision"})
        tx.insert(pd.DataFrame([{"tx_id": t, "account_id": t % ACCOUNTS + 1, "event_time": T0, "amount": 10.0 * t}
                                for t in range(60)]))
        other = alice.create_feature_group("other", 1, keys=["customer_id"], features={
            "customer_id": "bigint", "event_time": "timestamptz", "x": "double precision"})
        other.insert(pd.DataFrame([{"customer_id": ERASED, "event_time": T0, "x": 1.0}]))
        world.groups.update(pairs=pairs, tx=tx, other=other)
        spine = f"select * from {a}.labels"
        alice.create_training_dataset("train", spine, ["profile:country", "profile:income"], label="is_fraud",
                                      format="parquet", path=world.export_path)
        alice.create_training_dataset("train", spine, ["profile:country"], label="is_fraud", new_version=True)
        view = alice.create_feature_view("scoring", ["profile:country", "profile:income"], label="is_fraud",
                                         transformations={"country": "one_hot"}, log_rate=1.0)
        view.create_training_dataset(pd.DataFrame({"account_id": list(range(1, ACCOUNTS + 1)),
                                                   "event_time": [T0 + dt.timedelta(days=10)] * ACCOUNTS,
                                                   "is_fraud": [i % 2 for i in range(ACCOUNTS)]}))
        for account in (1, ERASED, ERASED):
            view.get_feature_vector({"account_id": account})
        view.flush_log()
        view.close()
    return world


@pytest.fixture
def world(make_project: Any, tmp_path: Path) -> World:
    """Project A with the erased account's rows everywhere (see the module docstring)."""
    return build(make_project(owner="alice", scientists=["bob"], prefix="gdpr"), tmp_path)
