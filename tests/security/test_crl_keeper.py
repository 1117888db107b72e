"""Certificates do not come back to life. A membership or project ended in SQL (from the
Data Owner's or the admin's own psql session, no Python wrapper) only marks the rows
revoked in ``fstore.certificates``; the CRL keeper publishes them within seconds, and
the role name is given out again only after that. A certificate issued for nobody
(an orphan) is revoked too. The old certificate never logs in again, the new one does.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from fstore import certificates, crlkeeper, pki, projects, sandbox, server
from fstore.connection import connect, connect_operator, material_for
from fstore.home import FstoreHome
from fstore.registry import publication_lock
from tests.conftest import unique
from tests.security.attack import login_with

WAIT = 30.0  # seconds: the keeper reacts to the notification at once, this is a bound


def keep(home: FstoreHome, role: str, directory: Path) -> tuple[Path, Path]:
    """Copies of a role's certificate and key (what the person still holds afterwards)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{role}.crt", directory / f"{role}.key"
    cert.write_bytes(home.client_cert(role).read_bytes())
    key.write_bytes(home.client_key(role).read_bytes())
    key.chmod(0o600)
    return cert, key


def wait_published(home: FstoreHome, roles: list[str], timeout: float = WAIT) -> None:
    """Until every unexpired certificate row of these roles is revoked and in the CRL."""
    deadline = time.monotonic() + timeout
    query = ("select count(*) from fstore.certificates where role_name = any(%s) and not_after > now() "
             "and (revoked_at is null or crl_published_at is null)")
    with connect_operator(home, autocommit=True) as op:
        while (pending := op.execute(query, (roles,)).fetchone()[0]) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert pending == 0, f"{pending} certificate(s) of {roles} not published within {timeout:.0f}s"


def refused_as_revoked(home: FstoreHome, role: str, files: tuple[Path, Path]) -> None:
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        login_with(material_for(home, role), sslcert=files[0], sslkey=files[1])


def test_member_removed_in_sql_stays_dead_after_coming_back(
    home: FstoreHome, make_project, tmp_path: Path, tally
) -> None:
    a = make_project(owner="alice")
    user = unique("remy")
    role = a.add(user)
    old = keep(home, role, tmp_path)
    app = pki.issue_certificate(home, role, app_id="job", ttl=dt.timedelta(hours=1))
    certificates.record_in_catalog(home, app)
    old_app = keep(home, f"{role}@job", tmp_path)
    session = a.connect(user)
    with a.connect("alice") as alice:  # the Data Owner's own session, plain SQL
        assert alice.execute("select fstore.remove_member(%s, %s)", (a.name, user)).fetchone()[0] == role
    wait_published(home, [role])
    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")
    session.close()
    refused_as_revoked(home, role, old)
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        login_with(material_for(home, role, "job"), sslcert=old_app[0], sslkey=old_app[1])
    assert next(r for r in pki.list_certificates(home) if r.serial == app.serial).revoked_at

    a.add(user)  # the same person again, under the same role name, with a new certificate
    with a.connect(user) as again:
        assert again.execute("select session_user").fetchone()[0] == role
    refused_as_revoked(home, role, old)
    tally.deny("sql_removed_member_session", "sql_removed_member_old_certificate",
               "sql_removed_member_application_certificate", "sql_readded_member_old_certificate")
    tally.allow("sql_readded_member_new_certificate")


def test_project_deleted_in_sql_and_created_again(home: FstoreHome, admin, tmp_path: Path, tally) -> None:
    name = unique("tmpx")
    owner, scientist = f"{name}__olga", f"{name}__pete"
    projects.create_project(home, admin, name, "olga")
    with connect(home, owner, autocommit=True) as olga:
        projects.add_member(home, olga, name, "pete", "data-scientist")
    old_owner, old_scientist = keep(home, owner, tmp_path), keep(home, scientist, tmp_path)
    try:
        assert sorted(admin.execute("select fstore.delete_project(%s)", (name,)).fetchone()[0]) == [owner, scientist]
        wait_published(home, [owner, scientist])
        refused_as_revoked(home, owner, old_owner)
        refused_as_revoked(home, scientist, old_scientist)

        projects.create_project(home, admin, name, "olga")  # the same name, the same owner
        with connect(home, owner, autocommit=True) as olga:
            assert olga.execute("select session_user").fetchone()[0] == owner
            projects.add_member(home, olga, name, "pete", "data-scientist")
        with connect(home, scientist) as pete:
            assert pete.execute("select session_user").fetchone()[0] == scientist
        refused_as_revoked(home, owner, old_owner)
        refused_as_revoked(home, scientist, old_scientist)
    finally:
        try:
            projects.delete_project(home, admin, name)
        except Exception:  # noqa: BLE001 -- deleted already when the test failed midway
            pass
    tally.deny("sql_deleted_project_owner_certificate", "sql_deleted_project_member_certificate",
               "recreated_project_old_owner_certificate", "recreated_project_old_member_certificate")
    tally.allow("recreated_project_new_owner", "recreated_project_new_member")


