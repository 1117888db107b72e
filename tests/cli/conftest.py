"""Fixtures for the command line, run for real against the session's server as real roles
with their own certificates: in-process through click's ``CliRunner`` (stdout and
stderr kept apart), or as ``python -m fstore`` subprocesses where the exit code and the
streams of a real process matter.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from psycopg import sql

from fstore import pki, server
from fstore.cli import main
from fstore.home import FstoreHome
from tests.conftest import free_port
from tests.retrieval.conftest import SqlFeatureGroup, commit_rows, create_group

T0 = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)


@dataclass
class Cli:
    """``fstore --home HOME ...`` in-process; ``run`` asserts the exit code."""

    home: FstoreHome

    def __call__(self, *args: str, home: FstoreHome | None = None) -> Result:
        return CliRunner().invoke(main, ["--home", str((home or self.home).root), *args])

    def run(self, *args: str, code: int = 0, home: FstoreHome | None = None) -> Result:
        result = self(*args, home=home)
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        assert "Traceback" not in result.output, result.output
        return result

    def json(self, *args: str) -> Any:
        """Run with ``--json`` (exit 0) and parse stdout."""
        return json.loads(self.run(*args, "--json").stdout)


def fstore_process(home: FstoreHome, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m fstore --home HOME ...`` as a real process."""
    return subprocess.run([sys.executable, "-m", "fstore", "--home", str(home.root), *args],
                          capture_output=True, text=True, timeout=120)


def one_error_line(stderr: str) -> str:
    """The single ``error: ...`` line a failed command prints on stderr."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.fixture
def cli(home: FstoreHome) -> Cli:
    return Cli(home)


@pytest.fixture
def fraud(make_project: Any) -> Any:
    """A project with Data Owner alice and Data Scientist bob."""
    return make_project(owner="alice", scientists=["bob"], prefix="fraud")


@pytest.fixture
def partner(make_project: Any) -> Any:
    """Another project, with Data Owner carol."""
    return make_project(owner="carol", prefix="partner")


def make_activity(fraud: Any, *, ttl: str | None = None, statistics: bool = False) -> SqlFeatureGroup:
    """fraud's feature group ``activity`` (25 rows, one commit: accounts 1-5, days 0-4 from T0, ``n_tx``
    = 10 * account + day) and a spine table ``labels`` (accounts 1-8 at T0 + account days, ``is_fraud``)."""
    with fraud.connect("alice") as alice:
        group = create_group(alice, fraud.name, "activity", {"account_id": "bigint", "event_time": "timestamptz",
                                                             "n_tx": "integer"}, ["account_id"], ttl=ttl,
                             statistics=statistics)
        commit_rows(alice, group, [(a, T0 + dt.timedelta(days=d), a * 10 + d) for a in range(1, 6) for d in range(5)])
        with alice.transaction():
            alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{fraud.name}__owner")))
            alice.execute(sql.SQL("create table {} as select a as account_id, {} + a * interval '1 day' as event_time,"
                                  " a % 2 as is_fraud from generate_series(1, 8) a")
                          .format(sql.Identifier(fraud.name, "labels"), sql.Literal(T0)))
    return group


@pytest.fixture
def activity(fraud: Any) -> SqlFeatureGroup:
    """:func:`make_activity` with a ttl of 30 days and commit statistics."""
    return make_activity(fraud, ttl="30 days", statistics=True)


@pytest.fixture(scope="module")
def stopped_home(home: FstoreHome) -> Iterator[FstoreHome]:
    """A home whose own server has run once and is stopped, with the admin's certificate.

    Its settings name the port of the session's running server: the one a careless
    client would reach when it falls back to the port without asking whose it is.
    """
    stopped = FstoreHome(Path(tempfile.mkdtemp(prefix="fst-stopped-", dir="/tmp")))
    try:
        pki.init_ca(stopped)
        pki.issue_certificate(stopped, "fstore_admin")
        server.start(stopped, port=free_port())
        server.stop(stopped)
        stopped.save_settings(port=home.port)
        yield stopped
    finally:
        server.stop(stopped)
        shutil.rmtree(stopped.root, ignore_errors=True)
