"""Attacks with code a tenant writes: the outside attack run's escape from a Data Owner
to superuser (a domain of hers evaluated by fstore's SECURITY DEFINER code), trojan
policies, triggers, rules, views, defaults, checks and indexes that would run as a share
partner, the DDL guard's bypasses (default privileges, revokes from fstore's roles), and
rewriting the append-only history (forged commit ids, updates, deletes, truncates,
rewrites, drops, a second finish of a commit, the commit lock).

Every case runs as a real member over TLS with its own certificate (see conftest).
"""

from __future__ import annotations

import pytest

from tests.security.attack import Case, allow, deny, run_case
from tests.security.test_control_attacks import NOT_DATA_OWNER, call

AS_OWNER = "set role {a}__owner"
NOT_ALLOWED = "is not allowed in project {a}"
UNTRUSTED_TYPE = "which is not a built-in or extension type|its rows are never rewritten"
APPEND_ONLY = "is not allowed: feature-group history is append-only"
ROW_POLICY = "new row violates row-level security policy"

EVIL = ("create function pg_temp.evil(text) returns bool language plpgsql as $$begin "
        "if current_user = 'fstore_control' then execute 'grant pg_execute_server_program to ' || session_user; "
        "end if; return true; end$$")
EVIL_DOMAIN = "create domain pg_temp.evil_d as text check (pg_temp.evil(value))"
STAGE = "create temp table stage (id bigint, amount float8, event_time timestamptz)"
STAGE_ROW = "insert into stage values (1, 1.5, now())"

ESCAPE: list[Case] = [
    # the outside attack run's repro, step by step: the domain never reaches a project table
    deny("critical_tenant_domain_on_feature_group", "alice", "begin", EVIL, EVIL_DOMAIN, AS_OWNER,
         "alter table {a}.fg__v1 add column z pg_temp.evil_d", match=UNTRUSTED_TYPE),
    deny("critical_tenant_domain_on_table", "alice", "begin", EVIL, EVIL_DOMAIN, AS_OWNER,
         "create table {a}.esc (id int, z pg_temp.evil_d)", match=UNTRUSTED_TYPE),
    deny("critical_tenant_domain_by_add_features", "alice", "begin", EVIL, EVIL_DOMAIN, "set local role {a}__owner",
         call("add_features", "{fg}", '[{"name": "z", "type": "evil_d"}]'), match=UNTRUSTED_TYPE),
    deny("critical_tenant_domain_in_create_feature_group", "alice", "begin", EVIL, EVIL_DOMAIN, AS_OWNER,
         "select fstore.create_feature_group('{a}', 'esc', 1, array['id'], 'event_time', "
         "'[{\"name\": \"id\", \"type\": \"bigint\"}, {\"name\": \"z\", \"type\": \"evil_d\"}]'::jsonb)",
         match=UNTRUSTED_TYPE),
    deny("critical_tenant_composite_type", "alice", "begin", "create type pg_temp.pair as (a int, b int)", AS_OWNER,
         "create table {a}.esc (id int, p pg_temp.pair)", match=UNTRUSTED_TYPE),
    deny("critical_tenant_array_of_domain", "alice", "begin", EVIL, EVIL_DOMAIN, AS_OWNER,
         "create table {a}.esc (id int, z pg_temp.evil_d[])", match=UNTRUSTED_TYPE),
    deny("domain_in_project_schema", "alice", AS_OWNER, "create domain {a}.d as int check (value > 0)",
         match=NOT_ALLOWED),
    deny("type_in_project_schema", "alice", AS_OWNER, "create type {a}.e as enum ('x')", match=NOT_ALLOWED),
    # a validation rule's value is cast with the caller's rights, not in definer code
    deny("validation_value_cast_as_caller", "alice", "begin",
         call("set_validation_rules", "{fg}", '[{"rule": "min", "column": "amount", "value": "x"}]', "warn"),
         state="22023", match="is not a valid double precision"),
    deny("validation_rule_unknown_column", "alice", "begin",
         "select fstore.store_validation_rules({fg}, '[{\"rule\": \"min\", \"column\": \"z\", \"value\": 1}]', 'warn')",
         state="42703", match="names column z, which is not in feature group"),
    deny("validation_rule_value_object", "alice", "begin",
         "select fstore.store_validation_rules({fg}, "
         "'[{\"rule\": \"min\", \"column\": \"amount\", \"value\": {\"x\": 1}}]', 'warn')",
         state="22023", match="plain JSON values"),
    allow("validation_rule_set_by_owner", "alice", "begin",
          "select (fstore.set_validation_rules({fg}, '[{\"rule\": \"min\", \"column\": \"amount\", \"value\": 0}]',"
          " 'warn'))->>'validation_policy'", rows=[("warn",)]),
    # whatever happened above, nobody got more than they had
    allow("no_one_became_superuser", "alice",
          "select count(*) from pg_roles where rolsuper and rolname not in ('postgres')", rows=[(0,)]),
    deny("still_no_server_programs", "alice", "copy (select 1) to program 'id'", match="pg_execute_server_program"),
    allow("temp_functions_stay_allowed", "alice", "begin", "create function pg_temp.mine() returns int language sql as 'select 1'",
          "select pg_temp.mine()", rows=[(1,)]),
]

