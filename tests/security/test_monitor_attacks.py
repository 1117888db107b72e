"""Attacks on monitors (sql/functions/88_monitors.sql): scheduled drift checks that pg_cron runs
inside the server as the identity that created them.

In project A, alice (Data Owner) owns monitor ``amon`` and bob (Data Scientist) ``bmon`` on A's
feature group; each has one stored run and alert (written here by the operator: runs are
recorded only by a monitor's own pg_cron job). The cases check that

* A's members see A's monitors; runs and alerts are shown to the creator and to members no row
  policy of the group binds (the Data Owner always); bob may drop his own monitor, not alice's;
* share partners (carol, dave: read share; frank, gina: read-write), another project (hank) and
  the admin see no monitor, run or alert of A and cannot drop one;
* nobody creates a monitor that runs as someone else: ``created_by`` is the session's role and
  the catalog is written only by fstore's functions; tenants have no access to pg_cron's schema
  (no ``cron.schedule``, no INSERT into ``cron.job``, no reading it); a run is recorded only by
  the creator's own job (a session without a client certificate), never from a member's login;
* hostile names, schedules, windows and slice columns are refused by name;
* a removed member's monitor stops at once, and the scheduler drops its job.

Each refusal has an allowed counterpart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fstore import projects
from fstore.connection import connect, connect_operator
from tests.conftest import unique
from tests.security.attack import Case, allow, deny, hide, run_case

WINDOW = '{"up_to_commit": 1}'


def create(name: str, every: str = "1h", *, group: str = "{fg}", baseline: str = WINDOW,
           current: str = '"last 1 day"', slice_by: str | None = None) -> tuple[str, tuple[Any, ...]]:
    return ("select fstore.create_monitor(%s, %s, %s::jsonb, %s::jsonb, %s, p_slice_by => %s)",
            (name, group, baseline, current, every, slice_by))


def run_args(monitor: str) -> tuple[str, tuple[Any, ...]]:
    return ("select fstore.record_monitor_run(%s, now(), '{}', '{}', 1, 1, '[]', array['amount'], null, '{}', null)",
            (monitor,))


MONITORS_OF_A = "select name from fstore.monitors where project = '{a}' order by name"
RUNS_OF_A = ("select m.name, r.status from fstore.monitor_runs r join fstore.monitors m on m.id = r.monitor_id"
             " where m.project = '{a}' order by m.name")
ALERTS_OF_A = ("select m.name, a.drifted_features from fstore.monitor_alerts a join fstore.monitors m"
               " on m.id = a.monitor_id where m.project = '{a}' order by m.name")
BOTH = [("amon",), ("bmon",)]
BOTH_RUNS = [("amon", "drifted"), ("bmon", "drifted")]
BOTH_ALERTS = [("amon", ["amount"]), ("bmon", ["amount"])]
NOT_VISIBLE = "does not exist in project"

CASES: list[Case] = [
    # --- reading: A's members, as permitted -------------------------------------------------
    allow("owner_lists_project_monitors", "alice", MONITORS_OF_A, rows=BOTH),
    allow("owner_reads_every_run_and_alert", "alice", RUNS_OF_A, rows=BOTH_RUNS),
    allow("owner_reads_every_alert", "alice", ALERTS_OF_A, rows=BOTH_ALERTS),
    allow("scientist_lists_project_monitors", "bob", MONITORS_OF_A, rows=BOTH),
    # no row policy of the group binds bob: he reads alice's runs too (as he reads stored statistics)
    allow("unbound_scientist_reads_runs", "bob", RUNS_OF_A, rows=BOTH_RUNS),
    allow("unbound_scientist_reads_alerts", "bob", ALERTS_OF_A, rows=BOTH_ALERTS),
    # --- reading: everyone else sees nothing of A's monitors --------------------------------
    *[hide(f"{actor}_lists_a_monitors", actor, MONITORS_OF_A, rows=[])
      for actor in ("carol", "dave", "frank", "gina", "hank")],
    *[hide(f"{actor}_reads_a_runs", actor, RUNS_OF_A, rows=[])
      for actor in ("carol", "dave", "frank", "gina", "hank", "admin")],
    *[hide(f"{actor}_reads_a_alerts", actor, ALERTS_OF_A, rows=[])
      for actor in ("carol", "dave", "frank", "gina", "hank", "admin")],
    # by id, the visibility function says no to them too
    *[allow(f"{actor}_asks_if_a_results_visible", actor, "select fstore.monitor_results_visible({amon})",
            rows=[(False,)]) for actor in ("carol", "hank", "admin")],
    allow("bob_asks_if_own_results_visible", "bob", "select fstore.monitor_results_visible({bmon})", rows=[(True,)]),
    *[deny(f"{actor}_asks_why_a_monitor_stopped", actor, "select fstore.monitor_stop_reason({amon})",
           state="P0002", match="does not exist or is not visible") for actor in ("carol", "hank")],
    allow("owner_asks_why_a_monitor_stopped", "alice", "select fstore.monitor_stop_reason({amon})", rows=[(None,)]),
    # --- dropping -----------------------------------------------------------------------------
    deny("scientist_drops_owners_monitor", "bob", "select fstore.drop_monitor('amon')",
         match="only its creator .* or a Data Owner"),
    allow("scientist_drops_own_monitor", "bob", "begin", "select fstore.drop_monitor('bmon')", MONITORS_OF_A,
          rows=[("amon",)]),
    allow("owner_drops_scientists_monitor", "alice", "begin", "select fstore.drop_monitor('bmon')", MONITORS_OF_A,
          rows=[("amon",)]),
    *[deny(f"{actor}_drops_a_monitor", actor, "select fstore.drop_monitor('amon')", state="P0002",
           match=NOT_VISIBLE) for actor in ("carol", "dave", "frank", "gina", "hank", "admin")],
    deny("scientist_deletes_a_monitor_job", "bob", "delete from cron.job where jobname like 'fstore_monitor_%'",
         match="permission denied for schema cron"),
    deny("scientist_calls_unschedule_monitor_jobs", "bob", "select fstore.unschedule_monitor_jobs(array[{amon}])",
         match="permission denied for function unschedule_monitor_jobs"),
    deny("owner_deletes_runs_directly", "alice", "delete from fstore.monitor_runs",
         match="permission denied for table monitor_runs"),
    deny("owner_role_deletes_alerts", "alice", "begin", "set local role {a}__owner", "delete from fstore.monitor_alerts",
         match="permission denied for table monitor_alerts"),
    # --- creating as someone else -------------------------------------------------------------
    allow("scientist_creates_a_monitor_as_himself", "bob", "begin", create("mine"),
          "select created_by, active from fstore.monitors where name = 'mine'", rows=[("{bob}", True)]),
    deny("scientist_inserts_a_monitor_as_the_owner", "bob",
         "insert into fstore.monitors (project, name, feature_group_id, baseline, current, every, schedule,"
         " created_by, creator_since) values ('{a}', 'forged', {fg}, '{}', '{}', '1m', '* * * * *', '{alice}', now())",
         match="permission denied for table monitors"),
    deny("scientist_rewrites_a_monitors_creator", "bob",
         "update fstore.monitors set created_by = '{alice}' where id = {bmon}",
         match="permission denied for table monitors"),
    deny("owner_role_rewrites_a_monitors_creator", "alice", "begin", "set local role {a}__owner",
         "update fstore.monitors set created_by = 'postgres' where id = {amon}",
         match="permission denied for table monitors"),
    deny("scientist_calls_cron_schedule", "bob", "select cron.schedule('x', '* * * * *', 'select 1')",
         match="permission denied for schema cron"),
    deny("owner_calls_cron_schedule_as_another", "alice",
         "select cron.schedule_in_database('x', '* * * * *', 'select 1', current_database(), '{bob}')",
         match="permission denied for schema cron"),
    deny("scientist_inserts_into_cron_job", "bob",
         "insert into cron.job (schedule, command, username) values ('* * * * *', 'select 1', '{alice}')",
         match="permission denied for schema cron"),
    deny("owner_reads_cron_jobs", "alice", "select * from cron.job", match="permission denied for schema cron"),
    deny("hank_unschedules_the_platform_job", "hank", "select cron.unschedule('fstore_monitors')",
         match="permission denied for schema cron"),
    deny("scientist_calls_the_scheduler", "bob", "call fstore_cron.sync_monitors()",
         match="permission denied for schema fstore_cron"),
    # a run is stored only by the creator's own pg_cron job, never from a login
    deny("scientist_records_a_run_of_own_monitor", "bob", run_args("{bmon}"),
         match="recorded only by its own pg_cron job"),
    deny("scientist_records_a_run_of_owners_monitor", "bob", run_args("{amon}"),
         match="recorded only by its own pg_cron job"),
    deny("scientist_runs_owners_monitor", "bob", "select fstore.run_monitor({amon})", state="P0002",
         match="was not created by"),
    deny("scientist_runs_own_monitor_from_a_login", "bob", "select fstore.run_monitor({bmon})",
         match="recorded only by its own pg_cron job"),
    allow("scientist_reads_own_runs", "bob", "select status from fstore.monitor_runs where monitor_id = {bmon}",
          rows=[("drifted",)]),
    # --- who may create, and what --------------------------------------------------------------
    deny("admin_creates_a_monitor", "admin", create("adm"), match="only a member of a project"),
    deny("hank_monitors_a_group_not_shared_with_him", "hank", create("spy"), state="P0002",
         match="does not exist or is not visible"),
    allow("read_share_owner_monitors_the_shared_group_in_own_project", "carol", "begin", create("shared"),
          "select project, created_by from fstore.monitors where name = 'shared'", rows=[("{b}", "{carol}")]),
    deny("monitor_name_injected", "bob", create("x'; drop table t; --"), state="22023", match="invalid monitor name"),
    deny("schedule_injected", "bob", create("sched", every="* * * * *'); select cron.schedule('y"),
         state="22023", match="invalid schedule"),
    deny("schedule_out_of_range", "bob", create("sched", every="61 * * * *"), state="22023",
         match="invalid schedule"),
    deny("window_injected", "bob", create("win", current='"last 1 day\'); drop table t; --"'), state="22023",
         match="current window"),
    deny("slice_by_unknown_column", "bob", create("sliced", slice_by="nope"), state="42703",
         match="has no column 'nope' to slice by"),
    deny("slice_by_injected_column", "bob", create("sliced", slice_by='amount"; drop table t; --'), state="42703",
         match="to slice by"),
    allow("scientist_creates_a_sliced_monitor", "bob", "begin", create("sliced", slice_by="amount"),
          "select slice_by, created_by from fstore.monitors where name = 'sliced'", rows=[("amount", "{bob}")]),
    deny("duplicate_monitor_name", "bob", create("amon"), state="42710", match="already exists"),
]


@pytest.fixture(scope="module")
def names(world: Any) -> Iterator[dict[str, Any]]:
    """A's two monitors, with one drifted run and alert each (written by the operator)."""
    a = world.names["a"]
    ids = {}
    for actor, monitor in (("alice", "amon"), ("bob", "bmon")):
        query, params = create(monitor)
        ids[monitor] = world.conn(actor).execute(query, (monitor, world.names["fg"], *params[2:])).fetchone()[0]
    with connect_operator(world.home, autocommit=True) as op:
        for monitor_id in ids.values():
            run = op.execute("insert into fstore.monitor_runs (monitor_id, started_at, status, drifted_features)"
                             " values (%s, now(), 'drifted', '{amount}') returning id", (monitor_id,)).fetchone()[0]
            op.execute("insert into fstore.monitor_alerts (monitor_id, run_id, drifted_features)"
                       " values (%s, %s, '{amount}')", (monitor_id, run))
    try:
        yield {**world.names, **ids}
    finally:
        with connect_operator(world.home, autocommit=True) as op:
            op.execute("delete from fstore.monitors where project = %s", (a,))
            op.execute("call fstore_cron.sync_monitors()")


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_monitor_attack(case: Case, world: Any, names: dict[str, Any], tally: Any) -> None:
    run_case(world.conn(case.actor), case, names)
    tally.add(case.kind, case.id)