def test_orphan_certificates_are_revoked(home: FstoreHome, make_project, operator, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    user = unique("olly")
    role = a.add(user)
    with a.connect("alice") as alice:
        projects.remove_member(home, alice, a.name, user)
    orphan = pki.issue_certificate(home, role)  # issued for a role nobody holds any more
    late_job = pki.issue_certificate(home, role, app_id="late-job", ttl=dt.timedelta(hours=1))
    kept_job = pki.issue_certificate(home, a.role("bob"), app_id="still-member", ttl=dt.timedelta(hours=1))
    admin_job = pki.issue_certificate(home, "fstore_admin", app_id=unique("ops-"), ttl=dt.timedelta(hours=1))
    with pytest.raises(psycopg.OperationalError, match=f'role "{role}" does not exist'):
        a.connect(user)  # not yet revoked (within the grace a new member's certificate gets)
    time.sleep(max(0.0, (dt.datetime.fromisoformat(orphan.issued_at) + crlkeeper.ORPHAN_GRACE
                         - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.5)
    operator.execute("notify fstore_certificates, 'test'")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not all(
        r.revoked_at for r in pki.list_certificates(home) if r.serial in (orphan.serial, late_job.serial)
    ):
        time.sleep(0.1)
    assert all(r.revoked_at for r in pki.list_certificates(home) if r.serial in (orphan.serial, late_job.serial))
    with publication_lock(home):  # the keeper revokes and publishes under this lock: it has finished
        pass
    wait_published(home, [role])
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        a.connect(user)
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        a.connect(user, app_id="late-job")
    with a.connect("bob", app_id="still-member") as bob:
        assert bob.execute("select session_user").fetchone()[0] == a.role("bob")
    with connect(home, "fstore_admin", app_id=admin_job.app_id) as ops:
        assert ops.execute("select session_user").fetchone()[0] == "fstore_admin"
    assert not any(r.revoked_at for r in pki.list_certificates(home) if r.serial in (kept_job.serial, admin_job.serial))
    tally.deny("orphan_user_certificate", "orphan_application_certificate")
    tally.allow("member_application_certificate_not_orphan", "admin_application_certificate_not_orphan")


# --- a server of its own: the keeper stopped, started, renewing ----------------------


@pytest.fixture(scope="module")
def own_home(home: FstoreHome) -> Iterator[FstoreHome]:
    """A second platform (after the session's, so that cleanup restores its service file)."""
    fhome, cleanup = sandbox.start_home(None, prefix="fst-crl-")
    try:
        yield fhome
    finally:
        cleanup()


def test_a_role_name_waits_for_the_crl_and_the_keeper_catches_up(own_home: FstoreHome, tmp_path: Path, tally) -> None:
    name = sandbox.create_project(own_home, prefix="gate")
    role = f"{name}__bob"
    old = keep(own_home, role, tmp_path)
    assert crlkeeper.stop_keeper(own_home)
    try:
        with connect(own_home, f"{name}__alice", autocommit=True) as alice:
            alice.execute("select fstore.remove_member(%s, 'bob')", (name,))
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="not yet in the server's CRL"):
                alice.execute("select fstore.add_member(%s, 'bob', 'data-scientist')", (name,))
            with pytest.raises(psycopg.OperationalError, match=f'role "{role}" does not exist'):
                login_with(material_for(own_home, role), sslcert=old[0], sslkey=old[1])  # not in the CRL yet
            assert server.start(own_home).already_running  # starts the keeper again, nothing else
            wait_published(own_home, [role])
            projects.add_member(own_home, alice, name, "bob", "data-scientist")
        with connect(own_home, role) as bob:
            assert bob.execute("select session_user").fetchone()[0] == role
        refused_as_revoked(own_home, role, old)
    finally:
        crlkeeper.start_keeper(own_home)
    tally.deny("readd_before_crl_published", "readded_old_certificate_after_keeper")
    tally.allow("readd_after_crl_published")


def test_keeper_runs_with_the_server_and_stops_with_it(own_home: FstoreHome) -> None:
    state = crlkeeper.keeper_status(own_home)
    assert state["running"] and Path(f"/proc/{state['pid']}").exists()
    assert own_home.keeper_pid_file.read_text().strip() == str(state["pid"])
    info = server.status(own_home)
    assert info["keeper"]["running"] and info["crl_state"] == "ok" and not info["errors"]
    assert server.stop(own_home)
    assert not Path(f"/proc/{state['pid']}").exists() or b"crlkeeper" not in Path(
        f"/proc/{state['pid']}/cmdline").read_bytes()
    assert not own_home.keeper_pid_file.exists() and not crlkeeper.keeper_status(own_home)["running"]
    started = server.start(own_home)
    assert started.keeper_pid and started.keeper_pid != state["pid"]
    assert crlkeeper.keeper_status(own_home)["pid"] == started.keeper_pid
    assert "stopped" in own_home.keeper_log_file.read_text()


def test_keeper_renews_the_crl_about_daily(own_home: FstoreHome) -> None:
    with pki.publication_lock(own_home):
        pki.resign_crls(own_home, validity=crlkeeper.RENEW_WHEN_LEFT - dt.timedelta(hours=1))
        server.reload(own_home)
    with connect_operator(own_home, autocommit=True) as op:
        op.execute("notify fstore_certificates, 'renew?'")
    deadline = time.monotonic() + WAIT
    # the keeper writes the CRL file, then its log line: wait for both
    while ((left := pki.crl_expiry(own_home) - dt.datetime.now(dt.timezone.utc)) < crlkeeper.RENEW_WHEN_LEFT
           or "renewed the CRLs" not in own_home.keeper_log_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left > pki.CRL_VALIDITY - dt.timedelta(minutes=1)
    assert "renewed the CRLs" in own_home.keeper_log_file.read_text()
    with connect(own_home, "fstore_admin") as conn:
        assert conn.execute("select session_user").fetchone()[0] == "fstore_admin"
