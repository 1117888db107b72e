"""The commit pipeline under load: a large commit rebuilds the point-in-time index
instead of maintaining it row by row (same index, all or nothing, as whoever may),
concurrent commits to one feature group take turns, and validation judges a re-run
as it judged the first run.

Commits here go through ``fstore.commit_feature_rows`` over a temporary table staged
in the caller's own transaction (as dbt does), or through ``fg.insert``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg import sql

import fstore
from fstore import InvalidInput, projects, server
from fstore.connection import connect, connect_operator
from tests.conftest import unique
from tests.featuregroups.conftest import ACTIVITY_TYPES, activity_frame
from tests.featuregroups.test_crash import _counts, _kill_server, crash_home  # noqa: F401 (fixture)

COLUMNS = ["account_id", "amount", "tx_count", "channel", "flagged", "event_time"]
ROOT = Path(__file__).resolve().parents[2]


# the bulk path (drop the point-in-time index, append, rebuild it) and its lock rules exist
# only on the coordinator: on a Citus cluster its tests keep their group there
# (options.distribution_key null); every other test here runs on a distributed group
LOCAL = {"distribution_key": None}


@pytest.fixture
def activity(alice: fstore.FeatureStore) -> Any:
    """An empty online activity group of project fraud (distributed on a cluster)."""
    return alice.create_feature_group("activity", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True)


@pytest.fixture
def local_fg(alice: fstore.FeatureStore) -> Any:
    """The same group, kept on the coordinator on a cluster: for the bulk path's tests."""
    return alice.create_feature_group("activity", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True,
                                      options=LOCAL)


def stage(conn: psycopg.Connection, fg: Any, frame: pd.DataFrame) -> None:
    """Copy ``frame`` into ``pg_temp._stage`` (shaped like the offline table), in the open transaction."""
    conn.execute("drop table if exists pg_temp._stage")
    conn.execute(sql.SQL("create temp table _stage on commit drop as select {} from {} limit 0").format(
        sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), fg.offline_relation()))
    with conn.cursor().copy(sql.SQL("copy _stage ({}) from stdin").format(
            sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))) as copy:
        for row in frame[COLUMNS].itertuples(index=False):
            copy.write_row([None if pd.isna(v) else v for v in row])


def commit(conn: psycopg.Connection, fg: Any, mode: str = "append") -> int:
    """``fstore.commit_feature_rows`` over ``pg_temp._stage``; returns the commit id."""
    return conn.execute("select fstore.commit_feature_rows(%s, 'pg_temp._stage'::regclass, %s, 'test')",
                        (fg.id, mode)).fetchone()[0]


def pit_index(conn: psycopg.Connection, fg: Any) -> tuple[int, str, str]:
    """(oid, name, definition) of the offline table's one index, which must be valid."""
    [(oid, name, definition, valid)] = conn.execute(
        "select i.indexrelid::bigint, c.relname::text, pg_get_indexdef(i.indexrelid), i.indisvalid"
        "  from pg_index i join pg_class c on c.oid = i.indexrelid"
        " where i.indrelid = %s::regclass",
        (f'"{fg.project}"."{fg.name}__v{fg.version}"',)).fetchall()
    assert valid
    return oid, name, definition


def latest_rows(conn: psycopg.Connection, fg: Any, *, use_index: bool) -> list[tuple[Any, ...]]:
    """The latest row per key, read through the point-in-time index or with it switched off."""
    query = sql.SQL("select distinct on (account_id) account_id, event_time, _commit_id, amount, channel"
                    " from {} order by account_id, event_time desc, _commit_id desc").format(fg.offline_relation())
    with conn.transaction():
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort") if use_index else (
                "enable_indexscan", "enable_indexonlyscan", "enable_bitmapscan"):
            conn.execute(f"set local {setting} = off")
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("explain ") + query).fetchall())
        assert (f"{fg.name}__v{fg.version}_pit" in plan) == use_index, plan
        return conn.execute(query).fetchall()


@pytest.fixture
def owner_conn(fraud: Any) -> Iterator[psycopg.Connection]:
    """Alice's own connection, in transactions (autocommit off)."""
    with fraud.connect("alice", autocommit=False) as conn:
        yield conn


