"""The CRL is fail-closed: when it expires every TLS login fails. fstore warns well
before that (``server status``), says what is wrong when it happens (status, the
login error's hint) and how to fix it (``fstore cert crl``)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import psycopg
import pytest

from fstore import crlkeeper, pki, sandbox, server
from fstore.connection import connect
from fstore.home import FstoreHome

FSTORE = [sys.executable, "-m", "fstore"]


@pytest.fixture(scope="module")
def own_home(home: FstoreHome) -> Iterator[FstoreHome]:
    """A platform of its own whose keeper is stopped (it would renew the CRL)."""
    fhome, cleanup = sandbox.start_home(None, prefix="fst-exp-")
    try:
        assert crlkeeper.stop_keeper(fhome)
        yield fhome
    finally:
        cleanup()


def _status(home: FstoreHome, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FSTORE, "--home", str(home.root), "server", "status", *args],
                          capture_output=True, text=True)


def test_status_warns_days_before_the_crl_expires(own_home: FstoreHome) -> None:
    with pki.publication_lock(own_home):
        pki.resign_crls(own_home, validity=dt.timedelta(hours=30))
        server.reload(own_home)
    result = _status(own_home, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["crl_state"] == "warning" and info["errors"] == []
    assert any("the CRL expires in" in w for w in info["warnings"])
    assert any("CRL keeper is not running" in w for w in info["warnings"])
    assert info["keeper"]["running"] is False
    shown = _status(own_home)
    assert shown.returncode == 0 and "warning:" in shown.stderr and "fstore cert crl" in shown.stderr


def test_an_expired_crl_is_named_and_fixed(own_home: FstoreHome) -> None:
    with pki.publication_lock(own_home):
        pki.resign_crls(own_home, validity=dt.timedelta(seconds=2))
        server.reload(own_home)
    time.sleep(3)
    with pytest.raises(psycopg.OperationalError, match="certificate expired") as refused:
        connect(own_home, "fstore_admin", connect_timeout=5)
    assert "because the CRL expired" in str(refused.value) and "fstore cert crl" in str(refused.value)
    result = _status(own_home)
    assert result.returncode == 1
    assert "every TLS login now fails" in result.stderr and "fstore cert crl" in " ".join(result.stderr.split())
    info = json.loads(_status(own_home, "--json").stdout)
    assert info["crl_state"] == "error" and info["errors"]

    fixed = subprocess.run([*FSTORE, "--home", str(own_home.root), "cert", "crl"], capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr
    with connect(own_home, "fstore_admin") as conn:
        assert conn.execute("select session_user").fetchone()[0] == "fstore_admin"
    assert json.loads(_status(own_home, "--json").stdout)["crl_state"] == "ok"


def test_server_start_renews_a_short_crl_and_restarts_the_keeper(own_home: FstoreHome) -> None:
    pki.resign_crls(own_home, validity=dt.timedelta(hours=12))
    assert server.stop(own_home)
    started = server.start(own_home)
    assert started.keeper_pid and crlkeeper.keeper_status(own_home)["running"]
    left = pki.crl_expiry(own_home) - dt.datetime.now(dt.timezone.utc)
    assert left > pki.CRL_VALIDITY - dt.timedelta(minutes=1)
    with connect(own_home, "fstore_admin") as conn:
        assert conn.execute("select session_user").fetchone()[0] == "fstore_admin"
