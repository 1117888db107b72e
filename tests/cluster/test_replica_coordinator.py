"""A read replica of a Citus coordinator: a hot standby that answers a Data Scientist's
reads (under the same row policy as the coordinator) and refuses writes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from fstore import policies, replica, sandbox
from fstore.connection import connect, material_for, open_psycopg
from fstore.home import FstoreHome


@pytest.fixture(scope="module")
def coordinator_replica(cluster_home: FstoreHome) -> Iterator[replica.Replica]:
    made = replica.start_replica(cluster_home)
    try:
        yield made
    finally:
        replica.remove_replica(cluster_home, made.name)


def test_a_replica_of_the_coordinator_reads_as_the_coordinator(cluster_home: FstoreHome,
                                                               coordinator_replica: replica.Replica) -> None:
    name = sandbox.create_project(cluster_home, prefix="clrep")
    with connect(cluster_home, f"{name}__alice", autocommit=True) as alice:
        policies.apply_policies(alice, name, [policies.RowPolicy("consented", "t", ("data_scientist",), "consent")])
        alice.execute(sql.SQL("set role {}").format(sql.Identifier(f"{name}__owner")))
        alice.execute(sql.SQL("create table {} (id int primary key, consent boolean)").format(
            sql.Identifier(name, "t")))
        alice.execute(sql.SQL("insert into {} select g, g % 2 = 0 from generate_series(1, 10) g").format(
            sql.Identifier(name, "t")))
    replica.wait_replayed(cluster_home)
    [status] = replica.replica_status(cluster_home)
    assert status["state"] == "streaming" and status["in_recovery"] is True
    query = sql.SQL("select count(*) from {}").format(sql.Identifier(name, "t"))
    bob = dataclasses.replace(material_for(cluster_home, f"{name}__bob"), port=coordinator_replica.port, home=None)
    with open_psycopg(bob, autocommit=True) as conn, connect(cluster_home, f"{name}__bob", autocommit=True) as prim:
        assert conn.execute(query).fetchone()[0] == prim.execute(query).fetchone()[0] == 5
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # the standby refuses before any grant
            conn.execute(sql.SQL("insert into {} values (99, true)").format(sql.Identifier(name, "t")))
    alice_rep = dataclasses.replace(material_for(cluster_home, f"{name}__alice"), port=coordinator_replica.port,
                                    home=None)
    with open_psycopg(alice_rep, autocommit=True) as conn:
        assert conn.execute(query).fetchone()[0] == 10
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(f"{name}__owner")))
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(sql.SQL("insert into {} values (99, true)").format(sql.Identifier(name, "t")))