def test_a_large_commit_rebuilds_the_index_a_small_one_maintains_it(alice, local_fg) -> None:
    conn = alice.conn
    oid0, name, definition = pit_index(conn, local_fg)
    assert name == "activity__v1_pit"

    first = local_fg.insert(activity_frame(rows=400, seed=1))  # into an empty table: bulk path
    oid1, name1, definition1 = pit_index(conn, local_fg)
    assert oid1 != oid0 and (name1, definition1) == (name, definition)
    small = local_fg.insert(activity_frame(rows=20, seed=2))  # much smaller than the table: per row
    assert pit_index(conn, local_fg)[0] == oid1
    large = local_fg.insert(activity_frame(rows=3000, seed=3))  # larger than the table: bulk again
    oid3, name3, definition3 = pit_index(conn, local_fg)
    assert oid3 != oid1 and (name3, definition3) == (name, definition)

    assert (first.rows, small.rows, large.rows) == (400, 20, 3000)
    assert local_fg.read().num_rows == 3420
    # the rebuilt index holds exactly what the table holds
    by_index = latest_rows(conn, local_fg, use_index=True)
    assert by_index == latest_rows(conn, local_fg, use_index=False) and len(by_index) == 20
    # and the online table got the newest row of each key, as always
    online = local_fg.read(online=True).to_pandas()
    assert sorted(zip(online["account_id"], online["event_time"], online["_commit_id"])) == \
        [(r[0], pd.Timestamp(r[1]), r[2]) for r in by_index]


