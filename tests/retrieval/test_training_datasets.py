"""Training datasets: the SQL path and the Python path agree, datasets are reproducible
after new commits (in-flight ones included), splits, provenance, ownership, exports."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

import fstore
from fstore import training
from fstore.errors import Conflict, InvalidInput, NotFound
from tests.retrieval.conftest import SqlFeatureGroup, commit_rows, create_group

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)
ACCOUNT = {"account_id": "bigint", "event_time": "timestamptz", "balance": "double precision", "n_tx": "integer"}
DEVICE = {"account_id": "bigint", "device": "text", "event_time": "timestamptz", "trust": "real"}


def _history(alice: psycopg.Connection, project: str) -> tuple[SqlFeatureGroup, SqlFeatureGroup]:
    account = create_group(alice, project, "account", ACCOUNT, ["account_id"])
    device = create_group(alice, project, "device", DEVICE, ["account_id", "device"], ttl="10 days")
    commit_rows(alice, account, [(a, T0 + dt.timedelta(days=d), 100.0 * a + d, d)
                                 for a in range(1, 41) for d in range(0, 30, 3)])
    commit_rows(alice, device, [(a, dev, T0 + dt.timedelta(days=d), 0.1 * d)
                                for a in range(1, 41) for dev in ("ios", "web") for d in range(0, 30, 7)])
    return account, device


def _spine(rows: int = 400) -> pd.DataFrame:
    return pd.DataFrame({
        "account_id": [1 + (i * 7) % 45 for i in range(rows)],
        "device": ["ios" if i % 3 else "web" for i in range(rows)],
        "event_time": [T0 + dt.timedelta(hours=5 * i % 800) for i in range(rows)],
        "is_fraud": [int(i % 11 == 0) for i in range(rows)],
    }).astype({"is_fraud": "int32"})  # the type of the labels table's integer column


FEATURES = ["account:*", "device:trust"]


@pytest.fixture
def groups(fraud: Any) -> tuple[SqlFeatureGroup, SqlFeatureGroup]:
    with fraud.connect("alice") as alice:
        return _history(alice, fraud.name)


def _spine_table(alice: psycopg.Connection, project: str, spine: pd.DataFrame) -> str:
    """The spine as a table of the project (created by the Data Owner as the owner)."""
    with alice.transaction():
        alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{project}__owner")))
        alice.execute(sql.SQL("create table {} (account_id bigint, device text, event_time timestamptz, "
                              "is_fraud integer)").format(sql.Identifier(project, "labels")))
        alice.cursor().executemany(  # COPY FROM is refused on tables under row-level security
            sql.SQL("insert into {} values (%s, %s, %s, %s)").format(sql.Identifier(project, "labels")),
            [tuple(row) for row in spine.itertuples(index=False)])
    return f"{project}.labels"


def test_sql_path_and_python_path_give_identical_tables(fraud: Any, groups: Any, home: Any) -> None:
    spine = _spine()
    with fraud.connect("alice") as alice:
        labels = _spine_table(alice, fraud.name, spine)
    fs = fstore.connect(fraud.name, "bob", home=home)

    from_frame = fs.get_historical_features(spine, FEATURES)
    from_table = fs.get_historical_features(labels, FEATURES)
    assert from_frame.equals(from_table)

    with fraud.connect("bob") as bob:  # a psql user: the builder's query, run as is
        query = bob.execute("select fstore.training_data_sql(%s::regclass, %s)", (labels, FEATURES)).fetchone()[0]
        cursor = bob.execute(query)
        assert [d.name for d in cursor.description] == from_frame.column_names
        rows = [dict(zip(from_frame.column_names, r)) for r in cursor.fetchall()]
        assert pa.Table.from_pylist(rows, schema=from_frame.schema).equals(from_frame)

        # the training table built from psql equals the one built from Python
        bob.execute("create temp table spine (account_id bigint, device text, event_time timestamptz, is_fraud int)")
        with bob.cursor().copy("copy spine from stdin") as copy:
            for row in spine.itertuples(index=False):
                copy.write_row(tuple(row))
        record = bob.execute(
            "select to_jsonb(t) from fstore.create_training_table('from_sql', 'spine'::regclass, %s,"
            " p_label => array['is_fraud'], p_split => '{\"train\": 0.75, \"test\": 0.25}', p_seed => 11) t",
            (FEATURES,)).fetchone()[0]
    python = fs.create_training_dataset("from_python", spine, FEATURES, label="is_fraud",
                                        split={"train": 0.75, "test": 0.25}, seed=11)
    assert record["spine_hash"] == python.spine_hash
    assert record["rows"] == python.rows == len(spine)
    assert fs.get_training_dataset("from_sql").equals(fs.get_training_dataset("from_python"))
    assert fs.get_training_dataset("from_python").drop_columns(["split"]).equals(from_frame)


def test_training_dataset_is_the_same_after_new_commits(fraud: Any, groups: Any, home: Any) -> None:
    account, device = groups
    spine = _spine()
    fs = fstore.connect(fraud.name, "bob", home=home)

    # Commits to one group take turns, those made with the commit functions directly too: a
    # writer holding a commit open holds up the next one, and a dataset built meanwhile does
    # not see the open commit's rows (it becomes visible only afterwards).
    in_flight = fraud.connect("alice", autocommit=False)
    in_flight_id = in_flight.execute("select fstore.begin_commit(%s, 'manual')", (account.id,)).fetchone()[0]
    late = [(a, T0 + dt.timedelta(days=d, hours=1), -1.0, -1, in_flight_id)
            for a in range(1, 41) for d in range(0, 30, 3)]
    in_flight.cursor().executemany(
        sql.SQL("insert into {} (account_id, event_time, balance, n_tx, _commit_id) values (%s, %s, %s, %s, %s)")
        .format(account.table), late)
    with fraud.connect("alice") as alice:
        alice.execute("set lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            commit_rows(alice, account, [(a, T0 + dt.timedelta(days=1), 5.0, 5) for a in range(1, 41)])

    first = fs.create_training_dataset("fraud_train", spine, FEATURES, label="is_fraud")
    before = fs.get_training_dataset("fraud_train")
    in_flight.execute("select fstore.finish_commit(%s, %s, 0, null, null, '{}', '{}')", (in_flight_id, len(late)))
    in_flight.commit()
    in_flight.close()
    seen = {g["name"]: g for g in first.feature_groups}
    assert seen["account"]["max_commit"] < in_flight_id
    assert in_flight_id not in seen["account"]["commits"]

    with fraud.connect("alice") as alice:  # later rows, ties that would win, older rows
        commit_rows(alice, account, [(a, T0 + dt.timedelta(days=d), 7.0, 7) for a in range(1, 41) for d in range(0, 30, 3)])
        commit_rows(alice, device, [(a, "ios", T0 + dt.timedelta(days=d, hours=2), 0.99)
                                    for a in range(1, 41) for d in range(30)])
    now = fs.get_historical_features(spine, FEATURES)
    assert not now.equals(before), "the new commits change a fresh retrieval"

    assert fs.get_training_dataset("fraud_train").equals(before)
    assert fs.get_training_dataset("fraud_train", 1).equals(before)
    assert training.rebuild_training_dataset(fs, "fraud_train", 1).equals(before)  # as of the commits it saw

    second = fs.create_training_dataset("fraud_train", spine, FEATURES, label="is_fraud", new_version=True)
    assert second.version == 2 and second.spine_hash == first.spine_hash
    assert fs.get_training_dataset("fraud_train").equals(now)
    assert fs.get_training_dataset("fraud_train", 1).equals(before)


def test_splits_by_fraction_and_by_time(fraud: Any, groups: Any, home: Any) -> None:
    spine = _spine(1000)
    fs = fstore.connect(fraud.name, "bob", home=home)
    split = {"train": 0.8, "test": 0.2}
    a = fs.get_training_dataset(fs.create_training_dataset("a", spine, FEATURES, split=split, seed=3).name)
    b = fs.get_training_dataset(fs.create_training_dataset("b", spine, FEATURES, split=split, seed=3).name)
    c = fs.get_training_dataset(fs.create_training_dataset("c", spine, FEATURES, split=split, seed=4).name)
    assert a.column("split").to_pylist() == b.column("split").to_pylist()
    assert a.column("split").to_pylist() != c.column("split").to_pylist()
    assert 0.74 < a.column("split").to_pylist().count("train") / 1000 < 0.86

    cut = T0 + dt.timedelta(days=10)
    ranges = {"early": [None, cut.isoformat()], "late": [cut.isoformat(), (T0 + dt.timedelta(days=20)).isoformat()]}
    timed = fs.get_training_dataset(fs.create_training_dataset("d", spine, FEATURES, split=ranges).name)
    expected = [("early" if t < cut else "late") for t in spine["event_time"] if t < T0 + dt.timedelta(days=20)]
    assert timed.column("split").to_pylist() == expected  # rows after every range are left out

    with pytest.raises(InvalidInput, match="add up to 1"):
        fs.create_training_dataset("e", spine, FEATURES, split={"train": 0.8, "test": 0.3})
    with pytest.raises(InvalidInput, match="overlap"):
        fs.create_training_dataset("e", spine, FEATURES, split={"x": ["2024-01-01", "2024-03-05"], "y": ["2024-03-04", None]})
    with pytest.raises(InvalidInput, match="split column"):
        fs.create_training_dataset("e", spine.assign(split="x"), FEATURES, split=split)


def test_provenance_ownership_and_audit(fraud: Any, groups: Any, home: Any) -> None:
    spine = _spine()
    role = fraud.add("dan", "data-scientist")
    with fstore.application(fraud.name, "dan", "trainer", home=home) as app:
        dataset = app.create_training_dataset("fraud_train", spine, FEATURES, label=["is_fraud"],
                                              description="first cut")
    fs = fstore.connect(fraud.name, "dan", home=home)
    assert (dataset.created_by, dataset.app_id, dataset.label) == (role, "trainer", ["is_fraud"])
    assert [(g["name"], g["version"]) for g in dataset.feature_groups] == [("account", 1), ("device", 1)]
    assert all(g["max_commit"] == max(g["commits"]) for g in dataset.feature_groups)
    assert dataset.spine_columns == ["account_id", "device", "event_time", "is_fraud"]
    assert training.training_dataset(fs, "fraud_train").spine_hash == dataset.spine_hash

    table = sql.Identifier(fraud.name, dataset.table_name)
    with fraud.connect("alice") as alice:
        owner, forced = alice.execute(
            "select relowner::regrole::text, relforcerowsecurity from pg_class where oid = %s::regclass",
            (f"{fraud.name}.{dataset.table_name}",)).fetchone()
        assert (owner, forced) == (f"{fraud.name}__owner", True)
        assert alice.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()[0] == len(spine)
        audit = alice.execute("select session_role, app_id, details->>'name' from fstore.audit_log "
                              "where project = %s and action = 'create_training_dataset'", (fraud.name,)).fetchall()
        assert audit == [(role, "trainer", "fraud_train")]
    with fraud.connect("carol") as carol:  # another Data Scientist reads it, cannot change or drop it
        assert carol.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()[0] == len(spine)
        for statement in (sql.SQL("delete from {}"), sql.SQL("drop table {}")):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                carol.execute(statement.format(table))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="Data Owner"):
            carol.execute("select fstore.drop_training_dataset('fraud_train', 1)")
        # only fstore's builder stores a version, and it reads a spine only from this session's temporary tables
        carol.execute("create temp view v as select * from " + sql.Identifier(fraud.name, "account__v1").as_string(carol))
        for source in (f"{fraud.name}.account__v1", "v"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="function store_training_table"):
                carol.execute("select fstore.store_training_table('stolen', %s::regclass, '{}')", (source,))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="temporary table of this session"):
                carol.execute("select fstore.build_training_table('stolen', %s::regclass, array['account:balance'],"
                              " 'event_time', null, false, null, '{}', null, 0, '')", (source,))
    fs.conn.execute("select fstore.drop_training_dataset('fraud_train', 1)")  # its creator may
    with pytest.raises(NotFound):
        fs.get_training_dataset("fraud_train")


def test_export_to_parquet_is_recorded(fraud: Any, groups: Any, home: Any, tmp_path: Any) -> None:
    fs = fstore.connect(fraud.name, "bob", home=home)
    path = tmp_path / "train.parquet"
    dataset = fs.create_training_dataset("exported", _spine(), FEATURES, label="is_fraud", path=path)
    assert pq.read_table(path).equals(fs.get_training_dataset("exported"))
    assert [(e["format"], e["path"], e["rows"]) for e in dataset.exports] == [("parquet", str(path), dataset.rows)]
    with pytest.raises(InvalidInput, match="cannot tell the format"):
        fs.create_training_dataset("exported", _spine(), FEATURES, path=tmp_path / "train.xyz")


def test_a_name_is_reused_only_on_purpose(fraud: Any, groups: Any, home: Any) -> None:
    """Building a dataset under a name that exists asks for new_version=True or the next version=."""
    fs = fstore.connect(fraud.name, "bob", home=home)
    spine = _spine(40)
    with pytest.raises(Conflict, match="does not exist yet: its first version is 1, not 2"):
        fs.create_training_dataset("reused", spine, FEATURES, version=2)
    assert fs.create_training_dataset("reused", spine, FEATURES).version == 1
    with pytest.raises(Conflict, match=r"reused exists already \(latest version 1\): pass new_version=True "
                                       r"\(or version=2\) to build version 2"):
        fs.create_training_dataset("reused", spine, FEATURES)
    with pytest.raises(Conflict, match=r"version 5 cannot be built now \(the next is 2\)"):
        fs.create_training_dataset("reused", spine, FEATURES, version=5)
    assert [d.version for d in fs.list_training_datasets("reused")] == [1]  # nothing was built by the refusals
    assert fs.create_training_dataset("reused", spine, FEATURES, version=2).version == 2
    assert fs.create_training_dataset("reused", spine, FEATURES, new_version=True).version == 3

    # the rule is the database's: a psql user meets it too, and asks for a new version by name
    with fraud.connect("bob") as bob:
        bob.autocommit = True
        bob.execute("create temp table spine as select * from (values (1::bigint, 'd1', now(), 0)) "
                    "v(account_id, device, event_time, is_fraud)")
        build = "select version from fstore.create_training_table('reused', 'spine'::regclass, %s{})"
        with pytest.raises(psycopg.errors.DuplicateObject, match=r"reused exists already \(latest version 3\)"):
            bob.execute(build.format(""), (FEATURES,))
        with pytest.raises(psycopg.errors.DuplicateObject, match="version 3 cannot be built now"):
            bob.execute(build.format(", p_version => 3"), (FEATURES,))
        assert bob.execute(build.format(", p_new_version => true"), (FEATURES,)).fetchone()[0] == 4
        assert bob.execute(build.format(", p_version => 5"), (FEATURES,)).fetchone()[0] == 5


def test_export_by_name_brings_label_and_split_and_never_the_row_column(fraud: Any, groups: Any, home: Any,
                                                                      tmp_path: Any) -> None:
    """fs.export takes a training dataset's name (name@version too), as the CLI does."""
    fs = fstore.connect(fraud.name, "bob", home=home)
    dataset = fs.create_training_dataset("by_name", _spine(), FEATURES, label="is_fraud",
                                         split={"train": 0.75, "test": 0.25}, seed=1)
    stored = fs.get_training_dataset("by_name")
    assert "_row" not in stored.column_names and "_row" not in dataset.columns

    split = fs.export("by_name", tmp_path / "split.parquet")  # one file per split, the split column left out
    assert sorted(p.name for p in (tmp_path / "split.parquet").iterdir()) == ["test.parquet", "train.parquet"]
    assert split.splits == {k: stored.column("split").to_pylist().count(k) for k in ("train", "test")}
    train = pq.read_table(tmp_path / "split.parquet" / "train.parquet")
    assert train.column_names == [c for c in stored.column_names if c != "split"]

    whole = fs.export("by_name@1", tmp_path / "whole.parquet", split=False)
    assert pq.read_table(whole.path).equals(stored)
    table = fs.export(dataset.table_name, tmp_path / "table.csv")  # its table by name: still without _row
    assert table.rows == dataset.rows and "_row" not in (tmp_path / "table.csv" / "train.csv").read_text()
    npy = fs.export("by_name", tmp_path / "npy", "npy", features=["balance", "n_tx", "trust"], split=False)
    assert json.loads((npy.path / "meta.json").read_text())["label"] == ["is_fraud"]
    recorded = fs.training_dataset("by_name").exports
    assert [(e["format"], e["rows"]) for e in recorded] == [("parquet", dataset.rows)] * 2 + \
        [("csv", dataset.rows), ("npy", dataset.rows)]
    with pytest.raises(NotFound, match="by_name version 7 does not exist"):
        fs.export("by_name@7", tmp_path / "none.parquet")


