"""The end-to-end demo on the embedded server, one step after another.

CA and TLS server; projects ``fraud`` (Data Owner alice, Data Scientist bob) and
``marketing`` (carol); a synthetic AML data set; dbt feature groups committed as
alice; a point-in-time training set for the fraud labels built as bob, exported
to TFRecord and Parquet; a small Keras model trained through ``tf.data``; a few
accounts scored from the online store. Re-running it reuses what exists.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

import fstore
from fstore import pki, policies, projects, server
from fstore.connection import connect, material_for, write_service_entry
from fstore.errors import Conflict
from fstore.home import FstoreHome

console = Console()
PROJECT = "fraud"
FEATURE_GROUPS = ["account_activity", "counterparty_diversity", "time_of_day", "account_profile"]
NUMERIC = {pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal, pa.types.is_boolean}


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print a step heading, run the step, print how long it took."""
    console.rule(f"[bold cyan]{title}")
    started = time.perf_counter()
    yield
    console.print(f"[dim]({time.perf_counter() - started:.1f} s)[/]")


def _ensure_project(home: FstoreHome, admin: Any, name: str, owner: str) -> None:
    try:
        projects.create_project(home, admin, name, owner)
        console.print(f"created project [bold]{name}[/] with Data Owner {name}__{owner}")
    except Conflict:
        console.print(f"project [bold]{name}[/] exists")
        _ensure_certificate(home, f"{name}__{owner}")


def _ensure_certificate(home: FstoreHome, role: str) -> None:
    record = pki.ensure_user_certificate(home, role)
    from fstore.certificates import record_in_catalog

    record_in_catalog(home, record)
    write_service_entry(material_for(home, role))


def setup_platform(home: FstoreHome, port: int | None) -> None:
    """CA, server, the two projects and bob."""
    if pki.init_ca(home):
        pki.issue_certificate(home, "fstore_admin")
        console.print(f"created the CA, server and admin certificates in {home.root}")
    result = server.start(home, port)
    console.print(f"PostgreSQL {'already running' if result.already_running else 'started'} on port {result.port}")
    write_service_entry(material_for(home, "fstore_admin"))
    with connect(home, "fstore_admin", autocommit=True) as admin:
        who, version, serial = admin.execute(
            "select current_user, version, client_serial from pg_stat_ssl where pid = pg_backend_pid()"
        ).fetchone()
        console.print(f"certificate login: current_user={who} over {version}, serial {serial}")
        _ensure_project(home, admin, PROJECT, "alice")
        _ensure_project(home, admin, "marketing", "carol")
    with connect(home, f"{PROJECT}__alice", autocommit=True) as alice:
        members = {m["user_name"] for m in projects.list_members(alice, PROJECT)}
        if "bob" not in members:
            projects.add_member(home, alice, PROJECT, "bob", "data-scientist")
            console.print("alice added bob to fraud as Data Scientist")
        else:
            _ensure_certificate(home, f"{PROJECT}__bob")
    console.print('try: psql "service=fraud__bob" -c "select count(*) from fraud.transactions"')


def load_and_engineer(home: FstoreHome, transactions: int) -> None:
    """Synthetic AML data, row policy, dbt feature groups (twice: the second adds nothing)."""
    from fstore.dbt import run_dbt
    from fstore.demo_data import load_demo_data

    alice = fstore.connect(PROJECT, "alice", home=home)
    # the data ends at today's midnight (UTC), so the online store's TTLs see fresh rows
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    data = load_demo_data(alice, n_transactions=transactions, end=today)
    verb = "loaded" if data.loaded else "found"
    console.print(f"{verb} {data.accounts:,} accounts, {data.transactions:,} transactions "
                  f"({data.fraud_transactions:,} fraudulent) in fraud.accounts/transactions/labels")
    declared = policies.load_policies(policies.policy_file(PROJECT))
    policies.apply_policies(alice.conn, PROJECT, declared)
    bob = fstore.connect(PROJECT, "bob", home=home)
    seen = bob.conn.execute("select count(*) from fraud.accounts").fetchone()[0]
    console.print(f"row policy 'hide_pep_accounts': bob sees {seen:,} of {data.accounts:,} accounts")
    for attempt in ("first", "second"):
        started = time.perf_counter()
        since = alice.conn.execute("select coalesce(max(id), 0) from fstore.commits").fetchone()[0]
        run = run_dbt(home, PROJECT, "alice", ["run", "--quiet"])
        run.raise_for_failure()
        added = _rows_committed_since(alice, since)  # a run that adds nothing records no commit
        console.print(f"{attempt} dbt run as fraud__alice: {time.perf_counter() - started:.1f} s, "
                      f"rows committed: {added or 'none (nothing new)'}")
    alice.close()
    bob.close()


def _rows_committed_since(fs: fstore.FeatureStore, since: int) -> dict[str, int]:
    rows = fs.conn.execute(
        "select g.name, sum(c.rows)::bigint from fstore.commits c "
        "join fstore.feature_groups g on g.id = c.feature_group_id "
        "where g.project = %s and c.id > %s group by g.name order by g.name", (PROJECT, since)
    ).fetchall()
    return {name: n for name, n in rows}


