"""Names are checked whole: a trailing newline is not part of a valid name (``re.match``
with ``$`` would accept it), and a project may not take the name of a PostgreSQL or
fstore role or schema. Python and SQL refuse the same names."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from fstore import projects
from fstore.errors import InvalidInput
from fstore.roles import check_app_id, check_login_role, check_project_name, check_user_name
from tests.conftest import unique

FSTORE = [sys.executable, "-m", "fstore"]
RESERVED = ("postgres", "public", "information_schema", "pg_evil", "fstore", "fstoreevil", "fstore_x")


@pytest.mark.parametrize("check, good", [
    (check_project_name, "fraud"), (check_user_name, "alice"), (check_app_id, "nightly-train"),
    (check_login_role, "fraud__alice"),
])
def test_a_trailing_newline_is_not_part_of_a_name(check, good: str) -> None:
    assert check(good) == good
    for bad in (good + "\n", good + "\r\n", "\n" + good, good + " "):
        with pytest.raises(InvalidInput, match="invalid|not a project-user role"):
            check(bad)


def test_user_names_have_the_databases_length_limit() -> None:
    assert check_user_name("u" * 60) == "u" * 60
    with pytest.raises(InvalidInput, match="at most 60"):
        check_user_name("u" * 61)


def test_reserved_project_names_are_refused_in_python() -> None:
    for name in RESERVED:
        with pytest.raises(InvalidInput, match="reserved|invalid project name"):
            check_project_name(name)
    for name in ("fstor", "mypg_x", "publication", "post_gres", "pgx"):
        assert check_project_name(name) == name


def test_the_cli_refuses_a_role_with_a_trailing_newline(home) -> None:
    result = subprocess.run([*FSTORE, "cert", "issue", "fraud__alice\n"], capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "invalid project name" in result.stderr or "invalid user name" in result.stderr


def test_the_database_refuses_the_same_names(home, admin: psycopg.Connection, tally) -> None:
    for name in (*RESERVED, unique("ok") + "\n"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid project name"):
            admin.execute("select fstore.create_project(%s, 'alice')", (name,))
        tally.deny(f"create_project_named_{name.strip()[:12]}")
    for owner in ("alice\n", "u" * 61):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid user name"):
            admin.execute("select fstore.create_project(%s, %s)", (unique("ok"), owner))
    allowed = unique("pgok")  # a name that only contains pg
    try:
        projects.create_project(home, admin, allowed, "alice")
        assert admin.execute("select count(*) from fstore.projects where name = %s", (allowed,)).fetchone()[0] == 1
    finally:
        projects.delete_project(home, admin, allowed)
    tally.deny("create_project_owner_name_with_newline")
    tally.allow("create_project_ordinary_name")
