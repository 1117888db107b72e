"""The end-to-end demo on the embedded server, one step after another.

CA and TLS server; projects ``fraud`` (Data Owner alice, Data Scientist bob) and
``marketing`` (carol); a synthetic AML data set; dbt feature groups committed as
alice; the feature view ``fraud_detection`` (four groups, the incoming transaction's
amount passed at request time, scalers) and its point-in-time training data built as
bob, exported to TFRecord and Parquet; a small Keras model trained through
``tf.data``; incoming transactions scored with ``get_feature_vector``; drift; the row
policy; the usage report; bias by slice and the drift report; a sensitive feature.
Re-running it reuses what exists.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

import fstore
from fstore import cluster, pki, policies, projects, server
from fstore.connection import connect, material_for, write_service_entry
from fstore.errors import Conflict, NotFound, PermissionDenied
from fstore.home import FstoreHome
from fstore.sensitive import readable_features

console = Console()
PROJECT = "fraud"
FEATURE_GROUPS = ["account_activity", "counterparty_diversity", "time_of_day", "account_profile"]


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


def setup_platform(home: FstoreHome, port: int | None, workers: int | None = None) -> None:
    """CA, server (with ``workers``: a Citus coordinator and its workers), the two projects and bob."""
    if pki.init_ca(home):
        pki.issue_certificate(home, "fstore_admin")
        console.print(f"created the CA, server and admin certificates in {home.root}")
    if workers is None and cluster.is_cluster(home):
        workers = len(cluster.workers(home))
    result = cluster.start_cluster(home, workers, port) if workers else server.start(home, port)
    console.print(f"PostgreSQL {'already running' if result.already_running else 'started'} on port {result.port}"
                  + (f", a Citus coordinator with {workers} workers" if workers else ""))
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


VIEW = "fraud_detection"
VIEW_FEATURES = ["account_activity:*", "counterparty_diversity:*", "time_of_day:*", "account_profile:kyc_level",
                 "account_profile:customer_age", "account_profile:monthly_income", "account_profile:risk_segment"]
VIEW_TRANSFORMS = {  # amounts on a log scale, counts and hours standardised, levels to [0, 1]; shares are in [0, 1]
    "amount": "robust_scaler", "tx_amount_1h": "log1p", "tx_amount_1d": "log1p", "tx_amount_7d": "log1p",
    "tx_count_1h": "standard_scaler", "tx_count_1d": "standard_scaler", "tx_count_7d": "standard_scaler",
    "counterparties_1d": "standard_scaler", "counterparties_7d": "standard_scaler",
    "new_counterparties_1d": "standard_scaler", "counterparties_total": "standard_scaler",
    "mean_hour_1d": "standard_scaler", "mean_hour_7d": "standard_scaler", "kyc_level": "min_max_scaler",
    "customer_age": "standard_scaler", "monthly_income": "robust_scaler", "risk_segment": "label_encoder",
}
# the spine: each labelled transaction's account and time, its amount (the passed feature) and its label
SPINE = ("select l.account_id, l.event_time, t.amount::float8 as amount, l.is_fraud from fraud.labels l "
         "join fraud.transactions t using (transaction_id) where l.transaction_id % 10 = 0")


def feature_view(bob: fstore.FeatureStore) -> Any:
    """The model's definition: four feature groups, the incoming transaction's amount passed at
    request time, scalers fitted on the training split (created once, reused by later runs)."""
    try:
        return bob.get_feature_view(VIEW)
    except NotFound:
        return bob.create_feature_view(
            VIEW, VIEW_FEATURES, label="is_fraud", passed_features={"amount": "double precision"},
            transformations=VIEW_TRANSFORMS, description="AML scoring: account behaviour and the incoming amount")


def build_training_data(home: FstoreHome, out: Path) -> Any:
    """As bob: the feature view's point-in-time training data (transformed, fitted on the
    training split), exported to TFRecord and Parquet."""
    with fstore.connect(PROJECT, "bob", home=home) as bob:
        fv = feature_view(bob)
        dataset = fv.create_training_dataset(SPINE, split={"train": 0.8, "test": 0.2}, seed=7)  # the next version
        fv.export(out / "fraud_detection.tfrecord", training_dataset_version=dataset.version)
        fv.export(out / "fraud_detection.parquet", training_dataset_version=dataset.version, split=False)
        columns = fv.columns_of(dataset.version)
    console.print(f"feature view {fv.name} v{fv.version}: {len(fv.features)} features of 4 groups, passed "
                  f"{', '.join(p['name'] for p in fv.passed_features)}, {len(fv.transformations)} transformations")
    console.print(f"training dataset {dataset.name} v{dataset.version}: {dataset.rows:,} rows, {len(columns)} "
                  f"model-ready columns (fitted on the training split); saw commits {dataset.commits}")
    console.print(f"exported to {out / 'fraud_detection.tfrecord'} and {out / 'fraud_detection.parquet'}")
    return dataset, columns


def train_and_score(home: FstoreHome, out: Path, dataset: Any, columns: list[str]) -> None:
    """Train a small Keras model on the view's TFRecord export via tf.data; score incoming
    transactions with ``get_feature_vector`` and their amounts (the request-time feature)."""
    import os
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    import tensorflow as tf

    bob = fstore.connect(PROJECT, "bob", home=home)

    def to_matrix(features: dict[str, Any], label: Any) -> tuple[Any, Any]:
        x = tf.stack([tf.cast(features[c], tf.float32) for c in columns], axis=1)
        return tf.where(tf.math.is_nan(x), tf.zeros_like(x), x), tf.cast(label, tf.float32)

    train = bob.tf_dataset(out / "fraud_detection.tfrecord", split="train", batch_size=512).map(to_matrix)
    test = bob.tf_dataset(out / "fraud_detection.tfrecord", split="test", batch_size=512).map(to_matrix)
    model = tf.keras.Sequential([  # the view scaled the inputs: no normalisation layer
        tf.keras.Input(shape=(len(columns),)),
        tf.keras.layers.Dense(32, activation="relu"), tf.keras.layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=[tf.keras.metrics.AUC(name="auc")])
    model.fit(train, epochs=3, verbose=0)
    loss, auc = model.evaluate(test, verbose=0)
    console.print(f"Keras model on the view's {len(columns)} columns: test AUC {auc:.3f}, loss {loss:.4f}")

    incoming = bob.conn.execute(  # the latest transaction of 3 fraudulent and 3 clean accounts: "incoming"
        "with recent as (select l.*, t.amount::float8 as amount from fraud.labels l join fraud.transactions t "
        "                  using (transaction_id) "
        "                 where l.event_time > (select max(event_time) - interval '2 days' from fraud.labels)), "
        "last as (select distinct on (account_id) account_id, amount, bool_or(is_fraud) over (partition by account_id) "
        "         as fraud from recent order by account_id, event_time desc) "
        "(select * from last where fraud order by account_id limit 3) "
        "union all (select * from last where not fraud order by account_id limit 3)").fetchall()
    fv = bob.get_feature_view(VIEW).init_serving(dataset.version)
    fv.get_feature_vector({"account_id": incoming[0][0]}, {"amount": incoming[0][1]})  # the first call prepares
    vectors, found, times = [], 0, []
    for account, amount, _ in incoming:  # as an AML service scores each transaction when it arrives
        started = time.perf_counter()
        vectors.append(fv.get_feature_vector({"account_id": account}, {"amount": amount}, return_type="numpy"))
        times.append((time.perf_counter() - started) * 1000)
        found += bool(fv.last_found)
    scores = model.predict(np.nan_to_num(np.vstack(vectors)).astype(np.float32), verbose=0).ravel()
    result = Table("account", "incoming amount", "fraud in the last 2 days", "score (get_feature_vector)")
    for (account, amount, fraud), score in zip(incoming, scores):
        result.add_row(str(account), f"{amount:,.2f}", "yes" if fraud else "no", f"{score:.3f}")
    console.print(result)
    console.print(f"{found} of {len(incoming)} accounts found fresh in every feature group online")
    console.print(f"get_feature_vector (4 feature groups, {len(VIEW_TRANSFORMS)} transformations, one round trip, "
                  f"prepared): median {sorted(times)[len(times) // 2]:.2f} ms")
    fv.close()
    bob.close()


def show_usage(home: FstoreHome) -> dict[str, Any]:
    """What `fstore usage --report --as fraud__alice` prints: how widely fraud's features are used."""
    with fstore.connect(PROJECT, "alice", home=home) as alice:
        report = alice.feature_usage(report=True)
    share = report["reused_training_column_share"]
    console.print(f"{report['features_defined']} features defined in {report['feature_groups']} feature groups, "
                  f"{report['features_used']} used, {report['reused_features']} reused by more than one view or "
                  f"project; training columns from reused features: {report['training_columns_from_reused']} of "
                  f"{report['training_columns']}" + (f" ({share:.0%})" if share is not None else ""))
    return report