def show_feature_groups(home: FstoreHome) -> None:
    """What `fstore fg list --as fraud__alice` shows."""
    with fstore.connect(PROJECT, "alice", home=home) as alice:
        groups = alice.list_feature_groups()
    table = Table("feature group", "version", "online", "rows", "commits", "upstream")
    for g in groups:
        upstream = ", ".join(u.get("relation", "") for u in g.get("upstream") or [])
        table.add_row(g["name"], str(g["version"]), str(g["online"]), f"{g['rows'] or 0:,}",
                      str(g["commits"]), upstream)
    console.print(table)


def build_training_data(home: FstoreHome, out: Path) -> Any:
    """As bob: point-in-time training set for the fraud labels, exported to TFRecord and Parquet."""
    with fstore.connect(PROJECT, "bob", home=home) as bob:
        spine = ("select account_id, event_time, is_fraud from fraud.labels "
                 "where transaction_id % 10 = 0")
        features = [f"{g}:*" for g in FEATURE_GROUPS]
        dataset = bob.create_training_dataset(
            "fraud_detection", spine, features, label="is_fraud",
            split={"train": 0.8, "test": 0.2}, seed=7, format="tfrecord", path=out / "fraud_detection.tfrecord",
            new_version=True,  # every run of the demo builds the next version
        )
        table = bob.get_training_dataset("fraud_detection", dataset.version)
        from fstore.export import write_batches

        write_batches(table, out / "fraud_detection.parquet", "parquet", label="is_fraud")
    console.print(f"training dataset fraud_detection v{dataset.version}: {dataset.rows:,} rows, "
                  f"{len(table.column_names)} columns; saw commits {dataset.commits}")
    console.print(f"exported to {out / 'fraud_detection.tfrecord'} and {out / 'fraud_detection.parquet'}")
    return dataset, table


def feature_columns(schema: pa.Schema, exclude: set[str]) -> list[str]:
    """Numeric feature columns of a training table, in order."""
    return [f.name for f in schema if f.name not in exclude and any(is_(f.type) for is_ in NUMERIC)]


