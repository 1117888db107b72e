"""Fixtures for retrieval tests: feature groups created and filled through SQL.

Feature groups are created the way dbt does it (the Data Owner acting as the
project owner calls ``fstore.create_feature_group``) and filled through the one
commit pipeline (``fstore.commit_feature_rows`` over a staged temporary table),
so these tests depend on nothing but the SQL API.

Shared by the point-in-time/training tests and the online/export tests: add
fixtures, do not rewrite others'.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from tests.conftest import TEST_CLUSTER_WORKERS


@dataclass(frozen=True)
class SqlFeatureGroup:
    """A feature group created through SQL: its catalog id and columns (keys, event time, features)."""

    id: int
    project: str
    name: str
    version: int
    keys: tuple[str, ...]
    columns: tuple[str, ...]  # every column in table order, event_time included

    @property
    def table(self) -> sql.Identifier:
        return sql.Identifier(self.project, f"{self.name}__v{self.version}")


def create_group(
    conn: psycopg.Connection, project: str, name: str, columns: dict[str, str], keys: Sequence[str],
    *, version: int = 1, ttl: str | None = None, online: bool = False, event_time: str = "event_time",
    statistics: bool = False, distribution_key: str | None = None,
) -> SqlFeatureGroup:
    """Create a feature group as the Data Owner on ``conn`` (``SET ROLE <project>__owner``).

    ``columns`` maps names to types (the event time column included, as timestamptz).
    Commit statistics are off unless asked for (retrieval tests do not need them). On a
    cluster (``FSTORE_TEST_CLUSTER``) the group is distributed by ``distribution_key``,
    default its first key; elsewhere only when ``distribution_key`` is given.
    """
    spec = [{"name": n, "type": t} for n, t in columns.items()]
    if distribution_key is None and TEST_CLUSTER_WORKERS:
        distribution_key = keys[0]
    options = {"distribution_key": distribution_key} if distribution_key else None
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{project}__owner")))
        fg_id = conn.execute(
            "select fstore.create_feature_group(%s, %s, %s, %s, %s, %s::jsonb, %s, %s::interval,"
            " p_statistics => %s, p_options => %s::jsonb)",
            (project, name, version, list(keys), event_time, json.dumps(spec), online, ttl, statistics,
             json.dumps(options or {})),
        ).fetchone()[0]
    return SqlFeatureGroup(fg_id, project, name, version, tuple(keys), tuple(columns))


def commit_rows(conn: psycopg.Connection, group: SqlFeatureGroup, rows: Sequence[Sequence[Any]],
                *, mode: str = "append") -> int:
    """Commit ``rows`` (tuples in ``group.columns`` order) as one commit; returns its id."""
    names = sql.SQL(", ").join(map(sql.Identifier, group.columns))
    with conn.transaction():
        conn.execute("drop table if exists pg_temp._test_stage")
        conn.execute(sql.SQL("create temp table _test_stage on commit drop as select {} from {} limit 0")
                     .format(names, group.table))
        with conn.cursor().copy(sql.SQL("copy _test_stage ({}) from stdin").format(names)) as copy:
            for row in rows:
                copy.write_row(row)
        return conn.execute(
            "select fstore.commit_feature_rows(%s, 'pg_temp._test_stage'::regclass, %s, 'test', '{}')",
            (group.id, mode),
        ).fetchone()[0]


@pytest.fixture
def fraud(make_project: Any) -> Any:
    """Project with Data Owner alice and Data Scientists bob and carol."""
    return make_project(owner="alice", scientists=["bob", "carol"], prefix="fraud")
