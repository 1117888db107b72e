"""`fstore cluster add-node HOST:PORT`: a node on "another machine" (a second home on this
one, set up from a bundle with `fstore node init`) joins a coordinator with one local
worker, after the checks (certificate for the host, reachable, its pg_hba and CA, not a
member yet); `fstore cluster rebalance` moves shards to it and the answers of a
distributed group do not change; `server stop`/`start` leave it alone. The tests of this
module run in order on one cluster."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from cryptography import x509
from psycopg import sql

from fstore import cluster, policies, sandbox, server
from fstore.cli import main
from fstore.connection import connect, connect_operator, material_for
from fstore.home import FstoreHome
from tests.cluster.conftest import manual_node, own_cluster, own_remote_node
from tests.cluster.test_cluster_rebalance import IDS, _answers
from tests.retrieval.conftest import commit_rows, create_group

STATE: dict[str, object] = {}


@pytest.fixture(scope="module")
def coordinator() -> Iterator[FstoreHome]:
    if not cluster.citus_installed():
        pytest.skip("Citus is not installed: run scripts/setup.sh")
    with own_cluster("fan-", workers=1) as fhome:
        yield fhome


@pytest.fixture(scope="module")
def remote(coordinator: FstoreHome) -> Iterator[tuple[FstoreHome, Path]]:
    with own_remote_node(coordinator, "localhost") as node:
        yield node


def _cli(home: FstoreHome, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--home", str(home.root), *args], catch_exceptions=False)
    return result.exit_code, result.output


def _dist_nodes(home: FstoreHome) -> list[tuple[str, int]]:
    with connect_operator(home) as conn:
        return conn.execute("select nodename, nodeport from pg_dist_node where groupid <> 0 order by 1, 2").fetchall()


def _refused(home: FstoreHome, address: str, match: str) -> None:
    """add-node of ``address`` fails with ``match`` in its error, and nothing changed."""
    before = (_dist_nodes(home), home.settings()["cluster"])
    result = CliRunner().invoke(main, ["--home", str(home.root), "cluster", "add-node", address, "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert match in json.loads(result.stdout)["error"]["message"], result.output
    assert (_dist_nodes(home), home.settings()["cluster"]) == before


def test_the_bundle_is_private_and_holds_what_a_node_needs(coordinator: FstoreHome,
                                                          remote: tuple[FstoreHome, Path]) -> None:
    nhome, bundle_path = remote
    assert stat.S_IMODE(bundle_path.stat().st_mode) == 0o600
    bundle = json.loads(bundle_path.read_text())
    assert "private keys" in bundle["warning"]
    cert = x509.load_pem_x509_certificate(bundle["files"]["server.crt"].encode())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["localhost"]
    assert bundle["files"]["node-client.crt"] == (coordinator.server_tls_dir / "node-client.crt").read_text()
    assert bundle["files"]["cluster-ca.crt"] == (coordinator.ca_dir / "cluster-ca.crt").read_text()
    assert "hostssl   all      all        all      trust clientcert=verify-ca" in bundle["pg_hba_conf"]
    assert "ssl_ca_file = 'TLS_DIR/cluster-ca.crt'" in bundle["postgresql_conf"]
    for text in (bundle["pg_hba_conf"], (nhome.data_dir / "pg_hba.conf").read_text()):
        assert not {"md5", "scram", "password"} & set(text.lower().split())
    # the node's key files are private, and node init put the bundle's files in place
    for name in ("server.key", "node-client.key"):
        assert stat.S_IMODE((nhome.server_tls_dir / name).stat().st_mode) == 0o600
    with connect_operator(nhome) as conn:
        assert conn.execute("show ssl").fetchone()[0] == "on"
        assert conn.execute("show ssl_ca_file").fetchone()[0] == str(nhome.server_tls_dir / "cluster-ca.crt")
        assert {r[0] for r in conn.execute("select extname from pg_extension")} >= {"citus", "vector", "sslinfo"}


def test_a_bundle_is_only_made_on_a_cluster_and_for_a_host_name(coordinator: FstoreHome, tmp_path: Path) -> None:
    code, output = _cli(coordinator, "cluster", "node-bundle", "bad host", "--out", str(tmp_path / "b"), "--json")
    assert code == 1 and "is not a host name" in output and not (tmp_path / "b").exists()
    code, output = _cli(coordinator, "cluster", "add-node", "localhost", "--json")
    assert code == 2 and "HOST:PORT" in output


@pytest.mark.parametrize("who", ["project-user", "admin"])
def test_the_node_refuses_fstore_certificates(coordinator: FstoreHome, remote: tuple[FstoreHome, Path],
                                             who: str) -> None:
    nhome, _ = remote
    project = STATE.setdefault("auth_project", sandbox.create_project(coordinator, prefix="nauth"))
    role = f"{project}__bob" if who == "project-user" else "fstore_admin"
    material = material_for(coordinator, role)
    with connect(coordinator, role) as conn:  # the same certificate works on the coordinator
        assert conn.execute("select current_user").fetchone()[0] == role
    with pytest.raises(psycopg.OperationalError, match="unknown ca|certificate"):
        psycopg.connect(**(material.params() | {"port": nhome.port}), connect_timeout=5).close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=nhome.port, user="postgres", dbname="fstore", sslmode="disable",
                        connect_timeout=5).close()


def test_add_node_refuses_a_host_its_certificate_is_not_for(coordinator: FstoreHome,
                                                            remote: tuple[FstoreHome, Path]) -> None:
    nhome, _ = remote
    _refused(coordinator, f"127.0.0.1:{nhome.port}", "its server certificate is not for host '127.0.0.1'")


def test_add_node_refuses_an_unreachable_node(coordinator: FstoreHome) -> None:
    _refused(coordinator, f"localhost:{sandbox.free_port()}", "is not reachable from the coordinator")


def _reload(nhome: FstoreHome) -> None:
    with connect_operator(nhome, autocommit=True) as conn:
        conn.execute("select pg_reload_conf()")


def test_add_node_refuses_a_node_whose_pg_hba_accepts_passwords(coordinator: FstoreHome,
                                                                remote: tuple[FstoreHome, Path]) -> None:
    nhome, _ = remote
    hba = nhome.data_dir / "pg_hba.conf"
    original = hba.read_text()
    try:
        hba.write_text(original + "hostssl   all      all        127.0.0.1/32 scram-sha-256\n")
        _reload(nhome)
        _refused(coordinator, f"localhost:{nhome.port}", "accepts a password")
        hba.write_text(original.replace("trust clientcert=verify-ca", "trust"))
        _reload(nhome)
        _refused(coordinator, f"localhost:{nhome.port}", "admits logins without the node certificate")
    finally:
        hba.write_text(original)
        _reload(nhome)


def test_add_node_refuses_a_node_that_trusts_another_ca(coordinator: FstoreHome,
                                                       remote: tuple[FstoreHome, Path]) -> None:
    nhome, _ = remote
    ca = nhome.server_tls_dir / "cluster-ca.crt"
    original = ca.read_bytes()
    try:  # the node would then admit the users' certificates too
        ca.write_bytes(original + coordinator.ca_bundle.read_bytes())
        _reload(nhome)
        _refused(coordinator, f"localhost:{nhome.port}", "ssl_ca_file must hold the cluster CA and nothing else")
    finally:
        ca.write_bytes(original)
        _reload(nhome)


def _other_ca_server_certificate() -> tuple[bytes, bytes, bytes]:
    """A CA that is not this fstore's, and a server certificate for localhost from it."""
    import datetime as dt

    from cryptography.x509.oid import ExtendedKeyUsageOID

    from fstore.cakeys import key_pem
    from fstore.signing import ca_certificate, cert_pem, leaf, new_key, subject_name

    ca_key, key = new_key(), new_key()
    name = subject_name("another CA")
    ca = ca_certificate(name, ca_key, name, ca_key, dt.timedelta(days=1), 0)
    cert = leaf(subject_name("localhost"), key.public_key(), ca, ca_key, dt.timedelta(days=1),
                ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName("localhost")])
    return cert_pem(cert), key_pem(key), cert_pem(ca)


