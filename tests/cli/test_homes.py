"""Which home, and is its server up: "no fstore home at X: run fstore init", "the server of X
is not running: fstore server start", and ``--home`` as the global option it is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fstore import pki
from fstore.cli import main
from fstore.home import FstoreHome
from tests.cli.conftest import Cli, fstore_process, one_error_line

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("command", [["project", "list"], ["fg", "list", "--as", "fraud__alice"], ["cert", "list"],
                                     ["server", "status"], ["server", "start"], ["env", "fstore_admin"], ["migrate"]])
def test_no_home_says_run_init(cli: Cli, tmp_path: Path, command: list[str]) -> None:
    nowhere = FstoreHome(tmp_path / "nowhere")
    line = one_error_line(cli.run(*command, code=1, home=nowhere).stderr)
    assert line == (f"error: no fstore home at {nowhere.root}: run `fstore --home {nowhere.root} init` "
                    "(or choose another home: `fstore --home DIR ...` or $FSTORE_HOME)")
    assert not nowhere.root.exists()  # nothing was made on the way


def test_no_home_in_json_is_an_error_object_with_the_same_exit_code(cli: Cli, tmp_path: Path) -> None:
    nowhere = FstoreHome(tmp_path / "nowhere")
    result = cli.run("project", "list", "--json", code=1, home=nowhere)
    assert json.loads(result.stdout) == {"error": {
        "kind": "not_found", "sqlstate": None, "exit_code": 1,
        "message": f"no fstore home at {nowhere.root}: run `fstore --home {nowhere.root} init` "
                   "(or choose another home: `fstore --home DIR ...` or $FSTORE_HOME)"}}
    assert one_error_line(result.stderr).startswith("error: no fstore home at")


@pytest.mark.parametrize("command", [["project", "list"], ["project", "create", "never", "--owner", "eve"],
                                     ["member", "list", "fraud"], ["fg", "list", "--as", "fraud__alice"],
                                     ["train", "list", "--as", "fraud__bob"], ["migrate"], ["psql", "fstore_admin"]])
def test_a_stopped_home_says_start_its_server(cli: Cli, stopped_home: FstoreHome, command: list[str]) -> None:
    """Its settings name the running session server's port: it must not be reached."""
    line = one_error_line(cli.run(*command, code=1, home=stopped_home).stderr)
    assert line == (f"error: the server of {stopped_home.root} is not running: "
                    f"fstore --home {stopped_home.root} server start")


def test_a_stopped_home_never_reaches_the_server_on_its_port(cli: Cli, home: FstoreHome,
                                                             stopped_home: FstoreHome) -> None:
    assert stopped_home.port == home.port  # the session's server listens there, and would answer
    before = cli.json("audit", "--limit", "1")
    cli.run("project", "create", "never", "--owner", "eve", code=1, home=stopped_home)
    assert cli.json("audit", "--limit", "1") == before
    assert "never" not in [p["name"] for p in cli.json("project", "list")]


def test_a_stopped_home_in_json_and_in_a_real_process(stopped_home: FstoreHome) -> None:
    plain = fstore_process(stopped_home, "project", "list")
    as_json = fstore_process(stopped_home, "project", "list", "--json")
    assert plain.returncode == as_json.returncode == 1
    assert plain.stdout == "" and plain.stderr == as_json.stderr
    error = json.loads(as_json.stdout)["error"]
    assert error["kind"] == "server_error" and error["exit_code"] == 1
    assert error["message"] == f"the server of {stopped_home.root} is not running: " \
                               f"fstore --home {stopped_home.root} server start"


def test_server_status_of_a_stopped_home_exits_3_with_and_without_json(stopped_home: FstoreHome) -> None:
    plain = fstore_process(stopped_home, "server", "status")
    as_json = fstore_process(stopped_home, "server", "status", "--json")
    assert plain.returncode == as_json.returncode == 3
    assert json.loads(as_json.stdout)["running"] is False


def test_a_home_never_started_says_so(cli: Cli, tmp_path: Path) -> None:
    fresh = FstoreHome(tmp_path / "fresh")
    pki.init_ca(fresh)
    pki.issue_certificate(fresh, "fstore_admin")
    line = one_error_line(cli.run("project", "list", code=1, home=fresh).stderr)
    assert line == (f"error: the server of {fresh.root} has never been started: fstore --home {fresh.root} "
                    "server start (for a server elsewhere, such as the Docker stack, set $FSTORE_SERVER_PORT "
                    "to its port)")


def test_home_is_a_global_option(cli: Cli, fraud: Any) -> None:
    misplaced = cli.run("fg", "list", "--as", fraud.role("bob"), "--home", str(cli.home.root), code=2)
    assert "--home is a global option: give it before the command, as in `fstore --home DIR fg list ...`" \
           in misplaced.stderr
    top = " ".join(CliRunner().invoke(main, ["--help"]).stdout.split())
    assert "--home DIR" in top and "A global option: give it before the command" in top
    sub = CliRunner().invoke(main, ["member", "add", "--help"]).stdout
    assert "Global option, before the command: `fstore --home DIR member add ...`" in " ".join(sub.split())


def test_readme_documents_home_as_a_global_option() -> None:
    text = README.read_text()
    assert "Every command takes `--home DIR`" not in text
    assert "`--home DIR` is a global option" in text


@pytest.mark.parametrize("command", [["train", "list"], ["fg", "list"], ["export", "x", "--out", "x.csv"]])
def test_project_user_commands_need_a_project_user(cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                                   command: list[str]) -> None:
    """No silent default identity: --as (or $FSTORE_AS) names the project-user."""
    monkeypatch.delenv("FSTORE_AS", raising=False)
    assert "Missing option '--as'" in cli.run(*command, code=2).stderr
    monkeypatch.setenv("FSTORE_AS", "fstore_admin")
    line = one_error_line(cli.run(*command, code=1).stderr)
    assert "fstore_admin" in line and "Traceback" not in line