def test_a_removed_members_monitor_stops_and_its_job_goes(world: Any, names: dict[str, Any], tally: Any) -> None:
    """ivan (a Data Scientist of A) creates a monitor; once alice removes him it is stopped, saying
    why, and its pg_cron job is gone with his role; alice's own monitor keeps its job."""
    a, home = world.names["a"], world.home
    user = unique("ivan")
    role = f"{a}__{user}"
    with connect(home, world.role("alice"), autocommit=True) as alice:
        projects.add_member(home, alice, a, user, "data-scientist")
    with connect(home, role, autocommit=True) as ivan:
        query, params = create("ivans")
        monitor = ivan.execute(query, params[:1] + (names["fg"],) + params[2:]).fetchone()[0]
    with connect_operator(home, autocommit=True) as op:
        op.execute("call fstore_cron.sync_monitors()")
        jobs = dict(op.execute("select jobname, username from cron.job where jobname in (%s, %s)",
                               (f"fstore_monitor_{monitor}", f"fstore_monitor_{names['amon']}")).fetchall())
        assert jobs == {f"fstore_monitor_{monitor}": role, f"fstore_monitor_{names['amon']}": world.role("alice")}
        with connect(home, world.role("alice"), autocommit=True) as alice:
            projects.remove_member(home, alice, a, user)
            active, reason = alice.execute("select active, stopped_reason from fstore.monitors where id = %s",
                                           (monitor,)).fetchone()
            assert not active and f"{role} is no longer a member of project {a}" in reason
            assert alice.execute("select status, error from fstore.monitor_runs where monitor_id = %s",
                                 (monitor,)).fetchall() == [("stopped", reason)]
        # the job went in the same transaction as the role (pg_cron's scheduler stops for everyone
        # while a job names a role that does not exist), before the scheduler's next minute
        jobs = dict(op.execute("select jobname, username from cron.job where jobname in (%s, %s)",
                               (f"fstore_monitor_{monitor}", f"fstore_monitor_{names['amon']}")).fetchall())
        assert jobs == {f"fstore_monitor_{names['amon']}": world.role("alice")}
        op.execute("call fstore_cron.sync_monitors()")  # and the scheduler does not bring it back
        assert op.execute("select count(*) from cron.job where jobname = %s",
                          (f"fstore_monitor_{monitor}",)).fetchone() == (0,)
        # even a job left behind could not log in: the role is gone
        assert op.execute("select count(*) from pg_roles where rolname = %s", (role,)).fetchone() == (0,)
    tally.deny("removed_members_monitor_stops", "removed_members_job_unscheduled")
    tally.allow("remaining_members_job_kept")


