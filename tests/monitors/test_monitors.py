"""Monitors run by themselves inside the server (pg_cron), each as the identity that created it.

One project, built once for the module, with an entity policy that hides the accounts of
politically exposed persons (every fourth account) from Data Scientists. Its monitors run
every minute, all created up front so that their waits overlap:

* ``fire``: a group whose current window holds no drift until the test injects some; the
  alert (NOTIFY fstore_alerts) must come within one scheduling interval (bounded at 150 s);
* ``owner_view`` (alice, Data Owner) and ``scientist_view`` (bob, bound by the policy) on a
  group whose drift is carried by the hidden accounts only: alice's drifts, bob's does not and
  counts only the rows he may read;
* ``sliced`` (alice) slices a group by ``segment``: only segment b moved, and only b is flagged;
* ``carol_view`` and ``dave_view``: their creators lose access (carol is removed, dave's
  certificates are revoked), and their monitors stop, saying why.

Every connection is a member's own certificate login; the operator only reads pg_cron's
tables (which no project role may read) to show the jobs' identities.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

import fstore
from fstore import certificates, policies, projects
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from fstore.monitors import wait_for_alert
from fstore.roles import SUPERUSER_ROLE
from tests.conftest import unique

ACCOUNTS = 40
PEPS = [i for i in range(1, ACCOUNTS + 1) if i % 4 == 0]
NOW = dt.datetime.now(dt.timezone.utc)
BASELINE_TIME = NOW - dt.timedelta(days=10)
FIRST_RUN_WAIT = 200  # seconds: the scheduler adds a job within a minute, the job runs within the next
INTERVAL_WAIT = 150   # one scheduling interval (1 minute) and a margin


def _rows(time_: dt.datetime, income: Any, **extra: Any) -> pa.Table:
    return pa.Table.from_pylist([{"account_id": i, "income": float(income(i)), "event_time": time_, **extra}
                                 for i in range(1, ACCOUNTS + 1)])


def _segment_rows(time_: dt.datetime, b_factor: float) -> pa.Table:
    return pa.Table.from_pylist([{"account_id": i, "event_time": time_, "segment": "a" if i <= 60 else "b",
                                  "income": float(i * (b_factor if i > 60 else 1))} for i in range(1, 121)])


@dataclass
class World:
    home: FstoreHome
    project: str
    base_fire: int
    base_view: int

    def store(self, user: str) -> fstore.FeatureStore:
        return fstore.connect(self.project, user, home=self.home)


def _wait(what: str, probe: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _runs(fs: fstore.FeatureStore, monitor: str) -> list[Any]:
    return fs.monitors.get(monitor).runs


@pytest.fixture(scope="module")
def world(home: FstoreHome) -> Iterator[World]:
    name = unique("mon")
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, name, "alice")
    try:
        with fstore.connect(name, "alice", home=home) as alice:
            conn = alice.conn
            for user in ("bob", "carol", "dave"):
                projects.add_member(home, conn, name, user, "data-scientist")
            conn.execute(f"set role {name}__owner")
            conn.execute(f"create table {name}.accounts (account_id bigint primary key, is_pep boolean not null)")
            conn.execute("reset role")
            conn.execute(f"insert into {name}.accounts select g, g % 4 = 0 from generate_series(1, {ACCOUNTS}) g")
            policies.apply_policies(conn, name, [policies.RowPolicy(
                "hide_pep_accounts", "accounts", ("data_scientist",), "not is_pep", entity="account_id")])
            features = {"account_id": "bigint", "income": "double precision"}
            fire = alice.create_feature_group("payments", 1, keys=["account_id"], features=features)
            view = alice.create_feature_group("profile", 1, keys=["account_id"], features=features)
            base_fire = fire.insert(_rows(BASELINE_TIME, lambda i: 1000 * i)).id
            fire.insert(_rows(NOW - dt.timedelta(hours=2), lambda i: 1000 * i))  # current: no drift yet
            base_view = view.insert(_rows(BASELINE_TIME, lambda i: 1000 * i)).id
            # the current window moves only the hidden accounts (every fourth one, x1000)
            view.insert(_rows(NOW - dt.timedelta(hours=2), lambda i: 1000 * i * (1000 if i in PEPS else 1)))
            alice.monitors.create("fire", "payments", baseline={"up_to_commit": base_fire}, current="last 1 day",
                                  every="1m")
            alice.monitors.create("owner_view", "profile", baseline={"up_to_commit": base_view},
                                  current="last 1 day", every="1m")
            # per slice: segment b (accounts 61..120, 30+ rows a window) moves, segment a does not
            segments = alice.create_feature_group("segments", 1, keys=["account_id"],
                                                  features={**features, "segment": "text"})
            base_segments = segments.insert(_segment_rows(BASELINE_TIME, 1)).id
            segments.insert(_segment_rows(NOW - dt.timedelta(hours=2), 1000))
            alice.monitors.create("sliced", "segments", baseline={"up_to_commit": base_segments},
                                  current="last 1 day", every="1m", features=["income"], slice_by="segment")
        for user in ("bob", "carol", "dave"):
            with fstore.connect(name, user, home=home) as member:
                member.monitors.create("scientist_view" if user == "bob" else f"{user}_view", "profile",
                                       baseline={"up_to_commit": base_view}, current="last 1 day", every="* * * * *")
        world = World(home, name, base_fire, base_view)
        with world.store("alice") as alice:  # a Data Owner no policy binds reads every monitor's runs
            for monitor in ("fire", "owner_view", "sliced", "scientist_view", "carol_view", "dave_view"):
                _wait(f"the first run of {monitor}", lambda m=monitor: _runs(alice, m), FIRST_RUN_WAIT)
        yield world
    finally:
        with connect(home, "fstore_admin", autocommit=True) as admin:
            projects.delete_project(home, admin, name)


def test_each_monitor_runs_as_its_creator_in_its_own_pg_cron_job(world: World, operator: Any) -> None:
    jobs = dict(operator.execute(
        "select m.name, j.username from cron.job j join fstore.monitors m on j.jobname = 'fstore_monitor_' || m.id"
        " where m.project = %s", (world.project,)).fetchall())
    p = world.project
    assert jobs == {"fire": f"{p}__alice", "owner_view": f"{p}__alice", "sliced": f"{p}__alice",
                    "scientist_view": f"{p}__bob", "carol_view": f"{p}__carol", "dave_view": f"{p}__dave"}
    commands = {c for (c,) in operator.execute(
        "select j.command from cron.job j join fstore.monitors m on j.jobname = 'fstore_monitor_' || m.id"
        " where m.project = %s", (world.project,))}
    assert all(c.startswith("select fstore.run_monitor(") for c in commands)
    # the platform's scheduler is the superuser's one job
    assert operator.execute("select username, schedule, command from cron.job where jobname = 'fstore_monitors'"
                            ).fetchall() == [(SUPERUSER_ROLE, "* * * * *", "call fstore_cron.sync_monitors()")]


def test_a_sliced_monitor_flags_the_slice_that_drifted(world: World) -> None:
    with world.store("alice") as alice:
        run = _runs(alice, "sliced")[0]
        assert run.status == "drifted", run
        assert run.flagged_slices == ["b"]
        slices = {s["slice"]: s for s in run.slices}
        assert set(slices) == {"a", "b"}
        assert (slices["a"]["drifted"], slices["a"]["drifted_features"]) == (False, [])
        assert (slices["b"]["drifted"], slices["b"]["drifted_features"]) == (True, ["income"])
        assert slices["b"]["baseline_rows"] == slices["b"]["current_rows"] == 60
        alert = next(a for a in alice.monitors.alerts("sliced") if a.run_id == run.id)
        assert alert.flagged_slices == ["b"]


def test_a_restricted_scientist_s_monitor_never_sees_the_hidden_rows(world: World) -> None:
    with world.store("alice") as alice:
        owner = _runs(alice, "owner_view")[0]
        assert owner.status == "drifted", owner
        assert owner.drifted_features == ["income"]
        assert (owner.baseline_rows, owner.current_rows) == (ACCOUNTS, ACCOUNTS)
        assert alice.monitors.alerts("owner_view")[0].drifted_features == ["income"]
        # alice (no policy binds her) reads bob's runs too: they count only what bob may read
        bobs = _runs(alice, "scientist_view")[0]
    visible = ACCOUNTS - len(PEPS)
    with world.store("bob") as bob:
        run = _runs(bob, "scientist_view")[0]
        assert run == bobs
        assert run.status == "ok", run
        assert run.drifted_features == []
        assert (run.baseline_rows, run.current_rows) == (visible, visible)
        assert run.results[0]["psi"] == pytest.approx(0.0, abs=1e-9)
        assert bob.monitors.alerts() == []
        # alice's runs and alerts describe hidden rows: bob sees her monitor, not its results
        assert {m.name for m in bob.monitors.list()} >= {"owner_view", "scientist_view"}
        assert _runs(bob, "owner_view") == []
        assert bob.conn.execute("select count(*) from fstore.monitor_runs r join fstore.monitors m"
                                " on m.id = r.monitor_id where m.name = 'owner_view'").fetchone()[0] == 0
        assert bob.conn.execute("select count(*) from fstore.monitor_alerts").fetchone()[0] == 0


def test_a_monitor_fires_on_injected_drift_within_one_scheduling_interval(world: World) -> None:
    with world.store("alice") as alice:
        before = _runs(alice, "fire")
        assert before[0].status == "ok" and before[0].drifted_features == [], before[0]
        with alice.new_connection(autocommit=True) as listener:
            listener.execute("listen fstore_alerts")
            injected_at = dt.datetime.now(dt.timezone.utc)
            alice.get_feature_group("payments").insert(
                _rows(NOW - dt.timedelta(minutes=30), lambda i: 1_000_000 + 1000 * i))
            deadline = time.monotonic() + INTERVAL_WAIT
            payload = None
            fire_id = alice.monitors.get("fire").id
            while payload is None or payload["monitor_id"] != fire_id:
                left = deadline - time.monotonic()
                assert left > 0, f"no alert of monitor fire within {INTERVAL_WAIT} s of the injected drift"
                payload = wait_for_alert(listener, left)
                assert payload is not None, f"no alert of monitor fire within {INTERVAL_WAIT} s of the injected drift"
        # ids, the project and the run's time: no names, nothing of the data (LISTEN is open to every session)
        assert set(payload) == {"alert", "monitor_id", "project", "run_at"}
        assert payload["project"] == world.project
        assert all(isinstance(payload[k], int) for k in ("alert", "monitor_id"))
        assert dt.datetime.fromisoformat(payload["run_at"]) >= injected_at
        assert len(json.dumps(payload)) < 200  # small: no measures, no means, no rows, no names
        alert = next(a for a in alice.monitors.alerts("fire") if a.id == payload["alert"])
        assert alert.drifted_features == ["income"]
        run = next(r for r in _runs(alice, "fire") if r.id == alert.run_id)
        assert run.status == "drifted" and run.started_at >= injected_at
        assert run.current_rows == 2 * ACCOUNTS  # the rows of the last day: the earlier ones and the injected ones


def test_a_creator_who_loses_access_stops_their_monitor_and_the_run_says_why(world: World) -> None:
    with world.store("alice") as alice:
        projects.remove_member(world.home, alice.conn, world.project, "carol")
    certificates.revoke(world.home, role=f"{world.project}__dave")
    with world.store("alice") as alice:
        for monitor, reason in (("carol_view", "is no longer a member"), ("dave_view", "has no live certificate")):
            stopped = _wait(f"{monitor} stopped", lambda m=monitor: (lambda got: got if not got.active else None)(
                alice.monitors.get(m)), INTERVAL_WAIT)
            assert reason in stopped.stopped_reason, stopped.stopped_reason
            assert stopped.runs[0].status == "stopped" and reason in stopped.runs[0].error
    # and its pg_cron job is gone: nothing runs as the old creator any more
    def jobs_left() -> bool:
        with connect_operator(world.home) as op:
            return op.execute(
                "select count(*) from cron.job j join fstore.monitors m on j.jobname = 'fstore_monitor_' || m.id"
                " where m.project = %s and m.name in ('carol_view', 'dave_view')", (world.project,)).fetchone()[0] == 0
    _wait("the stopped monitors' jobs removed", jobs_left, INTERVAL_WAIT)
