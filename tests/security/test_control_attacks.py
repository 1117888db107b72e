"""Attacks on the control plane: every control function called without the right and
with hostile arguments (quotes, ``;``, ``__``, 64-byte names, NULLs, other projects'
role names, ``fstore_admin``/``postgres``/``pg_read_server_files``), and reads of
other projects' catalog rows under the catalog's row-level security.
"""

from __future__ import annotations

import pytest

from tests.security.attack import Case, allow, deny, hide, run_case

NO_EXECUTE = "permission denied for function {}"
NOT_DATA_OWNER = "only a Data Owner of project {} may"
BAD_PROJECT = "invalid project name"
BAD_USER = "invalid user name"
LONG = "x" * 64  # one byte over PostgreSQL's identifier limit

NEW_FEATURE = '[{"name": "added", "type": "integer"}]'
FG_ARGS = "'fg', 1, array['id'], 'event_time', '[]'::jsonb, false, null, '', '{}'::text[], true, '{}'::jsonb, '[]'::jsonb"


def call(function: str, *args: object) -> tuple[str, tuple[object, ...]]:
    """A step calling ``fstore.function(args)`` with the arguments as parameters."""
    placeholders = ", ".join(["%s"] * len(args))
    return (f"select fstore.{function}({placeholders})", args)


def no_right(id: str, actor: str, function: str, *args: object) -> Case:
    """``actor`` holds no EXECUTE on ``function``."""
    return deny(id, actor, call(function, *args), match=NO_EXECUTE.format(function))


