"""Distributed feature groups on the cluster (docs/cluster.md, "Data placement").

The world: project A (alice Data Owner, bob Data Scientist) with a declared row policy
``consent_only`` on feature group ``activity`` (Data Scientists see consenting rows
only), created after the policy, online, distributed by ``id``; ``risk`` (same key type,
co-located) and ``pairs`` (keys ``id``, ``user_id``, distributed by ``user_id``).
Project B (its own alice and bob) has no share of A; project C has a read-only share,
project D a read-write share. Every attack connects as the actor, with the actor's own
certificate, through the coordinator (tests/security/attack.py's vocabulary).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from fstore import InvalidInput, cluster, policies, projects, sandbox
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome
from tests.retrieval.conftest import SqlFeatureGroup, commit_rows, create_group
from tests.security.attack import Case, allow, deny, hide, run_case

ACTIVITY = {"id": "bigint", "event_time": "timestamptz", "clicks": "integer", "consent": "boolean"}
ROWS = [(i, f"2024-01-0{1 + i % 3}", i * 10, i % 4 != 0) for i in range(1, 9)]  # ids 4 and 8 do not consent
CONSENTING = [(i,) for i in range(1, 9) if i % 4 != 0]


def _shard_counts(op: psycopg.Connection[Any], table: str) -> dict[str, int]:
    """Rows of ``table`` on each of its shards, counted on the workers (superuser)."""
    return {f"{r[0]}": int(r[1]) for r in op.execute(
        "select shardid, result from run_command_on_shards(%s, 'select count(*) from %%s')", (table,))}


@pytest.fixture(scope="module")
def world(cluster_home: FstoreHome) -> Iterator[dict[str, Any]]:
    home = cluster_home
    a, b, c, d = (sandbox.create_project(home, prefix=f"cd{k}") for k in "abcd")
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        policies.apply_policies(alice, a, [policies.RowPolicy("consent_only", "activity", ("data_scientist",),
                                                              "consent")])
        activity = create_group(alice, a, "activity", ACTIVITY, ["id"], online=True, distribution_key="id")
        risk = create_group(alice, a, "risk", {"id": "bigint", "event_time": "timestamptz", "score": "float8"},
                            ["id"], online=True, distribution_key="id")
        with alice.transaction():
            alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{a}__owner")))
            pairs = alice.execute(
                "select fstore.create_feature_group(%s, 'pairs', 1, array['id', 'user_id'], 'event_time', %s::jsonb,"
                " p_online => true, p_options => '{\"distribution_key\": \"user_id\"}')",
                (a, json.dumps([{"name": "id", "type": "bigint"}, {"name": "user_id", "type": "bigint"},
                                {"name": "w", "type": "integer"}]))).fetchone()[0]
        commit_rows(alice, activity, ROWS)
        commit_rows(alice, risk, [(i, "2024-01-01", i / 10) for i in range(1, 9)])
        projects.share_project(alice, a, c)
        projects.share_project(alice, a, d, read_write=True)
    with connect_operator(home, autocommit=True) as op:
        shard = op.execute("select shard_name(logicalrelid, shardid) from pg_dist_shard where logicalrelid = %s::regclass"
                           " order by shardid limit 1", (f"{a}.activity__v1",)).fetchone()[0]
        online_shard = op.execute(
            "select shard_name(logicalrelid, shardid) from pg_dist_shard where logicalrelid = %s::regclass"
            " order by shardid limit 1", (f"{a}.activity__v1__online",)).fetchone()[0]
    yield {"home": home, "a": a, "b": b, "c": c, "d": d, "fg": activity.id, "activity": activity, "risk": risk,
           "pairs": pairs, "shard": shard, "online_shard": online_shard}


@pytest.fixture(scope="module")
def conns(world: dict[str, Any]) -> Iterator[dict[str, psycopg.Connection[Any]]]:
    opened: dict[str, psycopg.Connection[Any]] = {}
    for actor, (project, user) in {"alice": ("a", "alice"), "bob": ("a", "bob"), "b_alice": ("b", "alice"),
                                   "b_bob": ("b", "bob"), "c_alice": ("c", "alice"), "c_bob": ("c", "bob"),
                                   "d_alice": ("d", "alice")}.items():
        opened[actor] = connect(world["home"], f"{world[project]}__{user}", autocommit=True)
    yield opened
    for conn in opened.values():
        conn.close()


OFF = "{a}.activity__v1"
ON = "{a}.activity__v1__online"
ROW = "(100, 1, true, now(), 1)"
CASES: list[Case] = [
    # writes: only the commit pipeline, as fstore_writer, reaches the shards
    deny("scientist_inserts_offline", "bob", f"insert into {OFF} values {ROW}", match="permission denied for table"),
    deny("scientist_inserts_online", "bob", f"insert into {ON} values {ROW}", match="permission denied for table"),
    deny("scientist_updates_online", "bob", f"update {ON} set clicks = 0", match="permission denied for table"),
    deny("scientist_deletes_offline", "bob", f"delete from {OFF}", match="permission denied for table"),
    deny("owner_inserts_offline", "alice", f"insert into {OFF} values {ROW}", match="row-level security"),
    deny("owner_inserts_online", "alice", f"insert into {ON} values {ROW}", match="row-level security"),
    deny("owner_updates_online", "alice", f"update {ON} set clicks = 0 where id = 1", match="row-level security"),
    deny("owner_role_inserts_offline", "alice", "set role {a}__owner", f"insert into {OFF} values {ROW}",
         match="row-level security"),
    deny("owner_role_upserts_online", "alice", "set role {a}__owner",
         f"insert into {ON} values {ROW} on conflict (id) do update set clicks = 0", match="row-level security"),
    deny("owner_deletes_offline", "alice", f"delete from {OFF} where id = 1", match="append-only"),
    deny("owner_truncates_online", "alice", "set role {a}__owner", f"truncate {ON}", match="not allowed"),
    deny("owner_writes_batch_without_commit", "alice", "begin", "create temp table x (like {a}.activity__v1)",
         "select fstore.write_commit_batch({fg}, 'pg_temp.x'::regclass)", match="no commit .* is open"),
    deny("owner_batch_with_an_index", "alice", "begin", "select fstore.begin_commit({fg}, 'attack')",
         "create temp table x (like {a}.activity__v1)", "create index on x (id)",
         "select fstore.write_commit_batch({fg}, 'pg_temp.x'::regclass)", match="plain temporary table"),
    deny("owner_batch_is_the_table", "alice", "begin", "select fstore.begin_commit({fg}, 'attack')",
         f"select fstore.write_commit_batch({{fg}}, '{OFF}'::regclass)", match="plain temporary table"),
    deny("owner_batch_of_other_types", "alice", "begin", "select fstore.begin_commit({fg}, 'attack')",
         "create temp table x (id bigint, clicks text, consent boolean, event_time timestamptz)",
         "select fstore.write_commit_batch({fg}, 'pg_temp.x'::regclass)", state="42804", match="other types"),
    deny("scientist_begins_commit", "bob", "select fstore.begin_commit({fg}, 'attack')", match="may not write"),
    # shards: not on the coordinator, not listed, and the Citus functions that reach them are refused
    deny("scientist_reads_shard", "bob", "select * from {shard}", state="42P01", match="does not exist"),
    deny("owner_reads_online_shard", "alice", "select * from {online_shard}", state="42P01", match="does not exist"),
    hide("scientist_lists_shards", "bob",
         "select count(*) from pg_class where relname ~ '^activity__v1(__online)?_[0-9]+$'", rows=[(0,)]),
    deny("scientist_runs_on_shards", "bob", f"select run_command_on_shards('{OFF}', 'select 1')"),
    deny("owner_distributes_again", "alice", "set role {a}__owner",
         f"select alter_distributed_table('{OFF}', shard_count => 4)"),
    # the declared row policy holds on the shards
    hide("scientist_reads_offline", "bob", f"select distinct id from {OFF} order by id", rows=CONSENTING),
    hide("scientist_reads_online", "bob", f"select id from {ON} order by id", rows=CONSENTING),
    hide("scientist_looks_up_hidden_key", "bob", f"select clicks from {ON} where id = 4", rows=[]),
    hide("scientist_widens_the_filter", "bob", f"select id from {ON} where id = 8 or consent is null", rows=[]),
    hide("scientist_counts_hidden", "bob", f"select count(*) from {OFF} where not consent", rows=[(0,)]),
    hide("scientist_as_group_role", "bob", "set role {a}__data_scientist", f"select count(*) from {OFF}",
         rows=[(len(CONSENTING),)]),
    # other projects
    deny("other_project_reads_offline", "b_bob", f"select count(*) from {OFF}", match="permission denied for schema"),
    deny("other_owner_reads_online", "b_alice", f"select * from {ON} where id = 1",
         match="permission denied for schema"),
    deny("other_owner_begins_commit", "b_alice", "select fstore.begin_commit({fg}, 'attack')", state="P0002",
         match="not visible"),
    # share partners read what is shared: the rows A's row policy lets them see, and no writes
    hide("partner_reads_offline", "c_bob", f"select distinct id from {OFF} order by id", rows=CONSENTING),
    hide("partner_looks_up_hidden_key", "c_bob", f"select id from {ON} where id = 4", rows=[]),
    hide("partner_owner_reads_online", "c_alice", f"select id from {ON} order by id", rows=CONSENTING),
    deny("read_only_partner_begins_commit", "c_alice", "select fstore.begin_commit({fg}, 'attack')",
         match="may not write"),
    deny("read_only_partner_inserts", "c_alice", f"insert into {OFF} values {ROW}", match="permission denied"),
    deny("read_write_partner_inserts_directly", "d_alice", f"insert into {OFF} values {ROW}",
         match="row-level security"),
    # the allowed counterparts
    allow("owner_reads_offline", "alice", f"select distinct id from {OFF} order by id",
          rows=[(i,) for i in range(1, 9)]),
    allow("owner_looks_up_key", "alice", f"select clicks from {ON} where id = 4", rows=[(40,)]),
    allow("owner_role_reads_online", "alice", "set role {a}__owner", f"select count(*) from {ON}", rows=[(8,)]),
    allow("scientist_looks_up_key", "bob", f"select clicks from {ON} where id = 1", rows=[(10,)]),
    allow("partner_looks_up_key", "c_bob", f"select clicks from {ON} where id = 3", rows=[(30,)]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_distributed_attack(world: dict[str, Any], conns: dict[str, psycopg.Connection[Any]], case: Case) -> None:
    run_case(conns[case.actor], case, {k: v for k, v in world.items() if isinstance(v, (str, int))})


def test_groups_are_distributed_by_their_key_and_colocated(world: dict[str, Any]) -> None:
    a = world["a"]
    with connect_operator(world["home"], autocommit=True) as op:
        rows = {r[0]: r[1:] for r in op.execute(
            "select table_name::text, citus_table_type, distribution_column, colocation_id, shard_count"
            "  from citus_tables where table_name::text like %s", (f"{a}.%",))}
    assert set(rows) == {f"{a}.{t}{s}" for t in ("activity__v1", "risk__v1", "pairs__v1") for s in ("", "__online")}
    assert {r[0] for r in rows.values()} == {"distributed"}
    assert rows[f"{a}.activity__v1"][1] == rows[f"{a}.activity__v1__online"][1] == "id"
    assert rows[f"{a}.pairs__v1"][1] == rows[f"{a}.pairs__v1__online"][1] == "user_id"
    colocations = {r[2] for r in rows.values()}
    assert len(colocations) == 1, "every bigint-keyed group shares one colocation group"
    status = cluster.cluster_status(world["home"])
    table = next(t for t in status["tables"] if t["table"] == f"{a}.activity__v1")
    assert sum(table["placements"].values()) == table["shards"] and len(table["placements"]) == 2


@pytest.mark.parametrize("key,message", [("clicks", "'clicks' is not an entity key of bad"),
                                         ("nope", "'nope' is not an entity key of bad")])
def test_distribution_key_must_name_a_key(world: dict[str, Any], conns: dict[str, psycopg.Connection[Any]],
                                          key: str, message: str) -> None:
    alice = conns["alice"]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        with alice.transaction():
            alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{world['a']}__owner")))
            alice.execute("select fstore.create_feature_group(%s, 'bad', 1, array['id'], 'event_time', %s::jsonb,"
                          " p_options => %s::jsonb)",
                          (world["a"], json.dumps([{"name": "id", "type": "bigint"}, {"name": "clicks",
                                                                                       "type": "integer"}]),
                           json.dumps({"distribution_key": key})))


def test_online_lookup_is_a_router_query(world: dict[str, Any], conns: dict[str, psycopg.Connection[Any]]) -> None:
    plan = "\n".join(r[0] for r in conns["bob"].execute(
        sql.SQL("explain select * from {}.activity__v1__online where id = %s").format(sql.Identifier(world["a"])),
        (3,)))
    assert "Task Count: 1" in plan and "Index Scan" in plan, plan
    assert "pg_has_role(SESSION_USER" in plan, "the row policy is evaluated on the shard"


def test_join_of_colocated_groups_is_pushed_down(world: dict[str, Any],
                                                 conns: dict[str, psycopg.Connection[Any]]) -> None:
    a = sql.Identifier(world["a"])
    plan = "\n".join(r[0] for r in conns["alice"].execute(sql.SQL(
        "explain select o.id, o.clicks, r.score from {}.activity__v1 o"
        " join lateral (select score from {}.risk__v1 r where r.id = o.id and r.event_time <= o.event_time"
        "               order by r.event_time desc limit 1) r on true").format(a, a)))
    assert "Task Count: 32" in plan and "repartition" not in plan.lower(), plan


def test_commit_is_atomic_on_every_shard(world: dict[str, Any], conns: dict[str, psycopg.Connection[Any]]) -> None:
    alice, a = conns["alice"], world["a"]
    table = f"{a}.activity__v1"
    with connect_operator(world["home"], autocommit=True) as op:
        before = _shard_counts(op, table)
        commits = op.execute("select count(*) from fstore.commits where feature_group_id = %s",
                             (world["fg"],)).fetchone()[0]
        with pytest.raises(psycopg.errors.DivisionByZero):
            with alice.transaction():
                commit_rows(alice, world["activity"], [(200 + i, "2024-02-01", i, True) for i in range(50)])
                alice.execute("select 1 / 0")
        assert _shard_counts(op, table) == before
        assert _shard_counts(op, table + "__online") == _shard_counts(op, table + "__online")
        assert op.execute("select count(*) from fstore.commits where feature_group_id = %s",
                          (world["fg"],)).fetchone()[0] == commits
        prepared = op.execute("select result from run_command_on_workers('select count(*) from pg_prepared_xacts')")
        assert [r[0] for r in prepared] == ["0", "0"]
    assert alice.execute(sql.SQL("select count(*) from {}.activity__v1 where id >= 200").format(
        sql.Identifier(a))).fetchone()[0] == 0


def test_commit_spreads_over_shards_and_online_is_newer_only(world: dict[str, Any],
                                                             conns: dict[str, psycopg.Connection[Any]]) -> None:
    alice, a = conns["alice"], sql.Identifier(world["a"])
    group = world["risk"]
    commit_rows(alice, group, [(300 + i, "2024-03-02", 1.0) for i in range(40)])
    commit_rows(alice, group, [(300 + i, "2024-03-01", 2.0) for i in range(40)])  # older: online keeps 1.0
    assert alice.execute(sql.SQL("select count(*), min(score), max(score) from {}.risk__v1__online"
                                 " where id >= 300").format(a)).fetchone() == (40, 1.0, 1.0)
    assert alice.execute(sql.SQL("select count(*) from {}.risk__v1 where id >= 300").format(a)).fetchone()[0] == 80
    with connect_operator(world["home"], autocommit=True) as op:
        counts = _shard_counts(op, f"{world['a']}.risk__v1")
    assert sum(counts.values()) == 88 and sum(1 for n in counts.values() if n) > 10, counts


def test_read_write_partner_commits_through_the_pipeline(world: dict[str, Any],
                                                         conns: dict[str, psycopg.Connection[Any]]) -> None:
    partner = conns["d_alice"]
    commit = commit_rows(partner, world["activity"], [(500, "2024-04-01", 5, True)])
    row = conns["alice"].execute(sql.SQL("select clicks, _commit_id from {}.activity__v1__online where id = 500")
                                 .format(sql.Identifier(world["a"]))).fetchone()
    assert row == (5, commit)


def test_row_policies_changed_after_distribution_reach_the_shards(world: dict[str, Any],
                                                                  conns: dict[str, psycopg.Connection[Any]]) -> None:
    alice, bob, a = conns["alice"], conns["bob"], world["a"]
    query = sql.SQL("select distinct id from {}.activity__v1 where id < 100 order by id").format(sql.Identifier(a))
    declared = [policies.RowPolicy("consent_only", "activity", ("data_scientist",), "consent")]
    policies.apply_policies(alice, a, [*declared, policies.RowPolicy("few_clicks", "activity", ("data_scientist",),
                                                                     "clicks < 50")])
    try:
        assert bob.execute(query).fetchall() == [(i,) for i in range(1, 5) if i % 4 != 0]
        assert alice.execute(query).fetchall() == [(i,) for i in range(1, 9)]
    finally:
        policies.apply_policies(alice, a, declared)
    assert bob.execute(query).fetchall() == CONSENTING



HIDE_VIP = policies.RowPolicy("hide_vip", "accounts", ("data_scientist",), "not vip", entity="id")


def _default_group(alice: psycopg.Connection[Any], project: str, name: str) -> Any:
    """An online ACTIVITY group created with no options (the default placement)."""
    with alice.transaction():
        alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{project}__owner")))
        fg_id = alice.execute(
            "select fstore.create_feature_group(%s, %s, 1, array['id'], 'event_time', %s::jsonb, true)",
            (project, name, json.dumps([{"name": n, "type": t} for n, t in ACTIVITY.items()]))).fetchone()[0]
    return SqlFeatureGroup(fg_id, project, name, 1, ("id",), tuple(ACTIVITY))


def _accounts(alice: psycopg.Connection[Any], project: str) -> None:
    """The entity table of HIDE_VIP: accounts 4 and 8 are VIPs."""
    with alice.transaction():
        alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{project}__owner")))
        alice.execute(sql.SQL("create table {}.accounts (id bigint primary key, vip boolean not null)").format(
            sql.Identifier(project)))
    alice.execute(sql.SQL("insert into {}.accounts select g, g in (4, 8) from generate_series(1, 8) g").format(
        sql.Identifier(project)))


def test_a_group_an_entity_policy_governs_stays_on_the_coordinator(cluster_home: FstoreHome) -> None:
    """Citus allows no subquery in a distributed table's policies, and an entity policy reads its
    entity table with one: a group created after such a policy stays on the coordinator, where
    the Data Scientist (own certificate) sees none of the hidden accounts' rows; asking for its
    distribution by name is refused, naming the policy."""
    e = sandbox.create_project(cluster_home, prefix="cde")
    with connect(cluster_home, f"{e}__alice", autocommit=True) as alice, \
            connect(cluster_home, f"{e}__bob", autocommit=True) as bob:
        _accounts(alice, e)
        policies.apply_policies(alice, e, [HIDE_VIP])
        notices: list[str] = []
        alice.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        group = _default_group(alice, e, "governed")
        assert any("stays on the coordinator: entity policy hide_vip" in n for n in notices), notices
        assert alice.execute("select fstore.is_distributed(%s::regclass), fstore.is_distributed(%s::regclass)",
                             (f"{e}.governed__v1", f"{e}.governed__v1__online")).fetchone() == (False, False)
        commit_rows(alice, group, ROWS)
        for table in ("governed__v1", "governed__v1__online"):
            query = sql.SQL("select distinct id from {}.{} order by id").format(sql.Identifier(e),
                                                                                  sql.Identifier(table))
            assert bob.execute(query).fetchall() == [(i,) for i in range(1, 9) if i not in (4, 8)]
            assert alice.execute(query).fetchall() == [(i,) for i in range(1, 9)]
        with pytest.raises(psycopg.errors.FeatureNotSupported,
                           match=r"cannot be distributed: entity policy hide_vip \(column id of accounts\) governs it"):
            with alice.transaction():
                alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{e}__owner")))
                alice.execute("select fstore.create_feature_group(%s, 'asked', 1, array['id'], 'event_time',"
                              " %s::jsonb, p_options => '{\"distribution_key\": \"id\"}')",
                              (e, json.dumps([{"name": "id", "type": "bigint"}, {"name": "w", "type": "integer"}])))


def test_an_entity_policy_over_a_distributed_group_is_refused_by_name(cluster_home: FstoreHome) -> None:
    """Declared over a group already distributed, the entity policy is refused with an error that
    names it and why; the project's earlier policies stay as they were, and the Data Scientist
    (own certificate) sees exactly what they saw before."""
    e = sandbox.create_project(cluster_home, prefix="cdf")
    consent = policies.RowPolicy("consent_only", "early", ("data_scientist",), "consent")
    with connect(cluster_home, f"{e}__alice", autocommit=True) as alice, \
            connect(cluster_home, f"{e}__bob", autocommit=True) as bob:
        policies.apply_policies(alice, e, [consent])
        early = _default_group(alice, e, "early")
        assert alice.execute("select fstore.is_distributed(%s::regclass)", (f"{e}.early__v1",)).fetchone() == (True,)
        commit_rows(alice, early, ROWS)
        _accounts(alice, e)
        query = sql.SQL("select distinct id from {}.early__v1 order by id").format(sql.Identifier(e))
        assert bob.execute(query).fetchall() == CONSENTING
        with pytest.raises(InvalidInput,
                           match=r"entity policy hide_vip cannot hold on distributed table .*early__v1.*no subquery"):
            policies.apply_policies(alice, e, [consent, HIDE_VIP])
        assert bob.execute(query).fetchall() == CONSENTING  # neither widened nor half applied
        assert bob.execute(sql.SQL("select count(*) from {}.early__v1__online where id in (4, 8)").format(
            sql.Identifier(e))).fetchone()[0] == 0  # 4 and 8 do not consent
        assert alice.execute("select array_agg(name order by name) from fstore.row_policies where project = %s",
                             (e,)).fetchone()[0] == ["consent_only"]
