"""The inventory of code that runs with more rights than its caller: every SECURITY
DEFINER function in the database, with its owner and settings, and the roles that
own them. A definer function must pin ``search_path`` with ``pg_temp`` written last
(left out, PostgreSQL searches the caller's temporary schema first), and its owner
must hold neither superuser nor CREATEROLE (on PostgreSQL 15, CREATEROLE can grant
itself any role, ``pg_execute_server_program`` included) -- except the few role
management functions, owned by ``fstore_roles``, which exist to create roles and
touch no tenant object. (pgaudit's event-trigger functions are a superuser's and
can run only as event triggers; they pin their search_path too. A member's own
functions in their temporary schema run only in their own session, as themselves.)
"""

from __future__ import annotations

from typing import Any

import psycopg

ROLE_MANAGEMENT = frozenset({
    "fstore.roles_create(text,boolean,boolean)", "fstore.roles_grant(text,text,boolean)",
    "fstore.roles_set_login(text,boolean)", "fstore.roles_drop(text)",
})


def _definers(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    rows = conn.execute(
        "select p.oid::regprocedure::text, r.rolname, r.rolsuper, r.rolcreaterole, coalesce(p.proconfig, '{}'),"
        "       p.prorettype = 'event_trigger'::regtype and exists (select 1 from pg_depend d"
        "         where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'),"
        "       array(select g.grantee::regrole::text from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) g"
        "              where g.privilege_type = 'EXECUTE' and g.grantee <> p.proowner and g.grantee <> 0)"
        "         || case when has_function_privilege('public', p.oid, 'execute') then array['PUBLIC'] else '{}' end"
        "  from pg_proc p join pg_roles r on r.oid = p.proowner join pg_namespace n on n.oid = p.pronamespace"
        " where p.prosecdef and n.nspname !~ '^pg_temp_' order by 1").fetchall()
    return [dict(zip(("function", "owner", "owner_super", "owner_createrole", "config", "extension_event_trigger",
                      "execute"), row))
            for row in rows]


def _search_path(config: list[str]) -> list[str] | None:
    for setting in config:
        name, _, value = setting.partition("=")
        if name == "search_path":
            return [part.strip().strip('"') for part in value.split(",")]
    return None


def test_every_security_definer_function_pins_pg_temp_last_and_has_a_harmless_owner(
        operator: psycopg.Connection[Any], tally: Any, capsys: Any) -> None:
    definers = _definers(operator)
    with capsys.disabled():
        print(f"\n{len(definers)} SECURITY DEFINER functions:")
        for d in definers:
            print(f"  {d['function']:<75} owner={d['owner']:<15} {','.join(d['config'])}  execute: "
                  f"{','.join(d['execute']) or '-'}")
    assert len(definers) > 40, "the inventory must see fstore's control plane"
    problems = []
    for d in definers:
        path = _search_path(d["config"])
        if path is None:
            problems.append(f"{d['function']}: no search_path (pg_temp is searched first)")
        elif path[-1] != "pg_temp":
            problems.append(f"{d['function']}: search_path {path} does not end with pg_temp")
        if d["owner_super"] and not d["extension_event_trigger"]:
            # an extension's event-trigger functions (pgaudit's) run only as event triggers
            problems.append(f"{d['function']}: owned by superuser {d['owner']}")
        if d["owner_createrole"] and d["function"] not in ROLE_MANAGEMENT and not d["extension_event_trigger"]:
            problems.append(f"{d['function']}: owned by {d['owner']}, which holds CREATEROLE")
        if d["function"] in ROLE_MANAGEMENT and d["execute"] != ["fstore_control"]:
            problems.append(f"{d['function']}: executable by {d['execute']}, not only by fstore_control")
    assert problems == []
    tally.deny("definer_inventory_pg_temp_last", "definer_inventory_no_superuser_owner",
               "definer_inventory_no_createrole_owner", "role_management_only_for_control")


def test_the_control_plane_roles_hold_only_what_they_need(operator: psycopg.Connection[Any], tally: Any) -> None:
    attributes = dict(operator.execute(
        "select rolname, row(rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin)::text"
        "  from pg_roles where rolname in ('fstore_control', 'fstore_roles', 'fstore_builder', 'fstore_auditor',"
        "                                  'fstore_admin', 'fstore_writer')").fetchall())
    # fstore_writer: BYPASSRLS, owns only fstore.write_commit_batch, the one writer of
    # distributed feature tables (sql/functions/41_distribution.sql, docs/cluster.md), and
    # fstore.erase_distributed_rows, their one deleter (87_erasure.sql)
    assert attributes == {
        "fstore_control": "(f,f,f,f,f,f)", "fstore_roles": "(f,t,f,f,f,f)", "fstore_builder": "(f,f,f,f,f,f)",
        "fstore_auditor": "(f,f,f,f,f,f)", "fstore_admin": "(f,f,f,f,f,t)", "fstore_writer": "(f,f,f,f,t,f)"}
    memberships = operator.execute(
        "select m.member::regrole::text, m.roleid::regrole::text from pg_auth_members m"
        " where m.member::regrole::text in ('fstore_control', 'fstore_roles', 'fstore_builder', 'fstore_admin',"
        "                                   'fstore_writer')"
        "   and m.roleid::regrole::text not like '%\\_\\_owner' order by 1, 2").fetchall()
    assert memberships == [("fstore_control", "pg_signal_backend")]
    # nothing but fstore's own definers is owned by the roles that run them
    owned = operator.execute(
        "select r.rolname, count(*) from pg_proc p join pg_roles r on r.oid = p.proowner"
        " where r.rolname in ('fstore_roles', 'fstore_builder', 'fstore_writer') group by 1 order by 1").fetchall()
    # build_training_table, fit_feature_view; the role functions; write_commit_batch, erase_distributed_rows
    assert owned == [("fstore_builder", 2), ("fstore_roles", 5), ("fstore_writer", 2)]
    tally.deny("control_without_createrole", "builder_without_createrole", "control_only_signal_backend")
    tally.allow("role_management_holds_createrole")


# Erasure (sql/functions/87_erasure.sql): why each runs with fstore_control's rights, and who
# may call it. None casts a value or evaluates a tenant's object: they compare names and plain
# text, count rows of a transition table and write fstore's own catalog; the values are cast
# by fstore.forget and the row trigger, SECURITY INVOKER, in the caller's rights.
ERASURE_DEFINERS = {
    "fstore.open_erasure()": (False, "reads fstore.erasures (no one may read an open record's values but its session)"),
    "fstore.erasure_columns(oid)": (True, "the append-only triggers ask it, as the deleter: the open erasure's "
                                          "{column: text} for one table, this transaction and session only"),
    "fstore.count_erased_rows()": (False, "trigger: counts the statement's deleted rows into fstore.erased_rows, "
                                          "which nobody else writes; attached only by fstore"),
    "fstore.require_finished_erasure()": (False, "deferred constraint trigger of fstore.erasures: reads its state"),
    "fstore.erasure_targets(text,text[])": (False, "reads the catalog of any project: only the erasure steps call it"),
    "fstore.begin_erasure(text,jsonb)": (True, "writes fstore.erasures (nobody holds INSERT); checks Data Owner, "
                                               "entity keys, row policies; takes the groups' commit locks"),
    "fstore.replace_erased_statistics(bigint,bigint,jsonb)": (True, "rewrites fstore.commit_statistics of a commit "
                                                                    "whose rows the open erasure removed, only"),
    "fstore.finish_erasure(bigint)": (True, "deletes served vectors, lists exports, fits and copies across the "
                                            "catalog, ends sessions (pg_signal_backend), audits"),
    "fstore.record_erased_rows(oid,bigint,bigint[])": (False, "writes fstore.erased_rows for a target of the "
                                                              "erasure open in this session; EXECUTE: fstore_writer "
                                                              "(erase_distributed_rows) and fstore's own trigger"),
}
# and one owned by fstore_writer, whose DELETE the shards of a distributed table take on the
# workers: it deletes exactly the rows erasure_columns names, of a distributed target only
WRITER_ERASURE_DEFINER = "fstore.erase_distributed_rows(regclass)"


def test_the_erasure_definers_are_these_and_callable_only_as_intended(operator: psycopg.Connection[Any],
                                                                      tally: Any) -> None:
    definers = {d["function"]: d for d in _definers(operator)}
    erasure = {name for name in definers if "erase" in name or "erasure" in name}
    assert erasure == set(ERASURE_DEFINERS) | {WRITER_ERASURE_DEFINER}
    for name, (public, _why) in ERASURE_DEFINERS.items():
        assert definers[name]["owner"] == "fstore_control", name
        assert ("PUBLIC" in definers[name]["execute"]) is public, (name, definers[name]["execute"])
    assert definers["fstore.record_erased_rows(oid,bigint,bigint[])"]["execute"] == ["fstore_writer"]
    assert definers[WRITER_ERASURE_DEFINER]["owner"] == "fstore_writer"
    assert definers[WRITER_ERASURE_DEFINER]["execute"] == ["PUBLIC"]
    # the entry point runs as its caller: the values are cast in the caller's rights
    assert operator.execute("select prosecdef from pg_proc where oid = 'fstore.forget(text,jsonb)'::regprocedure"
                            ).fetchone() == (False,)
    assert operator.execute("select prosecdef from pg_proc where oid = 'fstore.check_erased_row()'::regprocedure"
                            ).fetchone() == (False,)
    tally.deny("erasure_definers_listed", "erasure_internal_definers_not_public")


# Monitors (sql/functions/88_monitors.sql): why each runs with fstore_control's rights. None
# casts or evaluates a tenant value: they compare names, ids and session_user, check plain
# JSON (windows, thresholds) and write fstore's own catalog. The drift itself is computed by
# fstore.run_monitor, SECURITY INVOKER, in the creator's pg_cron job, in the creator's rights.
MONITOR_DEFINERS = {
    "fstore.create_monitor(text,bigint,jsonb,jsonb,text,text[],text,integer,double precision,jsonb,bigint)": (
        True, "writes fstore.monitors (nobody holds INSERT) with created_by = session_user, the role pg_cron "
              "logs in as; checks membership and the caller's own column privileges"),
    "fstore.drop_monitor(text)": (True, "deletes a monitor of the caller's project: its creator or a Data Owner"),
    "fstore.monitor_stop_reason(bigint)": (True, "reads members, roles and certificates of the caller's project "
                                                 "to say whether its creator may still run it"),
    "fstore.monitor_results_visible(bigint)": (True, "RLS of monitor_runs/monitor_alerts: the creator, or a member "
                                                     "of its project no row policy of the group binds"),
    "fstore.record_monitor_run(bigint,timestamp with time zone,jsonb,jsonb,bigint,bigint,jsonb,text[],jsonb,"
    "text[],text)": (True, "writes monitor_runs/alerts and NOTIFY: only in the creator's own session without a "
                           "client certificate (a pg_cron worker), after checking the creator still may"),
}


def test_the_monitor_definers_are_these_and_the_scheduler_is_the_superuser_s(operator: psycopg.Connection[Any],
                                                                              tally: Any) -> None:
    definers = {d["function"]: d for d in _definers(operator)}
    monitor = {name for name in definers if "monitor" in name}
    assert monitor == set(MONITOR_DEFINERS)
    for name, (public, _why) in MONITOR_DEFINERS.items():
        assert definers[name]["owner"] == "fstore_control", name
        assert ("PUBLIC" in definers[name]["execute"]) is public, (name, definers[name]["execute"])
    # the run itself is the creator's: no definer
    assert operator.execute("select prosecdef from pg_proc where oid = 'fstore.run_monitor(bigint)'::regprocedure"
                            ).fetchone() == (False,)
    # the one job pg_cron runs as the superuser: a procedure of the superuser's own schema, nobody else's to call
    row = operator.execute(
        "select r.rolsuper, p.prosecdef, has_function_privilege('public', p.oid, 'execute'),"
        "       (select s.nspowner::regrole::text from pg_namespace s where s.nspname = 'fstore_cron') = r.rolname"
        "  from pg_proc p join pg_roles r on r.oid = p.proowner"
        " where p.oid = 'fstore_cron.sync_monitors()'::regprocedure").fetchone()
    assert row == (True, False, False, True)
    tally.deny("monitor_definers_listed", "monitor_scheduler_not_public")


# The commit barrier of distributed groups (sql/functions/43_commit_barrier.sql): why each runs
# with fstore_control's rights. On a Citus coordinator the two-integer advisory-lock functions
# are revoked from PUBLIC (the barrier's key space is fstore's), so taking the key needs them.
# Neither casts or evaluates a tenant value: they compare ids, read fstore's catalog and lock.
BARRIER_DEFINERS = {
    "fstore.commit_barrier(bigint[])": (True, "the reader side: takes the shared barrier of groups the caller may "
                                              "read (feature_group_by_id), in id order, until its transaction ends"),
    "fstore.commit_barrier_enter()": (False, "the writer side, a deferred constraint trigger of fstore.commits: "
                                             "reads this transaction's commit records, takes the exclusive "
                                             "barrier with a bounded wait"),
}


def test_the_barrier_definers_are_these_and_the_writer_side_is_no_one_s_to_call(operator: psycopg.Connection[Any],
                                                                               tally: Any) -> None:
    definers = {d["function"]: d for d in _definers(operator)}
    barrier = {name for name in definers if "barrier" in name}
    assert barrier == set(BARRIER_DEFINERS)
    for name, (public, _why) in BARRIER_DEFINERS.items():
        assert definers[name]["owner"] == "fstore_control", name
        assert ("PUBLIC" in definers[name]["execute"]) is public, (name, definers[name]["execute"])
    # the rest of the barrier runs as its caller
    for name in ("fstore.commit_barrier_features(text[])", "fstore.distributed_feature_groups(text[])"):
        assert operator.execute("select prosecdef from pg_proc where oid = %s::regprocedure", (name,)
                                ).fetchone() == (False,), name
    tally.deny("barrier_definers_listed", "barrier_writer_side_not_public")


# Distributed spines (sql/functions/44_spines.sql): why each runs with fstore_control's rights.
# Neither casts or evaluates a tenant value: create_spine_table copies the column list of the
# caller's own temporary table (built-in types only) into schema fstore_spines, where only
# fstore_control may create, distributes it (create_distributed_table is fstore_control's) and
# grants it to session_user; drop_spine_table drops only a table its caller made.
SPINE_DEFINERS = {
    "fstore.create_spine_table(regclass,text,regclass)": (True, "creates fstore_spines.s_<random> (nobody else "
                                                                "may create there), distributed, granted to the "
                                                                "caller only; records it in fstore.spine_tables"),
    "fstore.drop_spine_table(text)": (True, "drops a spine table of fstore.spine_tables made by the caller"),
}


def test_the_spine_definers_are_these(operator: psycopg.Connection[Any], tally: Any) -> None:
    definers = {d["function"]: d for d in _definers(operator)}
    assert {name for name in definers if "spine" in name} == set(SPINE_DEFINERS)
    for name, (public, _why) in SPINE_DEFINERS.items():
        assert definers[name]["owner"] == "fstore_control", name
        assert ("PUBLIC" in definers[name]["execute"]) is public, (name, definers[name]["execute"])
    # nobody but fstore_control creates in fstore_spines; everyone may use it (each table is granted)
    assert operator.execute(
        "select n.nspowner::regrole::text, has_schema_privilege('public', n.oid, 'create'),"
        "       has_schema_privilege('public', n.oid, 'usage') from pg_namespace n where n.nspname = 'fstore_spines'"
    ).fetchone() == ("fstore_control", False, True)
    tally.deny("spine_definers_listed", "spine_schema_no_create")
