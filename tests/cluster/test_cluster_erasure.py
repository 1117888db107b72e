"""Erasure (fstore.forget) on a cluster: a distributed table's shards fire fstore's
append-only triggers on the workers, which cannot see the erasure open on the coordinator,
so an erasure that reaches a distributed table is refused up front, by name, and nothing
is erased anywhere (a coordinator-local group of the same project keeps the entity too)."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from psycopg import sql

from fstore import sandbox
from fstore.connection import connect
from fstore.home import FstoreHome
from tests.retrieval.conftest import commit_rows, create_group

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def test_forget_refuses_distributed_tables_by_name_and_erases_nothing(cluster_home: FstoreHome) -> None:
    home = cluster_home
    project = sandbox.create_project(home, prefix="era")
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        spread = create_group(alice, project, "spread", {"account_id": "bigint", "event_time": "timestamptz",
                                                        "v": "integer"}, ["account_id"], online=True,
                              distribution_key="account_id")
        local = create_group(alice, project, "local", {"account_id": "bigint", "event_time": "timestamptz",
                                                      "w": "integer"}, ["account_id"])
        commit_rows(alice, spread, [(a, T0, a) for a in range(1, 11)])
        commit_rows(alice, local, [(a, T0, a) for a in range(1, 11)])
        distributed = alice.execute("select fstore.is_distributed(%s::regclass), fstore.is_distributed(%s::regclass)",
                                    (f"{project}.spread__v1", f"{project}.local__v1")).fetchone()
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="cannot erase from distributed tables") as refused:
            alice.execute("select fstore.forget(%s, '{\"account_id\": 7}')", (project,))
        message = str(refused.value)
        assert f"{project}.spread__v1" in message and f"{project}.spread__v1__online" in message
        assert f"{project}.local__v1" not in message or distributed[1]
        for table in ("spread__v1", "spread__v1__online", "local__v1"):
            count = alice.execute(sql.SQL("select count(*) from {} where account_id = 7")
                                  .format(sql.Identifier(project, table))).fetchone()[0]
            assert count == 1, table
        assert alice.execute("select count(*) from fstore.erasures where project = %s", (project,)).fetchone()[0] == 0
