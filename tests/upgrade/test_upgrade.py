"""Upgrade: a home built from the previous release's SQL (a stored copy of its `sql/`
tree, `releases/fstore-<version>-sql.tar.gz`, made with `git archive`), filled with a
project, members, a feature group with commits and a training dataset, then brought up
to the current SQL with `fstore migrate`, as an operator would. Feature groups, commits,
training datasets and logins keep working, and what the release did not have works too.

When a release is cut, add its archive here (`git archive --prefix=fstore-X.Y.Z/ vX.Y.Z
sql | gzip -n > releases/fstore-X.Y.Z-sql.tar.gz`) and point RELEASE at it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from fstore import sandbox
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from fstore.migrations import apply_migrations, ledger_name, migration_files

ROOT = Path(__file__).resolve().parents[2]
RELEASE = Path(__file__).resolve().parent / "releases" / "fstore-0.1.0-sql.tar.gz"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def released_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, home: FstoreHome) -> Iterator[FstoreHome]:
    """A running platform whose database was made by the release's SQL."""
    with tarfile.open(RELEASE) as archive:
        archive.extractall(tmp_path, filter="data")
    monkeypatch.setenv("FSTORE_SQL_DIR", str(tmp_path / "fstore-0.1.0" / "sql"))
    fhome, cleanup = sandbox.start_home(None, prefix="fst-upg-")
    monkeypatch.delenv("FSTORE_SQL_DIR")
    try:
        yield fhome
    finally:
        cleanup()


def _create_payments(alice: psycopg.Connection[Any], project: str) -> int:
    """Feature group ``payments`` (account_id, amount; online) of ``project``, as its Data Owner."""
    columns = [{"name": "account_id", "type": "bigint"}, {"name": "amount", "type": "double precision"}]
    with alice.transaction():
        alice.execute(f"set local role {project}__owner")
        return alice.execute("select fstore.create_feature_group(%s, 'payments', 1, array['account_id'], "
                             "'event_time', %s::jsonb, true)", (project, json.dumps(columns))).fetchone()[0]


def _fill(home: FstoreHome) -> dict[str, Any]:
    """With the release: a project, a feature group with two commits, a training dataset."""
    project = sandbox.create_project(home, prefix="upg")
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        fg = _create_payments(alice, project)
        for day in (1, 2):
            with alice.transaction():
                alice.execute("create temp table stage (account_id bigint, amount float8, event_time timestamptz) "
                              "on commit drop")
                alice.execute("insert into stage select g, g * %s, %s from generate_series(1, 10) g",
                              (day, T0 + dt.timedelta(days=day)))
                alice.execute("select fstore.commit_feature_rows(%s, 'pg_temp.stage'::regclass)", (fg,))
    with connect(home, f"{project}__bob", autocommit=True) as bob:
        with bob.transaction():
            bob.execute("create temp table spine (account_id bigint, event_time timestamptz) on commit drop")
            bob.execute("insert into spine select g, %s from generate_series(1, 10) g", (T0 + dt.timedelta(days=3),))
            td = bob.execute("select to_jsonb(t) from fstore.create_training_table('upg_td', 'pg_temp.spine'::regclass, "
                             "array['payments:amount']) t").fetchone()[0]
        rows = bob.execute(f"select account_id, amount from {project}.{td['table_name']} order by _row").fetchall()
    return {"project": project, "fg": fg, "td": td, "rows": rows}


