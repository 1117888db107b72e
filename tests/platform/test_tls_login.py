"""Certificate logins: who gets in, who is refused, and revocation that bites."""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from fstore import certificates, pki, server
from fstore.connection import ConnectionMaterial, connect, material_for
from fstore.home import FstoreHome
from tests.conftest import unique

FSTORE = [sys.executable, "-m", "fstore"]


def test_certificate_login_sets_current_user_to_the_cn(admin: psycopg.Connection) -> None:
    user, ssl, version = admin.execute(
        "select current_user, s.ssl, s.version from pg_stat_ssl s where s.pid = pg_backend_pid()"
    ).fetchone()
    assert user == "fstore_admin"
    assert ssl is True
    assert version in ("TLSv1.2", "TLSv1.3")


def test_admin_is_not_superuser_and_cannot_create_roles(admin: psycopg.Connection) -> None:
    row = admin.execute(
        "select rolsuper, rolcreaterole, rolcreatedb from pg_roles where rolname = current_user"
    ).fetchone()
    assert row == (False, False, False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute("create role intruder login")


def test_certificate_for_another_role_is_refused(home: FstoreHome, operator: psycopg.Connection) -> None:
    victim = unique("victim_")
    operator.execute(f'create role "{victim}" login')
    try:
        stolen = material_for(home, "fstore_admin")
        params = stolen.params() | {"user": victim}
        with pytest.raises(psycopg.OperationalError, match="certificate authentication failed"):
            psycopg.connect(**params)
    finally:
        operator.execute(f'drop role "{victim}"')


def test_certificate_from_a_foreign_ca_is_refused(home: FstoreHome, tmp_path: Path) -> None:
    foreign = FstoreHome(tmp_path / "foreign")
    pki.init_ca(foreign, ["localhost"])
    record = pki.issue_certificate(foreign, "fstore_admin")
    material = ConnectionMaterial(
        role="fstore_admin", port=home.port, sslcert=Path(record.cert_file),
        sslkey=Path(record.key_file), sslrootcert=home.root_ca_cert,
    )
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(material.conninfo(), connect_timeout=5)


def test_expired_certificate_is_refused(home: FstoreHome) -> None:
    app = unique("expired-")
    pki.issue_certificate(
        home, "fstore_admin", app_id=app, ttl=dt.timedelta(hours=1),
        not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2),
    )
    with pytest.raises(psycopg.OperationalError):
        connect(home, "fstore_admin", app_id=app, connect_timeout=5)


def test_connection_without_tls_is_refused(home: FstoreHome) -> None:
    params = material_for(home, "fstore_admin").params() | {"sslmode": "disable"}
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(**params)


def test_password_login_is_refused(home: FstoreHome, operator: psycopg.Connection) -> None:
    role = unique("pw_")
    operator.execute(f"create role \"{role}\" login password 'secret-password'")
    try:
        for sslmode in ("require", "disable"):
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(
                    host="localhost", port=home.port, dbname="fstore", user=role,
                    password="secret-password", sslmode=sslmode, connect_timeout=5,
                )
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                host="localhost", port=home.port, dbname="fstore", user="postgres",
                sslmode="require", connect_timeout=5,
            )
    finally:
        operator.execute(f'drop role "{role}"')


def test_revocation_refuses_new_logins_and_ends_open_sessions(home: FstoreHome) -> None:
    app = unique("job-")
    record = pki.issue_certificate(home, "fstore_admin", app_id=app, ttl=dt.timedelta(hours=1))
    session = connect(home, "fstore_admin", app_id=app, autocommit=True)
    serial = session.execute(
        "select client_serial from pg_stat_ssl where pid = pg_backend_pid()"
    ).fetchone()[0]
    assert str(serial) == record.serial

    revoked, terminated = certificates.revoke(home, serial=record.serial)
    assert [r.serial for r in revoked] == [record.serial]
    assert terminated == 1
    deadline = time.monotonic() + 1.0
    with pytest.raises(psycopg.OperationalError):
        while time.monotonic() < deadline:
            session.execute("select 1")
            time.sleep(0.05)
    with pytest.raises(psycopg.OperationalError, match="revoked"):
        connect(home, "fstore_admin", app_id=app, connect_timeout=5)
    # the admin's own user certificate is untouched
    with connect(home, "fstore_admin") as conn:
        assert conn.execute("select current_user").fetchone()[0] == "fstore_admin"


