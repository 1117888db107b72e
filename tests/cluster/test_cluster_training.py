"""Training tables on a cluster (sql/functions/75_training_datasets.sql, fstore.training_distribution;
docs/cluster.md "Spines and training tables on a cluster").

A training dataset built from distributed, co-located groups is stored as a distributed table
co-located with them (from ``fstore.training_distribute_min_rows`` rows on; smaller ones stay on
the coordinator), with the same privileges as the same dataset kept on the coordinator. The
world: project A (alice Data Owner, bob and carol Data Scientists) with two groups distributed
by ``account_id``; project B (no share of A); project C with a read-only share of A.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pytest

import fstore
from fstore import projects, sandbox, training
from fstore.connection import connect
from fstore.home import FstoreHome
from tests.retrieval.conftest import commit_rows, create_group

UTC = dt.timezone.utc
BASE = dt.datetime(2024, 3, 1, tzinfo=UTC)
RISK = {"account_id": "bigint", "event_time": "timestamptz", "score": "double precision"}
ENTITIES = list(range(1, 41))
DAYS = [BASE + dt.timedelta(days=d) for d in range(4)]
SPINE_SQL = ("create temp table train_spine as select e::bigint as account_id,"
             " timestamptz '2024-03-01 00:00+00' + (e % 4) * interval '1 day' + interval '1 hour' as event_time,"
             " (e % 2 = 0) as label from generate_series(1, 40) e, generate_series(1, 3) r order by e desc, r")


def expected() -> list[tuple[Any, ...]]:
    out = []
    for e in range(40, 0, -1):
        for _ in range(3):
            t = BASE + dt.timedelta(days=e % 4, hours=1)
            left = [d for d in range(4) if DAYS[d] <= t]
            right = [d for d in (1, 3) if DAYS[d] <= t]
            out.append((e, t, e % 2 == 0, e + left[-1] / 10, (-e - right[-1] / 10) if right else None))
    return out


@pytest.fixture(scope="module")
def world(cluster_home: FstoreHome) -> Iterator[dict[str, Any]]:
    home = cluster_home
    a, b, c = (sandbox.create_project(home, prefix=f"tr{k}") for k in "abc")
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        projects.add_member(home, alice, a, "carol", "data-scientist")
        left = create_group(alice, a, "left_side", RISK, ["account_id"], distribution_key="account_id")
        right = create_group(alice, a, "right_side", RISK, ["account_id"], distribution_key="account_id")
        commit_rows(alice, left, [(e, d, e + i / 10) for e in ENTITIES for i, d in enumerate(DAYS)])
        commit_rows(alice, right, [(e, DAYS[i], -e - i / 10) for e in ENTITIES for i in (1, 3)])
        projects.share_project(alice, a, c)
    built = {}
    with connect(home, f"{a}__bob", autocommit=True) as bob:
        bob.execute(SPINE_SQL)
        for name, min_rows in (("dist_train", "0"), ("local_train", "1000000")):
            bob.execute("select set_config('fstore.training_distribute_min_rows', %s, false)", (min_rows,))
            built[name] = bob.execute(
                "select (fstore.create_training_table(%s, 'pg_temp.train_spine'::regclass,"
                " array['left_side:score', 'right_side:score'], p_full_feature_names => true,"
                " p_label => array['label'])).table_name", (name,)).fetchone()[0]
            # the second step, in a transaction of its own (what Python's create_training_dataset does)
            bob.execute("select fstore.distribute_training_table(%s, 1)", (name,))
    yield {"home": home, "a": a, "b": b, "c": c, "left": f"{a}.left_side__v1", **built}


def _distribution(conn: psycopg.Connection[Any], table: str) -> tuple[bool, bool]:
    return conn.execute("select fstore.is_distributed(%s::regclass),"
                        " fstore.colocation_id(%s::regclass) is not distinct from fstore.colocation_id(%s::regclass)",
                        (table, table, table.split(".")[0] + ".left_side__v1")).fetchone()


def test_a_training_table_from_co_located_groups_is_distributed_with_them(world: dict[str, Any]) -> None:
    with connect(world["home"], f"{world['a']}__bob", autocommit=True) as bob:
        dist = f"{world['a']}.{world['dist_train']}"
        local = f"{world['a']}.{world['local_train']}"
        assert _distribution(bob, dist) == (True, True)
        assert _distribution(bob, local)[0] is False
        assert bob.execute("select column_to_column_name(logicalrelid, partkey) from pg_dist_partition"
                           " where logicalrelid = %s::regclass", (dist,)).fetchone() == ("account_id",)
        # no local copy left on the coordinator's shell table
        assert bob.execute("select pg_relation_size(%s::regclass)", (dist,)).fetchone() == (0,)


def test_its_rows_are_the_single_node_answer_in_spine_order(world: dict[str, Any]) -> None:
    fs = fstore.connect(world["a"], "bob", home=world["home"])
    for name in ("dist_train", "local_train"):
        table = fs.get_training_dataset(name)
        got = list(zip(*(table.column(n).to_pylist() for n in
                         ("account_id", "event_time", "label", "left_side__score", "right_side__score"))))
        assert got == expected(), name
        rebuilt = training.rebuild_training_dataset(fs, name)
        assert rebuilt.column("left_side__score").to_pylist() == table.column("left_side__score").to_pylist()
        assert rebuilt.column("account_id").to_pylist() == table.column("account_id").to_pylist()


def test_the_default_keeps_a_small_training_table_on_the_coordinator(world: dict[str, Any]) -> None:
    fs = fstore.connect(world["a"], "bob", home=world["home"])
    spine = pa.table({"account_id": [1, 2], "event_time": pa.array([BASE + dt.timedelta(days=2)] * 2,
                                                                      pa.timestamp("us", "UTC"))})
    ds = fs.create_training_dataset("small_train", spine, ["left_side:score"])
    with connect(world["home"], f"{world['a']}__bob", autocommit=True) as bob:
        assert _distribution(bob, f"{world['a']}.{ds.table_name}")[0] is False
    assert fs.get_training_dataset("small_train").column("score").to_pylist() == [1.2, 2.2]


ACTORS = {"alice": ("a", "alice"), "bob": ("a", "bob"), "carol": ("a", "carol"), "b_alice": ("b", "alice"),
          "b_bob": ("b", "bob"), "c_bob": ("c", "bob")}


@pytest.mark.parametrize("actor", sorted(ACTORS))
def test_the_same_privileges_as_on_the_coordinator(world: dict[str, Any], actor: str) -> None:
    """Each actor, with its own certificate, may do exactly what it may do with the same dataset
    kept on the coordinator: read it (members, the partner) or not (another project); write,
    delete, truncate or drop it: nobody."""
    project, user = ACTORS[actor]
    outcomes = {}
    with connect(world["home"], f"{world[project]}__{user}", autocommit=True) as conn:
        for name in ("dist_train", "local_train"):
            table = f"{world['a']}.{world[name]}"
            results = []
            for statement in (f"select count(*) from {table}", f"insert into {table} (account_id) values (1)",
                              f"update {table} set label = not label", f"delete from {table}",
                              f"truncate {table}", f"drop table {table}"):
                try:
                    with conn.transaction(force_rollback=True):  # a drop that worked would not stay
                        conn.execute(statement)
                    results.append("ok")
                except psycopg.Error as exc:
                    results.append(exc.sqlstate)
            outcomes[name] = results
    assert outcomes["dist_train"] == outcomes["local_train"], outcomes
    assert all(r != "ok" for r in outcomes["dist_train"][1:]), outcomes
    readable = outcomes["dist_train"][0] == "ok"
    assert readable is (actor in ("alice", "bob", "carol", "c_bob")), outcomes


def test_forget_reaches_a_distributed_training_table(world: dict[str, Any]) -> None:
    """(Last: it erases entity 5.) fstore.forget deletes the entity's rows from the distributed
    training table as from the one on the coordinator (fstore.erase_distributed_rows)."""
    a = world["a"]
    with connect(world["home"], f"{a}__alice", autocommit=True) as alice:
        report = alice.execute("select fstore.forget(%s, %s)", (a, json.dumps({"account_id": 5}))).fetchone()[0]
        rows = {entry["table"]: entry["rows"] for entry in report["tables"]}
        assert rows[f"{a}.{world['dist_train']}"] == 3 and rows[f"{a}.{world['local_train']}"] == 3, rows
        for name in ("dist_train", "local_train"):
            assert alice.execute(f"select count(*) from {a}.{world[name]} where account_id = 5").fetchone() == (0,)
            assert alice.execute(f"select count(*) from {a}.{world[name]}").fetchone() == (117,)