TROJANS: list[Case] = [
    # policies, triggers and rules are fstore's alone in project schemas
    deny("trojan_policy_for_partner", "alice", AS_OWNER,
         "create policy spy on {a}.t as restrictive for select to {b}__data_owner "
         "using (pg_notify('spy', query_to_xml('select * from {b}.secret', true, false, '')::text) is null)",
         match="CREATE POLICY " + NOT_ALLOWED),
    deny("trojan_policy_plain", "alice", AS_OWNER, "create policy p on {a}.t using (true)",
         match="CREATE POLICY " + NOT_ALLOWED),
    deny("trojan_alters_fstore_policy", "alice", AS_OWNER,
         "alter policy fstore_rls_consent_only on {a}.t using (true)", match="ALTER POLICY " + NOT_ALLOWED),
    deny("trojan_drops_fstore_policy", "alice", AS_OWNER, "drop policy fstore_rls_consent_only on {a}.t",
         match="goes only with its table"),
    deny("trojan_drops_base_policy", "alice", AS_OWNER, "drop policy fstore_access on {a}.t",
         match="goes only with its table"),
    deny("trojan_trigger_for_rw_partner", "alice", "begin",
         "create function pg_temp.copy_rows() returns trigger language plpgsql as $$begin "
         "perform pg_notify('spy', row_to_json(new)::text); return new; end$$", AS_OWNER,
         "create trigger spy before insert on {a}.t for each row execute function pg_temp.copy_rows()",
         match="CREATE TRIGGER " + NOT_ALLOWED),
    deny("trojan_trigger_builtin_function", "alice", AS_OWNER,
         "create trigger spy before update on {a}.t for each row execute function suppress_redundant_updates_trigger()",
         match="CREATE TRIGGER " + NOT_ALLOWED),
    deny("trojan_disables_history_trigger", "alice", AS_OWNER, "alter table {a}.fg__v1 disable trigger fstore_append_only",
         match="fstore_append_only is disabled"),
    deny("trojan_replica_history_trigger", "alice", AS_OWNER,
         "alter table {a}.fg__v1 enable replica trigger fstore_append_only", match="fstore_append_only is disabled"),
    deny("trojan_drops_history_trigger", "alice", AS_OWNER, "drop trigger fstore_append_only on {a}.fg__v1",
         match="goes only with its table"),
    deny("trojan_rule", "alice", AS_OWNER, "create rule spy as on insert to {a}.t do also notify spy",
         match="CREATE RULE " + NOT_ALLOWED),
    deny("trojan_aggregate", "alice", AS_OWNER, "create aggregate {a}.agg (int) (sfunc = int4pl, stype = int)",
         match="CREATE AGGREGATE " + NOT_ALLOWED),
    deny("trojan_operator", "alice", AS_OWNER,
         "create operator {a}.=== (leftarg = int, rightarg = int, function = int4eq)", match="CREATE OPERATOR " + NOT_ALLOWED),
    # a view runs with its reader's rights: only functions that run no query and change nothing
    deny("trojan_view_notify", "alice", AS_OWNER,
         "create view {a}.spy with (security_invoker = true) as select id, pg_notify('spy', v) is null as x from {a}.t",
         match="uses function pg_notify"),
    deny("trojan_view_query_to_xml", "alice", AS_OWNER,
         "create view {a}.spy with (security_invoker = true) as "
         "select query_to_xml('select 1', true, false, '') as x", match="uses function query_to_xml"),
    deny("trojan_view_table_to_xml", "alice", AS_OWNER,
         "create view {a}.spy with (security_invoker = true) as select table_to_xml('{a}.t', true, false, '') as x",
         match="uses function table_to_xml"),
    deny("trojan_view_subquery_notify", "alice", AS_OWNER,
         "create view {a}.spy with (security_invoker = true) as select id from {a}.t "
         "where exists (select 1 where pg_notify('spy', current_user) is null)", match="uses function pg_notify"),
    deny("trojan_view_current_setting", "alice", AS_OWNER,
         "create view {a}.spy with (security_invoker = true) as select current_setting('application_name') as app",
         match="uses function current_setting"),
    deny("trojan_view_set_config", "alice", AS_OWNER,
         "create view {a}.spy with (security_invoker = true) as select set_config('x.y', 'z', false) as x",
         match="uses function set_config"),
    deny("trojan_view_advisory_lock", "alice", AS_OWNER,
         "create view {a}.spy with (security_invoker = true) as select pg_try_advisory_lock(id) from {a}.t",
         match="uses function pg_try_advisory_lock"),
    deny("trojan_view_row_locks", "alice", AS_OWNER,
         "create view {a}.spy with (security_invoker = true) as select * from {a}.t for update",
         match="FOR UPDATE"),
    deny("trojan_view_replaced", "alice", AS_OWNER,
         "create or replace view {a}.v_inv with (security_invoker = true) as "
         "select t.*, pg_notify('spy', t.v) is null as n from {a}.t", match="uses function pg_notify"),
    # defaults, checks, generated columns and indexes run as every writer of a read-write share
    deny("trojan_default_query", "alice", AS_OWNER,
         "alter table {a}.t add column z text default query_to_xml('select 1', true, false, '')::text",
         match="default of column z uses function query_to_xml"),
    deny("trojan_default_notify", "alice", AS_OWNER,
         "alter table {a}.t add column z boolean default (pg_notify('spy', current_user) is null)",
         match="default of column z uses function pg_notify"),
    deny("trojan_default_temp_function", "alice", "begin",
         "create function pg_temp.f() returns text language sql as 'select current_user::text'", AS_OWNER,
         "alter table {a}.t add column z text default pg_temp.f()", match="default of column z uses function pg_temp"),
    deny("trojan_default_computed_nextval", "alice", AS_OWNER, "create sequence {a}.s1",
         "alter table {a}.t add column z bigint default nextval(('{a}' || '.s1')::regclass)",
         match="nextval of a computed sequence"),
    deny("trojan_check_notify", "alice", AS_OWNER,
         "create table {a}.spy_t (v text, constraint spy check (pg_notify('spy', v) is not null))",
         match="constraint spy uses function pg_notify"),
    deny("trojan_index_expression", "alice", "begin",
         "create function pg_temp.imm(text) returns text language sql immutable as 'select $1'", AS_OWNER,
         "create index spy on {a}.t (pg_temp.imm(v))", match="index .*spy uses function pg_temp"),
    deny("trojan_partial_index", "alice", "begin",
         "create function pg_temp.pred(int) returns boolean language sql immutable as 'select true'", AS_OWNER,
         "create index spy on {a}.t (id) where pg_temp.pred(id)", match="index .*spy uses function pg_temp"),
    deny("trojan_generated_column", "alice", "begin",
         "create function pg_temp.imm(text) returns text language sql immutable as 'select $1'", AS_OWNER,
         "alter table {a}.t add column z text generated always as (pg_temp.imm(v)) stored",
         match="generation expression of column z uses function pg_temp"),
    deny("trojan_child_of_history", "alice", AS_OWNER, "create table {a}.child () inherits ({a}.fg__v1)",
         match="take no part in inheritance"),
    # what a Data Owner may attach: built-in, side-effect-free expressions
    allow("plain_view_with_builtins", "alice", AS_OWNER,
          "create view {a}.ok_v with (security_invoker = true) as "
          "select id, lower(v) as v, count(*) over () as n, date_trunc('day', now()) as d from {a}.t where v like 'v%'",
          "drop view {a}.ok_v"),
    allow("table_with_builtin_defaults_checks_indexes", "alice", AS_OWNER,
          "create table {a}.ok_t (id serial primary key, u uuid default gen_random_uuid(), "
          "at timestamptz default now(), v text check (v <> ''), w text generated always as (lower(v)) stored)",
          "create index on {a}.ok_t (lower(v)) where v is not null", "drop table {a}.ok_t"),
]

