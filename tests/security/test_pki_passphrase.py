"""CA keys encrypted with a passphrase that lives only in an environment variable:
without it (or with a wrong one) nothing is signed and the error names the variable;
with it the platform runs as usual, the CRL keeper included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from fstore.sandbox import free_port

FSTORE = [sys.executable, "-m", "fstore"]
VARIABLE = "FSTORE_TEST_CA_PASS"
PASSPHRASE = "correct horse battery staple"


def _env(root: Path, passphrase: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (VARIABLE, "FSTORE_CA_PASSPHRASE")}
    env |= {"FSTORE_HOME": str(root), "PGSERVICEFILE": str(root / "pg_service.conf")}
    if passphrase is not None:
        env[VARIABLE] = passphrase
    return env


def _fstore(root: Path, passphrase: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI; stderr comes back with its line wrapping undone."""
    result = subprocess.run([*FSTORE, *args], capture_output=True, text=True, env=_env(root, passphrase))
    result.stderr = " ".join(result.stderr.split())
    return result


@pytest.fixture(scope="module")
def locked_home(home: FstoreHome) -> Iterator[Path]:
    """A home whose CA keys are encrypted; its server is stopped at the end."""
    root = Path(tempfile.mkdtemp(prefix="fst-pass-", dir="/tmp")) / "home"
    try:
        yield root
    finally:
        _fstore(root, PASSPHRASE, "server", "stop")
        shutil.rmtree(root.parent, ignore_errors=True)


def test_init_refuses_a_missing_or_short_passphrase(locked_home: Path) -> None:
    missing = _fstore(locked_home, None, "init", "--ca-passphrase-env", VARIABLE)
    assert missing.returncode == 1 and f"${VARIABLE} is not set" in missing.stderr
    short = _fstore(locked_home, "short", "init", "--ca-passphrase-env", VARIABLE)
    assert short.returncode == 1 and "too short" in short.stderr
    assert not (locked_home / "ca" / "root.key").exists()


def test_encrypted_ca_keys_need_the_passphrase(locked_home: Path, tally) -> None:
    made = _fstore(locked_home, PASSPHRASE, "init", "--ca-passphrase-env", VARIABLE)
    assert made.returncode == 0, made.stderr
    for key in ("root.key", "intermediate.key"):
        assert "BEGIN ENCRYPTED PRIVATE KEY" in (locked_home / "ca" / key).read_text()
    assert "BEGIN PRIVATE KEY" in (locked_home / "certs" / "fstore_admin.key").read_text()  # member keys: libpq's

    for passphrase, message in ((None, f"encrypted: set ${VARIABLE}"), ("wrong passphrase", "wrong CA passphrase")):
        for args in (["cert", "issue", "fstore_admin", "--app", "job"], ["cert", "crl"], ["server", "start"]):
            refused = _fstore(locked_home, passphrase, *args)
            assert refused.returncode == 1 and message in refused.stderr, (args, refused.stderr)
            assert "Traceback" not in refused.stderr
        tally.deny(f"ca_key_{'without' if passphrase is None else 'wrong'}_passphrase")
    assert not (locked_home / "certs" / "fstore_admin@job.crt").exists()

    started = _fstore(locked_home, PASSPHRASE, "server", "start", "--port", str(free_port()))
    assert started.returncode == 0, started.stderr
    assert "CRL keeper running" in started.stdout
    issued = _fstore(locked_home, PASSPHRASE, "cert", "issue", "fstore_admin", "--app", "job")
    assert issued.returncode == 0, issued.stderr
    home = FstoreHome(locked_home)
    with connect(home, "fstore_admin", app_id="job") as conn:
        assert conn.execute("select session_user").fetchone()[0] == "fstore_admin"
    tally.allow("ca_key_with_passphrase")


def test_the_keeper_signs_with_the_passphrase(locked_home: Path) -> None:
    home = FstoreHome(locked_home)
    created = _fstore(locked_home, PASSPHRASE, "project", "create", "vault", "--owner", "vera")
    assert created.returncode == 0, created.stderr
    with connect(home, "fstore_admin", autocommit=True) as admin:
        admin.execute("select fstore.delete_project('vault')")  # SQL only: the keeper must publish
    deadline = time.monotonic() + 30
    with connect_operator(home, autocommit=True) as op:
        while op.execute("select count(*) from fstore.certificates where role_name = 'vault__vera' "
                         "and crl_published_at is null").fetchone()[0] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert op.execute("select count(*) from fstore.certificates where role_name = 'vault__vera' "
                          "and crl_published_at is null").fetchone()[0] == 0
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        connect(home, "vault__vera", connect_timeout=5)
