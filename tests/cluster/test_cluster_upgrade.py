"""Upgrading a running cluster: new SQL (every function file changed, one new function)
applied by `fstore server stop && fstore server start` and by `fstore migrate` on a
coordinator whose workers are attached. The coordinator applies it alone (Citus would send
each statement over a connection of the role running it, and the files' role switches
deadlock across those connections: seen before this was fixed); the workers are resynced
after (`citus_activate_node`). The new function reaches the workers, a distributed group
keeps its rows, its commit gate and its readers, and project roles still log in on the
workers."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

from fstore import citus, cluster, sandbox
from fstore.cli import main
from fstore.cluster_nodes import connect_node
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from fstore.migrations import SQL_DIR, migration_files
from tests.cluster.conftest import own_cluster
from tests.retrieval.conftest import commit_rows, create_group

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
PROBE = """
create or replace function fstore.upgrade_probe_{n}() returns integer
language sql immutable set search_path = pg_catalog, pg_temp as 'select {n}';
comment on function fstore.upgrade_probe_{n}() is 'The upgrade test''s new function.';
grant execute on function fstore.upgrade_probe_{n}() to public;
"""


@pytest.fixture(scope="module")
def upgraded_cluster() -> Iterator[FstoreHome]:
    if not cluster.citus_installed():
        pytest.skip("Citus is not installed: run scripts/setup.sh")
    with own_cluster("fcu-") as fhome:
        yield fhome


def _next_release(root: Path, n: int) -> Path:
    """A copy of sql/ with every function file changed (fstore.citus_present's body among
    them) and fstore.upgrade_probe_<n>() added."""
    for path in migration_files(SQL_DIR):
        target = root / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        if path.parent.name == "functions":
            text = path.read_text().replace("where extname = 'citus')", f"where extname = 'citus') /* release {n} */")
            target.write_text(text + f"\n-- release {n}\n")
    probe = root / "functions" / "99_upgrade_probe.sql"
    probe.write_text("".join(PROBE.format(n=i) for i in range(1, n + 1)))
    return root


def _on_every_worker(home: FstoreHome, query: str) -> list[object]:
    answers = []
    for node in citus.all_nodes(home):
        with connect_node(home, node, autocommit=True) as conn:
            answers.append(conn.execute(query).fetchone()[0])
    return answers


def _cli(home: FstoreHome, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--home", str(home.root), *args])
    return result.exit_code, result.output


def test_new_sql_reaches_a_running_cluster_on_restart_and_with_migrate(
        upgraded_cluster: FstoreHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = upgraded_cluster
    project = sandbox.create_project(home, prefix="upc")
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        group = create_group(alice, project, "activity", {"id": "bigint", "event_time": "timestamptz",
                                                          "clicks": "integer"}, ["id"], online=True,
                             distribution_key="id")
        commit_rows(alice, group, [(i, T0, i) for i in range(1, 21)])
        assert alice.execute("select fstore.is_distributed(%s::regclass)", (f"{project}.activity__v1",)).fetchone()[0]

    # a restart with the next release's SQL
    monkeypatch.setenv("FSTORE_SQL_DIR", str(_next_release(tmp_path / "r1", 1)))
    code, output = _cli(home, "server", "stop")
    assert code == 0, output
    code, output = _cli(home, "server", "start")
    assert code == 0, output
    assert not citus.resync_pending_file(home).exists()
    assert _on_every_worker(home, "select fstore.upgrade_probe_1()") == [1, 1]
    changed = "select count(*) from pg_proc where proname = 'citus_present' and prosrc like '%%/* release {} */%%'"
    assert _on_every_worker(home, changed.format(1)) == [1, 1]  # a changed body reached the workers
    with connect_operator(home) as operator:
        assert operator.execute("select count(*) from fstore_migrations").fetchone()[0] == len(migration_files(SQL_DIR)) + 1

    # `fstore migrate` on the running cluster, with the release after
    monkeypatch.setenv("FSTORE_SQL_DIR", str(_next_release(tmp_path / "r2", 2)))
    code, output = _cli(home, "migrate")
    assert code == 0, output
    assert "functions/99_upgrade_probe.sql" in output and "functions/41_distribution.sql" in output
    assert _on_every_worker(home, "select fstore.upgrade_probe_2()") == [2, 2]
    assert _on_every_worker(home, changed.format(2)) == [1, 1]

    # the group keeps working: a commit through the gate, the scientist's reads
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        commit_rows(alice, group, [(i, T0 + dt.timedelta(days=1), 100 + i) for i in range(1, 21)])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            alice.execute(sql.SQL("insert into {}.activity__v1 (id, event_time, clicks, _commit_id)"
                                  " values (99, now(), 1, 1)").format(sql.Identifier(project)))
    with connect(home, f"{project}__bob", autocommit=True) as bob:
        rows = bob.execute(sql.SQL("select count(*), sum(clicks) from {}.activity__v1")
                           .format(sql.Identifier(project))).fetchone()
        assert rows == (40, sum(range(1, 21)) + sum(100 + i for i in range(1, 21)))
        assert bob.execute(sql.SQL("select clicks from {}.activity__v1__online where id = 7")
                           .format(sql.Identifier(project))).fetchone() == (107,)
    # and a new project after the upgrade (its roles are created on the workers as before)
    later = sandbox.create_project(home, prefix="upl")
    with connect(home, f"{later}__alice", autocommit=True) as alice:
        group = create_group(alice, later, "g", {"id": "bigint", "event_time": "timestamptz", "v": "integer"}, ["id"],
                             distribution_key="id")
        commit_rows(alice, group, [(1, T0, 1)])
    with connect(home, f"{later}__bob", autocommit=True) as bob:
        assert bob.execute(sql.SQL("select v from {}.g__v1").format(sql.Identifier(later))).fetchall() == [(1,)]
