"""Erasure (fstore.forget) of an entity whose rows live on the workers.

A distributed table's shards fire fstore's append-only and erasure triggers on the workers,
which cannot see the erasure open on the coordinator; so `fstore.forget` deletes from a
distributed table through `fstore.erase_distributed_rows` (owned by fstore_writer, the one
role whose DELETE the shards take, for exactly the erasure's rows). Each actor logs in with
their own certificate: the Data Owner erases; the Data Scientist, another project's Data
Owner and the Data Owner outside an erasure cannot use the definer or the recorder; a
distributed table fstore_writer may not delete from is refused by name with nothing erased.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from fstore import sandbox
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from tests.retrieval.conftest import commit_rows, create_group

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
ERASED = 7


@pytest.fixture(scope="module")
def world(cluster_home: FstoreHome) -> Iterator[dict[str, Any]]:
    """Project A: ``spread`` (online) distributed by account_id, ``pairs`` keyed (account_id,
    merchant_id) distributed by merchant_id (an erasure by account spans its shards), two
    commits each; project B for its Data Owner."""
    home = cluster_home
    a, b = sandbox.create_project(home, prefix="era"), sandbox.create_project(home, prefix="erb")
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        spread = create_group(alice, a, "spread", {"account_id": "bigint", "event_time": "timestamptz", "v": "integer"},
                              ["account_id"], online=True, distribution_key="account_id", statistics=True)
        pairs = create_group(alice, a, "pairs", {"account_id": "bigint", "merchant_id": "bigint",
                                                 "event_time": "timestamptz", "spend": "integer"},
                             ["account_id", "merchant_id"], distribution_key="merchant_id")
        for day in (0, 1):
            commit_rows(alice, spread, [(i, T0 + dt.timedelta(days=day), i + day) for i in range(1, 11)])
            commit_rows(alice, pairs, [(i, m, T0 + dt.timedelta(days=day), m) for i in range(1, 11) for m in (1, 2, 3)])
    yield {"home": home, "a": a, "b": b}


def _count(conn: psycopg.Connection[Any], project: str, table: str, where: str = f"account_id = {ERASED}") -> int:
    return conn.execute(sql.SQL("select count(*) from {} where " + where)
                        .format(sql.Identifier(project, table))).fetchone()[0]


def test_nobody_else_reaches_the_distributed_erasure_definer_or_the_recorder(world: dict[str, Any]) -> None:
    home, a, b = world["home"], world["a"], world["b"]
    offline = f"{a}.spread__v1"
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        offline_oid = alice.execute("select %s::regclass::oid", (offline,)).fetchone()[0]
        # the Data Owner outside an erasure
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only in an erasure open in this transaction"):
            alice.execute("select fstore.erase_distributed_rows(%s::regclass)", (offline,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function record_erased_rows"):
            alice.execute("select fstore.record_erased_rows(%s::regclass, 0, '{}')", (offline,))
        # a direct DELETE still meets the shards' append-only triggers
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            alice.execute(sql.SQL("delete from {} where account_id = 1").format(sql.Identifier(a, "spread__v1")))
    with connect(home, f"{a}__bob", autocommit=True) as bob:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.execute("select fstore.forget(%s, %s)", (a, json.dumps({"account_id": ERASED})))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only in an erasure open in this transaction"):
            bob.execute("select fstore.erase_distributed_rows(%s::regclass)", (offline,))
    with connect(home, f"{b}__alice", autocommit=True) as other:
        # another project's Data Owner, inside an erasure of their own project: A's tables are not its targets
        with other.transaction():
            other.execute(f"set local role {b}__owner")
            create_group(other, b, "mine", {"account_id": "bigint", "event_time": "timestamptz", "v": "integer"},
                         ["account_id"], distribution_key="account_id")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema"):
            other.execute("select fstore.erase_distributed_rows(%s::regclass)", (offline,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only in an erasure open in this transaction"):
            with other.transaction():  # by oid, past the schema's name
                other.execute("select fstore.begin_erasure(%s, %s)", (b, json.dumps({"account_id": str(ERASED)})))
                other.execute("select fstore.erase_distributed_rows(%s::oid::regclass)", (offline_oid,))
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        assert _count(alice, a, "spread__v1") == 2 and _count(alice, a, "spread__v1__online") == 1


def test_forget_erases_the_entity_from_the_shards_and_nothing_else(world: dict[str, Any]) -> None:
    home, a = world["home"], world["a"]
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        before = {t: _count(alice, a, t, "true") for t in ("spread__v1", "spread__v1__online", "pairs__v1")}
        report = alice.execute("select fstore.forget(%s, %s)", (a, json.dumps({"account_id": ERASED}))).fetchone()[0]
        rows = {entry["table"]: entry["rows"] for entry in report["tables"]}
        assert rows == {f"{a}.spread__v1": 2, f"{a}.spread__v1__online": 1, f"{a}.pairs__v1": 6}
        for table in before:
            assert _count(alice, a, table) == 0, table
            assert _count(alice, a, table, "true") == before[table] - rows[f"{a}.{table}"], table
        # the statistics of the two commits that held the entity: over the rows left (computed
        # before the delete: Citus refuses a read of placements fstore_writer just changed)
        spread_stats = [s for s in report["statistics"] if s["feature_group"] == "spread"]
        assert len(spread_stats) == 2 and {s["action"] for s in spread_stats} == {"recomputed"}
        for entry in spread_stats:
            stats = dict(alice.execute("select feature, stats from fstore.commit_statistics where commit_id = %s",
                                       (entry["commit"],)).fetchall())
            assert stats["v"]["rows"] == 9 and stats["v"]["recomputed_after_erasure"], stats["v"]
            assert stats["account_id"]["min"] == 1 and stats["account_id"]["max"] == 10
        recorded = alice.execute("select sum(rows) from fstore.erased_rows r join fstore.erasures e on e.id = r.erasure_id"
                                 " where e.project = %s", (a,)).fetchone()[0]
        assert recorded == 9  # counted once each: by the definer, not again by the shards' triggers
    with connect(home, f"{a}__bob", autocommit=True) as bob:
        assert _count(bob, a, "spread__v1") == 0 and _count(bob, a, "spread__v1", "true") == 18
        assert bob.execute(sql.SQL("select v from {} where account_id = 8").format(
            sql.Identifier(a, "spread__v1__online"))).fetchone() == (9,)


def test_a_distributed_table_fstore_writer_may_not_delete_from_is_refused_by_name(world: dict[str, Any]) -> None:
    home, a = world["home"], world["a"]
    with connect_operator(home, autocommit=True) as operator:
        operator.execute(sql.SQL("revoke delete on {} from fstore_writer").format(sql.Identifier(a, "pairs__v1")))
    try:
        with connect(home, f"{a}__alice", autocommit=True) as alice:
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="cannot erase from these distributed tables") as refused:
                alice.execute("select fstore.forget(%s, '{\"account_id\": 3}')", (a,))
            assert f"{a}.pairs__v1" in str(refused.value) and "spread" not in str(refused.value)
            assert _count(alice, a, "spread__v1", "account_id = 3") == 2  # nothing erased anywhere
            assert _count(alice, a, "pairs__v1", "account_id = 3") == 6
    finally:
        with connect_operator(home, autocommit=True) as operator:
            operator.execute(sql.SQL("grant delete on {} to fstore_writer").format(sql.Identifier(a, "pairs__v1")))