GUARD_BYPASSES: list[Case] = [
    deny("default_privileges_for_owner_without_set_role", "alice",
         "alter default privileges for role {a}__owner in schema {a} grant insert, delete, truncate on tables "
         "to {b}__data_owner", match="ALTER DEFAULT PRIVILEGES is reserved to fstore"),
    deny("default_privileges_for_self", "alice", "alter default privileges grant select on tables to public",
         match="ALTER DEFAULT PRIVILEGES is reserved to fstore"),
    deny("revoke_from_auditor", "alice", AS_OWNER, "revoke select on {a}.t from fstore_auditor",
         match="may not revoke SELECT on {a}.t from fstore_auditor"),
    deny("revoke_all_from_auditor", "alice", AS_OWNER, "revoke all on all tables in schema {a} from fstore_auditor",
         match="from fstore_auditor"),
    deny("revoke_from_builder", "alice", AS_OWNER, "revoke select on {a}.fg__v1 from fstore_builder",
         match="may not revoke SELECT on {a}.fg__v1 from fstore_builder"),
    allow("owner_revokes_from_own_scientists", "alice", AS_OWNER, "revoke select on {a}.t from {a}__data_scientist",
          "grant select on {a}.t to {a}__data_scientist"),
]

HISTORY: list[Case] = [
    # rows reach a feature group's history only through a commit open in the writer's transaction
    deny("rw_partner_forges_commit_id", "frank", "insert into {a}.fg__v1 values (1, 1.0, now(), 1)", match=ROW_POLICY),
    deny("owner_forges_commit_id", "alice", "insert into {a}.fg__v1 values (1, 1.0, now(), 1)", match=ROW_POLICY),
    deny("owner_role_forges_commit_id", "alice", AS_OWNER, "insert into {a}.fg__v1 values (1, 1.0, now(), 1)",
         match=ROW_POLICY),
    deny("other_commit_in_own_transaction", "frank", "begin", f"select fstore.begin_commit({{fg}}, 'x')",
         "insert into {a}.fg__v1 values (1, 1.0, now(), (select max(id) + 1000 from fstore.commits))",
         match=ROW_POLICY),
    # and stay as they are
    deny("owner_updates_history", "alice", AS_OWNER, "update {a}.fg__v1 set amount = 0", match="UPDATE on .*" + APPEND_ONLY),
    deny("owner_deletes_history", "alice", "delete from {a}.fg__v1", match="DELETE on .*" + APPEND_ONLY),
    deny("owner_truncates_history", "alice", AS_OWNER, "truncate {a}.fg__v1", match="TRUNCATE on .*" + APPEND_ONLY),
    deny("rw_partner_deletes_history", "frank", "delete from {a}.fg__v1", match="DELETE on .*" + APPEND_ONLY),
    deny("rw_partner_updates_history", "frank", "update {a}.fg__v1 set amount = 0", match="UPDATE on .*" + APPEND_ONLY),
    deny("owner_rewrites_history", "alice", AS_OWNER,
         "alter table {a}.fg__v1 alter column amount type float8 using amount * 2", match="never rewritten"),
    deny("owner_retypes_history", "alice", AS_OWNER, "alter table {a}.fg__v1 alter column amount type numeric",
         match="never rewritten"),
    deny("owner_drops_history_column", "alice", AS_OWNER, "alter table {a}.fg__v1 drop column amount",
         match="cannot be dropped, renamed or changed"),
    deny("owner_renames_history_column", "alice", AS_OWNER, "alter table {a}.fg__v1 rename column amount to x",
         match="cannot be dropped, renamed or changed"),
    deny("owner_renames_history_table", "alice", AS_OWNER, "alter table {a}.fg__v1 rename to x",
         match="cannot be renamed"),
    deny("owner_defaults_history", "alice", AS_OWNER, "alter table {a}.fg__v1 alter column amount set default 0",
         match="take no defaults"),
    deny("owner_drops_history_table", "alice", AS_OWNER, "drop table {a}.fg__v1",
         match="drop it with fstore.drop_feature_group"),
    deny("owner_drops_project_schema", "alice", AS_OWNER, "drop schema {a} cascade",
         match="is dropped only with its project"),
    deny("rw_partner_drops_feature_group", "frank", call("drop_feature_group", "{fg}"), match=NOT_DATA_OWNER.format("{a}")),
    deny("scientist_drops_feature_group", "bob", call("drop_feature_group", "{fg}"), match=NOT_DATA_OWNER.format("{a}")),
    allow("owner_adds_a_nullable_column", "alice", "begin", "set local role {a}__owner",
          "alter table {a}.fg__v1 add column extra integer"),
    # a finished commit is immutable
    deny("finish_a_finished_commit", "alice", "begin", STAGE, STAGE_ROW,
         "select fstore.commit_feature_rows({fg}, 'pg_temp.stage'::regclass)",
         "select fstore.finish_commit((select max(id) from fstore.commits where feature_group_id = {fg}),"
         " 99, 0, null, null, null, null)", match="is not open in this session"),
    deny("member_updates_commit_record", "alice", "update fstore.commits set rows = 0",
         match="permission denied for table commits"),
    deny("member_deletes_commit_statistics", "alice", "delete from fstore.commit_statistics",
         match="permission denied for table commit_statistics"),
    allow("rw_partner_commits_through_the_pipeline", "frank", "begin", STAGE, STAGE_ROW,
          "select count(*) from (select fstore.commit_feature_rows({fg}, 'pg_temp.stage'::regclass)) c",
          "select count(*) from {a}.fg__v1", rows=[(1,)]),
    allow("owner_commits_by_hand", "alice", "begin", "select fstore.begin_commit({fg}, 'manual') is not null",
          "insert into {a}.fg__v1 values (7, 1.0, now(), fstore.open_commit({fg}))",
          "select fstore.finish_commit(fstore.open_commit({fg}), 1, 0, now(), now(), '{}', '{}')",
          "select state from fstore.commits where feature_group_id = {fg} order by id desc limit 1",
          rows=[("done",)]),
    # the commit lock is a row lock nobody but the group's writers can take
    deny("other_takes_commit_lock_row", "hank", "begin", "select * from fstore.feature_group_locks for update",
         match="permission denied for table feature_group_locks"),
    deny("scientist_takes_commit_lock_row", "bob", "begin", "select * from fstore.feature_group_locks for update",
         match="permission denied for table feature_group_locks"),
    deny("scientist_takes_commit_lock", "bob", "begin", call("lock_feature_group", "{fg}"),
         match="may not write feature group"),
    deny("ro_partner_takes_commit_lock", "carol", "begin", call("lock_feature_group", "{fg}"),
         match="may not write feature group"),
]