def train_and_score(home: FstoreHome, out: Path, dataset: Any, table: pa.Table) -> None:
    """Train a small Keras model on the TFRecord export via tf.data; score accounts online."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    import tensorflow as tf

    exclude = {"account_id", "event_time", "is_fraud", "split"}
    columns = feature_columns(table.schema, exclude)
    bob = fstore.connect(PROJECT, "bob", home=home)

    def to_matrix(features: dict[str, Any], label: Any) -> tuple[Any, Any]:
        x = tf.stack([tf.cast(features[c], tf.float32) for c in columns], axis=1)
        return tf.where(tf.math.is_nan(x), tf.zeros_like(x), x), tf.cast(label, tf.float32)

    train = bob.tf_dataset(out / "fraud_detection.tfrecord", split="train", batch_size=512).map(to_matrix)
    test = bob.tf_dataset(out / "fraud_detection.tfrecord", split="test", batch_size=512).map(to_matrix)
    normalizer = tf.keras.layers.Normalization()
    normalizer.adapt(train.map(lambda x, y: x).take(50))
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(len(columns),)), normalizer,
        tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=[tf.keras.metrics.AUC(name="auc")])
    model.fit(train, epochs=3, verbose=0)
    loss, auc = model.evaluate(test, verbose=0)
    console.print(f"Keras model on {len(columns)} features: test AUC {auc:.3f}, loss {loss:.4f}")

    accounts = bob.conn.execute(
        "with recent as (select * from fraud.labels "
        "                 where event_time > (select max(event_time) - interval '2 days' from fraud.labels)) "
        "(select account_id from recent where is_fraud group by account_id order by account_id limit 3) "
        "union all (select account_id from recent group by account_id having not bool_or(is_fraud) "
        "           order by account_id limit 3)"
    ).fetchall()
    rows = [{"account_id": a} for (a,) in accounts]
    refs = [f"{g}:*" for g in FEATURE_GROUPS]
    online = bob.get_online_features(refs, rows)  # the first call resolves and prepares the lookup
    started = time.perf_counter()
    online = bob.get_online_features(refs, rows)
    lookup_ms = (time.perf_counter() - started) * 1000
    matrix = np.column_stack([
        np.nan_to_num(np.asarray(online.column(c).to_pylist(), dtype=np.float64)) for c in columns
    ]).astype(np.float32)
    scores = model.predict(matrix, verbose=0).ravel()
    result = Table("account", "fraud in the last 2 days", "score (online features)")
    fraudulent = {a for (a,) in accounts[:3]}
    for (account,), score in zip(accounts, scores):
        result.add_row(str(account), "yes" if account in fraudulent else "no", f"{score:.3f}")
    console.print(result)
    found = sum(online.column(f"{g}__found").to_pylist().count(True) for g in FEATURE_GROUPS)
    console.print(f"{found} of {len(rows) * len(FEATURE_GROUPS)} (account, group) pairs found fresh online")
    console.print(f"online lookup of {len(rows)} accounts x {len(FEATURE_GROUPS)} feature groups: "
                  f"{lookup_ms:.2f} ms (one round trip, prepared)")
    bob.close()


def show_drift(home: FstoreHome) -> None:
    """Drift of the weekly velocity features: the last week of rows against the weeks before."""
    with fstore.connect(PROJECT, "bob", home=home) as bob:
        latest = bob.conn.execute("select max(event_time) from fraud.account_activity__v1").fetchone()[0]
        cut = latest - dt.timedelta(days=7)
        report = bob.drift("account_activity", baseline=(None, cut), current=(cut, None),
                           features=["tx_count_7d", "tx_amount_7d"])
    result = Table("feature", "rows before -> last week", "mean", "PSI", "KS", "drifted")
    for f in report.features:
        result.add_row(f.feature, f"{f.baseline_rows:,} -> {f.current_rows:,}",
                       f"{f.baseline_mean:.1f} -> {f.current_mean:.1f}", f"{f.psi:.4f}", f"{f.ks:.4f}",
                       "yes" if f.drifted else "no")
    console.print(result)


def hidden_rows_seen(home: FstoreHome, user: str) -> dict[str, int]:
    """Rows of politically exposed persons' accounts (hidden by the entity policy
    `hide_pep_accounts`) that ``user`` sees, per relation: every feature group's offline
    and online table, every training dataset, online lookups and statistics."""
    from psycopg import sql

    with fstore.connect(PROJECT, "alice", home=home) as alice:  # who they are, as the Data Owner knows
        peps = [a for (a,) in alice.conn.execute("select account_id from fraud.accounts where is_pep")]
        commit, total, of_peps = alice.conn.execute(
            "select c.id, count(*), count(*) filter (where p.account_id = any(%s)) from fstore.commits c"
            "  join fstore.feature_groups g on g.id = c.feature_group_id"
            "  join fraud.account_profile__v1 p on p._commit_id = c.id"
            " where g.project = %s and g.name = 'account_profile' group by c.id order by c.id desc limit 1",
            (peps, PROJECT)).fetchone()
    with fstore.connect(PROJECT, user, home=home) as fs:
        conn = fs.conn
        relations = [name for (name,) in conn.execute(
            "select offline_table from fstore.feature_groups where project = %s union all "
            "select online_table from fstore.feature_groups where project = %s and online union all "
            "select table_name from fstore.training_datasets where project = %s order by 1",
            (PROJECT, PROJECT, PROJECT))]
        seen = {name: conn.execute(sql.SQL("select count(*) from {} where account_id = any(%s)").format(
            sql.Identifier(PROJECT, name)), (peps,)).fetchone()[0] for name in relations}
        lookup = fs.get_online_features([f"{g}:*" for g in FEATURE_GROUPS], [{"account_id": a} for a in peps])
        seen["online lookups"] = sum(sum(1 for found in lookup.column(f"{g}__found").to_pylist() if found)
                                     for g in FEATURE_GROUPS)
        # the rows the statistics of account_profile's last commit describe, beyond the non-hidden ones
        stats = fs.get_feature_group("account_profile").statistics(commit)["account_id"]
        seen["account_profile statistics"] = stats["rows"] - (total - of_peps)
    return seen


def show_row_policy(home: FstoreHome) -> None:
    """The entity policy holds everywhere: bob sees none of the hidden accounts' rows."""
    seen = hidden_rows_seen(home, "bob")
    console.print(f"hide_pep_accounts: rows of hidden accounts fraud__bob sees in {len(seen)} places "
                  f"(feature groups, online tables, training datasets, lookups, statistics): {sum(seen.values())}")


def run_demo(home: FstoreHome, port: int | None = None, transactions: int = 1_000_000) -> None:
    """Run every demo step against the embedded server of ``home``."""
    out = home.root / "demo"
    out.mkdir(parents=True, exist_ok=True)
    with step("1. the fstore CA, the embedded PostgreSQL and two projects"):
        setup_platform(home, port)
    with step("2. synthetic AML data and dbt feature groups (as Data Owner fraud__alice)"):
        load_and_engineer(home, transactions)
    with step("3. feature groups (fstore fg list --as fraud__alice)"):
        show_feature_groups(home)
    with step("4. point-in-time training data (as Data Scientist fraud__bob)"):
        dataset, table = build_training_data(home, out)
    with step("5. a Keras model through tf.data, and scoring from the online store"):
        train_and_score(home, out, dataset, table)
    with step("6. drift: the last week against the weeks before (fstore drift, as fraud__bob)"):
        show_drift(home)
    with step("7. the row policy holds everywhere (hidden accounts, as fraud__bob)"):
        show_row_policy(home)
    console.rule("[bold green]done")
    console.print(f"server: `fstore server status`; psql: `psql \"service=fraud__alice\"`; files in {out}")
