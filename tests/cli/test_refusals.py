"""A refused control function says who may do it: "only Data Owners of fraud may add
members", not PostgreSQL's "permission denied for function add_member".

Each refusal is triggered by the real actor with their own certificate; the database
still decides (nothing changes), the CLI only words its answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from fstore.cli.refusals import REFUSALS
from tests.cli.conftest import Cli, fstore_process, one_error_line


def test_every_control_function_kept_from_public_has_its_sentence(operator: psycopg.Connection, fraud: Any) -> None:
    """The functions only the admin or Data Owners (of fraud, say) may execute are exactly those worded."""
    rows = operator.execute(
        "select distinct p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace, "
        "aclexplode(p.proacl) a join pg_roles r on r.oid = a.grantee "
        "where n.nspname = 'fstore' and a.privilege_type = 'EXECUTE' "
        "and (r.rolname = 'fstore_admin' or r.rolname like '%\\_\\_data\\_owner')").fetchall()
    assert {name for (name,) in rows} == set(REFUSALS)


def _policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policies.yml"
    path.write_text("policies:\n  - name: consented_only\n    table: tx\n    roles: [data_scientist]\n"
                    "    using: consent\n")
    return str(path)


# (function, actor, command line): the actor is a real role of the project (or the admin)
CASES = [
    ("create_project", "alice", lambda p, q, f: ["project", "create", "never", "--owner", "eve"]),
    ("delete_project", "bob", lambda p, q, f: ["project", "delete", p, "--yes"]),
    ("block_user", "alice", lambda p, q, f: ["user", "block", "bob"]),
    ("unblock_user", "bob", lambda p, q, f: ["user", "unblock", "bob"]),
    ("add_member", "bob", lambda p, q, f: ["member", "add", p, "mallory", "--role", "data-owner"]),
    ("add_member", "admin", lambda p, q, f: ["member", "add", p, "mallory", "--role", "data-owner"]),
    ("set_member_role", "bob", lambda p, q, f: ["member", "role", p, "bob", "--role", "data-owner"]),
    ("remove_member", "bob", lambda p, q, f: ["member", "remove", p, "alice"]),
    ("remove_member", "admin", lambda p, q, f: ["member", "remove", p, "bob"]),
    ("share_project", "bob", lambda p, q, f: ["share", p, "--with", q]),
    ("unshare_project", "bob", lambda p, q, f: ["unshare", p, "--with", q]),
    ("set_row_policies", "bob", lambda p, q, f: ["policy", "apply", p, "--file", f]),
    ("set_row_policies", "admin", lambda p, q, f: ["policy", "apply", p, "--file", f]),
]


@pytest.mark.parametrize(("function", "actor", "command"), CASES,
                         ids=[f"{function}-as-{actor}" for function, actor, _ in CASES])
def test_a_refused_control_function_names_who_may(cli: Cli, fraud: Any, partner: Any, tmp_path: Path,
                                                  function: str, actor: str, command: Any) -> None:
    role = "fstore_admin" if actor == "admin" else fraud.role(actor)
    args = [*command(fraud.name, partner.name, _policy_file(tmp_path)), "--as", role]
    result = cli.run(*args, code=1)
    line = one_error_line(result.stderr)
    refusal = REFUSALS[function]
    if refusal.who == "admin":
        assert line.startswith(f"error: only the platform admin may {refusal.action}; {role} is not the admin: "
                               "run it as fstore_admin (the default of --as)"), line
    else:
        assert line.startswith(f"error: only Data Owners of {fraud.name} may {refusal.action}; {role} is not one: "
                               f"run it with --as {fraud.name}__USER for a Data Owner USER "
                               f"(`fstore member list {fraud.name}` shows them)"), line
    assert line.endswith(f"(database: permission denied for function {function}) (SQLSTATE 42501)"), line
    assert result.stdout == ""


def test_a_refusal_changes_nothing(cli: Cli, fraud: Any) -> None:
    cli.run("member", "add", fraud.name, "mallory", "--role", "data-owner", "--as", fraud.role("bob"), code=1)
    members = cli.json("member", "list", fraud.name, "--as", fraud.role("alice"))
    assert sorted(m["user_name"] for m in members) == ["alice", "bob"]
    assert cli.run("member", "role", fraud.name, "bob", "--role", "data-owner", "--as", fraud.role("bob"),
                   code=1).stdout == ""
    members = cli.json("member", "list", fraud.name, "--as", fraud.role("bob"))
    roles = {m["user_name"]: m["project_role"] for m in members}
    assert roles == {"alice": "data_owner", "bob": "data_scientist"}


def test_the_right_actor_is_not_refused(cli: Cli, fraud: Any, partner: Any) -> None:
    """The sentence tells the truth: the Data Owner it points to may do it."""
    cli.run("member", "add", fraud.name, "dan", "--role", "data-scientist", "--as", fraud.role("alice"))
    cli.run("share", fraud.name, "--with", partner.name, "--as", fraud.role("alice"))
    cli.run("unshare", fraud.name, "--with", partner.name, "--as", fraud.role("alice"))
    cli.run("member", "remove", fraud.name, "dan", "--as", fraud.role("alice"))


def test_a_data_owner_of_another_project_hears_the_database_itself(cli: Cli, fraud: Any, partner: Any) -> None:
    """carol may call share_project (she is a Data Owner), so the function itself refuses, by name."""
    result = cli.run("share", fraud.name, "--with", partner.name, "--as", partner.role("carol"), code=1)
    assert f"only a Data Owner of project {fraud.name} may" in one_error_line(result.stderr)


def test_a_real_process_prints_the_sentence_on_stderr_and_exits_1(home: Any, fraud: Any) -> None:
    result = fstore_process(home, "member", "add", fraud.name, "mallory", "--role", "data-owner",
                            "--as", fraud.role("bob"))
    assert result.returncode == 1 and result.stdout == ""
    assert one_error_line(result.stderr).startswith(f"error: only Data Owners of {fraud.name} may add members")
