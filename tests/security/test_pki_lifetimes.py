"""Certificates live exactly as long as asked, an application gets its own service entry,
and a new user certificate retires the one before it (its holder is refused, its
sessions end) while the role's application certificates keep working.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from cryptography import x509

from fstore import certificates, pki
from fstore.connection import connect_operator, material_for
from fstore.home import FstoreHome
from tests.security.attack import login_with

FSTORE = [sys.executable, "-m", "fstore"]


def _env(extra: dict[str, str]) -> dict[str, str]:
    return os.environ | extra


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _serial(conn: psycopg.Connection) -> str:
    return str(conn.execute("select client_serial from pg_stat_ssl where pid = pg_backend_pid()").fetchone()[0])


def _keep(home: FstoreHome, name: str, directory: Path) -> tuple[Path, Path]:
    """Copies of a certificate and key as they are now (what a former holder still has)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(home.client_cert(name).read_bytes())
    key.write_bytes(home.client_key(name).read_bytes())
    key.chmod(0o600)
    return cert, key


def test_application_certificates_live_from_now_for_their_ttl(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    role = a.role("bob")
    issued = subprocess.run([*FSTORE, "cert", "issue", role, "--app", "x1", "--ttl", "1m"],
                            capture_output=True, text=True)
    assert issued.returncode == 0, issued.stderr
    printed = dt.datetime.fromisoformat(re.search(r"expires (\S+)", issued.stdout).group(1))
    assert dt.timedelta(seconds=50) < printed - _now() <= dt.timedelta(minutes=1)
    hour = pki.issue_certificate(home, role, app_id="x2", ttl=dt.timedelta(hours=1))
    assert dt.timedelta(minutes=59) < hour.expires - _now() <= dt.timedelta(hours=1)
    assert dt.datetime.fromisoformat(hour.not_before) < _now() - dt.timedelta(minutes=4)  # clock skew allowed
    user = pki.issue_certificate(home, role)
    assert dt.timedelta(days=364) < user.expires - _now() <= pki.USER_VALIDITY

    brief = pki.issue_certificate(home, role, app_id="x3", ttl=dt.timedelta(seconds=3))
    certificates.record_in_catalog(home, brief)
    with a.connect("bob", app_id="x3") as job:  # alive for its whole lifetime ...
        assert _serial(job) == brief.serial
    time.sleep(max(0.0, (brief.expires - _now()).total_seconds()) + 1.0)
    with pytest.raises(psycopg.OperationalError, match="certificate expired"):
        a.connect("bob", app_id="x3")  # ... and not a second longer
    tally.allow("short_application_certificate_logs_in")
    tally.deny("application_certificate_after_its_ttl")


def test_application_gets_its_own_service_entry(home: FstoreHome, make_project, tmp_path: Path, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    role = a.role("bob")
    app = pki.issue_certificate(home, role, app_id="nightly", ttl=dt.timedelta(hours=1))
    certificates.record_in_catalog(home, app)
    user = next(r for r in reversed(pki.list_certificates(home)) if r.role == role and r.kind == "user")
    service_file = tmp_path / "pg_service.conf"
    env = {"PGSERVICEFILE": str(service_file)}
    for args in (["env", role], ["env", role, "--app", "nightly"], ["env", role]):
        result = subprocess.run([*FSTORE, *args], capture_output=True, text=True, env=_env(env))
        assert result.returncode == 0, result.stderr
    assert f'psql "service={role}@nightly"' in subprocess.run(
        [*FSTORE, "env", role, "--app", "nightly"], capture_output=True, text=True, env=_env(env)).stdout
    text = service_file.read_text()
    assert text.count(f"[{role}]") == 1 and text.count(f"[{role}@nightly]") == 1
    for service, record, app_name in ((role, user, ""), (f"{role}@nightly", app, "nightly")):
        psql = subprocess.run(
            ["psql", f"service={service}", "-Atc",
             "select current_user, client_serial, current_setting('application_name') "
             "from pg_stat_ssl where pid = pg_backend_pid()"],
            capture_output=True, text=True, env=_env(env))
        assert psql.returncode == 0, psql.stderr
        who, serial, name = psql.stdout.strip().split("|")
        assert (who, serial) == (role, record.serial)
        assert name == app_name or (not app_name and name == "psql")
    tally.allow("person_service_entry_survives_app_entry", "app_service_entry_logs_in")


def test_reissued_user_certificate_retires_the_old_one(
    home: FstoreHome, make_project, tmp_path: Path, tally
) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    role = a.role("bob")
    kept_cert, kept_key = _keep(home, role, tmp_path)
    old_serial = str(x509.load_pem_x509_certificate(kept_cert.read_bytes()).serial_number)
    job = pki.issue_certificate(home, role, app_id="job", ttl=dt.timedelta(hours=1))
    certificates.record_in_catalog(home, job)
    session = a.connect("bob")
    assert _serial(session) == old_serial

    new = pki.issue_certificate(home, role)
    certificates.record_in_catalog(home, new)

    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")  # the old certificate's open session was ended
    session.close()
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        login_with(material_for(home, role), sslcert=kept_cert, sslkey=kept_key)
    with a.connect("bob") as again:
        assert _serial(again) == new.serial
    with a.connect("bob", app_id="job") as app_session:  # application certificates stay
        assert _serial(app_session) == job.serial
    old = next(r for r in pki.list_certificates(home) if r.serial == old_serial)
    assert old.revoked_at is not None and old.serial in pki.crl_serials(home)
    with connect_operator(home) as op:  # the catalog knows it is revoked, and in the CRL
        revoked_at, published_at = op.execute(
            "select revoked_at, crl_published_at from fstore.certificates where serial = %s::numeric",
            (old_serial,)).fetchone()
    assert revoked_at is not None and published_at is not None
    tally.deny("reissued_old_certificate_login", "reissued_old_certificate_session")
    tally.allow("reissued_new_certificate_login", "reissued_keeps_application_certificate")
