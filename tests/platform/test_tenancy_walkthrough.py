"""The tenancy story as a new user lives it: CLI commands, psql with certificates,
sharing, removal, policies, application identities and the audit log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

import fstore
from fstore import projects
from fstore.home import FstoreHome
from tests.conftest import unique

FSTORE = [sys.executable, "-m", "fstore"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FSTORE, *args], capture_output=True, text=True)


def psql(service: str, query: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", f"service={service}", "-v", "ON_ERROR_STOP=1", "-Atc", query],
        capture_output=True, text=True,
    )


@pytest.fixture
def two_projects(home: FstoreHome):
    fraud, marketing = unique("fraud"), unique("mkt")
    alice, bob, carol = f"{fraud}__alice", f"{fraud}__bob", f"{marketing}__carol"
    try:
        for cmd in (
            ["project", "create", fraud, "--owner", "alice"],
            ["project", "create", marketing, "--owner", "carol"],
            ["member", "add", fraud, "bob", "--role", "data-scientist", "--as", alice],
        ):
            result = cli(*cmd)
            assert result.returncode == 0, (cmd, result.stderr)
        setup = psql(alice, f"set role {fraud}__owner; create table {fraud}.tx (id int, amount float8, consent bool); "
                            f"reset role; insert into {fraud}.tx values (1, 10, true), (2, 20, false);")
        assert setup.returncode == 0, setup.stderr
        yield fraud, marketing, alice, bob, carol
    finally:
        for name in (fraud, marketing):
            cli("project", "delete", name, "--yes")


def test_readme_walkthrough(two_projects) -> None:
    fraud, marketing, alice, bob, carol = two_projects
    # bob (Data Scientist) reads fraud's tables and cannot write them
    assert psql(bob, f"select count(*) from {fraud}.tx").stdout.strip() == "2"
    denied = psql(bob, f"insert into {fraud}.tx values (3, 1, true)")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    # carol (marketing) cannot see fraud's data until fraud shares, and loses it after unshare
    assert "permission denied" in psql(carol, f"select * from {fraud}.tx").stderr
    assert cli("share", fraud, "--with", marketing, "--as", alice).returncode == 0
    assert psql(carol, f"select count(*) from {fraud}.tx").stdout.strip() == "2"
    assert "permission denied" in psql(carol, f"insert into {fraud}.tx values (9, 9, true)").stderr
    assert cli("unshare", fraud, "--with", marketing, "--as", alice).returncode == 0
    assert "permission denied" in psql(carol, f"select * from {fraud}.tx").stderr
    # the admin cannot read a row of fraud's data
    assert "permission denied" in psql("fstore_admin", f"select * from {fraud}.tx").stderr
    # removing bob ends his open psql session and his next login fails
    session = subprocess.Popen(
        ["psql", f"service={bob}", "-Atc", "select pg_sleep(30)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(0.5)
    removed = cli("member", "remove", fraud, "bob", "--as", alice)
    assert removed.returncode == 0, removed.stderr
    started = time.monotonic()
    _, err = session.communicate(timeout=10)
    assert session.returncode != 0 and time.monotonic() - started < 5
    assert "terminating connection" in err or "server closed" in err or "lost" in err
    relogin = psql(bob, "select 1")
    assert relogin.returncode != 0


def test_commands_refuse_identities_without_the_right(two_projects) -> None:
    fraud, marketing, alice, bob, carol = two_projects
    as_admin = cli("member", "add", fraud, "mallory", "--role", "data-owner")
    assert as_admin.returncode == 1 and "permission denied" in as_admin.stderr
    assert "Traceback" not in as_admin.stderr
    as_scientist = cli("member", "add", fraud, "mallory", "--role", "data-owner", "--as", bob)
    assert as_scientist.returncode == 1 and "permission denied" in as_scientist.stderr
    as_other_owner = cli("share", fraud, "--with", marketing, "--as", carol)
    assert as_other_owner.returncode == 1 and "Data Owner of project" in as_other_owner.stderr
    not_admin = cli("project", "create", unique("x"), "--owner", "eve", "--as", alice)
    assert not_admin.returncode == 1 and "permission denied for function create_project" in not_admin.stderr
    bad_name = cli("project", "create", "Bad-Name", "--owner", "eve")
    assert bad_name.returncode == 1 and "invalid project name" in bad_name.stderr


def test_member_list_project_list_and_roles(two_projects) -> None:
    fraud, marketing, alice, bob, carol = two_projects
    listed = cli("member", "list", fraud, "--as", bob)
    assert listed.returncode == 0 and "alice" in listed.stdout and "bob" in listed.stdout
    promoted = cli("member", "role", fraud, "bob", "--role", "data-owner", "--as", alice)
    assert promoted.returncode == 0, promoted.stderr
    assert psql(bob, f"insert into {fraud}.tx values (3, 1, true)").returncode == 0
    last_owner = cli("member", "role", fraud, "alice", "--role", "data-scientist", "--as", alice)
    assert last_owner.returncode == 0  # bob is a Data Owner now, so alice may step down
    final = cli("member", "role", fraud, "bob", "--role", "data-scientist", "--as", bob)
    assert final.returncode == 1 and "last Data Owner" in final.stderr
    visible = cli("project", "list", "--as", carol)
    assert marketing in visible.stdout and fraud not in visible.stdout


def test_block_user_locks_every_project_role(home: FstoreHome, make_project) -> None:
    person = unique("dan")
    a = make_project(owner="alice")
    b = make_project(owner="alice")
    a.add(person, "data-scientist")
    b.add(person, "data-owner")
    open_session = a.connect(person)
    blocked = cli("user", "block", person)
    assert blocked.returncode == 0, blocked.stderr
    with pytest.raises(psycopg.OperationalError):
        open_session.execute("select 1")
    for project in (a, b):
        with pytest.raises(psycopg.OperationalError):
            project.connect(person)
    c = make_project(owner="alice")
    with c.connect(c.owner) as owner, pytest.raises(fstore.PermissionDenied, match="blocked"):
        projects.add_member(home, owner, c.name, person, "data-scientist")
    assert cli("user", "unblock", person).returncode == 0
    with b.connect(person) as again:
        assert again.execute("select current_user").fetchone()[0] == b.role(person)


def test_policy_apply_filters_scientists_and_survives_new_tables(make_project, tmp_path: Path) -> None:
    fraud = make_project(owner="alice", scientists=["bob"])
    policy = tmp_path / "policy.yml"
    policy.write_text(
        "policies:\n  - name: consented_only\n    table: tx\n    roles: [data_scientist]\n    using: consent\n"
    )
    with fraud.connect("alice") as alice:
        alice.execute(f"set role {fraud.name}__owner")
        alice.execute(f"create table {fraud.name}.tx (id int, consent bool)")
        alice.execute("reset role")
        alice.execute(f"insert into {fraud.name}.tx values (1, true), (2, false)")
    refused = cli("policy", "apply", fraud.name, "--file", str(policy), "--as", fraud.role("bob"))
    assert refused.returncode == 1 and "permission denied" in refused.stderr
    applied = cli("policy", "apply", fraud.name, "--file", str(policy), "--as", fraud.role("alice"))
    assert applied.returncode == 0, applied.stderr
    with fraud.connect("bob") as bob:
        assert bob.execute(f"select array_agg(id) from {fraud.name}.tx").fetchone()[0] == [1]
    with fraud.connect("alice") as alice:
        assert alice.execute(f"select count(*) from {fraud.name}.tx").fetchone()[0] == 2
        # recreate the table: the declared policy is re-applied by the DDL guard
        alice.execute(f"set role {fraud.name}__owner")
        alice.execute(f"drop table {fraud.name}.tx")
        alice.execute(f"create table {fraud.name}.tx (id int, consent bool)")
        alice.execute("reset role")
        alice.execute(f"insert into {fraud.name}.tx values (3, true), (4, false)")
    with fraud.connect("bob") as bob:
        assert bob.execute(f"select array_agg(id) from {fraud.name}.tx").fetchone()[0] == [3]
    # a project it is shared with sees no more than the project's own Data Scientists
    other = make_project(owner="carol")
    with fraud.connect("alice") as alice:
        projects.share_project(alice, fraud.name, other.name)
    with other.connect("carol") as carol:
        assert carol.execute(f"select array_agg(id) from {fraud.name}.tx").fetchone()[0] == [3]
    hostile = tmp_path / "hostile.yml"
    hostile.write_text(
        "policies:\n  - name: evil\n    table: tx\n    roles: [everyone]\n    using: \"true) ; drop table x; --\"\n"
    )
    bad = cli("policy", "apply", fraud.name, "--file", str(hostile), "--as", fraud.role("alice"))
    assert bad.returncode == 1 and "evil" in bad.stderr


def test_application_identity_is_known_to_the_database_and_revoked_at_exit(
    home: FstoreHome, make_project
) -> None:
    fraud = make_project(owner="alice")
    app = unique("nightly-")
    with fstore.application(fraud.name, "alice", app, ttl="10m", home=home) as fs:
        serial, app_id = fs.conn.execute("select fstore.session_serial(), fstore.session_app_id()").fetchone()
        assert app_id == app
        fs.conn.execute(f"set role {fraud.name}__owner")
        fs.conn.execute(
            "select fstore.create_feature_group(%s, 'acct', 1, '{account_id}', 'event_time', "
            "'[{\"name\":\"account_id\",\"type\":\"bigint\"},{\"name\":\"amount\",\"type\":\"float8\"}]')",
            (fraud.name,),
        )
        fs.conn.execute("reset role")
        with fs.conn.transaction():
            fs.conn.execute("create temp table stage on commit drop as "
                            "select 1::bigint account_id, 2.5::float8 amount, now() event_time")
            fg_id = fs.conn.execute("select id from fstore.feature_groups where project = %s",
                                    (fraud.name,)).fetchone()[0]
            fs.conn.execute("select fstore.commit_feature_rows(%s, 'stage', 'append', 'python', '{}')", (fg_id,))
        material = fs.material
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(material.conninfo(), connect_timeout=5)
    with fraud.connect("alice") as alice:
        commit = alice.execute("select app_id, client_serial from fstore.commits c "
                               "join fstore.feature_groups g on g.id = c.feature_group_id "
                               "where g.project = %s", (fraud.name,)).fetchone()
        assert commit == (app, serial)
        audited = alice.execute("select app_id from fstore.audit_log where project = %s and action = 'commit'",
                                (fraud.name,)).fetchone()
        assert audited == (app,)
        revoked = alice.execute("select revoked_at is not null from fstore.certificates where serial = %s",
                                (serial,)).fetchone()
        assert revoked == (True,)


def test_audit_log_shows_actions_per_project(two_projects) -> None:
    fraud, marketing, alice, bob, carol = two_projects
    mine = cli("audit", "--project", fraud, "--json", "--as", alice)
    assert mine.returncode == 0, mine.stderr
    assert '"create_project"' in mine.stdout and '"add_member"' in mine.stdout
    others = cli("audit", "--project", fraud, "--json", "--as", carol)
    assert others.returncode == 0 and others.stdout.strip() == "[]"
    tamper = psql(alice, "delete from fstore.audit_log")
    assert tamper.returncode != 0


def test_reads_of_feature_tables_are_audited_by_pgaudit(home: FstoreHome, two_projects) -> None:
    fraud, marketing, alice, bob, carol = two_projects
    marker = unique("audit_marker_")
    assert psql(bob, f"select count(*) as {marker} from {fraud}.tx").returncode == 0
    time.sleep(0.2)
    log = home.log_file.read_text(errors="replace")
    assert any("AUDIT: OBJECT" in line and marker in line and f"{fraud}.tx" in line for line in log.splitlines())
