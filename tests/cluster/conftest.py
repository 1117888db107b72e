"""A Citus cluster of its own for the cluster tests: a coordinator and two workers.

With ``FSTORE_TEST_CLUSTER=N`` the session's ``home`` is already a cluster and is used;
otherwise these tests start one (they need Citus: ``scripts/setup.sh`` builds it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fstore import cluster, sandbox
from fstore.connection import material_for, write_service_entry
from fstore.home import FstoreHome
from tests.conftest import TEST_CLUSTER_WORKERS


@pytest.fixture(scope="package")
def cluster_home(request: pytest.FixtureRequest) -> Iterator[FstoreHome]:
    """A running coordinator with at least two workers, for this package's tests only: the
    session's ``home`` (FSTORE_HOME and the admin's service entry) is put back afterwards,
    so the tests after these talk to it again."""
    if not cluster.citus_installed():
        pytest.skip("Citus is not installed: run scripts/setup.sh")
    if TEST_CLUSTER_WORKERS >= 2:
        yield request.getfixturevalue("home")
        return
    with own_cluster("fcl-") as fhome:
        yield fhome


@contextmanager
def own_cluster(prefix: str, workers: int = 2) -> Iterator[FstoreHome]:
    """A new coordinator with ``workers`` workers in a temporary home, FSTORE_HOME and the
    admin's service entry pointing at it until the block ends (then put back)."""
    previous = os.environ.get("FSTORE_HOME")
    fhome, cleanup = sandbox.start_home(None, prefix=prefix, workers=workers)
    os.environ["FSTORE_HOME"] = str(fhome.root)
    write_service_entry(material_for(fhome, "fstore_admin"))
    try:
        yield fhome
    finally:
        cleanup()
        if previous is None:
            os.environ.pop("FSTORE_HOME", None)
        else:
            os.environ["FSTORE_HOME"] = previous
            write_service_entry(material_for(FstoreHome(Path(previous)), "fstore_admin"))


@contextmanager
def own_remote_node(coordinator: FstoreHome, host: str = "localhost") -> Iterator[tuple[FstoreHome, Path]]:
    """A "remote" node for ``coordinator``: another home on this machine, set up as an
    operator would on the node's machine (``fstore cluster node-bundle HOST`` on the
    coordinator, then ``fstore --home NODE node init --bundle FILE --port P``, both through
    the CLI); yields the node's home and the bundle; stops the node and removes both after."""
    import shutil
    import tempfile

    from click.testing import CliRunner

    from fstore import sandbox
    from fstore.cli import main
    from fstore.cluster_nodes import stop_node_server

    root = Path(tempfile.mkdtemp(prefix="fnode-", dir="/tmp"))
    nhome = FstoreHome(root / "node")
    bundle = root / "node.bundle"
    try:
        made = CliRunner().invoke(main, ["--home", str(coordinator.root), "cluster", "node-bundle", host,
                                         "--out", str(bundle), "--json"], catch_exceptions=False)
        assert made.exit_code == 0, made.output
        started = CliRunner().invoke(main, ["--home", str(nhome.root), "node", "init", "--bundle", str(bundle),
                                            "--port", str(sandbox.free_port()), "--listen", "localhost", "--json"],
                                     catch_exceptions=False)
        assert started.exit_code == 0, started.output
        yield nhome, bundle
    finally:
        if (nhome.data_dir / "PG_VERSION").exists():
            stop_node_server(nhome, mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def manual_node(coordinator: FstoreHome, host: str = "localhost") -> Iterator[tuple[Path, int]]:
    """A node set up by hand from a bundle, as README "Scale-out" tells an operator of a
    server fstore did not create: initdb, the bundle's files in a directory of the
    server's OS user, its ``postgresql_conf`` (``TLS_DIR`` replaced) and ``pg_hba_conf``,
    a start, the database and extensions by psql. Yields the data directory and port."""
    import json
    import os
    import shutil
    import tempfile

    from click.testing import CliRunner

    from fstore import sandbox, server
    from fstore.cli import main

    root = Path(tempfile.mkdtemp(prefix="fmanual-", dir="/tmp"))
    data, tls, run = root / "pgdata", root / "tls", root / "run"
    port = sandbox.free_port()
    try:
        bundle_path = root / "node.bundle"
        made = CliRunner().invoke(main, ["--home", str(coordinator.root), "cluster", "node-bundle", host,
                                         "--out", str(bundle_path)], catch_exceptions=False)
        assert made.exit_code == 0, made.output
        bundle = json.loads(bundle_path.read_text())
        server._make_traversable(root)
        for directory in (root, tls, run):
            directory.mkdir(exist_ok=True)
            server._chown_to_server(directory)
        for name, text in bundle["files"].items():
            (tls / name).write_text(text)
            os.chmod(tls / name, 0o600 if name.endswith(".key") else 0o644)
            server._chown_to_server(tls / name)
        server._run([str(server.pg_bin() / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                     "--locale=C.UTF-8", "--no-instructions"])
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(bundle["postgresql_conf"].replace("TLS_DIR", str(tls)))
            conf.write(f"port = {port}\nunix_socket_directories = '{run}'\nlisten_addresses = 'localhost'\n")
        (data / "pg_hba.conf").write_text(bundle["pg_hba_conf"])
        server._run([str(server.pg_bin() / "pg_ctl"), "start", "-D", str(data), "-l", str(root / "log"), "-w"])
        psql = [str(server.pg_bin() / "psql"), "-h", str(run), "-p", str(port), "-U", "postgres", "-v",
                "ON_ERROR_STOP=1", "-c"]
        server._run([*psql, "create database fstore", "postgres"])
        server._run([*psql, "create extension citus; create extension vector; create extension sslinfo", "fstore"])
        yield data, port
    finally:
        if (data / "postmaster.pid").exists():
            server._run([str(server.pg_bin() / "pg_ctl"), "stop", "-D", str(data), "-m", "immediate"], check=False)
        shutil.rmtree(root, ignore_errors=True)