WITHOUT_THE_RIGHT: list[Case] = [
    # the admin creates and deletes projects and blocks users, and nothing else
    no_right("admin_add_member", "admin", "add_member", "{a}", "mallory", "data-owner"),
    no_right("admin_add_self", "admin", "add_member", "{a}", "fstore_admin", "data-owner"),
    no_right("admin_set_member_role", "admin", "set_member_role", "{a}", "bob", "data-owner"),
    no_right("admin_remove_member", "admin", "remove_member", "{a}", "bob"),
    no_right("admin_share", "admin", "share_project", "{a}", "{d}", False),
    no_right("admin_unshare", "admin", "unshare_project", "{a}", "{b}"),
    no_right("admin_record_policies", "admin", "set_row_policies", "{a}", "[]"),
    no_right("admin_grants_role", "admin", "roles_grant", "{a}__owner", "fstore_admin", True),
    no_right("admin_creates_project_role", "admin", "roles_create", "{a}__mallory", True, True),
    no_right("admin_grant_reads", "admin", "grant_project_reads", "{a}", "{d}", True),
    no_right("admin_revoke_reads", "admin", "revoke_project_reads", "{a}", "{b}"),
    no_right("admin_create_member_role", "admin", "create_member_role", "{a}", "mallory", "data_owner"),
    no_right("admin_end_sessions", "admin", "end_sessions", ["{alice}"]),
    no_right("admin_require_admin_helper", "admin", "require_admin", "x"),
    deny("admin_register_fg", "admin", f"select fstore.register_feature_group('{{a}}', {FG_ARGS})",
         match=NOT_DATA_OWNER.format("{a}")),
    deny("admin_describe_fg", "admin", call("describe_feature_group", "{fg}", "x", None, None, None),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("admin_begin_commit", "admin", call("begin_commit", "{fg}", "x"), state="P0002", match="does not exist"),
    # Data Owners of A manage A only; project-users never create, delete or block
    no_right("owner_create_project", "alice", "create_project", "{a}_x", "alice"),
    no_right("owner_delete_project", "alice", "delete_project", "{a}"),
    no_right("owner_delete_other_project", "carol", "delete_project", "{a}"),
    no_right("owner_block_user", "alice", "block_user", "bob"),
    no_right("owner_unblock_user", "carol", "unblock_user", "bob"),
    no_right("owner_grants_role", "alice", "roles_grant", "{b}__owner", "{alice}", True),
    no_right("owner_sets_login", "alice", "roles_set_login", "{bob}", False),
    no_right("owner_drops_role", "alice", "roles_drop", "{bob}"),
    no_right("owner_secures_as_control", "alice", "retire_certificates", ["{carol}"]),
    no_right("owner_grant_reads", "hank", "grant_project_reads", "{a}", "{d}", True),
    no_right("owner_revoke_reads", "alice", "revoke_project_reads", "{b}", "{a}"),
    no_right("owner_create_member_role", "alice", "create_member_role", "{b}", "mallory", "data_owner"),
    no_right("owner_end_sessions", "alice", "end_sessions", ["{carol}"]),
    deny("owner_require_data_owner_helper", "hank", call("require_data_owner", "{a}", "x"),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("other_owner_add_member", "carol", call("add_member", "{a}", "mallory", "data-owner"),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("other_owner_add_self", "hank", call("add_member", "{a}", "hank", "data-owner"),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("other_owner_promotes", "carol", call("set_member_role", "{a}", "bob", "data-owner"),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("other_owner_removes", "frank", call("remove_member", "{a}", "bob"), match=NOT_DATA_OWNER.format("{a}")),
    deny("ro_owner_upgrades_share", "carol", call("share_project", "{a}", "{b}", False),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("unshared_owner_shares_a", "hank", call("share_project", "{a}", "{d}", True),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("rw_owner_unshares", "frank", call("unshare_project", "{a}", "{b}"), match=NOT_DATA_OWNER.format("{a}")),
    deny("other_owner_sets_policies", "carol", call("set_row_policies", "{a}", "[]"),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("other_owner_registers_fg", "frank", f"select fstore.register_feature_group('{{a}}', {FG_ARGS})",
         match=NOT_DATA_OWNER.format("{a}")),
    deny("other_owner_describes_fg", "carol", call("describe_feature_group", "{fg}", "x", None, None, None),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("unshared_begin_commit", "hank", call("begin_commit", "{fg}", "x"), state="P0002", match="does not exist"),
    deny("ro_owner_begin_commit", "carol", call("begin_commit", "{fg}", "x"), match="may not write feature group"),
    # Data Scientists hold none of the management functions
    no_right("scientist_add_member", "bob", "add_member", "{a}", "mallory", "data-owner"),
    no_right("scientist_promotes_self", "bob", "set_member_role", "{a}", "bob", "data-owner"),
    no_right("scientist_removes_owner", "bob", "remove_member", "{a}", "alice"),
    no_right("scientist_shares", "bob", "share_project", "{a}", "{d}", False),
    no_right("scientist_unshares", "bob", "unshare_project", "{a}", "{b}"),
    no_right("scientist_sets_policies", "bob", "set_row_policies", "{a}", "[]"),
    no_right("other_scientist_sets_policies", "dave", "set_row_policies", "{a}", "[]"),
    deny("scientist_registers_fg", "bob", f"select fstore.register_feature_group('{{a}}', {FG_ARGS})",
         match=NOT_DATA_OWNER.format("{a}")),
    deny("scientist_describes_fg", "bob", call("describe_feature_group", "{fg}", "x", None, None, None),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("scientist_creates_fg", "bob",
         "select fstore.create_feature_group('{a}', 'fg2', 1, array['id'], 'event_time', "
         "'[{\"name\": \"id\", \"type\": \"bigint\"}]'::jsonb)", match="SET ROLE {a}__owner first"),
    deny("scientist_begin_commit", "bob", call("begin_commit", "{fg}", "x"), match="may not write feature group"),
    deny("scientist_commits_rows", "bob", "create temp table stage (id bigint, amount float8, event_time timestamptz)",
         "select fstore.commit_feature_rows({fg}, 'pg_temp.stage'::regclass)", match="may not write feature group"),
    deny("scientist_secures_table", "bob", "select fstore.secure_table('{a}.t'::regclass)", match="may not secure table"),
    deny("other_owner_secures_table", "carol", "select fstore.secure_table('{a}.t'::regclass)",
         match="may not secure table"),
    # validation rules and training datasets (each function checks the caller itself)
    deny("scientist_sets_validation", "bob", call("set_validation_rules", "{fg}", "[]", "warn"),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("ro_owner_sets_validation", "carol", call("set_validation_rules", "{fg}", "[]", "warn"),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("unshared_sets_validation", "hank", call("set_validation_rules", "{fg}", "[]", "warn"), state="P0002",
         match="does not exist"),
    deny("admin_creates_temp_table", "admin", "create temp table spine (_row bigint)",
         match="permission denied to create temporary tables"),
    deny("admin_stores_training_table", "admin",
         "select fstore.store_training_table('x', 'pg_catalog.pg_class'::regclass, '{}'::jsonb)",
         match="permission denied for function store_training_table"),
    deny("admin_drops_training_dataset", "admin", call("drop_training_dataset", "x", 1),
         match="not a member of any project"),
    deny("admin_resolves_features", "admin", call("resolve_features", ["fg.amount"], False),
         match="not a member of any project"),
    deny("unshared_drops_training_dataset", "hank", call("drop_training_dataset", "fg", 1), state="P0002",
         match="does not exist"),
    deny("unshared_records_export", "hank", call("record_training_export", 1, "csv", "/tmp/x", 1), state="P0002",
         match="does not exist or is not visible"),
    deny("finish_unknown_commit", "bob", call("finish_commit", -1, 1, 0, None, None, None, None),
         match="is not open in this session"),
    # adding features: the table half needs the owner role, the catalog half a Data Owner of the project
    deny("scientist_adds_features", "bob", call("add_features", "{fg}", NEW_FEATURE), match="SET ROLE {a}__owner first"),
    deny("scientist_becomes_owner_to_add", "bob", "set role {a}__owner", match="permission denied to set role"),
    deny("scientist_registers_added_features", "bob", call("register_added_features", "{fg}", NEW_FEATURE),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("ro_owner_adds_features", "carol", call("add_features", "{fg}", NEW_FEATURE), match="SET ROLE {a}__owner first"),
    deny("rw_owner_registers_added_features", "frank", call("register_added_features", "{fg}", NEW_FEATURE),
         match=NOT_DATA_OWNER.format("{a}")),
    deny("unshared_registers_added_features", "hank", call("register_added_features", "{fg}", NEW_FEATURE),
         state="P0002", match="does not exist"),
    deny("admin_registers_added_features", "admin", call("register_added_features", "{fg}", NEW_FEATURE),
         state="P0002", match="does not exist"),
    deny("owner_registers_a_column_not_on_the_table", "alice", call("register_added_features", "{fg}", NEW_FEATURE),
         state="42703", match="is not on the offline table"),
    # drift reads a group's rows with the caller's rights: a group the caller cannot see does not exist
    deny("unshared_measures_drift", "hank", call("feature_drift", "{fg}", '{"commit": 1}', '{"after_commit": 1}'),
         state="P0002", match="does not exist or is not visible"),
    deny("admin_measures_drift", "admin", call("feature_drift", "{fg}", '{"commit": 1}', '{"after_commit": 1}'),
         state="P0002", match="does not exist or is not visible"),
    deny("drift_window_injection", "bob",
         call("feature_drift", "{fg}", '{"from": "2024-01-01\'; drop table t; --"}', '{"commit": 1}'),
         state="22023", match="from/to timestamps"),
    allow("owner_adds_features", "alice", "begin", "set local role {a}__owner",
          call("add_features", "{fg}", NEW_FEATURE), rows=[(1,)]),  # rolled back by the session reset
]

HOSTILE_ARGUMENTS: list[Case] = [
    # create_project (admin): names are validated before anything is made
    *[deny(f"create_project_name_{tag}", "admin", call("create_project", name, "alice"), state="22023",
           match=BAD_PROJECT)
      for tag, name in [("quote", "x'y"), ("semicolon", "ab;drop table x"), ("double_underscore", "a__b"),
                        ("64_bytes", LONG), ("null", None), ("upper_case", "Pz"), ("role_name", "{a}__owner"),
                        ("one_char", "a"), ("trailing_underscore", "ab_"), ("space", "a b")]],
    *[deny(f"create_project_owner_{tag}", "admin", call("create_project", "{a}_new", owner), state="22023",
           match=BAD_USER)
      for tag, owner in [("quote", "o'neil"), ("null", None), ("double_underscore", "a__b"), ("reserved", "owner"),
                         ("semicolon", "x; drop role fstore_admin")]],
    deny("create_project_owner_61_bytes", "admin", call("create_project", "{a}_new", "u" * 61), state="22023",
         match=BAD_USER),
    *[deny(f"create_project_reserved_{tag}", "admin", call("create_project", name, "alice"), state="22023",
           match="is reserved")
      for tag, name in [("fstore_schema", "fstore"), ("public_schema", "public"), ("pg_catalog", "pg_catalog"),
                        ("pg_prefix", "pg_read_server_files"), ("postgres", "postgres"),
                        ("admin_role", "fstore_admin"), ("information_schema", "information_schema"),
                        ("fstore_prefix", "fstorex")]],
    deny("create_project_named_like_a_role", "admin", call("create_project", "{alice}x", "alice"), state="22023",
         match=BAD_PROJECT),
    deny("create_project_trailing_newline", "admin", call("create_project", "ab\n", "alice"), state="22023",
         match=BAD_PROJECT),
    hide("create_project_pg_prefix_leaves_nothing", "admin",
         "do $$ begin perform fstore.create_project('pg_x_{a}', 'alice'); exception when others then null; end $$",
         "select (select count(*) from pg_roles where rolname like 'pg\\_x\\_{a}%') "
         "+ (select count(*) from pg_namespace where nspname = 'pg_x_{a}') "
         "+ (select count(*) from fstore.projects where name = 'pg_x_{a}')", rows=[(0,)]),
    deny("delete_project_postgres", "admin", call("delete_project", "postgres"), state="22023", match="is reserved"),
    deny("share_with_postgres", "alice", call("share_project", "{a}", "postgres", True), state="22023",
         match="is reserved"),
    deny("create_project_existing", "admin", call("create_project", "{a}", "mallory"), state="42710",
         match="project {a} already exists"),
    # delete_project (admin): never anything that is not a project
    deny("delete_fstore_schema", "admin", call("delete_project", "fstore"), state="22023", match="is reserved"),
    deny("delete_public_schema", "admin", call("delete_project", "public"), state="22023", match="is reserved"),
    deny("delete_null", "admin", call("delete_project", None), state="22023", match=BAD_PROJECT),
    deny("delete_injection", "admin", call("delete_project", "{a}; drop schema fstore cascade"), state="22023",
         match=BAD_PROJECT),
    # block_user (admin)
    deny("block_null", "admin", call("block_user", None), state="22023", match=BAD_USER),
    deny("block_semicolon", "admin", call("block_user", "x;y"), state="22023", match=BAD_USER),
    deny("block_role_name", "admin", call("block_user", "{alice}"), state="22023", match=BAD_USER),
    deny("unblock_quote", "admin", call("unblock_user", "x'y"), state="22023", match=BAD_USER),
    # add_member (A's Data Owner)
    *[deny(f"add_member_user_{tag}", "alice", call("add_member", "{a}", user, "data-scientist"), state="22023",
           match=BAD_USER)
      for tag, user in [("quote", "x'y"), ("semicolon", "e;ve"), ("double_underscore", "e__ve"), ("64_bytes", LONG),
                        ("null", None), ("reserved_owner", "owner"), ("reserved_scientist", "data_scientist"),
                        ("other_role", "{bob}"), ("upper_case", "Eve")]],
    deny("add_member_role_too_long", "alice", call("add_member", "{a}", "e" * 60, "data-scientist"), state="22023",
         match="longer than 63 bytes"),
    deny("add_member_kind_null", "alice", call("add_member", "{a}", "eve", None), state="22023",
         match="invalid project role"),
    deny("add_member_kind_superuser", "alice", call("add_member", "{a}", "eve", "superuser"), state="22023",
         match="invalid project role"),
    deny("add_member_kind_owner", "alice", call("add_member", "{a}", "eve", "owner"), state="22023",
         match="invalid project role"),
    deny("add_member_existing", "alice", call("add_member", "{a}", "bob", "data-owner"), state="42710",
         match="already a member"),
    deny("add_member_project_role_name", "alice", call("add_member", "{a}__owner", "eve", "data-owner"),
         state="22023", match=BAD_PROJECT),
    deny("add_member_project_fstore", "alice", call("add_member", "fstore", "eve", "data-owner"), state="22023",
         match="is reserved"),
    deny("add_member_project_null", "alice", call("add_member", None, "eve", "data-owner"), state="22023",
         match=BAD_PROJECT),
    # set_member_role / remove_member
    deny("set_role_last_owner", "alice", call("set_member_role", "{a}", "alice", "data-scientist"), state="55000",
         match="last Data Owner"),
    deny("set_role_kind_admin", "alice", call("set_member_role", "{a}", "bob", "admin"), state="22023",
         match="invalid project role"),
    deny("set_role_not_member", "alice", call("set_member_role", "{a}", "carol", "data-owner"), state="P0002",
         match="not a member"),
    deny("remove_last_owner", "alice", call("remove_member", "{a}", "alice"), state="55000", match="last Data Owner"),
    deny("remove_injection", "alice", call("remove_member", "{a}", "x'; drop role {bob}; --"), state="22023",
         match=BAD_USER),
    deny("remove_other_projects_member", "alice", call("remove_member", "{a}", "dave"), state="P0002",
         match="not a member"),
    # share_project / unshare_project
    deny("share_with_self", "alice", call("share_project", "{a}", "{a}", True), state="22023",
         match="cannot be shared with itself"),
    deny("share_with_missing", "alice", call("share_project", "{a}", "nope_x1", True), state="P0002",
         match="does not exist"),
    deny("share_with_fstore", "alice", call("share_project", "{a}", "fstore", True), state="22023",
         match="is reserved"),
    deny("share_with_null", "alice", call("share_project", "{a}", None, True), state="22023", match=BAD_PROJECT),
    deny("share_with_role_name", "alice", call("share_project", "{a}", "{b}__data_owner", False), state="22023",
         match=BAD_PROJECT),
    deny("unshare_not_shared", "alice", call("unshare_project", "{a}", "{d}"), state="P0002",
         match="is not shared with"),
    # set_row_policies: a structured predicate the database renders itself; no free text at all
    *[deny(f"policy_{tag}", "alice", call("set_row_policies", "{a}", policies), state="22023", match=match)
      for tag, policies, match in [
          ("predicate_text", '[{"name": "x", "table": "t", "roles": ["data_scientist"], '
           '"using": "true); alter role {alice} superuser; select (1"}]', "structured tree"),
          ("column_injection", '[{"name": "x", "table": "t", "roles": ["everyone"], '
           '"predicate": {"column": "a\\"; drop table t; --"}}]', "invalid column name"),
          ("number_injection", '[{"name": "x", "table": "t", "roles": ["everyone"], '
           '"predicate": {"op": "=", "args": [{"column": "id"}, {"number": "1 or true"}]}}]', "invalid number"),
          ("function_query_to_xml", '[{"name": "x", "table": "t", "roles": ["everyone"], '
           '"predicate": {"function": "query_to_xml", "args": [{"string": "select 1"}]}}]', "not allowed"),
          ("function_pg_notify", '[{"name": "x", "table": "t", "roles": ["everyone"], '
           '"predicate": {"function": "pg_notify", "args": [{"string": "c"}, {"string": "x"}]}}]', "not allowed"),
          ("cast_to_tenant_type", '[{"name": "x", "table": "t", "roles": ["everyone"], '
           '"predicate": {"cast": {"column": "v"}, "type": "pg_temp.evil"}}]', "not allowed"),
          ("operator_unknown", '[{"name": "x", "table": "t", "roles": ["everyone"], '
           '"predicate": {"op": "||", "args": [{"column": "v"}, {"string": "x"}]}}]', "not allowed"),
          ("subquery_node", '[{"name": "x", "table": "t", "roles": ["everyone"], '
           '"predicate": {"sql": "exists (select 1 from {b}.secret)"}}]', "invalid node"),
          ("two_kinds", '[{"name": "x", "table": "t", "roles": ["everyone"], '
           '"predicate": {"column": "consent", "not": {"column": "consent"}}}]', "invalid node"),
          ("role_of_other_project", '[{"name": "x", "table": "t", "roles": ["{b}__owner"], '
           '"predicate": {"column": "consent"}}]', "roles must be"),
          ("role_postgres", '[{"name": "x", "table": "t", "roles": ["postgres"], "predicate": {"column": "consent"}}]',
           "roles must be"),
          ("table_regex", '[{"name": "x", "table": ".*", "roles": ["everyone"], "predicate": {"column": "consent"}}]',
           "invalid table"),
          ("name_quote", '[{"name": "x\\"y", "table": "t", "roles": ["everyone"], "predicate": {"column": "consent"}}]',
           "invalid name"),
          ("entity_injection", '[{"name": "x", "table": "t", "roles": ["everyone"], "entity": "id; drop table t", '
           '"predicate": {"column": "consent"}}]', "entity must name"),
          ("command_delete", '[{"name": "x", "table": "t", "roles": ["everyone"], "predicate": {"column": "consent"}, '
           '"command": "delete"}]', "command must be"),
          ("no_predicate", '[{"name": "x", "table": "t", "roles": ["everyone"]}]', "expected an object node"),
          ("not_a_list", '{"name": "x"}', "JSON array"),
          ("null", None, "JSON array"),
      ]],
]

CATALOG: list[Case] = [
    hide("unshared_sees_projects", "hank", "select name from fstore.projects order by 1", rows=[("{d}",)]),
    hide("owner_sees_projects", "alice", "select name from fstore.projects order by 1", rows=[("{a}",)]),
    hide("ro_sees_projects", "carol", "select name from fstore.projects order by 1", rows=[("{a}",), ("{b}",)]),
    hide("unshared_members", "hank", "select count(*) from fstore.members where project <> '{d}'", rows=[(0,)]),
    hide("ro_members_of_a", "carol", "select count(*) from fstore.members where project = '{a}'", rows=[(0,)]),
    hide("scientist_members_elsewhere", "bob", "select count(*) from fstore.members where project <> '{a}'",
         rows=[(0,)]),
    hide("unshared_shares", "hank", "select count(*) from fstore.shares", rows=[(0,)]),
    hide("rw_sees_only_its_shares", "frank", "select project, with_project, read_only from fstore.shares",
         rows=[("{a}", "{c}", False)]),
    hide("owner_others_audit", "alice", "select count(*) from fstore.audit_log where project is distinct from '{a}'",
         rows=[(0,)]),
    hide("ro_audit_of_a", "carol", "select count(*) from fstore.audit_log where project = '{a}'", rows=[(0,)]),
    hide("owner_others_certificates", "alice",
         "select count(*) from fstore.certificates where role_name <> '{alice}'", rows=[(0,)]),
    hide("scientist_admin_certificate", "bob",
         "select count(*) from fstore.certificates where role_name = 'fstore_admin'", rows=[(0,)]),
    hide("owner_blocked_users", "alice", "select count(*) from fstore.blocked_users", rows=[(0,)]),
    hide("ro_row_policies_of_a", "carol", "select count(*) from fstore.row_policies where project = '{a}'",
         rows=[(0,)]),
    hide("unshared_declared_policies", "hank", "select count(*) from fstore.row_policies where project = '{a}'",
         rows=[(0,)]),
    hide("unshared_managed_tables", "hank", "select count(*) from fstore.managed_tables where project = '{a}'",
         rows=[(0,)]),
    hide("unshared_feature_groups", "hank", "select count(*) from fstore.feature_groups where project = '{a}'",
         rows=[(0,)]),
    hide("unshared_features", "hank", "select count(*) from fstore.features where feature_group_id = {fg}",
         rows=[(0,)]),
    hide("admin_feature_groups", "admin", "select count(*) from fstore.feature_groups where project = '{a}'",
         rows=[(0,)]),
    hide("unshared_visible_projects", "hank", "select fstore.visible_projects()", rows=[(["{d}"],)]),
    hide("other_session_query_text", "hank",
         "select count(*) from pg_stat_activity where usename <> current_user and query <> '<insufficient privilege>' "
         "and backend_type = 'client backend'", rows=[(0,)]),
    allow("scientist_members_of_a", "bob", "select count(*) from fstore.members where project = '{a}'", rows=[(2,)]),
    allow("ro_feature_groups_of_a", "carol", "select name from fstore.feature_groups where id = {fg}",
          rows=[("fg",)]),
    allow("admin_sees_every_project", "admin",
          "select count(*) from fstore.projects where name in ('{a}', '{b}', '{c}', '{d}')", rows=[(4,)]),
    allow("admin_sees_members", "admin", "select count(*) from fstore.members where project = '{a}'", rows=[(2,)]),
    allow("owner_sees_own_certificate", "alice",
          "select count(*) > 0 from fstore.certificates where role_name = '{alice}'", rows=[(True,)]),
    allow("owner_own_declared_policies", "alice", "select count(*) from fstore.row_policies where project = '{a}'",
          rows=[(1,)]),
]

CASES = WITHOUT_THE_RIGHT + HOSTILE_ARGUMENTS + CATALOG


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_control_attack(case: Case, world, tally) -> None:
    run_case(world.conn(case.actor), case, world.names)
    tally.add(case.kind, case.id)
