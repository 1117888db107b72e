"""The demo at small scale: a synthetic AML data set, the demo dbt project's four feature
groups built from it as a Data Owner, their values checked against pandas on the same
data, and a second run on unchanged data that adds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from psycopg import sql

import fstore
from fstore import demo_data
from fstore.dbt import run_dbt

FEATURE_GROUPS = ["account_activity", "account_profile", "counterparty_diversity", "time_of_day"]


def test_generated_data_is_reproducible_and_tells_the_mule_story() -> None:
    end = demo_data.DEFAULT_END
    accounts = demo_data.generate_accounts(500, end, seed=3)
    first = list(demo_data.generate_transactions(accounts, 5_000, end - dt.timedelta(days=30), end, 3, 2_000))
    again = list(demo_data.generate_transactions(accounts, 5_000, end - dt.timedelta(days=30), end, 3, 2_000))
    assert [len(b["transaction_id"]) for b in first] == [2_000, 2_000, 1_000]  # bounded batches
    for a, b in zip(first, again):
        for column in a:
            np.testing.assert_array_equal(a[column], b[column])
    tx = {c: np.concatenate([b[c] for b in first]) for c in first[0]}
    np.testing.assert_array_equal(tx["transaction_id"], np.arange(1, 5_001))
    start_us = (end - dt.timedelta(days=30) - demo_data.PG_EPOCH) // dt.timedelta(microseconds=1)
    end_us = (end - demo_data.PG_EPOCH) // dt.timedelta(microseconds=1)
    assert start_us <= tx["event_time"].min() and tx["event_time"].max() < end_us
    assert (tx["amount_cents"] > 0).all()
    mules = set(accounts["account_id"][accounts["is_mule"]])
    by_mules = np.isin(tx["account_id"], list(mules))
    assert 0 < len(mules) < 0.1 * 500
    assert tx["is_fraud"][by_mules].mean() > 10 * tx["is_fraud"][~by_mules].mean()
    night = (tx["event_time"] // 3_600_000_000) % 24 < 6
    assert night[by_mules].mean() > 2 * night[~by_mules].mean()


@pytest.fixture
def demo_project(make_project):
    project = make_project(owner="alice", scientists=["bob"])
    with fstore.connect(project.name, "alice", home=project.home) as fs:
        loaded = demo_data.load_demo_data(fs, n_transactions=2_000, n_accounts=60, seed=11, days=20)
        again = demo_data.load_demo_data(fs, n_transactions=2_000, n_accounts=60, seed=11, days=20)
    assert (loaded.loaded, loaded.transactions, loaded.accounts) == (True, 2_000, 60)
    assert (again.loaded, again.transactions, again.fraud_transactions) == (False, 2_000, loaded.fraud_transactions)
    return project


def frame(conn, project: str, table: str) -> pd.DataFrame:
    cur = conn.execute(sql.SQL("select * from {}").format(sql.Identifier(project, table)))
    return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])


def test_demo_feature_groups_from_the_aml_data_set(demo_project) -> None:
    p = demo_project
    run = run_dbt(p.home, p.name, "alice", ["run"])
    run.raise_for_failure()

    conn = p.connect("alice")
    groups = conn.execute("select name, version, online, upstream, id from fstore.feature_groups "
                          "where project = %s order by name", (p.name,)).fetchall()
    assert [(g[0], g[1], g[2]) for g in groups] == [(name, 1, True) for name in FEATURE_GROUPS]
    lineage = {g[0]: sorted(e["relation"] for e in g[3]) for g in groups}
    assert lineage == {"account_activity": [f"{p.name}.transactions"],
                       "account_profile": [f"{p.name}.accounts"],
                       "counterparty_diversity": [f"{p.name}.transactions"],
                       "time_of_day": [f"{p.name}.transactions"]}
    described = conn.execute("select count(*) filter (where f.description = ''), count(*) from fstore.features f "
                             "join fstore.feature_groups g on g.id = f.feature_group_id where g.project = %s",
                             (p.name,)).fetchone()
    assert described == (0, 7 + 8 + 5 + 6)  # every feature described, keys too (event_time is not a feature)

    tx = frame(conn, p.name, "transactions")
    tx["event_time"] = pd.to_datetime(tx["event_time"], utc=True)

    # account_activity: one row per transaction; windowed counts and sums as pandas computes them
    activity = frame(conn, p.name, "account_activity__v1")
    assert len(activity) == tx.groupby(["account_id", "event_time"]).ngroups
    expected = []
    for account, rows in tx.sort_values("event_time").groupby("account_id"):
        times, amounts = rows["event_time"].to_numpy(), rows["amount"].astype(float).to_numpy()
        for t in np.unique(times):
            week = (times >= t - np.timedelta64(7, "D")) & (times <= t)
            hour = (times >= t - np.timedelta64(1, "h")) & (times <= t)
            expected.append((account, pd.Timestamp(t).tz_convert("UTC"), int(hour.sum()), int(week.sum()),
                             round(float(amounts[week].sum()), 2)))
    got = activity.sort_values(["account_id", "event_time"])
    got = list(zip(got["account_id"], pd.to_datetime(got["event_time"], utc=True), got["tx_count_1h"],
                   got["tx_count_7d"], got["tx_amount_7d"].astype(float).round(2)))
    assert got == sorted(expected)

    # counterparty_diversity: distinct counterparties of the trailing 7 days, per active day
    days = defaultdict(set)
    for account, day, cp in zip(tx["account_id"], tx["event_time"].dt.floor("D"), tx["counterparty_id"]):
        days[(account, day)].add(cp)
    diversity = frame(conn, p.name, "counterparty_diversity__v1")
    assert len(diversity) == len(days)
    for row in diversity.itertuples():
        day = pd.Timestamp(row.event_time).tz_convert("UTC") - pd.Timedelta(days=1)
        week = set().union(*(days.get((row.account_id, day - pd.Timedelta(days=k)), set()) for k in range(7)))
        assert (row.counterparties_1d, row.counterparties_7d) == (len(days[(row.account_id, day)]), len(week))

    # time_of_day: share of night-time transactions that day
    tod = frame(conn, p.name, "time_of_day__v1")
    tx["night"] = tx["event_time"].dt.hour < 6
    night = tx.groupby(["account_id", tx["event_time"].dt.floor("D")])["night"].mean()
    for row in tod.itertuples():
        day = pd.Timestamp(row.event_time).tz_convert("UTC") - pd.Timedelta(days=1)
        assert row.night_share_1d == pytest.approx(night[(row.account_id, day)])

    # account_profile: one row per account, online too
    assert conn.execute(sql.SQL("select count(*) from {}").format(
        sql.Identifier(p.name, "account_profile__v1__online"))).fetchone()[0] == 60

    # the second run on unchanged data adds zero rows anywhere and records no (empty) commit
    counts = {name: conn.execute(sql.SQL("select count(*) from {}").format(
        sql.Identifier(p.name, f"{name}__v1"))).fetchone()[0] for name in FEATURE_GROUPS}
    commits = "select c.id from fstore.commits c join fstore.feature_groups g on g.id = c.feature_group_id " \
              "where g.project = %s order by c.id"
    before = conn.execute(commits, (p.name,)).fetchall()
    assert len(before) == 4
    again = run_dbt(p.home, p.name, "alice", ["run"])
    again.raise_for_failure()
    for name in FEATURE_GROUPS:
        assert conn.execute(sql.SQL("select count(*) from {}").format(
            sql.Identifier(p.name, f"{name}__v1"))).fetchone()[0] == counts[name]
    assert conn.execute(commits, (p.name,)).fetchall() == before
    assert sum("nothing new to commit (no commit recorded)" in line for line in again.logs) == 4
    conn.close()