def test_a_bulk_commit_is_all_or_nothing_and_holds_readers_of_its_group_only(
        fraud, alice, local_fg, owner_conn, home) -> None:
    local_fg.insert(activity_frame(rows=100, seed=5))
    before = pit_index(alice.conn, local_fg)
    with owner_conn.transaction(force_rollback=True):
        stage(owner_conn, local_fg, activity_frame(rows=2000, seed=6))
        commit(owner_conn, local_fg)
        # the index was rebuilt under the owner role; the caller is itself again
        assert owner_conn.execute("select current_user").fetchone()[0] == fraud.role("alice")
        assert owner_conn.execute("select current_setting('maintenance_work_mem')").fetchone()[0] != "1GB"
        assert pit_index(owner_conn, local_fg)[0] != before[0]
        assert owner_conn.execute(sql.SQL("select count(*) from {}").format(local_fg.offline_relation())
                                  ).fetchone()[0] == 2100
        # until the commit ends, readers of this group's offline table wait; its online table is free
        with fstore.connect(fraud.name, "bob", home=home) as bob:
            bob.conn.execute("set lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                bob.conn.execute(sql.SQL("select count(*) from {}").format(local_fg.offline_relation()))
            assert bob.conn.execute(sql.SQL("select count(*) from {}").format(local_fg.online_relation())
                                    ).fetchone()[0] == activity_frame(rows=100, seed=5)["account_id"].nunique()
    # rolled back: the old index (same object), the old rows, no commit
    assert pit_index(alice.conn, local_fg) == before
    assert local_fg.read().num_rows == 100 and len(local_fg.commits()) == 1


def test_a_large_commit_does_not_queue_behind_a_reader_of_its_group(fraud, alice, local_fg, home) -> None:
    local_fg.insert(activity_frame(rows=100, seed=5))
    before = pit_index(alice.conn, local_fg)
    committed: list[Any] = []
    with fstore.connect(fraud.name, "bob", home=home) as bob, bob.conn.transaction():
        bob.conn.execute(sql.SQL("select count(*) from {}").format(local_fg.offline_relation()))  # holds its lock
        # large enough for the bulk path, but the table is in use: after a short wait, row by row
        writer = threading.Thread(target=lambda: committed.append(local_fg.insert(activity_frame(rows=2000, seed=6))))
        writer.start()
        writer.join(timeout=120)
        assert not writer.is_alive(), "the commit waited for the reader's transaction"
    assert committed[0].rows == 2000
    assert pit_index(alice.conn, local_fg) == before  # maintained, not rebuilt
    assert local_fg.read().num_rows == 2100
    assert latest_rows(alice.conn, local_fg, use_index=True) == latest_rows(alice.conn, local_fg, use_index=False)


def test_acting_as_the_owner_role_takes_the_bulk_path_too(fraud, local_fg, owner_conn) -> None:
    before = pit_index(owner_conn, local_fg)
    owner_conn.commit()
    owner = sql.Identifier(f"{fraud.name}__owner")
    with owner_conn.transaction():
        stage(owner_conn, local_fg, activity_frame(rows=300, seed=7))  # the owner role may not create temp tables
        owner_conn.execute(sql.SQL("grant select on pg_temp._stage to {}").format(owner))
        owner_conn.execute(sql.SQL("set local role {}").format(owner))
        commit(owner_conn, local_fg)
        assert owner_conn.execute("select current_user").fetchone()[0] == f"{fraud.name}__owner"
    after = pit_index(owner_conn, local_fg)
    assert after[0] != before[0] and after[1:] == before[1:]
    assert owner_conn.execute(sql.SQL("select count(*) from {}").format(local_fg.offline_relation())
                              ).fetchone()[0] == 300


def test_a_writer_who_may_not_own_the_table_appends_row_by_row(fraud, make_project, activity, home) -> None:
    retail = make_project(owner="carol", prefix="retail")
    with fraud.connect("alice") as alice_conn:
        projects.share_project(alice_conn, fraud.name, retail.name, read_write=True)
        before = pit_index(alice_conn, activity)
    with retail.connect("carol", autocommit=False) as carol:
        with carol.transaction():
            stage(carol, activity, activity_frame(rows=500, seed=8))  # into an empty table
            commit(carol, activity)
        after = pit_index(carol, activity)
    assert after == before  # maintained, not rebuilt: carol cannot become fraud's owner role
    assert activity.read().num_rows == 500
    assert [c.session_role for c in activity.commits()] == [retail.role("carol")]


def commit_lock_waits(conn: psycopg.Connection, pid: int, fg: Any) -> int:
    """1 when the backend ``pid`` waits for the commit lock of ``fg`` (its row in
    fstore.feature_group_locks, held by another transaction), else 0."""
    return conn.execute(
        "select count(*) from pg_locks w where w.pid = %s and w.locktype = 'transactionid' and not w.granted"
        " and exists (select 1 from pg_locks t where t.pid = w.pid and t.locktype = 'tuple'"
        "             and t.relation = 'fstore.feature_group_locks'::regclass)", (pid,)).fetchone()[0]


def test_concurrent_merge_commits_of_the_same_rows_take_turns(fraud, alice, activity) -> None:
    stored = activity_frame(rows=1000, seed=9)
    activity.insert(stored)  # a large table: the merges below go row by row (no table lock)
    rows = activity_frame(rows=200, seed=10)
    new = rows.drop_duplicates(["account_id", "event_time"]).merge(
        stored[["account_id", "event_time"]].drop_duplicates(), how="left", indicator=True)
    expected_new = int((new["_merge"] == "left_only").sum())
    assert 0 < expected_new
    outcome: dict[str, Any] = {}

    with fraud.connect("alice", autocommit=False) as first, fraud.connect("alice", autocommit=False) as second:
        second_pid = second.info.backend_pid

        def commit_second() -> None:
            try:
                outcome["commit"] = commit(second, activity, "merge")
                second.commit()
            except Exception as exc:  # reported by the main thread
                outcome["error"] = exc

        stage(first, activity, rows)
        stage(second, activity, rows)
        first_id = commit(first, activity, "merge")  # its rows written, its transaction still open
        worker = threading.Thread(target=commit_second)
        worker.start()
        try:
            for _ in range(1200):  # the second commit queues behind the first's lock
                if commit_lock_waits(alice.conn, second_pid, activity) or not worker.is_alive():
                    break
                threading.Event().wait(0.05)
            assert commit_lock_waits(alice.conn, second_pid, activity) == 1, outcome
        finally:
            first.commit()
            worker.join(timeout=120)
        assert not worker.is_alive() and "error" not in outcome, outcome.get("error")

    commits = {c.id: c for c in activity.commits()}
    assert commits[first_id].rows == expected_new
    assert outcome["commit"] > first_id and commits[outcome["commit"]].rows == 0
    offline = activity.read().to_pandas()
    assert len(offline) == 1000 + expected_new
    keys = ["account_id", "event_time"]
    assert offline.duplicated(keys).sum() == stored.duplicated(keys).sum()  # the merges added none


def test_a_rerun_is_judged_as_its_first_run_was(alice) -> None:
    fg = alice.create_feature_group(
        "checked", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True,
        validation=[{"rule": "row_count_min", "value": 40}, {"rule": "min", "column": "tx_count", "value": 0}],
        validation_policy="strict")
    rows = activity_frame(rows=50, seed=11)
    first = fg.insert(rows, mode="merge")
    assert first.rows == 50 and first.validation["passed"] is True

    # the same data again: nothing new, and still 50 rows as staged (it used to fail row_count_min)
    for mode in ("merge", "incremental"):
        again = fg.insert(rows, mode=mode)
        assert again.rows == 0
        assert again.validation == {"passed": True, "policy": "strict", "rows": 0, "staged_rows": 50,
                                    "rules": 2, "failures": []}

    # a short batch fails row_count_min even when all its rows are new, and nothing is written
    with pytest.raises(InvalidInput, match=r"rule row_count_min: 10 rows, at least 40 required"):
        fg.insert(activity_frame(rows=10, seed=12), mode="merge")
    # one message names every failure: the staged rows' count and the new rows' values
    bad = activity_frame(rows=10, seed=13)
    bad.loc[[1, 4], "tx_count"] = -1
    with pytest.raises(InvalidInput, match=r"rule row_count_min: 10 rows, at least 40 required; "
                                           r"column tx_count, rule min: 2 failing rows"):
        fg.insert(bad, mode="merge")
    assert fg.read().num_rows == 50 and len(fg.commits()) == 3


def test_rules_about_single_rows_judge_only_the_rows_a_commit_writes(alice) -> None:
    rules = [{"rule": "min", "column": "tx_count", "value": 0}, {"rule": "row_count_min", "value": 1}]
    fg = alice.create_feature_group("tightened", 1, keys=["account_id"], features=ACTIVITY_TYPES,
                                    validation=rules, validation_policy="warn")
    rows = activity_frame(rows=30, seed=15)
    rows.loc[[0, 7], "tx_count"] = -3
    warned = fg.insert(rows, mode="merge")
    assert warned.rows == 30 and warned.validation["passed"] is False
    assert [(f["rule"], f["failing_rows"]) for f in warned.validation["failures"]] == [("min", 2)]

    alice.conn.execute("select fstore.set_validation_rules(%s, %s::jsonb, 'strict')", (fg.id, json.dumps(rules)))
    # the stored bad rows come again with new good ones: only the new rows are judged
    more = pd.concat([rows, activity_frame(rows=5, seed=16)])
    fresh = len(more.drop_duplicates(["account_id", "event_time"])) - 30
    committed = fg.insert(more, mode="merge")
    assert committed.rows == fresh > 0
    assert committed.validation == {"passed": True, "policy": "strict", "rows": fresh, "staged_rows": 35,
                                    "rules": 2, "failures": []}
    # a new bad row is refused
    worse = activity_frame(rows=3, seed=17)
    worse.loc[[2], "tx_count"] = -1
    with pytest.raises(InvalidInput, match=r"column tx_count, rule min: 1 failing rows"):
        fg.insert(pd.concat([more, worse]), mode="merge")
    assert fg.read().num_rows == 30 + fresh


def test_kill_9_in_the_middle_of_a_bulk_commit_leaves_the_old_index_and_rows(crash_home) -> None:
    """The server killed after the bulk path dropped, refilled and rebuilt the index (the
    commit held at its online upsert by a lock) comes back with the old index and rows."""
    home = crash_home
    project = unique("crashb")
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, project, "alice")
    with fstore.connect(project, "alice", home=home) as alice:
        fg = alice.create_feature_group("big", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True,
                                        options=LOCAL)
        fg.insert(activity_frame(rows=100, accounts=10))
        index_before = pit_index(alice.conn, fg)
    before = _counts(home, project)
    writer_error: list[BaseException] = []

    def write() -> None:
        try:
            with fstore.connect(project, "alice", home=home) as writer:
                writer.get_feature_group("big").insert(activity_frame(rows=3000, accounts=10, seed=21))
        except BaseException as exc:  # the crash ends it; checked below
            writer_error.append(exc)

    # one connection holds the lock, another watches (activity statistics stay fixed within a
    # transaction); both die with the server
    locker = connect_operator(home, autocommit=False)
    op = connect_operator(home, autocommit=True)
    try:
        locker.execute(sql.SQL("lock table {} in exclusive mode").format(fg.online_relation()))
        worker = threading.Thread(target=write)
        worker.start()
        held = None
        for _ in range(1200):  # until the commit waits for the online table, its offline work done
            held = op.execute(
                "select a.pid, bool_or(l.mode = 'AccessExclusiveLock' and l.relation = %s::regclass and l.granted)"
                "  from pg_stat_activity a join pg_locks l on l.pid = a.pid"
                " where a.usename = %s and a.query ilike '%%commit_feature_rows%%'"
                "   and exists (select 1 from pg_locks w where w.pid = a.pid and not w.granted"
                "                 and w.relation = %s::regclass)"
                " group by a.pid",
                (f'"{project}".big__v1', f"{project}__alice", f'"{project}".big__v1__online')).fetchone()
            if held or not worker.is_alive():
                break
            threading.Event().wait(0.05)
        assert held and held[1], ("the commit never reached its online upsert on the bulk path", writer_error)
        _kill_server(home)
    finally:
        locker.close()
        op.close()
    worker.join(timeout=60)
    assert writer_error and not worker.is_alive()

    server.start(home)  # crash recovery: the unfinished commit is rolled back, old index included
    assert _counts(home, project) == before
    with fstore.connect(project, "alice", home=home) as alice:
        fg = alice.get_feature_group("big")
        assert pit_index(alice.conn, fg) == index_before
        assert latest_rows(alice.conn, fg, use_index=True) == latest_rows(alice.conn, fg, use_index=False)
        assert fg.insert(activity_frame(rows=30, accounts=10, seed=22)).rows == 30


