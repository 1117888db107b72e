"""Data placement on the cluster, and the guards around it.

Tenants cannot run statements on the workers or distribute tables themselves (those
Citus functions are revoked from PUBLIC on the coordinator), and row policies hold for
reads of a project's own (coordinator-local) tables. A plain table under a declared row
policy keeps the single-node policies (with subqueries), which Citus refuses to
distribute: no shard ever lacks them. Feature groups are distributed with policies of
their own: tests/cluster/test_cluster_distributed.py.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from fstore import policies, sandbox
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome


@pytest.fixture(scope="module")
def project(cluster_home: FstoreHome) -> str:
    """A project (alice Data Owner, bob Data Scientist) with table ``t`` (id, consent) under a
    declared row policy that shows Data Scientists consenting rows only."""
    name = sandbox.create_project(cluster_home, prefix="clplace")
    with connect(cluster_home, f"{name}__alice", autocommit=True) as alice:
        alice.execute(sql.SQL("set role {}").format(sql.Identifier(f"{name}__owner")))
        alice.execute(sql.SQL("create table {}.t (id bigint not null, consent boolean not null)").format(
            sql.Identifier(name)))
        alice.execute(sql.SQL("insert into {}.t values (1, true), (2, false)").format(sql.Identifier(name)))
        alice.execute("reset role")
        policies.apply_policies(alice, name, [policies.RowPolicy("consent_only", "t", ("data_scientist",), "consent")])
    return name


TENANT_CALLS = [
    "select run_command_on_workers($$select 1$$)",
    "select run_command_on_all_nodes($$select 1$$)",
    "select run_command_on_shards('{p}.t', $$select 1$$)",
    "select create_distributed_table('{p}.t', 'id')",
    "select create_reference_table('{p}.t')",
    "select citus_add_local_table_to_metadata('{p}.t')",
    "select master_run_on_worker(array['localhost'], array[5432], array['select 1'], false)",
]


@pytest.mark.parametrize("user,as_owner", [("alice", True), ("alice", False), ("bob", False)])
@pytest.mark.parametrize("call", TENANT_CALLS)
def test_tenants_cannot_run_statements_on_workers_or_distribute(cluster_home: FstoreHome, project: str,
                                                                 user: str, as_owner: bool, call: str) -> None:
    with connect(cluster_home, f"{project}__{user}", autocommit=True) as conn:
        if as_owner:
            conn.execute(sql.SQL("set role {}").format(sql.Identifier(f"{project}__owner")))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(call.format(p=project))


def test_row_policy_holds_for_a_data_scientist_on_the_coordinator(cluster_home: FstoreHome, project: str) -> None:
    with connect(cluster_home, f"{project}__bob", autocommit=True) as bob:
        assert bob.execute(sql.SQL("select id from {}.t order by id").format(sql.Identifier(project))).fetchall() \
            == [(1,)]
        assert bob.execute(sql.SQL("select count(*) from {}.t where not consent").format(
            sql.Identifier(project))).fetchone()[0] == 0
    with connect(cluster_home, f"{project}__alice", autocommit=True) as alice:
        assert alice.execute(sql.SQL("select count(*) from {}.t").format(sql.Identifier(project))).fetchone()[0] == 2


def test_a_table_under_a_row_policy_cannot_be_distributed(cluster_home: FstoreHome, project: str) -> None:
    """Citus refuses (it does not distribute without the policy): no shard ever lacks it."""
    with connect_operator(cluster_home, autocommit=True) as op:
        with pytest.raises(psycopg.Error, match="policy|row-level security"):
            op.execute("select create_distributed_table(%s, 'id')", (f"{project}.t",))
        assert op.execute("select count(*) from citus_tables where table_name = %s::regclass",
                          (f"{project}.t",)).fetchone()[0] == 0
