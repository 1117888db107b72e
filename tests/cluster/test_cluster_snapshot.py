"""Readers never see half a commit on a cluster: the commit barrier (sql/functions/43_commit_barrier.sql,
docs/cluster.md "Commits and readers across workers").

The world: project A (alice Data Owner, bob Data Scientist) with two online groups ``left_side``
and ``right_side`` distributed by ``account_id`` (32 shards on 2 workers each); project B (its own
alice and bob) with no share of A; project C with a read-only share of A. Every attack connects as
the actor, with the actor's own certificate, through the coordinator.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pyarrow as pa
import pytest

import fstore
from fstore import projects, sandbox
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from tests.retrieval.conftest import commit_rows, create_group
from tests.security.attack import Case, allow, deny, run_case

UTC = dt.timezone.utc
RISK = {"account_id": "bigint", "event_time": "timestamptz", "score": "double precision"}
ENTITIES = list(range(1, 41))
NAMESPACE = 1718837859  # the barrier's key space (43_commit_barrier.sql)


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


@pytest.fixture(scope="module")
def world(cluster_home: FstoreHome) -> Iterator[dict[str, Any]]:
    home = cluster_home
    a, b, c = (sandbox.create_project(home, prefix=f"cs{k}") for k in "abc")
    base = now() - dt.timedelta(minutes=30)
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        left = create_group(alice, a, "left_side", RISK, ["account_id"], online=True, distribution_key="account_id")
        right = create_group(alice, a, "right_side", RISK, ["account_id"], online=True, distribution_key="account_id")
        with alice.transaction():
            commit_rows(alice, left, [(e, base, 0.0) for e in ENTITIES])
            commit_rows(alice, right, [(e, base, 0.0) for e in ENTITIES])
        projects.share_project(alice, a, c)
    yield {"home": home, "a": a, "b": b, "c": c, "left": left.id, "right": right.id, "left_group": left,
           "right_group": right, "base": base, "ns": NAMESPACE}


@pytest.fixture(scope="module")
def conns(world: dict[str, Any]) -> Iterator[dict[str, psycopg.Connection[Any]]]:
    opened: dict[str, psycopg.Connection[Any]] = {}
    for actor, (project, user) in {"alice": ("a", "alice"), "bob": ("a", "bob"), "b_alice": ("b", "alice"),
                                   "b_bob": ("b", "bob"), "c_bob": ("c", "bob")}.items():
        opened[actor] = connect(world["home"], f"{world[project]}__{user}", autocommit=True)
    yield opened
    for conn in opened.values():
        conn.close()


CASES: list[Case] = [
    # another project may not take A's barrier, through fstore or directly
    deny("other_project_takes_barrier", "b_bob", "begin", "select fstore.commit_barrier(array[{left}]::bigint[])",
         state="P0002", match="not visible"),
    deny("other_owner_takes_barrier", "b_alice", "begin", "select fstore.commit_barrier(array[{right}]::bigint[])",
         state="P0002", match="not visible"),
    deny("other_project_takes_key_shared", "b_bob", "begin", "select pg_advisory_xact_lock_shared({ns}, {left})",
         match="permission denied for function pg_advisory_xact_lock_shared"),
    deny("other_owner_takes_key_exclusive", "b_alice", "select pg_advisory_lock({ns}, {left})",
         match="permission denied for function pg_advisory_lock"),
    deny("other_project_tries_key", "b_bob", "select pg_try_advisory_lock_shared({ns}, {left})",
         match="permission denied for function pg_try_advisory_lock_shared"),
    # nor may A's own readers take the key outside fstore.commit_barrier (exclusive would stall readers)
    deny("scientist_takes_key_exclusive", "bob", "begin", "select pg_try_advisory_xact_lock({ns}, {left})",
         match="permission denied for function pg_try_advisory_xact_lock"),
    deny("scientist_takes_key_session", "bob", "select pg_advisory_lock_shared({ns}, {left})",
         match="permission denied for function pg_advisory_lock_shared"),
    deny("partner_takes_key_exclusive", "c_bob", "begin", "select pg_advisory_xact_lock({ns}, {right})",
         match="permission denied for function pg_advisory_xact_lock"),
    deny("scientist_fires_writer_side", "bob", "select fstore.commit_barrier_enter()",
         match="permission denied for function commit_barrier_enter"),
    deny("scientist_unlocks_key", "bob", "select pg_advisory_unlock_shared({ns}, {left})",
         match="permission denied for function pg_advisory_unlock_shared"),
    deny("scientist_barrier_of_unknown_group", "bob", "begin", "select fstore.commit_barrier(array[987654321]::bigint[])",
         state="P0002", match="does not exist"),
    # the allowed counterparts: readers of A (its Data Scientist, the read-only partner) take it
    allow("scientist_takes_barrier", "bob", "begin",
          "select fstore.commit_barrier(array[{right}, {left}, {left}]::bigint[])", rows=[(2,)]),
    allow("partner_takes_barrier", "c_bob", "begin", "select fstore.commit_barrier(array[{left}]::bigint[])",
          rows=[(1,)]),
    allow("owner_takes_barrier", "alice", "begin", "select fstore.commit_barrier(array[{left}]::bigint[])",
          rows=[(1,)]),
    allow("tenant_keeps_bigint_advisory_locks", "b_bob", "begin", "select pg_try_advisory_xact_lock({left}::bigint)",
          rows=[(True,)]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_barrier_attack(world: dict[str, Any], conns: dict[str, psycopg.Connection[Any]],
                        case: Case) -> None:
    run_case(conns[case.actor], case, {k: v for k, v in world.items() if isinstance(v, (str, int))})


def _writer(world: dict[str, Any], wait: str, group: str = "left_group") -> tuple[psycopg.Connection[Any], list[str]]:
    """alice's connection with fstore.commit_barrier_wait = ``wait``, and the notices it receives."""
    conn = connect(world["home"], f"{world['a']}__alice", autocommit=True)
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(f"{d.severity}: {d.message_primary}"))
    conn.execute("select set_config('fstore.commit_barrier_wait', %s, false)", (wait,))
    return conn, notices