def test_commit_bench_reports_the_path_each_commit_took(home) -> None:
    """bench/commit.py at a small size: into empty tables the bulk path, into a table holding
    more rows than the commit row by row; the pipeline's step durations are reported."""
    reports = {}
    for existing in (0, 3000):
        result = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "commit.py"), "--rows", "2000", "--entities", "50",
             "--existing-rows", str(existing), "--home", str(home.root), "--local"],
            cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        reports[existing] = json.loads(result.stdout)
    for existing, path in ((0, "bulk, 1 index(es) dropped"), (3000, "row by row")):
        report = reports[existing]
        assert report["existing_rows"] == existing and report["commit"]["rows"] == 2000
        [run] = report["runs"]
        steps = run["commit_steps_seconds"]
        assert steps["offline_append_detail"] == path
        assert {"lock", "select", "validation", "offline_append", "online_upsert", "statistics_and_record"} <= set(steps)
        assert ("offline_index_build" in steps) == (existing == 0)
        assert [line.startswith('building index "bench__v1_pit"') for line in run["index_builds"]].count(True) == \
            (1 if existing == 0 else 0)


def test_a_bulk_commit_puts_online_the_newest_row_of_every_composite_key(alice, owner_conn) -> None:
    """The skip scan of the rebuilt index (bulk path) agrees with the rule: per key the
    greatest event time over every commit, ties to the later commit; an older row of a
    key never replaces a newer one already online."""
    fg = alice.create_feature_group("pairs", 1, keys=["account_id", "merchant"], online=True, options=LOCAL,
                                    features={"account_id": "bigint", "merchant": "text", "spend": "double precision"})
    t0 = pd.Timestamp("2024-05-01", tz="UTC")
    first = [(1, "a", 5, 1.0), (1, "a", 3, 2.0), (1, "b", 1, 3.0), (2, "a", 7, 4.0), (2, "a", 7, 4.0)]
    # larger than the table, so bulk again: older for (1,a), a tie for (2,a), newer for (1,b), new keys
    second = [(1, "a", 4, 10.0), (2, "a", 7, 20.0), (1, "b", 2, 30.0), (3, "z", 0, 40.0), (3, "z", -1, 41.0),
              (1, "a", 1, 11.0), (1, "b", 0, 31.0), (3, "y", 2, 50.0), (2, "b", 9, 60.0), (2, "b", 8, 61.0)]
    messages: list[str] = []
    owner_conn.add_notice_handler(lambda d: messages.append(d.message_primary or ""))
    commits = []
    for rows in (first, second):
        with owner_conn.transaction():
            owner_conn.execute("set local client_min_messages = debug1")
            owner_conn.execute("create temp table _pairs (account_id bigint, merchant text, event_time timestamptz,"
                               " spend double precision) on commit drop")
            owner_conn.cursor().executemany("insert into _pairs values (%s, %s, %s, %s)",
                                            [(a, m, t0 + pd.Timedelta(hours=h), v) for a, m, h, v in rows])
            commits.append(owner_conn.execute(
                "select fstore.commit_feature_rows(%s, 'pg_temp._pairs'::regclass, 'append', 'test')",
                (fg.id,)).fetchone()[0])
    assert sum("online_upsert" in m and "skip scan" in m for m in messages) == 2, messages

    online = fg.read(online=True).to_pandas()
    got = sorted((int(r["account_id"]), r["merchant"], r["event_time"], r["spend"], int(r["_commit_id"]))
                 for r in online.to_dict("records"))
    assert got == [
        (1, "a", t0 + pd.Timedelta(hours=5), 1.0, commits[0]),   # the older rows of commit 2 did not win
        (1, "b", t0 + pd.Timedelta(hours=2), 30.0, commits[1]),
        (2, "a", t0 + pd.Timedelta(hours=7), 20.0, commits[1]),  # a tie goes to the later commit
        (2, "b", t0 + pd.Timedelta(hours=9), 60.0, commits[1]),
        (3, "y", t0 + pd.Timedelta(hours=2), 50.0, commits[1]),
        (3, "z", t0, 40.0, commits[1]),
    ]
