"""A synthetic anti-money-laundering data set for the demo: accounts, transactions, fraud labels.

Generated with numpy from a seed (same seed, same data), in batches of bounded
size, and loaded as a Data Owner: the tables are created as the project's owner
role; rows go by binary COPY into a temporary table, then ``INSERT ... SELECT``
(COPY is refused on tables under row-level security, which every table of a
project schema is).

The story in the data: most accounts pay a few regular counterparties in the
daytime; about 2-3% are money mules (more among high-risk accounts) that, during a burst of a few days, move
larger amounts at night to many new counterparties. Those burst transactions
are mostly labelled fraud; a few ordinary ones are labelled fraud as noise.

Example::

    fs = fstore.connect("fraud", "alice")
    load_demo_data(fs, n_transactions=1_000_000)      # fraud.accounts, fraud.transactions, fraud.labels
"""

from __future__ import annotations

import datetime as dt
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from fstore.errors import InvalidInput, translated
from fstore.roles import group_role, split_project_user

PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_END = dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc)
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "IT", "BR", "NG", "IN", "CN", "AE"]
COUNTRY_WEIGHTS = [0.30, 0.14, 0.12, 0.09, 0.06, 0.06, 0.05, 0.05, 0.04, 0.04, 0.03, 0.02]
ACCOUNT_TYPES = ["personal", "business"]
RISK_SEGMENTS = ["low", "medium", "high"]
CHANNELS = ["card", "transfer", "wire", "cash", "crypto"]
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
MULE_SHARE = 0.02  # of accounts
BURST_SHARE = 0.04  # of transactions: mule bursts
NOISE_FRAUD_RATE = 0.001

TABLES = {
    "accounts": """(
        account_id      bigint not null,
        opened_at       timestamptz not null,
        country         text not null,
        account_type    text not null,
        kyc_level       smallint not null,
        risk_segment    text not null,
        customer_age    smallint not null,
        monthly_income  numeric(12,2) not null,
        is_pep          boolean not null)""",
    "transactions": """(
        transaction_id   bigint not null,
        account_id       bigint not null,
        counterparty_id  bigint not null,
        amount           numeric(12,2) not null,
        channel          text not null,
        event_time       timestamptz not null)""",
    "labels": """(
        transaction_id  bigint not null,
        account_id      bigint not null,
        event_time      timestamptz not null,
        is_fraud        boolean not null)""",
}

PRIMARY_KEYS = {"accounts": "account_id", "transactions": "transaction_id", "labels": "transaction_id"}

# binary COPY rows: int16 field count, then (int32 length, value) per field, big-endian
_TX_ROW = np.dtype([
    ("n", ">i2"),
    ("l_id", ">i4"), ("id", ">i8"), ("l_acct", ">i4"), ("acct", ">i8"), ("l_cp", ">i4"), ("cp", ">i8"),
    ("l_cents", ">i4"), ("cents", ">i8"), ("l_ch", ">i4"), ("ch", ">i2"), ("l_ts", ">i4"), ("ts", ">i8"),
    ("l_fraud", ">i4"), ("fraud", "u1"),
])
_TX_STAGE = ("(transaction_id bigint, account_id bigint, counterparty_id bigint, amount_cents bigint, "
             "channel smallint, event_time timestamptz, is_fraud boolean)")


@dataclass
class DemoData:
    """What :func:`load_demo_data` loaded."""

    project: str
    accounts: int
    transactions: int
    fraud_transactions: int
    mule_accounts: int
    start: dt.datetime
    end: dt.datetime
    seconds: float
    loaded: bool = True  # False when the tables already held data and replace=False


def _connection(fs_or_conn: Any) -> tuple[psycopg.Connection[Any], str, bool]:
    """(connection, project, whether we opened it)."""
    if isinstance(fs_or_conn, psycopg.Connection):
        role = fs_or_conn.info.parameter_status("session_authorization") or ""
        return fs_or_conn, split_project_user(role)[0], False
    if hasattr(fs_or_conn, "new_connection") and hasattr(fs_or_conn, "project"):
        return fs_or_conn.new_connection(autocommit=True), fs_or_conn.project, True
    raise InvalidInput("load_demo_data needs a FeatureStore or a psycopg connection of a Data Owner")