def _barrier_locks(world: dict[str, Any], group_id: int) -> list[tuple[int, str, bool]]:
    with connect_operator(world["home"], autocommit=True) as op:
        return [tuple(r) for r in op.execute(
            "select pid, mode, granted from pg_locks where locktype = 'advisory' and classid = %s and objid = %s"
            "   and objsubid = 2 order by granted desc, pid", (NAMESPACE, group_id))]


def _commit(conn: psycopg.Connection[Any], world: dict[str, Any], group: str, value: float) -> int:
    at = now() - dt.timedelta(minutes=1)
    return commit_rows(conn, world[group], [(e, at, value) for e in ENTITIES])


def test_a_commit_waits_for_the_readers_holding_its_barrier(world: dict[str, Any]) -> None:
    writer, notices = _writer(world, "60s")
    done: list[Any] = []
    with connect(world["home"], f"{world['a']}__bob", autocommit=True) as bob:
        bob.execute("begin")
        assert bob.execute("select fstore.commit_barrier(array[%s]::bigint[])", (world["left"],)).fetchone() == (1,)
        bob_pid = bob.info.backend_pid
        thread = threading.Thread(target=lambda: done.append(_commit(writer, world, "left_group", 7.0)))
        thread.start()
        waiting: list[tuple[int, str, bool]] = []
        for _ in range(600):  # the writer reaches its COMMIT and queues behind bob's shared lock
            waiting = [lock for lock in _barrier_locks(world, world["left"]) if not lock[2]]
            if waiting or not thread.is_alive():
                break
            time.sleep(0.05)
        assert waiting == [(writer.info.backend_pid, "ExclusiveLock", False)], _barrier_locks(world, world["left"])
        assert (bob_pid, "ShareLock", True) in _barrier_locks(world, world["left"])
        # bob's transaction still reads the state before the commit (it has not been applied anywhere)
        values = {r[0] for r in bob.execute(f"select score from {world['a']}.left_side__v1__online")}
        assert 7.0 not in values
        bob.execute("commit")
        thread.join()
    writer.close()
    assert len(done) == 1 and not [n for n in notices if "went ahead" in n]


@pytest.mark.parametrize("actor", ["bob", "c_bob"])
def test_a_reader_holding_the_barrier_cannot_stall_a_commit_beyond_the_bound(
        world: dict[str, Any], actor: str) -> None:
    project, user = ("a", "bob") if actor == "bob" else ("c", "bob")
    writer, notices = _writer(world, "200ms")
    with connect(world["home"], f"{world[project]}__{user}", autocommit=True) as reader:
        reader.execute("begin")
        reader.execute("select fstore.commit_barrier(array[%s]::bigint[])", (world["left"],))
        commit = _commit(writer, world, "left_group", 11.0)  # returns: the reader keeps its lock, the commit is done
        assert (reader.info.backend_pid, "ShareLock", True) in _barrier_locks(world, world["left"])
        warned = [n for n in notices if "went ahead after waiting 200ms" in n]
        assert warned and warned[0].startswith("WARNING: commit of feature group"), notices
        reader.execute("rollback")
    with connect(world["home"], f"{world['a']}__bob", autocommit=True) as bob:
        assert bob.execute("select count(*) from fstore.commits where id = %s and state = 'done'",
                           (commit,)).fetchone() == (1,)
    writer.close()