def test_bad_input_is_refused_with_names(fraud: Any, groups: Any, home: Any) -> None:
    fs = fstore.connect(fraud.name, "bob", home=home)
    with pytest.raises(InvalidInput, match=r"no column label \(named as a label\)"):
        fs.create_training_dataset("x", _spine(), FEATURES, label="label")
    with pytest.raises(InvalidInput, match="invalid feature group name"):
        fs.create_training_dataset("Bad Name", _spine(), FEATURES)
    with pytest.raises(NotFound, match="training dataset .*nope does not exist"):
        fs.get_training_dataset("nope")


def test_connect_by_dsn_reads_the_same(fraud: Any, groups: Any, home: Any) -> None:
    spine = _spine(50)
    by_cert = fstore.connect(fraud.name, "bob", home=home)
    by_dsn = fstore.connect(dsn=f"service={fraud.role('bob')}")
    assert (by_dsn.project, by_dsn.user) == (fraud.name, "bob")
    assert by_dsn.get_historical_features(spine, FEATURES).equals(by_cert.get_historical_features(spine, FEATURES))


def test_the_builder_runs_nothing_of_the_callers(fraud: Any, groups: Any, home: Any) -> None:
    """fstore's builder (SECURITY DEFINER) refuses spines that could run the caller's code with its rights;
    create_training_table copies any other spine first, in the caller's own rights."""
    with fraud.connect("bob") as bob:
        bob.execute("create function pg_temp.probe(v bigint) returns boolean language sql as 'select true'")
        bob.execute("create domain pg_temp.checked as bigint check (pg_temp.probe(value))")
        bob.execute("create temp table by_domain (account_id pg_temp.checked, event_time timestamptz)")
        bob.execute("create temp table with_policy (account_id bigint, event_time timestamptz)")
        bob.execute("alter table with_policy enable row level security")
        bob.execute("create policy p on with_policy using (pg_temp.probe(account_id))")
        bob.execute("create temp table with_child (account_id bigint, event_time timestamptz)")
        bob.execute("create temp table child () inherits (with_child)")
        for source, message in (("by_domain", "type of its own"), ("with_policy", "ordinary temporary table"),
                                ("with_child", "ordinary temporary table")):
            bob.execute(sql.SQL("grant select on {} to fstore_builder").format(sql.Identifier(source)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=message):
                bob.execute("select fstore.build_training_table('evil', %s::regclass, array['account:balance'],"
                            " 'event_time', null, false, null, '{}', null, 0, '')", (source,))
        bob.execute("insert into with_policy values (1, now())")
        copied = bob.execute("select rows from fstore.create_training_table('copied', 'with_policy'::regclass,"
                             " array['account:balance'])").fetchone()[0]
        assert copied == 1  # the caller's policy ran as the caller, while copying