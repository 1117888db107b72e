"""``fstore server start --workers 2``: nodes, TLS-only logins, roles on the workers."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner

from fstore import cluster, sandbox
from fstore.cli import main
from fstore.connection import connect, connect_operator, material_for
from fstore.home import FstoreHome


def test_status_shows_coordinator_and_healthy_workers(cluster_home: FstoreHome) -> None:
    info = cluster.cluster_status(cluster_home)
    names = [node["name"] for node in info["nodes"]]
    assert names[0] == "coordinator" and len(names) == 3
    for node in info["nodes"][1:]:
        assert node["healthy"] and node["running"] and node["active"]


def test_cli_cluster_status_json(cluster_home: FstoreHome) -> None:
    result = CliRunner().invoke(main, ["--home", str(cluster_home.root), "cluster", "status", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert len(info["nodes"]) == 3


def test_each_worker_has_its_own_port_data_dir_and_tls(cluster_home: FstoreHome) -> None:
    nodes = cluster.workers(cluster_home)
    assert len({n.port for n in nodes} | {cluster_home.port}) == len(nodes) + 1
    for node in nodes:
        with connect_operator(node.home) as conn:
            assert conn.execute("show ssl").fetchone()[0] == "on"
            assert conn.execute("show data_directory").fetchone()[0] == str(node.home.data_dir)
            assert conn.execute("select extversion from pg_extension where extname = 'citus'").fetchone()[0] \
                .startswith("13.2")


@pytest.mark.parametrize("who", ["project-user", "admin"])
def test_direct_login_to_a_worker_with_a_fstore_certificate_is_refused(cluster_home: FstoreHome, who: str) -> None:
    project = sandbox.create_project(cluster_home, prefix="clauth")
    role = f"{project}__bob" if who == "project-user" else "fstore_admin"
    material = material_for(cluster_home, role)
    with connect(cluster_home, role) as conn:  # the same certificate works on the coordinator
        assert conn.execute("select current_user").fetchone()[0] == role
    for node in cluster.workers(cluster_home):
        with pytest.raises(psycopg.OperationalError, match="unknown ca|certificate"):
            psycopg.connect(**(material.params() | {"port": node.port}), connect_timeout=5).close()


def test_plain_tcp_to_a_worker_is_refused(cluster_home: FstoreHome) -> None:
    node = cluster.workers(cluster_home)[0]
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=node.port, user="postgres", dbname="fstore", sslmode="disable",
                        connect_timeout=5).close()


def test_no_password_logins_on_any_node(cluster_home: FstoreHome) -> None:
    """No node accepts a password; a member may set their own (PostgreSQL lets anyone, and
    Citus propagates it to the workers), and it opens no login anywhere."""
    project = sandbox.create_project(cluster_home, prefix="clpw")
    member = f"{project}__bob"
    with connect(cluster_home, member, autocommit=True) as bob:
        bob.execute("alter role current_user password 'guessable'")
    for node_home in [cluster_home, *(n.home for n in cluster.workers(cluster_home))]:
        hba = (node_home.data_dir / "pg_hba.conf").read_text().lower()
        assert "md5" not in hba and "scram" not in hba and "password" not in hba
        with connect_operator(node_home) as conn:
            with_password = [r[0] for r in conn.execute("select rolname from pg_authid where rolpassword is not null")]
            # only project-users set them (their own): fstore's roles, group roles and the superuser have none
            assert member in with_password or node_home != cluster_home
            assert not [r for r in with_password if r.startswith(("fstore", "postgres"))
                        or r.endswith(("__owner", "__data_owner", "__data_scientist"))], with_password
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(host="127.0.0.1", port=node_home.port, user=member, dbname="fstore", password="guessable",
                            sslmode="require", connect_timeout=5).close()


def test_project_roles_reach_the_workers_and_group_roles_log_in_there(cluster_home: FstoreHome) -> None:
    project = sandbox.create_project(cluster_home, prefix="clroles")
    with connect_operator(cluster_home) as conn:
        coordinator = dict(conn.execute("select rolname, rolcanlogin from pg_roles where rolname like %s",
                                        (project + "%",)).fetchall())
        members = set(conn.execute(
            "select g.rolname, m.rolname from pg_auth_members a join pg_roles g on g.oid = a.roleid"
            "  join pg_roles m on m.oid = a.member where g.rolname like %s", (project + "%",)).fetchall())
    assert coordinator == {f"{project}__{r}": r in ("alice", "bob")
                           for r in ("owner", "data_owner", "data_scientist", "alice", "bob")}
    for node in cluster.workers(cluster_home):
        with connect_operator(node.home) as conn:
            roles = dict(conn.execute("select rolname, rolcanlogin from pg_roles where rolname like %s",
                                      (project + "%",)).fetchall())
            assert set(roles) == set(coordinator) and all(roles.values())
            worker_members = set(conn.execute(
                "select g.rolname, m.rolname from pg_auth_members a join pg_roles g on g.oid = a.roleid"
                "  join pg_roles m on m.oid = a.member where g.rolname like %s", (project + "%",)).fetchall())
            assert worker_members == members
            assert conn.execute("select nspname from pg_namespace where nspname = %s", (project,)).fetchone()


def test_member_removal_reaches_the_workers(cluster_home: FstoreHome) -> None:
    from fstore import projects

    project = sandbox.create_project(cluster_home, prefix="clrm")
    with connect(cluster_home, f"{project}__alice", autocommit=True) as alice:
        projects.remove_member(cluster_home, alice, project, "bob")
    for node in cluster.workers(cluster_home):
        with connect_operator(node.home) as conn:
            assert not conn.execute("select 1 from pg_roles where rolname = %s", (f"{project}__bob",)).fetchone()


def test_project_deletion_reaches_the_workers(cluster_home: FstoreHome) -> None:
    from fstore import projects

    project = sandbox.create_project(cluster_home, prefix="cldel")
    with connect(cluster_home, "fstore_admin", autocommit=True) as admin:
        projects.delete_project(cluster_home, admin, project)
    for node in cluster.workers(cluster_home):
        with connect_operator(node.home) as conn:
            assert conn.execute("select rolname from pg_roles where rolname like %s", (project + "%",)).fetchall() == []
            assert not conn.execute("select 1 from pg_namespace where nspname = %s", (project,)).fetchone()
