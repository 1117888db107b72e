"""Docker: the database container never sees the CA keys, and the CRL keeper renews and
publishes for it. There is no Docker engine here, so the compose file is checked as
written, and the keeper is run the way its container runs it (in the foreground, with
the export directory, socket directory and port given by environment) against a real
server, whose CRL it keeps current through the export."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from fstore import crlkeeper, pki, sandbox
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome

ROOT = Path(__file__).resolve().parents[2]
HOME = "${FSTORE_HOME:-~/.fstore}"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_database_container_mounts_no_ca_key() -> None:
    services = _compose()["services"]
    db_mounts = {v.removesuffix(":ro") for v in services["db"]["volumes"]}
    assert db_mounts == {
        f"{HOME}/server/tls:/fstore-tls", f"{HOME}/export:/fstore-pki",
        "fstore-run:/var/run/postgresql", "fstore-data:/var/lib/postgresql/data",
    }
    assert all(v.endswith(":ro") for v in services["db"]["volumes"] if v.startswith("${"))
    entrypoint = (ROOT / "docker" / "fstore-entrypoint.sh").read_text()
    assert "ssl_crl_file=/fstore-pki/crl.pem" in entrypoint and "ssl_ca_file=/fstore-pki/ca-bundle.crt" in entrypoint
    assert "/fstore-home" not in entrypoint and "root.key" not in entrypoint and "intermediate.key" not in entrypoint


def test_the_keeper_container_holds_the_ca_and_exports_for_the_database() -> None:
    keeper = _compose()["services"]["crl-keeper"]
    assert f"{HOME}:/fstore-home" in keeper["volumes"] and "fstore-run:/fstore-run" in keeper["volumes"]
    assert keeper["network_mode"] == "service:db"
    env = keeper["environment"]
    assert env["FSTORE_CRL_EXPORT_DIR"] == "/fstore-home/export"  # = ${FSTORE_HOME}/export, the db's /fstore-pki
    assert env["FSTORE_SOCKET_DIR"] == "/fstore-run" and env["FSTORE_SERVER_PORT"] == "5432"
    dockerfile = (ROOT / keeper["build"]["dockerfile"]).read_text()
    assert 'ENTRYPOINT ["keeper-entrypoint.sh"]' in dockerfile and "ENV FSTORE_SQL_DIR=/etc/fstore/sql" in dockerfile
    entrypoint = (ROOT / "docker" / "keeper-entrypoint.sh").read_text()
    # on every start: fstore migrate (the stack upgrades with its image), then the keeper in the foreground
    assert "apply_migrations(conn)" in entrypoint
    assert entrypoint.rstrip().endswith("exec python -m fstore.crlkeeper --home /fstore-home")


def test_the_keeper_imports_only_what_its_image_installs() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", "import sys, fstore.crlkeeper, fstore.migrations, fstore.connection; "
         "print(' '.join(sorted({m.split('.')[0] "
         "for m in sys.modules if m.split('.')[0] not in sys.stdlib_module_names and not m.startswith('_')})))"],
        capture_output=True, text=True, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    third_party = set(shown.stdout.split()) - {"fstore"}
    installed = {"psycopg", "psycopg_binary", "cryptography", "cffi", "typing_extensions", "cython_runtime"}
    assert third_party <= installed, third_party - installed


@pytest.fixture(scope="module")
def container_like(home: FstoreHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FstoreHome, Path]]:
    """A platform whose keeper runs as in its container: foreground, exporting its CRL."""
    fhome, cleanup = sandbox.start_home(None, prefix="fst-dock-")
    export = tmp_path_factory.mktemp("export")
    crlkeeper.stop_keeper(fhome)
    env = os.environ | {"FSTORE_CRL_EXPORT_DIR": str(export), "FSTORE_SOCKET_DIR": str(fhome.socket_dir),
                        "FSTORE_SERVER_PORT": str(fhome.port), "PYTHONPATH": str(ROOT)}
    log = open(fhome.keeper_log_file, "a")
    keeper = subprocess.Popen([sys.executable, "-m", "fstore.crlkeeper", "--home", str(fhome.root)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/")
    try:
        deadline = time.monotonic() + 30
        while not (export / "crl.pem").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        yield fhome, export
    finally:
        keeper.send_signal(signal.SIGTERM)
        keeper.wait(timeout=30)
        log.close()
        cleanup()


def test_the_foreground_keeper_exports_and_publishes(container_like: tuple[FstoreHome, Path]) -> None:
    home, export = container_like
    assert (export / "crl.pem").read_bytes() == home.crl_file.read_bytes()
    assert (export / "ca-bundle.crt").read_bytes() == home.ca_bundle.read_bytes()
    assert crlkeeper.keeper_status(home)["running"]
    name = sandbox.create_project(home, prefix="dock")
    role = f"{name}__bob"
    with connect(home, f"{name}__alice", autocommit=True) as alice:
        alice.execute("select fstore.remove_member(%s, 'bob')", (name,))
    deadline = time.monotonic() + 30
    with connect_operator(home, autocommit=True) as op:
        while op.execute("select count(*) from fstore.certificates where role_name = %s and crl_published_at is null",
                         (role,)).fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.1)
    serials = {r.serial for r in pki.list_certificates(home) if r.role == role}
    exported = FstoreHome(export.parent / "probe")
    exported.ca_dir.mkdir(parents=True, exist_ok=True)
    exported.crl_file.write_bytes((export / "crl.pem").read_bytes())
    assert serials <= pki.crl_serials(exported)  # the copy the database container reads lists them
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        connect(home, role, connect_timeout=5)