def _micros_since_2000(moment: dt.datetime) -> int:
    return int((moment - PG_EPOCH) / dt.timedelta(microseconds=1))


def generate_accounts(n_accounts: int, end: dt.datetime, seed: int) -> dict[str, np.ndarray]:
    """Account profiles as numpy columns (``is_mule`` marks the money mules)."""
    rng = np.random.default_rng([seed, 1])
    end_us = _micros_since_2000(end)
    day_us = 86_400 * 10**6
    business = rng.random(n_accounts) < 0.15
    risk = rng.choice(3, n_accounts, p=[0.7, 0.22, 0.08])
    return {
        "account_id": np.arange(1, n_accounts + 1, dtype=np.int64),
        "opened_at": end_us - rng.integers(95, 5 * 365, n_accounts) * day_us - rng.integers(0, day_us, n_accounts),
        "country": rng.choice(len(COUNTRIES), n_accounts, p=COUNTRY_WEIGHTS),
        "account_type": business.astype(np.int64),
        "kyc_level": rng.choice([1, 2, 3], n_accounts, p=[0.2, 0.5, 0.3]),
        "risk_segment": risk,
        "customer_age": rng.integers(18, 90, n_accounts),
        "monthly_income": np.round(rng.lognormal(8.0 + business * 1.5, 0.6), 2),
        "is_pep": rng.random(n_accounts) < 0.005,
        "is_mule": rng.random(n_accounts) < MULE_SHARE * (1 + risk),
    }