def show_drift(home: FstoreHome) -> Any:
    """Drift of the weekly velocity features: the last week of rows against the weeks before
    (returned, for the report of the governance step)."""
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
    return report


def show_governance(home: FstoreHome, out: Path, report: Any) -> Path:
    """As bob: the account profiles per country (bias by slice: each country's distribution
    against the whole, small countries folded), and the drift report as one HTML page with
    histograms and those slices (``drift.html``)."""
    with fstore.connect(PROJECT, "bob", home=home) as bob:
        by_country = bob.get_feature_group("account_profile").statistics(slice_by="country")
        page = report.to_html(out / "drift.html", bob, slices=by_country)
    table = Table("country", "accounts", "share", "max PSI against all", "flagged")
    for s in by_country.slices:
        if s.slice_kind != "all":
            table.add_row(s.name + (f" ({s.folded_values} values)" if s.folded_values else ""), f"{s.rows:,}",
                          f"{s.share:.1%}" if s.share is not None else "-",
                          f"{s.psi_max:.3f}" if s.psi_max is not None else "-",
                          ", ".join(s.flagged_features) or "no")
    console.print(table)
    console.print(f"slices by country flagged (PSI >= {by_country.threshold:g}): {', '.join(by_country.flagged) or 'none'}")
    console.print(f"drift report with histograms and slices: {page}")
    return page


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
        readable = [f"{g}:{f}" for g in FEATURE_GROUPS for f in readable_features(fs.get_feature_group(g), None)]
        lookup = fs.get_online_features(readable, [{"account_id": a} for a in peps])
        seen["online lookups"] = sum(sum(1 for found in lookup.column(f"{g}__found").to_pylist() if found)
                                     for g in FEATURE_GROUPS)
        # the rows the statistics of account_profile's last commit describe, beyond the non-hidden ones
        stats = fs.get_feature_group("account_profile").statistics(commit)["account_id"]
        seen["account_profile statistics"] = stats["rows"] - (total - of_peps)
    return seen