def test_a_home_of_the_previous_release_upgrades_with_fstore_migrate(released_home: FstoreHome) -> None:
    home = released_home
    with connect_operator(home, autocommit=True) as operator:
        released = dict(operator.execute("select name, sha256 from public.fstore_migrations").fetchall())
    assert "functions/70_point_in_time.sql" in released
    before = _fill(home)
    project = before["project"]
    with connect(home, f"{project}__bob", autocommit=True) as bob:
        assert bob.execute("select to_regprocedure('fstore.historical_features(text,regclass,text[],text,"
                           "interval,boolean,jsonb)')").fetchone()[0] is None  # not in the release
        assert bob.execute("select to_regprocedure('fstore.abandon_commit(bigint)')").fetchone()[0] is not None

    env = {**os.environ, "FSTORE_HOME": str(home.root)}
    env.pop("FSTORE_SQL_DIR", None)
    migrate = subprocess.run([sys.executable, "-m", "fstore", "--home", str(home.root), "migrate"],
                             capture_output=True, text=True, env=env, cwd=ROOT)
    assert migrate.returncode == 0, migrate.stderr + migrate.stdout
    assert "functions/70_point_in_time.sql" in migrate.stdout and "schema/003_no_abandoned_commits.sql" in migrate.stdout

    with connect_operator(home, autocommit=True) as operator:
        assert apply_migrations(operator) == []  # nothing left to do
        recorded = dict(operator.execute("select name, sha256 from public.fstore_migrations").fetchall())
    assert set(recorded) == {ledger_name(p) for p in migration_files()}

    # the same people log in with their old certificates and find their data as it was
    with connect(home, f"{project}__bob", autocommit=True) as bob:
        stored = bob.execute(f"select account_id, amount from {project}.{before['td']['table_name']} "
                             "order by _row").fetchall()
        assert stored == before["rows"]
        assert bob.execute("select rows from fstore.find_training_dataset('upg_td')").fetchone()[0] == 10
        rebuilt = bob.execute(bob.execute("select fstore.training_dataset_sql('upg_td')").fetchone()[0]).fetchall()
        assert [(r[0], r[-1]) for r in rebuilt] == [(a, amount) for a, amount in before["rows"]]
        # and what the release did not have: point-in-time into a table in one statement, comments
        bob.execute("create temp table later_spine as select g::bigint as account_id, %s::timestamptz as event_time "
                    "from generate_series(1, 10) g", (T0 + dt.timedelta(days=3),))
        assert bob.execute("select fstore.historical_features('later', 'later_spine'::regclass, "
                           "array['payments:amount'])").fetchone()[0] == 10
        assert bob.execute("select sum(amount) from later").fetchone()[0] == sum(2 * g for g in range(1, 11))
        described = bob.execute("select obj_description(%s::regclass, 'pg_class')",
                                (f"{project}.payments__v1",)).fetchone()[0]
        assert described.startswith("Offline history of feature group payments version 1")
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        # 0.1.0's way to leave rows no commit accounts for is gone (schema/003)
        assert alice.execute("select to_regprocedure('fstore.abandon_commit(bigint)')").fetchone()[0] is None
        with alice.transaction():  # a commit after the upgrade
            alice.execute("create temp table stage (account_id bigint, amount float8, event_time timestamptz) "
                          "on commit drop")
            alice.execute("insert into stage values (1, 100, %s)", (T0 + dt.timedelta(days=4),))
            assert alice.execute("select fstore.commit_feature_rows(%s, 'pg_temp.stage'::regclass)",
                                 (before["fg"],)).fetchone()[0] is not None
        assert alice.execute(f"select count(*) from {project}.payments__v1").fetchone()[0] == 21
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="CREATE POLICY is not allowed"):
            alice.execute(f"set role {project}__owner")
            alice.execute(f"create policy p on {project}.payments__v1 using (true)")


def test_a_home_on_the_current_sql_takes_every_function_file_again(tmp_path: Path) -> None:
    """The next release's upgrade from this one: every function file changed (a comment
    appended), applied with `fstore migrate` over what the current files made. Functions
    given to another role after they are created (fstore_writer's write_commit_batch) must
    be replaceable again; a commit and a read work after."""
    fhome, cleanup = sandbox.start_home(None, prefix="fst-upg-")
    try:
        project = sandbox.create_project(fhome, prefix="again")
        changed = tmp_path / "sql"
        for path in migration_files():
            target = changed / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            text = path.read_text()
            target.write_text(text + "\n-- the next release\n" if path.parent.name == "functions" else text)
        env = {**os.environ, "FSTORE_HOME": str(fhome.root), "FSTORE_SQL_DIR": str(changed)}
        migrate = subprocess.run([sys.executable, "-m", "fstore", "--home", str(fhome.root), "migrate"],
                                 capture_output=True, text=True, env=env, cwd=ROOT)
        assert migrate.returncode == 0, migrate.stderr + migrate.stdout
        assert "functions/41_distribution.sql" in migrate.stdout and "functions/95_catalog_comments.sql" in migrate.stdout
        with connect_operator(fhome, autocommit=True) as operator:
            owner = operator.execute("select proowner::regrole::text from pg_proc"
                                     " where oid = 'fstore.write_commit_batch(bigint,regclass)'::regprocedure").fetchone()
            assert owner == ("fstore_writer",)
        with connect(fhome, f"{project}__alice", autocommit=True) as alice:
            fg = _create_payments(alice, project)
            with alice.transaction():
                alice.execute("create temp table stage (account_id bigint, amount float8, event_time timestamptz) "
                              "on commit drop")
                alice.execute("insert into stage values (1, 5, %s)", (T0,))
                assert alice.execute("select fstore.commit_feature_rows(%s, 'pg_temp.stage'::regclass)",
                                     (fg,)).fetchone()[0] is not None
        with connect(fhome, f"{project}__bob", autocommit=True) as bob:
            assert bob.execute(f"select amount from {project}.payments__v1").fetchall() == [(5.0,)]
    finally:
        cleanup()
