"""Fixtures for the dbt tests: a project with a Data Owner (alice) and a Data Scientist
(bob), and a small dbt project of its own that installs fstore's dbt package as a user's
project does (packages.yml with the package's path, the dispatch entry, ``dbt deps``).

dbt runs for real, in-process (``fstore.dbt.run_dbt``), with each user's own
certificate; one project per test module keeps the number of dbt invocations down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from fstore import projects
from fstore.connection import connect
from fstore.dbt import PACKAGE_DIR, DbtRun, run_dbt
from fstore.home import FstoreHome
from tests.conftest import unique


def write_user_project(directory: Path, name: str, package: dict[str, Any] | None = None) -> None:
    """A dbt project as an analytics engineer sets one up to use fstore: ``dbt_project.yml``
    with the dispatch entry, ``packages.yml`` with the package (default: its local path)."""
    (directory / "models").mkdir(parents=True, exist_ok=True)
    (directory / "dbt_project.yml").write_text(yaml.safe_dump({
        "name": name, "version": "1.0.0", "config-version": 2, "profile": "fstore",
        "model-paths": ["models"],
        "dispatch": [{"macro_namespace": "dbt", "search_order": [name, "fstore", "dbt"]}],
    }, sort_keys=False))
    (directory / "packages.yml").write_text(yaml.safe_dump(
        {"packages": [package or {"local": str(PACKAGE_DIR)}]}, sort_keys=False))


class DbtProject:
    """A fstore project plus a dbt project directory whose models the tests write."""

    def __init__(self, home: FstoreHome, name: str, directory: Path) -> None:
        self.home = home
        self.name = name
        self.dir = directory
        self.sources: list[str] = []
        self.alice = connect(home, f"{name}__alice", autocommit=True)
        write_user_project(directory, "fstore_tests")
        run_dbt(home, name, "alice", ["deps"], directory).raise_for_failure()
        self._write_sources()

    # --- the analyst's side: raw tables, models, dbt runs ----------------------------
    def raw_table(self, table: str, columns: str, rows: list[tuple[Any, ...]] = ()) -> str:
        """Create raw table ``project.table`` as the owner (a dbt source) and insert rows."""
        with self.alice.transaction():
            self.alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{self.name}__owner")))
            self.alice.execute(sql.SQL("create table {} ({})").format(
                sql.Identifier(self.name, table), sql.SQL(columns)))
        self.sources.append(table)
        self._write_sources()
        self.insert(table, rows)
        return f"{self.name}.{table}"

    def insert(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Insert rows into a raw table (as alice, a Data Owner)."""
        if not rows:
            return
        with self.alice.cursor() as cur:
            cur.executemany(
                sql.SQL("insert into {} values ({})").format(
                    sql.Identifier(self.name, table), sql.SQL(", ").join([sql.Placeholder()] * len(rows[0]))),
                rows)

    def write_model(self, name: str, body: str, columns: dict[str, str] | None = None,
                    description: str | None = None) -> None:
        """Write models/NAME.sql, and NAME.yml with its description and column descriptions."""
        (self.dir / "models" / f"{name}.sql").write_text(body)
        if columns is not None or description is not None:
            entry: dict[str, Any] = {"name": name}
            if description is not None:
                entry["description"] = description
            if columns:
                entry["columns"] = [{"name": c, "description": d} for c, d in columns.items()]
            (self.dir / "models" / f"{name}.yml").write_text(
                yaml.safe_dump({"version": 2, "models": [entry]}, sort_keys=False))

    def run(self, model: str, user: str = "alice", *flags: str) -> DbtRun:
        """``dbt run --select MODEL [FLAGS]`` as ``project__user``."""
        return run_dbt(self.home, self.name, user, ["run", "--select", model, *flags], self.dir)

    def dbt(self, *args: str, user: str = "alice") -> DbtRun:
        """Any dbt command in this project as ``project__user`` (``p.dbt("build")``)."""
        return run_dbt(self.home, self.name, user, list(args), self.dir)

    def _write_sources(self) -> None:
        (self.dir / "models" / "sources.yml").write_text(yaml.safe_dump({
            "version": 2,
            "sources": [{"name": "raw", "schema": "{{ target.schema }}",
                         "tables": [{"name": t} for t in self.sources]}],
        }))

    # --- what landed in the database ---------------------------------------------
    def query(self, query: str | sql.Composable, params: Any = None) -> list[tuple[Any, ...]]:
        return self.alice.execute(query, params).fetchall()

    def feature_group(self, name: str, version: int = 1) -> dict[str, Any] | None:
        """The catalog row of a version (as alice), or None."""
        with self.alice.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute("select * from fstore.feature_groups where project = %s and name = %s "
                               "and version = %s", (self.name, name, version)).fetchone()

    def rows(self, table: str, order_by: str = "") -> list[tuple[Any, ...]]:
        """All rows of a table of the project (without _commit_id), optionally ordered."""
        columns = [c for (c,) in self.query(
            "select attname from pg_attribute where attrelid = %s::regclass and attnum > 0 "
            "and not attisdropped and attname <> '_commit_id' order by attnum", (f"{self.name}.{table}",))]
        query = sql.SQL("select {} from {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(self.name, table))
        if order_by:
            query += sql.SQL(" order by {}").format(sql.SQL(", ").join(map(sql.Identifier, order_by.split(","))))
        return self.query(query)

    def count(self, table: str) -> int:
        return self.query(sql.SQL("select count(*) from {}").format(sql.Identifier(self.name, table)))[0][0]

    def exists(self, table: str) -> bool:
        return self.query("select to_regclass(%s) is not null", (f"{self.name}.{table}",))[0][0]

    def commits(self, fg_id: int) -> list[dict[str, Any]]:
        with self.alice.cursor(row_factory=psycopg.rows.dict_row) as cur:
            return cur.execute("select * from fstore.commits where feature_group_id = %s order by id",
                               (fg_id,)).fetchall()

    def state(self, name: str, version: int = 1) -> dict[str, Any]:
        """Everything a run could change for one version: catalog, commits, rows offline and online."""
        fg = self.feature_group(name, version)
        offline, online = f"{name}__v{version}", f"{name}__v{version}__online"
        return {
            "catalog": fg,
            "commits": self.commits(fg["id"]) if fg else [],
            "offline": sorted(map(repr, self.rows(offline))) if self.exists(offline) else None,
            "online": sorted(map(repr, self.rows(online))) if self.exists(online) else None,
        }

    def close(self) -> None:
        self.alice.close()


@pytest.fixture(scope="module")
def dbt_project(home: FstoreHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbtProject]:
    """Project ``dbt<hex>`` with Data Owner alice and Data Scientist bob, and a dbt project dir."""
    name = unique("dbt")
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, name, "alice")
    with connect(home, f"{name}__alice", autocommit=True) as alice:
        projects.add_member(home, alice, name, "bob", "data-scientist")
    project = DbtProject(home, name, tmp_path_factory.mktemp(name))
    try:
        yield project
    finally:
        project.close()
        with connect(home, "fstore_admin", autocommit=True) as admin:
            projects.delete_project(home, admin, name)


def assert_failed(run: DbtRun, *phrases: str) -> str:
    """The run failed and dbt's message (the database's words) contains every phrase."""
    assert not run.success, "the dbt run was expected to fail"
    message = " ".join(" ".join(f.message.split()) for f in run.failures)
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    return message
