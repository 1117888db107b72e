"""Crash consistency: the server killed (SIGKILL) in the middle of a large commit leaves,
after restart, no part of that commit offline, online, in the commit log, its
statistics or the audit log.

This test runs its OWN server (in a temporary fstore home), never the session's.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import fstore
from fstore import projects, sandbox, server
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from tests.conftest import unique
from tests.featuregroups.conftest import ACTIVITY_TYPES, activity_frame

BIG_ROWS = 2_000_000

# A writer in its own process: builds BIG_ROWS rows with Arrow and inserts them as one commit.
WRITER = textwrap.dedent("""
    import sys
    import numpy as np, pyarrow as pa
    import fstore
    home, project, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    table = pa.table({
        "account_id": pa.array(rng.integers(0, 100_000, rows), pa.int64()),
        "event_time": pa.array(np.datetime64("2024-03-01") + rng.integers(0, 10**12, rows).astype("timedelta64[us]"),
                               pa.timestamp("us", "UTC")),
        "amount": rng.random(rows) * 100,
        "tx_count": pa.array(rng.integers(0, 50, rows), pa.int64()),
        "channel": pa.array(rng.choice(["web", "app"], rows)),
        "flagged": pa.array(rng.random(rows) < 0.1),
    })
    fs = fstore.connect(project, "alice", home=home)
    fs.get_feature_group("big").insert(table)
    print("COMMITTED")
""")


@pytest.fixture
def crash_home() -> Iterator[FstoreHome]:
    """A private fstore home with its own running server; stopped and removed afterwards."""
    home, cleanup = sandbox.start_home(None, prefix="fstcr-")
    try:
        yield home
    finally:
        try:
            server.stop(home)
        except Exception:
            _kill_server(home)  # a restart that failed, or a stop that hung
        cleanup()


def _postmaster_pid(home: FstoreHome) -> int | None:
    pid_file = home.data_dir / "postmaster.pid"
    if not pid_file.exists():
        return None
    return int(pid_file.read_text().splitlines()[0])


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (this container's init may be slow to reap killed processes)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _kill_server(home: FstoreHome) -> None:
    """SIGKILL the postmaster, then every process it started: a crash of the whole server.

    The dead postmaster may linger as a zombie, which pg_ctl (kill(pid, 0)) takes for a
    running server; after a real crash there is no such process, so its pid file and
    socket lock files go too.
    """
    pid = _postmaster_pid(home)
    if pid is None:
        return
    children = _children(pid)
    for victim in (pid, *children):
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while any(_running(p) for p in (pid, *children)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(p) for p in (pid, *children)), "the server survived SIGKILL"
    (home.data_dir / "postmaster.pid").unlink(missing_ok=True)
    for lock in home.socket_dir.glob(".s.PGSQL.*.lock"):
        lock.unlink(missing_ok=True)


def _counts(home: FstoreHome, project: str) -> dict[str, object]:
    with connect_operator(home) as op:
        def one(query: str) -> object:
            return op.execute(query).fetchone()[0]

        return {
            "offline": one(f'select count(*) from "{project}".big__v1'),
            "online": one(f'select count(*) from "{project}".big__v1__online'),
            "commit_ids": one(f'select array_agg(distinct _commit_id order by _commit_id) from "{project}".big__v1'),
            "commits": one("select array_agg(c.id order by c.id) from fstore.commits c "
                           "join fstore.feature_groups g on g.id = c.feature_group_id "
                           f"where g.project = '{project}'"),
            "statistics": one("select count(distinct s.commit_id) from fstore.commit_statistics s "
                              "join fstore.commits c on c.id = s.commit_id "
                              "join fstore.feature_groups g on g.id = c.feature_group_id "
                              f"where g.project = '{project}'"),
            "audited_commits": one(f"select count(*) from fstore.audit_log where project = '{project}' "
                                   "and action = 'commit'"),
        }


def test_kill_9_during_a_large_commit_leaves_no_trace(crash_home: FstoreHome) -> None:
    home = crash_home
    project = unique("crash")
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, project, "alice")
    with fstore.connect(project, "alice", home=home) as alice:
        fg = alice.create_feature_group("big", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True)
        baseline = fg.insert(activity_frame(rows=100, accounts=10))
    before = _counts(home, project)
    assert before["offline"] == 100 and before["commits"] == [baseline.id] and before["statistics"] == 1

    # The commit's last step appends its audit record; holding a SHARE lock on the audit log
    # stops it right there, with every row written (offline, online, statistics) and nothing
    # committed, so the crash lands in the middle of the commit on any machine, fast or slow.
    gate = connect_operator(home)
    gate.execute("lock table fstore.audit_log in share mode")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(home.root), project, str(BIG_ROWS)],
                              cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        with connect_operator(home, autocommit=True) as op:
            relation_file = op.execute(f"select pg_relation_filepath('\"{project}\".big__v1')").fetchone()[0]
            base_size = (home.data_dir / relation_file).stat().st_size
            deadline = time.monotonic() + 240
            while True:
                assert writer.poll() is None, f"the writer ended before the crash: {writer.communicate()}"
                assert time.monotonic() < deadline, "the large commit never reached its last step"
                waiting = op.execute(
                    "select count(*) from pg_stat_activity where usename = %s and wait_event_type = 'Lock' "
                    "and query ilike '%%commit_feature_rows%%'", (f"{project}__alice",)).fetchone()[0]
                if waiting:
                    # read the size from disk: pg_relation_size would wait for the bulk commit's lock
                    size = (home.data_dir / relation_file).stat().st_size
                    assert size > base_size + 8 * 1024 * 1024, "the commit's rows were not written yet"
                    break
                time.sleep(0.05)
        _kill_server(home)
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
        gate.close()
    assert writer.returncode != 0 and "COMMITTED" not in out, (out, err)

    server.start(home)  # crash recovery replays the WAL; the unfinished commit is rolled back
    after = _counts(home, project)
    assert after == before

    # the store works after recovery, and the next commit is whole
    with fstore.connect(project, "alice", home=home) as alice:
        fg = alice.get_feature_group("big")
        commit = fg.insert(activity_frame(rows=30, accounts=10, seed=2))
        assert commit.rows == 30
        assert [c.id for c in fg.commits()] == [commit.id, baseline.id]
        assert fg.read().num_rows == 130