def show_sensitive_feature(home: FstoreHome) -> str:
    """``is_pep`` is marked sensitive in the dbt model's YAML (``meta: {sensitive: true}``):
    bob, a Data Scientist, is refused it by name; alice, the Data Owner, reads it."""
    with fstore.connect(PROJECT, "bob", home=home) as bob:
        try:
            bob.get_online_features(["account_profile:is_pep"], [{"account_id": 1}])
            refusal = "fraud__bob read is_pep"  # a failure of the demo's claim, shown as such
        except PermissionDenied as denied:
            refusal = str(denied)
    with fstore.connect(PROJECT, "alice", home=home) as alice:
        marked = alice.get_feature_group("account_profile").sensitive_features
        peps = alice.conn.execute("select count(*) from fraud.account_profile__v1 where is_pep").fetchone()[0]
    console.print(f"sensitive features of account_profile: {', '.join(marked)}")
    console.print(f"fraud__bob asks for account_profile:is_pep -> {refusal}")
    console.print(f"fraud__alice (Data Owner) reads it: {peps:,} profile rows with is_pep")
    return refusal


def show_row_policy(home: FstoreHome) -> None:
    """The entity policy holds everywhere: bob sees none of the hidden accounts' rows."""
    seen = hidden_rows_seen(home, "bob")
    console.print(f"hide_pep_accounts: rows of hidden accounts fraud__bob sees in {len(seen)} places "
                  f"(feature groups, online tables, training datasets, lookups, statistics): {sum(seen.values())}")


def show_cluster(home: FstoreHome) -> None:
    """The nodes of the cluster and where each feature group's shards are."""
    status = cluster.cluster_status(home)
    for node in status["nodes"]:
        console.print(f"{node['name']}: {node['host']}:{node['port']} {'DOWN' if node.get('healthy') is False else 'up'}"
                      f", {node['shards']} shard(s)")
    tables = status.get("tables", [])
    console.print(f"distributed tables: {len(tables)}"
                  + "".join(f"\n  {t['table']}: {t['shards']} shard(s) by {t['distribution_column']}" for t in tables))


def run_demo(home: FstoreHome, port: int | None = None, transactions: int = 1_000_000,
             workers: int | None = None) -> None:
    """Run every demo step against the embedded server of ``home`` (with ``workers``: on a
    Citus cluster of that many workers)."""
    out = home.root / "demo"
    out.mkdir(parents=True, exist_ok=True)
    with step("1. the fstore CA, the embedded PostgreSQL and two projects"):
        setup_platform(home, port, workers)
    with step("2. synthetic AML data and dbt feature groups (as Data Owner fraud__alice)"):
        load_and_engineer(home, transactions)
    with step("3. feature groups (fstore fg list --as fraud__alice)"):
        show_feature_groups(home)
    with step("4. a feature view and its point-in-time training data (as Data Scientist fraud__bob)"):
        dataset, columns = build_training_data(home, out)
    with step("5. a Keras model through tf.data, and scoring with get_feature_vector"):
        train_and_score(home, out, dataset, columns)
    with step("6. drift: the last week against the weeks before (fstore drift, as fraud__bob)"):
        report = show_drift(home)
    with step("7. the row policy holds everywhere (hidden accounts, as fraud__bob)"):
        show_row_policy(home)
    with step("8. feature usage and reuse (fstore usage --report --as fraud__alice)"):
        show_usage(home)
    with step("9. governance: bias by slice (per country) and a drift report to look at (as fraud__bob)"):
        show_governance(home, out, report)
    with step("10. a sensitive feature: is_pep, Data Owners only (as fraud__bob, then fraud__alice)"):
        show_sensitive_feature(home)
    if cluster.is_cluster(home):
        with step("11. the cluster: nodes and shards (fstore cluster status)"):
            show_cluster(home)
    console.rule("[bold green]done")
    console.print(f"server: `fstore server status`; psql: `psql \"service=fraud__alice\"`; files in {out}")