def test_barriers_of_two_groups_do_not_collide(world: dict[str, Any]) -> None:
    """bob holding left_side's barrier does not delay a commit of right_side at all: with a 1 ms bound,
    any wait would end in the WARNING."""
    writer, notices = _writer(world, "1ms")
    with connect(world["home"], f"{world['a']}__bob", autocommit=True) as bob:
        bob.execute("begin")
        bob.execute("select fstore.commit_barrier(array[%s]::bigint[])", (world["left"],))
        _commit(writer, world, "right_group", 3.0)
        assert not [n for n in notices if "went ahead" in n], notices
        # and the same writer on left_side does meet it (the control: the 1 ms bound is real)
        _commit(writer, world, "left_group", 3.0)
        assert [n for n in notices if "went ahead" in n and "left_side" in n], notices
        bob.execute("rollback")
    writer.close()


@pytest.mark.parametrize("attempt", range(3))
def test_point_in_time_reads_during_commits_never_see_half_a_commit(world: dict[str, Any], attempt: int) -> None:
    """A writer commits, in one transaction, a new value for every entity in both groups (32 shards
    each on two workers); bob's point-in-time reads of all entities of both groups, at a time after
    every commit, must see one value everywhere, never going back."""
    commits = 15
    start = 100.0 * (attempt + 1)
    done = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            with connect(world["home"], f"{world['a']}__alice", autocommit=True) as conn:
                for c in range(1, commits + 1):
                    at = now() - dt.timedelta(seconds=1)
                    with conn.transaction():
                        commit_rows(conn, world["left_group"], [(e, at, start + c) for e in ENTITIES])
                        commit_rows(conn, world["right_group"], [(e, at, start + c) for e in ENTITIES])
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    seen: list[float] = []
    thread = threading.Thread(target=writer)
    with fstore.connect(world["a"], "bob", home=world["home"]) as fs:
        thread.start()
        last = False
        while not last:  # until a read that started after the writer's last commit
            last = done.is_set()
            spine = pa.table({"account_id": pa.array(ENTITIES, pa.int64()),
                              "event_time": pa.array([now() + dt.timedelta(hours=1)] * len(ENTITIES),
                                                     pa.timestamp("us", tz="UTC"))})
            table = fs.get_historical_features(spine, ["left_side:score", "right_side:score"],
                                               full_feature_names=True)
            values = set(table.column("left_side__score").to_pylist()) | \
                set(table.column("right_side__score").to_pylist())
            assert len(values) == 1, f"a half-applied commit was visible: {sorted(values)}"
            seen.append(values.pop())
        thread.join()
    assert failures == []
    assert seen == sorted(seen), "values went back in time"
    assert len(set(v for v in seen if v > start)) > 1, "the reader never overlapped a commit"
    assert seen[-1] == start + commits


@pytest.mark.parametrize("build", ["training_table", "historical_features"])
def test_a_training_build_holds_the_barrier_of_its_distributed_groups(world: dict[str, Any], build: str) -> None:
    """A stored training dataset's build and fstore.historical_features read every shard of
    their groups in one statement: they take the groups' barrier (shared, until their
    transaction ends), so a commit applied on one worker and not yet on another is never in
    them. Seen from the operator's pg_locks while bob's transaction is open."""
    with connect(world["home"], f"{world['a']}__bob", autocommit=True) as bob:
        bob.execute("begin")
        bob.execute("create temp table spine on commit drop as"
                    " select e::bigint as account_id, now() as event_time from generate_series(1, 40) e")
        features = ["left_side:score", "right_side:score"]
        if build == "training_table":
            bob.execute("select fstore.create_training_table(%s, 'pg_temp.spine'::regclass, %s::text[],"
                        " p_full_feature_names => true)", (f"barrier_{uuid.uuid4().hex[:8]}", features))
        else:
            assert bob.execute("select fstore.historical_features('held', 'pg_temp.spine'::regclass, %s::text[],"
                               " p_full_feature_names => true)", (features,)).fetchone() == (40,)
        pid = bob.info.backend_pid
        for group in ("left", "right"):
            assert (pid, "ShareLock", True) in _barrier_locks(world, world[group]), (group, build)
        bob.execute("rollback")
    assert not [lock for lock in _barrier_locks(world, world["left"]) if lock[0] == pid]