PROVENANCE: list[Case] = [
    deny("scientist_stores_forged_version", "bob", "begin", "create temp table fake (_row bigint, id bigint)",
         "select fstore.store_training_table('fg', 'pg_temp.fake'::regclass, "
         "'{\"spine_hash\": \"x\", \"feature_groups\": []}'::jsonb)",
         match="permission denied for function store_training_table"),
    deny("scientist_builds_from_a_project_table", "bob",
         "select fstore.build_training_table('x', '{a}.t'::regclass, array['fg:amount'], 'event_time', null, false,"
         " null, '{}', null, 0, '')", match="reads a spine only from an ordinary temporary table"),
    deny("scientist_spine_with_row_policy", "bob", "begin", "create temp table sp (id bigint, event_time timestamptz)",
         "alter table sp enable row level security", "create policy p on sp using (true)",
         "select fstore.build_training_table('x', 'pg_temp.sp'::regclass, array['fg:amount'], 'event_time', null,"
         " false, null, '{}', null, 0, '')", match="reads a spine only from an ordinary temporary table"),
    deny("scientist_spine_with_child", "bob", "begin", "create temp table sp (id bigint, event_time timestamptz)",
         "create temp table sp_child () inherits (sp)",
         "select fstore.build_training_table('x', 'pg_temp.sp'::regclass, array['fg:amount'], 'event_time', null,"
         " false, null, '{}', null, 0, '')", match="reads a spine only from an ordinary temporary table"),
    deny("scientist_spine_of_own_type", "bob", "begin", "create domain pg_temp.d as bigint check (value > 0)",
         "create temp table sp (id pg_temp.d, event_time timestamptz)",
         "select fstore.build_training_table('x', 'pg_temp.sp'::regclass, array['fg:amount'], 'event_time', null,"
         " false, null, '{}', null, 0, '')", match="has a column of a type of its own"),
    deny("scientist_td_updated", "bob", "begin", "create temp table sp (id bigint, event_time timestamptz)",
         "insert into sp values (1, now())",
         "select rows from fstore.create_training_table('bobs', 'pg_temp.sp'::regclass, array['fg:amount'])",
         "update {a}.bobs__td1 set amount = 1", match="permission denied for table bobs__td1"),
    deny("owner_deletes_td_rows", "alice", "begin", "create temp table sp (id bigint, event_time timestamptz)",
         "insert into sp values (1, now())",
         "select rows from fstore.create_training_table('alices', 'pg_temp.sp'::regclass, array['fg:amount'])",
         "set local role {a}__owner", "delete from {a}.alices__td1",
         match="a training dataset is stored once and never changed"),
    deny("owner_appends_td_rows", "alice", "begin", "create temp table sp (id bigint, event_time timestamptz)",
         "insert into sp values (1, now())",
         "select rows from fstore.create_training_table('alices', 'pg_temp.sp'::regclass, array['fg:amount'])",
         "set local role {a}__owner", "insert into {a}.alices__td1 select * from {a}.alices__td1",
         match="a training dataset is stored once and never changed"),
    deny("rw_partner_updates_td", "frank", "update {a}.{td} set amount = 1", match="permission denied for table {td}"),
    deny("rw_partner_deletes_td", "frank", "delete from {a}.{td}", match="permission denied for table {td}"),
    deny("rw_partner_appends_td", "frank", "insert into {a}.{td} select * from {a}.{td}",
         match="permission denied for table {td}"),
    deny("owner_truncates_td", "alice", AS_OWNER, "truncate {a}.{td}",
         match="a training dataset is stored once and never changed"),
    deny("owner_alters_td", "alice", AS_OWNER, "alter table {a}.{td} add column extra int",
         match="no new columns: a training dataset is stored once"),
    deny("owner_drops_td_table", "alice", AS_OWNER, "drop table {a}.{td}",
         match="drop it with fstore.drop_feature_group or fstore.drop_training_dataset"),
    # fstore's builder reads a stored dataset again (a feature view's fit): its name must keep naming it
    deny("owner_renames_td_table", "alice", AS_OWNER, "alter table {a}.{td} rename to x",
         match="belongs to a training dataset and cannot be renamed"),
    deny("owner_moves_td_table", "alice", AS_OWNER, "alter table {a}.{td} set schema public",
         match="permission denied for schema public"),
    allow("partner_reads_td", "carol", "select count(*) from {a}.{td}", rows=[(1,)]),
    deny("member_rewrites_td_record", "alice", "update fstore.training_datasets set rows = 0",
         match="permission denied for table training_datasets"),
    deny("member_rewrites_export_record", "bob", "update fstore.training_dataset_exports set path = 'x'",
         match="permission denied for table training_dataset_exports"),
    allow("scientist_builds_a_dataset", "bob", "begin", "create temp table sp (id bigint, event_time timestamptz)",
          "insert into sp values (1, now()), (2, now())",
          "select rows, created_by = session_user from fstore.create_training_table('bobs', 'pg_temp.sp'::regclass, "
          "array['fg:amount'])", rows=[(2, True)]),
    allow("scientist_export_record_is_his", "bob", "begin", "create temp table sp (id bigint, event_time timestamptz)",
          "insert into sp values (1, now())",
          "select fstore.record_training_export((select id from fstore.create_training_table('bobs', 'pg_temp.sp'::regclass,"
          " array['fg:amount'])), 'csv', '/tmp/bobs.csv', 1)",
          "select e.by = session_user from fstore.training_dataset_exports e order by e.id desc limit 1",
          rows=[(True,)]),
]

CASES = ESCAPE + TROJANS + GUARD_BYPASSES + HISTORY + PROVENANCE


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_tenant_code_attack(case: Case, world, tally) -> None:
    run_case(world.conn(case.actor), case, world.names)
    tally.add(case.kind, case.id)