def generate_transactions(accounts: dict[str, np.ndarray], n_transactions: int, start: dt.datetime,
                          end: dt.datetime, seed: int,
                          batch_size: int = 250_000) -> Iterator[dict[str, np.ndarray]]:
    """Yield numpy batches of transactions (ids, accounts, counterparties, cents, channel, µs, fraud)."""
    rng = np.random.default_rng([seed, 2])
    n_accounts = len(accounts["account_id"])
    activity = rng.lognormal(0.0, 1.0, n_accounts)
    activity /= activity.sum()
    mules = np.flatnonzero(accounts["is_mule"])
    start_us, end_us = _micros_since_2000(start), _micros_since_2000(end)
    day_us, hour_us = 86_400 * 10**6, 3_600 * 10**6
    n_days = max(1, (end_us - start_us) // day_us)
    burst_start = start_us + rng.integers(0, max(1, n_days - 3), n_accounts) * day_us
    hour_p = np.array([1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 9, 8, 8, 8, 8, 8, 7, 6, 5, 4, 3, 2], dtype=float)
    hour_p /= hour_p.sum()
    next_id = 1
    remaining = n_transactions
    while remaining > 0:
        size = min(batch_size, remaining)
        n_burst = int(round(size * BURST_SHARE)) if len(mules) else 0
        n_normal = size - n_burst
        acct = rng.choice(n_accounts, n_normal, p=activity)
        ts = (start_us + rng.integers(0, n_days, n_normal) * day_us
              + rng.choice(24, n_normal, p=hour_p) * hour_us + rng.integers(0, hour_us, n_normal))
        regular = np.minimum(rng.geometric(0.35, n_normal), 12)  # a few regular counterparties each
        cp = (acct.astype(np.int64) * 7919 + regular * 104_729) % (n_accounts * 5) + 1
        cents = np.round(rng.lognormal(3.6, 1.1, n_normal) * 100).astype(np.int64) + 100
        channel = rng.choice(len(CHANNELS), n_normal, p=[0.55, 0.3, 0.08, 0.05, 0.02])
        fraud = rng.random(n_normal) < NOISE_FRAUD_RATE
        if n_burst:
            b_acct = rng.choice(mules, n_burst)
            b_ts = (burst_start[b_acct] + rng.integers(0, 3, n_burst) * day_us
                    + rng.integers(0, 6, n_burst) * hour_us + rng.integers(0, hour_us, n_burst))
            b_ts = np.minimum(b_ts, end_us - 1)
            acct = np.concatenate([acct, b_acct])
            ts = np.concatenate([ts, b_ts])
            cp = np.concatenate([cp, n_accounts * 5 + rng.integers(1, 10**7, n_burst)])  # new each time
            cents = np.concatenate([cents, np.round(rng.lognormal(6.5, 0.8, n_burst) * 100).astype(np.int64)])
            channel = np.concatenate([channel, rng.choice(len(CHANNELS), n_burst, p=[0.1, 0.3, 0.3, 0.1, 0.2])])
            fraud = np.concatenate([fraud, rng.random(n_burst) < 0.9])
        yield {
            "transaction_id": np.arange(next_id, next_id + size, dtype=np.int64),
            "account_id": accounts["account_id"][acct],
            "counterparty_id": cp.astype(np.int64),
            "amount_cents": cents,
            "channel": channel.astype(np.int16),
            "event_time": ts.astype(np.int64),
            "is_fraud": fraud,
        }
        next_id += size
        remaining -= size


def _transactions_copy_data(batch: dict[str, np.ndarray]) -> bytes:
    rows = np.empty(len(batch["transaction_id"]), dtype=_TX_ROW)
    rows["n"] = 7
    for length_field, width in (("l_id", 8), ("l_acct", 8), ("l_cp", 8), ("l_cents", 8), ("l_ch", 2),
                                ("l_ts", 8), ("l_fraud", 1)):
        rows[length_field] = width
    rows["id"], rows["acct"], rows["cp"] = batch["transaction_id"], batch["account_id"], batch["counterparty_id"]
    rows["cents"], rows["ch"], rows["ts"] = batch["amount_cents"], batch["channel"], batch["event_time"]
    rows["fraud"] = batch["is_fraud"]
    return rows.tobytes()


def _create_tables(conn: psycopg.Connection[Any], project: str, replace: bool) -> bool:
    """Create the raw tables as the owner; True when they need loading."""
    existing = conn.execute(
        "select count(*) from pg_tables where schemaname = %s and tablename = any(%s)",
        (project, list(TABLES)),
    ).fetchone()[0]
    if existing == len(TABLES) and not replace:
        has_rows = conn.execute(
            sql.SQL("select exists (select 1 from {}.transactions)").format(sql.Identifier(project))
        ).fetchone()[0]
        if has_rows:
            return False
    conn.execute(sql.SQL("set local role {}").format(sql.Identifier(group_role(project, "owner"))))
    for table, columns in TABLES.items():  # empty or to be replaced: start afresh, keys after loading
        name = sql.Identifier(project, table)
        conn.execute(sql.SQL("drop table if exists {}").format(name))
        conn.execute(sql.SQL("create table {} " + columns).format(name))
    conn.execute("set local role none")
    return True


def _load_accounts(conn: psycopg.Connection[Any], project: str, accounts: dict[str, np.ndarray]) -> None:
    conn.execute("create temp table _fstore_demo_accounts (account_id bigint, opened_at timestamptz, "
                 "country text, account_type text, kyc_level smallint, risk_segment text, "
                 "customer_age smallint, monthly_income numeric(12,2), is_pep boolean) on commit drop")
    with conn.cursor().copy("copy _fstore_demo_accounts from stdin") as copy:
        for i in range(len(accounts["account_id"])):
            copy.write_row((
                int(accounts["account_id"][i]),
                PG_EPOCH + dt.timedelta(microseconds=int(accounts["opened_at"][i])),
                COUNTRIES[accounts["country"][i]], ACCOUNT_TYPES[accounts["account_type"][i]],
                int(accounts["kyc_level"][i]), RISK_SEGMENTS[accounts["risk_segment"][i]],
                int(accounts["customer_age"][i]), float(accounts["monthly_income"][i]),
                bool(accounts["is_pep"][i]),
            ))
    conn.execute(sql.SQL("insert into {} select * from _fstore_demo_accounts order by account_id").format(
        sql.Identifier(project, "accounts")))


def _load_transactions(conn: psycopg.Connection[Any], project: str, batches: Any) -> tuple[int, int]:
    conn.execute(f"create temp table _fstore_demo_tx {_TX_STAGE} on commit drop")
    insert_tx = sql.SQL(
        "insert into {} select transaction_id, account_id, counterparty_id, amount_cents / 100.0, "
        "(%s::text[])[channel + 1], event_time from _fstore_demo_tx"
    ).format(sql.Identifier(project, "transactions"))
    insert_labels = sql.SQL(
        "insert into {} select transaction_id, account_id, event_time, is_fraud from _fstore_demo_tx"
    ).format(sql.Identifier(project, "labels"))
    total = fraud = 0
    for batch in batches:
        with conn.cursor().copy("copy _fstore_demo_tx from stdin (format binary)") as copy:
            copy.write(COPY_HEADER)
            copy.write(_transactions_copy_data(batch))
            copy.write(COPY_TRAILER)
        conn.execute(insert_tx, (CHANNELS,))
        conn.execute(insert_labels)
        conn.execute("truncate _fstore_demo_tx")
        total += len(batch["transaction_id"])
        fraud += int(batch["is_fraud"].sum())
    return total, fraud


def load_demo_data(fs_or_conn: Any, n_transactions: int = 1_000_000, n_accounts: int | None = None,
                   seed: int = 42, *, days: int = 90, end: dt.datetime = DEFAULT_END,
                   batch_size: int = 250_000, replace: bool = False) -> DemoData:
    """Create and fill ``<project>.accounts``, ``.transactions`` and ``.labels`` as a Data Owner.

    ``n_accounts`` defaults to one per 50 transactions (at least 100). Transactions
    span ``days`` days before ``end``. One transaction: all three tables or none.
    Tables that already hold data are kept unless ``replace`` is true.

    Example: ``load_demo_data(fstore.connect("fraud", "alice"), 2_000, seed=7)``
    """
    if n_transactions < 1 or days < 1:
        raise InvalidInput("n_transactions and days must be positive")
    n_accounts = n_accounts or max(100, n_transactions // 50)
    started = time.perf_counter()
    start = end - dt.timedelta(days=days)
    conn, project, opened = _connection(fs_or_conn)
    accounts = generate_accounts(n_accounts, end, seed)
    try:
        with translated(), conn.transaction():
            if not _create_tables(conn, project, replace):
                counts = conn.execute(sql.SQL(
                    "select (select count(*) from {}), (select count(*) from {}), "
                    "(select count(*) from {} where is_fraud)").format(
                        sql.Identifier(project, "accounts"), sql.Identifier(project, "transactions"),
                        sql.Identifier(project, "labels"))).fetchone()
                return DemoData(project, counts[0], counts[1], counts[2], 0, start, end,
                                time.perf_counter() - started, loaded=False)
            _load_accounts(conn, project, accounts)
            total, fraud = _load_transactions(
                conn, project, generate_transactions(accounts, n_transactions, start, end, seed, batch_size))
            conn.execute(sql.SQL("set local role {}").format(sql.Identifier(group_role(project, "owner"))))
            for table, key in PRIMARY_KEYS.items():
                conn.execute(sql.SQL("alter table {} add primary key ({})").format(
                    sql.Identifier(project, table), sql.Identifier(key)))
            conn.execute(sql.SQL("create index {} on {} (account_id, event_time)").format(
                sql.Identifier("transactions_account_time"), sql.Identifier(project, "transactions")))
            for table in TABLES:
                conn.execute(sql.SQL("analyze {}").format(sql.Identifier(project, table)))
            conn.execute("set local role none")
    finally:
        if opened:
            conn.close()
    return DemoData(project, n_accounts, total, fraud, int(accounts["is_mule"].sum()), start, end,
                    time.perf_counter() - started)
