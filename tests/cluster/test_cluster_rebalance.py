"""Adding a worker and rebalancing: a cluster of its own (coordinator + 2 workers), a
distributed group under a row policy, then a third worker and `fstore cluster
rebalance`. Point-in-time and online answers are the same afterwards, and the moved
shards keep the commit gate and the row policy."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql

import fstore
from fstore import cluster, policies, sandbox
from fstore.cli import main
from fstore.connection import connect
from fstore.home import FstoreHome
from tests.cluster.conftest import own_cluster
from tests.retrieval.conftest import commit_rows, create_group

IDS = range(1, 41)


@pytest.fixture(scope="module")
def fresh_cluster() -> Iterator[FstoreHome]:
    if not cluster.citus_installed():
        pytest.skip("Citus is not installed: run scripts/setup.sh")
    with own_cluster("fcr-") as fhome:
        yield fhome


def _answers(home: FstoreHome, project: str) -> tuple[list[dict], list[tuple], list[tuple]]:
    spine = pd.DataFrame({"id": [i for i in IDS for _ in (0, 1)],
                          "event_time": [dt.datetime(2024, 1, 1 + d) for _ in IDS for d in (1, 3)]})
    fs = fstore.connect(project, "bob", home=home)
    try:
        pit = fs.get_historical_features(spine, ["activity:clicks"], strategy="merge").to_pylist()
    finally:
        fs.close()
    with connect(home, f"{project}__bob", autocommit=True) as bob:
        online = [bob.execute(sql.SQL("select id, clicks from {}.activity__v1__online where id = %s")
                              .format(sql.Identifier(project)), (i,)).fetchone() for i in IDS]
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        everything = alice.execute(sql.SQL("select id, clicks, event_time from {}.activity__v1 order by 1, 3")
                                   .format(sql.Identifier(project))).fetchall()
    return pit, online, everything


def test_a_third_worker_takes_shards_and_answers_do_not_change(fresh_cluster: FstoreHome) -> None:
    home = fresh_cluster
    project = sandbox.create_project(home, prefix="reb")
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        policies.apply_policies(alice, project, [policies.RowPolicy("consent_only", "activity", ("data_scientist",),
                                                                    "consent")])
        group = create_group(alice, project, "activity", {"id": "bigint", "event_time": "timestamptz",
                                                          "clicks": "integer", "consent": "boolean"},
                             ["id"], online=True, distribution_key="id")
        for day in (1, 2, 3):
            commit_rows(alice, group, [(i, f"2024-01-0{day}", i * day, i % 5 != 0) for i in IDS])
    before = _answers(home, project)
    assert len(before[0]) == 80 and all(row["clicks"] is None for row in before[0] if row["id"] % 5 == 0)
    assert [r for r in before[1] if r is not None] == [(i, i * 3) for i in IDS if i % 5 != 0]

    runner = CliRunner()
    added = runner.invoke(main, ["cluster", "add-worker", "--json"], catch_exceptions=False)
    assert added.exit_code == 0, added.output
    moved = runner.invoke(main, ["cluster", "rebalance", "--json"], catch_exceptions=False)
    assert moved.exit_code == 0, moved.output
    status = cluster.cluster_status(home)
    table = next(t for t in status["tables"] if t["table"] == f"{project}.activity__v1")
    assert len(table["placements"]) == 3 and min(table["placements"].values()) >= 8, table["placements"]
    online_table = next(t for t in status["tables"] if t["table"] == f"{project}.activity__v1__online")
    assert online_table["placements"] == table["placements"]  # co-located shards moved together

    assert _answers(home, project) == before
    # the moved shards keep the gate and the row policy; commits still reach every worker
    with connect(home, f"{project}__alice", autocommit=True) as alice:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
            alice.execute(sql.SQL("insert into {}.activity__v1 values (1, 1, true, now(), 1)").format(
                sql.Identifier(project)))
        commit_rows(alice, group, [(i, "2024-01-04", -i, i % 5 != 0) for i in IDS])
    with connect(home, f"{project}__bob", autocommit=True) as bob:
        assert bob.execute(sql.SQL("select count(*), min(clicks) from {}.activity__v1__online").format(
            sql.Identifier(project))).fetchone() == (32, -39)