def test_resigning_the_crls_keeps_valid_logins_working(home: FstoreHome) -> None:
    before = pki.crl_expiry(home)
    time.sleep(1.1)
    result = subprocess.run([*FSTORE, "cert", "crl"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    after = pki.crl_expiry(home)
    assert before is not None and after is not None and after > before
    with connect(home, "fstore_admin") as conn:
        assert conn.execute("select current_user").fetchone()[0] == "fstore_admin"


def test_vector_and_pgaudit_extensions_are_present(
    admin: psycopg.Connection, operator: psycopg.Connection
) -> None:
    names = {n for (n,) in admin.execute("select extname from pg_extension")}
    assert {"vector", "pgaudit"} <= names
    assert admin.execute("select '[1,2,3]'::vector <-> '[1,2,4]'::vector").fetchone()[0] == 1.0
    assert "pgaudit" in operator.execute("show shared_preload_libraries").fetchone()[0]


def test_fstore_env_output_works_with_real_psql(home: FstoreHome) -> None:
    result = subprocess.run([*FSTORE, "env", "fstore_admin"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "sslmode=verify-full" in result.stdout
    assert "postgresql+psycopg://fstore_admin@" in result.stdout
    assert "password: ''" in result.stdout
    psql = subprocess.run(
        ["psql", "service=fstore_admin", "-Atc",
         "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"],
        capture_output=True, text=True,
    )
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.strip() == "fstore_admin|t"


def test_fstore_psql_opens_psql_as_the_role(home: FstoreHome) -> None:
    result = subprocess.run(
        [*FSTORE, "psql", "fstore_admin", "-Atc", "select current_user"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "fstore_admin"


def test_sqlalchemy_and_adbc_urls_connect(home: FstoreHome) -> None:
    import sqlalchemy

    from fstore.connection import connect_adbc

    engine = sqlalchemy.create_engine(material_for(home, "fstore_admin").sqlalchemy_url())
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("select current_user")).scalar() == "fstore_admin"
    engine.dispose()
    with connect_adbc(home, "fstore_admin") as conn, conn.cursor() as cur:
        cur.execute("select current_user as who")
        assert cur.fetch_arrow_table().column("who").to_pylist() == ["fstore_admin"]


def test_ca_keys_are_private_and_files_laid_out(home: FstoreHome) -> None:
    for key in (home.root_ca_key, home.intermediate_ca_key, home.client_key("fstore_admin")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert home.crl_file.read_text().count("BEGIN X509 CRL") == 2
    kinds = {r.kind for r in pki.list_certificates(home)}
    assert {"service", "user"} <= kinds


def test_server_start_is_idempotent_and_status_reports(home: FstoreHome) -> None:
    again = subprocess.run([*FSTORE, "server", "start"], capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    info = server.status(home)
    assert info["running"] and info["port"] == home.port
    assert {"vector", "pgaudit"} <= set(info["extensions"])
    assert info["version"].startswith("15.")


def test_bad_role_name_gets_one_clear_line(home: FstoreHome) -> None:
    result = subprocess.run([*FSTORE, "cert", "issue", "Bad;Name"], capture_output=True, text=True)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "not a project-user role" in result.stderr
    result = subprocess.run([*FSTORE, "cert", "issue", "postgres"], capture_output=True, text=True)
    assert result.returncode == 1 and "superuser" in result.stderr


def test_new_user_walkthrough_on_a_fresh_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """fstore init && server start && env && psql, as the README tells a new user."""
    from tests.conftest import free_port

    root = Path(tempfile_dir()) / "walk"
    env = os.environ | {"FSTORE_HOME": str(root), "PGSERVICEFILE": str(root.parent / "svc.conf")}
    port = str(free_port())
    try:
        for cmd in (["init"], ["server", "start", "--port", port], ["env", "fstore_admin"]):
            step = subprocess.run([*FSTORE, *cmd], capture_output=True, text=True, env=env)
            assert step.returncode == 0, (cmd, step.stderr)
        psql = subprocess.run(
            ["psql", "service=fstore_admin", "-Atc",
             "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()"],
            capture_output=True, text=True, env=env,
        )
        assert psql.stdout.strip() == "fstore_admin|t", psql.stderr
        stop = subprocess.run([*FSTORE, "server", "stop"], capture_output=True, text=True, env=env)
        assert "server stopped" in stop.stdout
        stop = subprocess.run([*FSTORE, "server", "stop"], capture_output=True, text=True, env=env)
        assert "not running" in stop.stdout
    finally:
        subprocess.run([*FSTORE, "server", "stop"], capture_output=True, env=env)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="fsw-", dir="/tmp")