def test_the_scheduler_never_schedules_a_job_as_a_superuser(world: Any, names: dict[str, Any], tally: Any) -> None:
    """Even a catalog row naming the superuser (only the operator could write one) gets no job."""
    with connect_operator(world.home, autocommit=True) as op:
        op.execute("begin")
        try:
            op.execute("update fstore.monitors set created_by = current_user where id = %s", (names["bmon"],))
            op.execute("call fstore_cron.sync_monitors()")
            assert op.execute("select username from cron.job where jobname = %s",
                              (f"fstore_monitor_{names['bmon']}",)).fetchall() == []
            assert op.execute("select username from cron.job where jobname = %s",
                              (f"fstore_monitor_{names['amon']}",)).fetchall() == [(world.role("alice"),)]
        finally:
            op.execute("rollback")
    tally.deny("scheduler_refuses_superuser_job")
    tally.allow("scheduler_schedules_creator_job")


def test_a_share_partners_monitor_stops_when_the_share_ends(make_project: Any, tally: Any) -> None:
    """carol (Data Owner of Q, which P is shared with) monitors P's group from Q, as herself; when
    P's Data Owner unshares, her monitor stops, saying why, and its job goes at once."""
    p = make_project(owner="alice", prefix="mshp")
    q = make_project(owner="carol", prefix="mshq")
    with connect(p.home, p.role("alice"), autocommit=True) as alice:
        alice.execute(f"set role {p.name}__owner")
        fg = alice.execute("select fstore.create_feature_group(%s, 'fg', 1, array['id'], 'event_time',"
                           " '[{\"name\": \"id\", \"type\": \"bigint\"}, {\"name\": \"amount\", \"type\": \"float8\"}]')",
                           (p.name,)).fetchone()[0]
        alice.execute("reset role")
        projects.share_project(alice, p.name, q.name)
    with connect(q.home, q.role("carol"), autocommit=True) as carol:
        query, params = create("partner")
        monitor = carol.execute(query, params[:1] + (fg,) + params[2:]).fetchone()[0]
        assert carol.execute("select project, created_by from fstore.monitors where id = %s",
                             (monitor,)).fetchone() == (q.name, q.role("carol"))
    job = f"fstore_monitor_{monitor}"
    with connect_operator(p.home, autocommit=True) as op:
        op.execute("call fstore_cron.sync_monitors()")
        assert op.execute("select username from cron.job where jobname = %s", (job,)).fetchall() == [(q.role("carol"),)]
        with connect(p.home, p.role("alice"), autocommit=True) as alice:
            projects.unshare_project(alice, p.name, q.name)
        assert op.execute("select count(*) from cron.job where jobname = %s", (job,)).fetchone() == (0,)
        op.execute("call fstore_cron.sync_monitors()")
        assert op.execute("select count(*) from cron.job where jobname = %s", (job,)).fetchone() == (0,)
    with connect(q.home, q.role("carol"), autocommit=True) as carol:
        active, reason = carol.execute("select active, stopped_reason from fstore.monitors where id = %s",
                                       (monitor,)).fetchone()
        assert not active and reason == f"project {p.name} is no longer shared with project {q.name}"
    tally.deny("unshared_partners_monitor_stops")
    tally.allow("share_partner_monitors_shared_group_as_herself")
