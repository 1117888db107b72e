"""One way to connect and one way to say what went wrong.

* connection.py is the only module that calls psycopg.connect, the ADBC driver's connect or
  ConnectionPool; its ADBC session translates, rolls back and closes;
* the port comes from the home: a stopped home never reaches another server that now
  listens on its port, and says how to start its own;
* errors.py translates psycopg's and ADBC's errors alike: the same refusal gives the same
  class, words and SQLSTATE, whichever driver carried it.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import fstore
from fstore import pki, sandbox, server
from fstore.connection import adbc_session, connect, connect_adbc, material_for, open_psycopg
from fstore.errors import InvalidInput, NotFound, PermissionDenied, ServerError, from_database, translated
from fstore.home import FstoreHome

PACKAGE = Path(__file__).resolve().parents[2] / "fstore"
CONNECTING = {("psycopg", "connect"), ("dbapi", "connect"), ("adbc", "connect"), (None, "ConnectionPool")}


def _connecting_calls(path: Path) -> list[str]:
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = node.func
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (owner, name) in CONNECTING:
                calls.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}")
    return calls


def test_only_connection_py_opens_connections() -> None:
    others = [call for path in sorted(PACKAGE.rglob("*.py")) if path.name != "connection.py"
              for call in _connecting_calls(path)]
    assert _connecting_calls(PACKAGE / "connection.py"), "the finder finds connection.py's own calls"
    assert not others, f"connections opened outside fstore/connection.py: {others}"


# --- a stopped home ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stopped_home() -> Iterator[FstoreHome]:
    """A home whose server ran once (so it has a data directory and a port) and is stopped."""
    fhome, cleanup = sandbox.start_home(None, prefix="fst-stop-")
    try:
        project = sandbox.create_project(fhome, prefix="stopped")
        server.stop(fhome)  # the port it ran on stays recorded in the home
        yield fhome, project  # type: ignore[misc]
    finally:
        cleanup()


def test_a_stopped_home_says_so_and_never_reaches_a_server_on_its_port(home: FstoreHome,
                                                                        stopped_home: Any) -> None:
    fhome, project = stopped_home
    other = FstoreHome(Path(tempfile.mkdtemp(prefix="fst-other-", dir="/tmp")))
    pki.init_ca(other)
    pki.issue_certificate(other, "fstore_admin")
    server.start(other, port=fhome.port)  # another platform now listens on the stopped home's port
    try:
        expected = f"the server of {fhome.root} is not running: fstore --home {fhome.root} server start"
        with pytest.raises(ServerError, match=expected):
            connect(fhome, "fstore_admin")
        with pytest.raises(ServerError, match=expected):
            fstore.connect(project, "alice", home=fhome).conn
        with pytest.raises(ServerError, match=expected):
            connect_adbc(fhome, f"{project}__bob")
        with connect(other, "fstore_admin") as conn:  # the other platform is there, on that very port
            assert conn.info.port == fhome.port
    finally:
        server.stop(other)
        shutil.rmtree(other.root, ignore_errors=True)


def test_a_home_that_never_started_a_server_names_what_to_do(tmp_path: Path) -> None:
    fresh = FstoreHome(tmp_path / "fresh")
    pki.init_ca(fresh)
    pki.issue_certificate(fresh, "fstore_admin")
    with pytest.raises(ServerError, match=f"the server of {fresh.root} has never been started: fstore --home "
                                          f"{fresh.root} server start " r"\(for a server elsewhere, such as the Docker "
                                          r"stack, set \$FSTORE_SERVER_PORT to its port\)"):
        connect(fresh, "fstore_admin")


# --- one translator for psycopg and ADBC ------------------------------------------------------
def _both(material: Any, statement: str) -> tuple[Exception, Exception]:
    """The error of ``statement`` as psycopg and as ADBC carry it, translated."""
    with pytest.raises(Exception) as by_psycopg:
        with translated(), open_psycopg(material, autocommit=True) as conn:
            conn.execute(statement)
    with pytest.raises(Exception) as by_adbc:
        with adbc_session(material) as (_, cursor):
            cursor.execute(statement)
            cursor.fetchall()
    return by_psycopg.value, by_adbc.value


@pytest.mark.parametrize(("statement", "cls", "sqlstate", "message"), [
    ("select 1 / 0", InvalidInput, "22012", "division by zero"),
    ("select * from no_such_table", NotFound, "42P01", 'relation "no_such_table" does not exist'),
    ("select fstore.resolve_features(array['nope'])", InvalidInput, "22023", "invalid feature reference 'nope'"),
    ("create table {project}.x (a int)", PermissionDenied, "42501", "permission denied for schema {project}"),
    ("set role {project}__owner", PermissionDenied, "42501",
     "only Data Owners of {project} may act as {project}__owner"),
])
def test_psycopg_and_adbc_errors_are_translated_alike(make_project: Any, statement: str, cls: type,
                                                      sqlstate: str, message: str) -> None:
    project = make_project(owner="alice", scientists=["bob"], prefix="errs")
    material = material_for(project.home, project.role("bob"))
    by_psycopg, by_adbc = _both(material, statement.format(project=project.name))
    for error in (by_psycopg, by_adbc):
        assert type(error) is cls and error.sqlstate == sqlstate, error
        assert str(error).startswith(message.format(project=project.name)), error
        assert str(error).endswith(f"(SQLSTATE {sqlstate})")
    assert (by_psycopg.primary, by_psycopg.hint) == (by_adbc.primary, by_adbc.hint)
    assert str(by_psycopg) == str(by_adbc)


def test_the_translator_keeps_what_the_server_said(make_project: Any) -> None:
    project = make_project(owner="alice", prefix="errs")
    with project.connect("alice") as conn:
        with pytest.raises(psycopg.Error) as raw:
            conn.execute("select fstore.add_member(%s, 'x__y', 'data-scientist')", (project.name,))
    error = from_database(raw.value)
    assert error.sqlstate == raw.value.sqlstate and error.primary == raw.value.diag.message_primary
    assert isinstance(error, InvalidInput) and "invalid user name" in str(error)
    assert from_database(error) is error  # translating twice changes nothing


def test_a_stale_pid_file_is_a_stopped_server(tmp_path: Path) -> None:
    """After a crash postmaster.pid stays behind: a dead process is not a running server."""
    fresh = FstoreHome(tmp_path / "crashed")
    assert fresh.server_state() == "none"
    fresh.data_dir.mkdir(parents=True)
    (fresh.data_dir / "PG_VERSION").write_text("15\n")
    assert fresh.server_state() == "stopped"
    child = subprocess.Popen(["true"])
    child.wait()
    (fresh.data_dir / "postmaster.pid").write_text(f"{child.pid}\n{fresh.data_dir}\n")
    assert fresh.server_state() == "stopped"
    (fresh.data_dir / "postmaster.pid").write_text(f"{os.getpid()}\n{fresh.data_dir}\n")
    assert fresh.server_state() == "running"
