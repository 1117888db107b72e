"""Access changes take effect at once, in sessions that are already open: unshare,
share mode changes, member removal, demotion, blocking; and the leftovers of a
removed or blocked person (open sessions, old or newly issued certificates) are dead.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from fstore import pki, projects
from fstore.connection import material_for
from fstore.home import FstoreHome
from tests.conftest import unique
from tests.security.attack import login_with



def test_share_modes_and_unshare_bite_in_open_sessions(make_project, tally) -> None:
    a = make_project(owner="alice")
    b = make_project(owner="carol", scientists=["dave"])
    with a.connect("alice") as alice:
        alice.execute(f"set role {a.name}__owner")
        alice.execute(f"create table {a.name}.t (id int primary key, v text)")
        alice.execute("reset role")
        alice.execute(f"insert into {a.name}.t values (1, 'a')")
        carol, dave = b.connect("carol"), b.connect("dave")
        with carol, dave:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema"):
                carol.execute(f"select * from {a.name}.t")
            projects.share_project(alice, a.name, b.name)
            assert carol.execute(f"select count(*) from {a.name}.t").fetchone()[0] == 1
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table t"):
                carol.execute(f"insert into {a.name}.t values (2, 'b')")
            projects.share_project(alice, a.name, b.name, read_write=True)  # upgrade, same sessions
            carol.execute(f"insert into {a.name}.t values (2, 'b')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table t"):
                dave.execute(f"insert into {a.name}.t values (3, 'c')")
            projects.share_project(alice, a.name, b.name)  # downgrade to read-only
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table t"):
                carol.execute(f"update {a.name}.t set v = 'x'")
            assert dave.execute(f"select count(*) from {a.name}.t").fetchone()[0] == 2
            projects.unshare_project(alice, a.name, b.name)
            for conn in (carol, dave):
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for schema"):
                    conn.execute(f"select * from {a.name}.t")
            visible = carol.execute("select count(*) from fstore.projects where name = %s", (a.name,)).fetchone()[0]
            assert visible == 0
    tally.allow("share_ro_reads_open_session", "share_upgrade_writes_open_session",
                "share_downgrade_still_reads")
    tally.deny("unshared_before_share", "ro_share_insert_open_session", "rw_share_scientist_insert",
               "downgraded_share_update", "unshare_owner_open_session", "unshare_scientist_open_session",
               "unshare_hides_catalog_row")


def test_removed_member_is_gone_everywhere(home: FstoreHome, make_project, tmp_path: Path, tally) -> None:
    a = make_project(owner="alice")
    ivan = a.add(unique("ivan"), "data-scientist")
    user = ivan.split("__", 1)[1]
    old = material_for(home, ivan)
    kept_cert, kept_key = tmp_path / "old.crt", tmp_path / "old.key"
    kept_cert.write_bytes(old.sslcert.read_bytes())
    kept_key.write_bytes(old.sslkey.read_bytes())
    kept_key.chmod(0o600)
    session = a.connect(user)
    assert session.execute("select session_user").fetchone()[0] == ivan
    with a.connect("alice") as alice:
        projects.remove_member(home, alice, a.name, user)
        assert alice.execute("select count(*) from fstore.members where role_name = %s", (ivan,)).fetchone()[0] == 0
    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")  # the open session was terminated
    session.close()
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        a.connect(user)
    pki.issue_certificate(home, ivan)  # even a new certificate finds no role
    with pytest.raises(psycopg.OperationalError, match=f'role "{ivan}" does not exist'):
        a.connect(user)
    a.add(user, "data-scientist")  # re-added: a new role and a new certificate
    with a.connect(user) as again:
        assert again.execute("select current_user").fetchone()[0] == ivan
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        login_with(material_for(home, ivan), sslcert=kept_cert, sslkey=kept_key)
    tally.deny("removed_session_terminated", "removed_login_revoked_cert", "removed_login_new_cert_no_role",
               "removed_old_cert_after_readd")
    tally.allow("readded_member_logs_in")


def test_demoted_data_owner_loses_owner_role(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice")
    amy = a.add(unique("amy"), "data-owner")
    user = amy.split("__", 1)[1]
    session = a.connect(user)
    session.execute(f"set role {a.name}__owner")
    with a.connect("alice") as alice:
        assert projects.set_member_role(alice, a.name, user, "data-scientist") == amy
    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")
    session.close()
    with a.connect(user) as demoted:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied to set role"):
            demoted.execute(f"set role {a.name}__owner")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function add_member"):
            demoted.execute("select fstore.add_member(%s, 'mallory', 'data-owner')", (a.name,))
    tally.deny("demoted_session_terminated", "demoted_set_role_owner", "demoted_add_member")


def test_blocked_user_loses_every_project(home: FstoreHome, admin, make_project, tally) -> None:
    person = unique("judy")
    a = make_project(owner="alice")
    b = make_project(owner="carol")
    a.add(person, "data-owner")
    b.add(person, "data-scientist")
    sessions = [a.connect(person), b.connect(person)]
    assert sorted(projects.block_user(home, admin, person)) == sorted([a.role(person), b.role(person)])
    for session in sessions:
        with pytest.raises(psycopg.OperationalError):
            session.execute("select 1")
        session.close()
    for project in (a, b):
        with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
            project.connect(person)
    pki.issue_certificate(home, a.role(person))  # a certificate alone does not help: the role is NOLOGIN
    with pytest.raises(psycopg.OperationalError, match="is not permitted to log in"):
        a.connect(person)
    c = make_project(owner="hank")
    with c.connect("hank") as hank, pytest.raises(psycopg.errors.InsufficientPrivilege, match="is blocked"):
        hank.execute("select fstore.add_member(%s, %s, 'data-scientist')", (c.name, person))
    projects.unblock_user(home, admin, person)
    with b.connect(person) as again:
        assert again.execute("select current_user").fetchone()[0] == b.role(person)
    tally.deny("blocked_session_a_terminated", "blocked_session_b_terminated", "blocked_login_a_revoked",
               "blocked_login_b_revoked", "blocked_new_cert_nologin", "blocked_cannot_be_added")
    tally.allow("unblocked_logs_in")


def test_commit_and_sessions_of_others(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    d = make_project(owner="hank")
    with a.connect("alice") as alice, a.connect("bob") as bob, d.connect("hank") as hank:
        alice.execute(f"set role {a.name}__owner")
        fg = alice.execute(
            "select fstore.create_feature_group(%s, 'fg', 1, array['id'], 'event_time', "
            "'[{\"name\": \"id\", \"type\": \"bigint\"}]'::jsonb)", (a.name,)).fetchone()[0]
        alice.execute("reset role")
        alice.execute("begin")  # a commit is open in the transaction that began it, for its session only
        commit = alice.execute("select fstore.begin_commit(%s, 'test')", (fg,)).fetchone()[0]
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is not open in this session"):
            bob.execute("select fstore.finish_commit(%s, 1000000, 0, null, null, null, null)", (commit,))
        alice_pid = alice.info.backend_pid
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be a member of the role whose process is being terminated"):
            hank.execute("select pg_terminate_backend(%s::integer)", (alice_pid,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be a member of the role whose query is being canceled"):
            bob.execute("select pg_cancel_backend(%s::integer)", (alice_pid,))
        shown = hank.execute("select query from pg_stat_activity where pid = %s", (alice_pid,)).fetchone()[0]
        assert shown == "<insufficient privilege>"
        ssl = hank.execute("select count(*) from pg_stat_ssl where pid = %s", (alice_pid,)).fetchone()[0]
        assert ssl == 0  # another session's certificate (DN, serial) is not shown
        alice.execute("select fstore.finish_commit(%s, 0, 0, null, null, null, null)", (commit,))
        alice.execute("commit")
    tally.deny("finish_commit_of_another_session", "terminate_other_project_session",
               "cancel_colleague_query", "read_other_session_query", "read_other_session_certificate")
    tally.allow("owner_begins_and_finishes_commit")


def test_hostile_user_names_become_plain_members(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice")
    for name in ("pg_read_server_files", "postgres", "fstore_admin"):
        role = a.add(name, "data-scientist")
        assert role == f"{a.name}__{name}"
        with a.connect(name) as member:
            assert member.execute(
                "select rolsuper or rolcreaterole or rolbypassrls from pg_roles where rolname = current_user"
            ).fetchone()[0] is False
            granted = member.execute(
                "select array_agg(b.rolname::text order by 1) from pg_auth_members m "
                "join pg_roles b on b.oid = m.roleid where m.member = (select oid from pg_roles "
                "where rolname = current_user)").fetchone()[0]
            assert granted == [f"{a.name}__data_scientist"]
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
                member.execute("select pg_read_file('/etc/passwd')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for function"):
                member.execute("select fstore.delete_project(%s)", (a.name,))
        tally.deny(f"member_named_{name}_gets_no_power")
        tally.allow(f"member_named_{name}_added")