@pytest.mark.parametrize("swap", ["server certificate", "client CA"])
def test_add_node_refuses_a_node_of_another_ca(coordinator: FstoreHome, remote: tuple[FstoreHome, Path],
                                              swap: str) -> None:
    nhome, _ = remote
    cert, key, ca = _other_ca_server_certificate()
    files = {"server certificate": {"server.crt": cert, "server.key": key}, "client CA": {"cluster-ca.crt": ca}}[swap]
    originals = {name: (nhome.server_tls_dir / name).read_bytes() for name in files}
    try:
        for name, data in files.items():
            (nhome.server_tls_dir / name).write_bytes(data)
        _reload(nhome)
        _refused(coordinator, f"localhost:{nhome.port}",
                 "its server certificate is not signed by this fstore's CA" if swap == "server certificate"
                 else "does not accept the node certificate")
    finally:
        for name, data in originals.items():
            (nhome.server_tls_dir / name).write_bytes(data)
        _reload(nhome)


def test_add_node_then_rebalance_moves_shards_there_and_answers_do_not_change(
        coordinator: FstoreHome, remote: tuple[FstoreHome, Path]) -> None:
    home, (nhome, _) = coordinator, remote
    project = sandbox.create_project(home, prefix="radd")
    STATE["project"] = project
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        policies.apply_policies(alice, project, [policies.RowPolicy("consent_only", "activity", ("data_scientist",),
                                                                    "consent")])
        group = create_group(alice, project, "activity", {"id": "bigint", "event_time": "timestamptz",
                                                          "clicks": "integer", "consent": "boolean"},
                             ["id"], online=True, distribution_key="id")
        for day in (1, 2, 3):
            commit_rows(alice, group, [(i, f"2024-01-0{day}", i * day, i % 5 != 0) for i in IDS])
    STATE["group"] = group
    before = _answers(home, project)
    assert len(before[0]) == 80 and [r for r in before[1] if r is not None] == [(i, i * 3) for i in IDS if i % 5]
    STATE["answers"] = before

    result = CliRunner().invoke(main, ["--home", str(home.root), "cluster", "add-node", f"localhost:{nhome.port}",
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    name = f"localhost:{nhome.port}"
    assert json.loads(result.stdout) == {"name": name, "host": "localhost", "port": nhome.port, "remote": True}
    assert {"name": name, "host": "localhost", "port": nhome.port, "remote": True} in \
        home.settings()["cluster"]["workers"]
    assert [n.name for n in cluster.workers(home)] == ["worker1"]  # started and stopped with the coordinator
    with connect_operator(nhome) as conn:  # every role came first, and the group roles log in there
        assert conn.execute("select rolcanlogin from pg_roles where rolname = %s", (f"{project}__owner",)).fetchone() \
            == (True,)

    code, output = _cli(home, "cluster", "rebalance", "--json")
    assert code == 0, output
    status = cluster.cluster_status(home)
    entry = next(n for n in status["nodes"] if n["name"] == name)
    assert entry["remote"] and entry["healthy"] and "running" not in entry and entry["shards"] > 0
    table = next(t for t in status["tables"] if t["table"] == f"{project}.activity__v1")
    assert set(table["placements"]) == {"worker1", name} and min(table["placements"].values()) >= 14, table
    online = next(t for t in status["tables"] if t["table"] == f"{project}.activity__v1__online")
    assert online["placements"] == table["placements"]
    code, output = _cli(home, "cluster", "status", "--json")
    assert code == 0, output

    assert _answers(home, project) == before
    with connect_operator(nhome) as conn:  # the rows are on the node's shards
        conn.execute("set citus.show_shards_for_app_name_prefixes = '*'")  # Citus hides them from pg_class
        shards = [r[0] for r in conn.execute(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relname ~ '^activity__v1_[0-9]+$'", (project,))]
        assert len(shards) == table["placements"][name]
        rows = sum(conn.execute(sql.SQL("select count(*) from {}.{}").format(
            sql.Identifier(project), sql.Identifier(s))).fetchone()[0] for s in shards)
    assert 0 < rows < 120
    # the moved shards keep the commit gate; a new commit reaches the node
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            alice.execute(sql.SQL("insert into {}.activity__v1 values (1, 1, true, now(), 1)").format(
                sql.Identifier(project)))
        commit_rows(alice, group, [(i, "2024-01-04", -i, i % 5 != 0) for i in IDS])
    with connect(home, f"{project}__bob", autocommit=True) as bob:
        assert bob.execute(sql.SQL("select count(*), min(clicks) from {}.activity__v1__online").format(
            sql.Identifier(project))).fetchone() == (32, -39)
    STATE["answers"] = _answers(home, project)


def test_a_server_set_up_by_hand_from_the_bundle_joins_too(coordinator: FstoreHome) -> None:
    """The README's steps for a server fstore did not create (no `fstore node init`)."""
    home = coordinator
    with manual_node(home) as (_data, port):
        code, output = _cli(home, "cluster", "add-node", f"localhost:{port}")
        assert code == 0, output
        try:
            code, output = _cli(home, "cluster", "rebalance", "--json")
            assert code == 0, output
            table = next(t for t in cluster.cluster_status(home)["tables"]
                         if t["table"] == f"{STATE['project']}.activity__v1")
            assert len(table["placements"]) == 3 and table["placements"][f"localhost:{port}"] >= 8, table
            assert _answers(home, str(STATE["project"])) == STATE["answers"]
        finally:  # hand its shards back before the node goes (the tests after this one expect two nodes)
            with connect_operator(home, autocommit=True) as conn:
                conn.execute("select citus_drain_node('localhost', %s, shard_transfer_mode => 'block_writes')",
                             (port,))
                conn.execute("select citus_remove_node('localhost', %s)", (port,))
            from fstore.citus import all_nodes
            from fstore.cluster import save_nodes

            save_nodes(home, [n for n in all_nodes(home) if n.port != port])
    assert _answers(home, str(STATE["project"])) == STATE["answers"]


def test_add_node_refuses_a_member(coordinator: FstoreHome, remote: tuple[FstoreHome, Path]) -> None:
    nhome, _ = remote
    assert (("localhost", nhome.port)) in _dist_nodes(coordinator)
    _refused(coordinator, f"localhost:{nhome.port}", "already a member of this cluster")
    worker = cluster.workers(coordinator)[0]
    _refused(coordinator, f"localhost:{worker.port}", "already a member of this cluster")
    # the same server under another name (its certificate is for 127.0.0.1 too): its system identifier
    _refused(coordinator, f"127.0.0.1:{worker.port}", "already a member of this cluster (under another name)")


def test_a_new_project_reaches_the_remote_node(coordinator: FstoreHome, remote: tuple[FstoreHome, Path]) -> None:
    nhome, _ = remote
    project = sandbox.create_project(coordinator, prefix="rproj")
    with connect_operator(nhome) as conn:
        roles = dict(conn.execute("select rolname, rolcanlogin from pg_roles where rolname like %s",
                                  (project + "%",)).fetchall())
        assert set(roles) == {f"{project}__{r}" for r in ("owner", "data_owner", "data_scientist", "alice", "bob")}
        assert all(roles.values())
        assert conn.execute("select 1 from pg_namespace where nspname = %s", (project,)).fetchone()


def test_server_stop_and_start_leave_the_remote_node_alone(coordinator: FstoreHome,
                                                          remote: tuple[FstoreHome, Path]) -> None:
    home, (nhome, _) = coordinator, remote
    worker = cluster.workers(home)[0]
    code, output = _cli(home, "server", "stop")
    assert code == 0, output
    assert not server.is_running(home) and not server.is_running(worker.local_home)
    assert server.is_running(nhome)  # not ours to stop
    assert f"localhost:{nhome.port}" not in output
    code, output = _cli(home, "server", "start")
    assert code == 0, output
    status = cluster.cluster_status(home)
    entry = next(n for n in status["nodes"] if n["name"] == f"localhost:{nhome.port}")
    assert entry["healthy"] and entry["remote"]
    assert _answers(home, str(STATE["project"])) == STATE["answers"]


def test_status_shows_a_stopped_remote_node_unhealthy(coordinator: FstoreHome, remote: tuple[FstoreHome, Path]) -> None:
    home, (nhome, _) = coordinator, remote
    code, output = _cli(nhome, "node", "stop")
    assert code == 0 and "node stopped" in output
    try:
        result = CliRunner().invoke(main, ["--home", str(home.root), "cluster", "status", "--json"])
        assert result.exit_code == 1, result.output
        entry = next(n for n in json.loads(result.stdout)["nodes"] if n["name"] == f"localhost:{nhome.port}")
        assert entry["healthy"] is False
    finally:
        code, output = _cli(nhome, "node", "start")
        assert code == 0, output
    code, output = _cli(home, "cluster", "status", "--json")
    assert code == 0, output
