"""Distributed spines on a cluster (sql/functions/44_spines.sql, docs/cluster.md "Spines and
training tables on a cluster").

The world: project A (alice Data Owner, bob and carol Data Scientists) with two groups
``left_side`` and ``right_side`` distributed by ``account_id`` (co-located) and ``by_merchant``
distributed by ``merchant_id`` (bigint too: co-located, but keyed by another spine column);
project B (its own alice and bob) with no share of A; project C with a read-only share of A.
Every attack connects as the actor, with the actor's own certificate, through the coordinator.
"""

from __future__ import annotations

import datetime as dt
import re
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
BASE = dt.datetime(2024, 3, 1, tzinfo=UTC)
RISK = {"account_id": "bigint", "event_time": "timestamptz", "score": "double precision"}
MERCHANT = {"merchant_id": "bigint", "event_time": "timestamptz", "m_score": "double precision"}
ENTITIES = list(range(1, 61))
DAYS = [BASE + dt.timedelta(days=d) for d in range(6)]


def left_value(e: int, d: int) -> float:
    return e * 10.0 + d


def right_value(e: int, d: int) -> float:
    return -e - d / 10


@pytest.fixture(scope="module")
def world(cluster_home: FstoreHome) -> Iterator[dict[str, Any]]:
    home = cluster_home
    a, b, c = (sandbox.create_project(home, prefix=f"sp{k}") for k in "abc")
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        projects.add_member(home, alice, a, "carol", "data-scientist")
        left = create_group(alice, a, "left_side", RISK, ["account_id"], distribution_key="account_id")
        right = create_group(alice, a, "right_side", {**RISK, "score": "real"}, ["account_id"],
                             distribution_key="account_id")
        merchant = create_group(alice, a, "by_merchant", MERCHANT, ["merchant_id"], distribution_key="merchant_id")
        # left: every entity on even days; right: odd entities on odd days
        commit_rows(alice, left, [(e, DAYS[d], left_value(e, d)) for e in ENTITIES for d in (0, 2, 4)])
        commit_rows(alice, right, [(e, DAYS[d], right_value(e, d)) for e in ENTITIES if e % 2 for d in (1, 3, 5)])
        commit_rows(alice, merchant, [(m, DAYS[0], float(m)) for m in range(1, 4)])
        projects.share_project(alice, a, c)
    yield {"home": home, "a": a, "b": b, "c": c, "left_table": f"{a}.left_side__v1",
           "merchant_table": f"{a}.by_merchant__v1"}


def spine() -> pa.Table:
    """Spine rows at and between feature times, unknown entities, a NULL key, duplicates."""
    keys, times = [], []
    for e in [*ENTITIES, 999, None, 7, 7]:
        for hours in (-12, 0, 30, 60, 130):
            keys.append(e)
            times.append(BASE + dt.timedelta(hours=hours))
    return pa.table({"account_id": pa.array(keys, pa.int64()), "event_time": pa.array(times, pa.timestamp("us", "UTC")),
                     "label": pa.array(range(len(keys)), pa.int64())})


def expected(table: pa.Table) -> list[tuple[Any, ...]]:
    """The point-in-time answer, spelled out: the latest value at or before the spine time."""
    out = []
    for e, t, label in zip(*(table.column(n).to_pylist() for n in ("account_id", "event_time", "label"))):
        lv = rv = None
        if e in ENTITIES:
            past = [d for d in (0, 2, 4) if DAYS[d] <= t]
            lv = left_value(e, past[-1]) if past else None
            past = [d for d in (1, 3, 5) if DAYS[d] <= t] if e % 2 else []
            rv = right_value(e, past[-1]) if past else None
        out.append((e, t, label, lv, rv))
    return out


def rows(table: pa.Table) -> list[tuple[Any, ...]]:
    right = [None if v is None else round(v, 4) for v in table.column("right_side__score").to_pylist()]
    return list(zip(*(table.column(n).to_pylist() for n in ("account_id", "event_time", "label",
                                                             "left_side__score")), right))


@pytest.mark.parametrize("strategy", ["probe", "merge", "asof", "auto"])
def test_a_distributed_spine_gives_the_single_node_answer_in_spine_order(world: dict[str, Any], strategy: str) -> None:
    fs = fstore.connect(world["a"], "bob", home=world["home"])
    table = spine()
    plan: list[Any] = []
    got = fs.get_historical_features(table, ["left_side:score", "right_side:score"], full_feature_names=True,
                                     strategy=strategy, plan=plan)
    want = [(e, t, label, lv, None if rv is None else round(rv, 4)) for e, t, label, lv, rv in expected(table)]
    assert rows(got) == want
    assert [g["strategy"] for g in plan] == [{"asof": "merge", "auto": g["strategy"]}.get(strategy, strategy)
                                              for g in plan]
    for g in plan:
        assert g["spine"].startswith("distributed: fstore_spines.s_"), g
        assert "co-located with" in g["spine"], g
    # the spine table went away after the join
    with connect_operator(world["home"], autocommit=True) as op:
        assert op.execute("select count(*) from fstore.spine_tables").fetchone() == (0,)
        assert op.execute("select count(*) from pg_tables where schemaname = 'fstore_spines'").fetchone() == (0,)


def test_a_query_spine_is_distributed_too_and_keeps_its_order(world: dict[str, Any]) -> None:
    fs = fstore.connect(world["a"], "bob", home=world["home"])
    query = ("select account_id::bigint as account_id, t as event_time, (100 - account_id)::bigint as label"
             "  from generate_series(1, 60) account_id, (values (timestamptz '2024-03-03 12:00+00')) v(t)"
             " order by account_id desc")
    plan: list[Any] = []
    got = fs.get_historical_features(query, ["left_side:score"], plan=plan, strategy="probe")
    assert got.column("account_id").to_pylist() == list(range(60, 0, -1))
    assert got.column("score").to_pylist() == [left_value(e, 2) for e in range(60, 0, -1)]
    assert plan[0]["spine"].startswith("distributed: "), plan


def test_groups_keyed_by_different_spine_columns_keep_the_spine_on_the_coordinator(world: dict[str, Any]) -> None:
    fs = fstore.connect(world["a"], "bob", home=world["home"])
    table = pa.table({"account_id": [1, 2], "merchant_id": [1, 2],
                      "event_time": pa.array([BASE + dt.timedelta(days=3)] * 2, pa.timestamp("us", "UTC"))})
    plan: list[Any] = []
    got = fs.get_historical_features(table, ["left_side:score", "by_merchant:m_score"], strategy="probe", plan=plan)
    assert got.column("score").to_pylist() == [left_value(1, 2), left_value(2, 2)]
    assert got.column("m_score").to_pylist() == [1.0, 2.0]
    assert [g["strategy"] for g in plan] == ["merge", "merge"]
    assert all(g["spine"] == "coordinator" for g in plan), plan


def _bob_spine(conn: psycopg.Connection[Any], world: dict[str, Any]) -> str:
    conn.execute("drop table if exists pg_temp.my_spine")
    conn.execute("create temp table my_spine (account_id bigint, event_time timestamptz, label text)")
    conn.execute("grant select on pg_temp.my_spine to fstore_control")
    name = conn.execute("select fstore.create_spine_table('pg_temp.my_spine', 'account_id', %s)",
                        (world["left_table"],)).fetchone()[0]
    conn.execute(f"insert into {name} values (1, '2024-03-04', 'secret label')")
    return name


def test_the_join_runs_per_shard_on_the_workers(world: dict[str, Any]) -> None:
    """EXPLAIN of the probe over a distributed spine: one Citus task per shard, no spine pulled
    to the coordinator (no intermediate result)."""
    with connect(world["home"], f"{world['a']}__bob", autocommit=True) as bob:
        name = _bob_spine(bob, world)
        try:
            for strategy in ("probe", "merge"):
                query = bob.execute(
                    "select fstore.training_data_sql(%s::regclass, array['left_side:score'], p_order_column => 'label',"
                    " p_sorted => false, p_strategy => %s)", (name, strategy)).fetchone()[0]
                plan = "\n".join(r[0] for r in bob.execute("explain " + query).fetchall())
                assert "Task Count: 32" in plan, plan
                assert "intermediate result" not in plan.lower(), plan
                assert [(r[0], r[1], r[-1]) for r in bob.execute(query).fetchall()] == [
                    ("secret label", 1, left_value(1, 2))]
        finally:
            bob.execute("select fstore.drop_spine_table(%s)", (name,))


@pytest.fixture(scope="module")
def conns(world: dict[str, Any]) -> Iterator[dict[str, psycopg.Connection[Any]]]:
    opened: dict[str, psycopg.Connection[Any]] = {}
    for actor, (project, user) in {"alice": ("a", "alice"), "bob": ("a", "bob"), "carol": ("a", "carol"),
                                   "b_alice": ("b", "alice"), "b_bob": ("b", "bob"), "c_bob": ("c", "bob"),
                                   "c_alice": ("c", "alice")}.items():
        opened[actor] = connect(world["home"], f"{world[project]}__{user}", autocommit=True)
    yield opened
    for conn in opened.values():
        conn.close()


@pytest.fixture(scope="module")
def bobs_spine(world: dict[str, Any], conns: dict[str, psycopg.Connection[Any]]) -> Iterator[str]:
    """A spine table bob made and holds (his connection stays open) while the attacks run."""
    holder = connect(world["home"], f"{world['a']}__bob", autocommit=True)
    name = _bob_spine(holder, world)
    yield name
    holder.execute("select fstore.drop_spine_table(%s)", (name,))
    holder.close()


TEMPLATE = "create temp table if not exists t_tpl (account_id bigint, event_time timestamptz)"
GRANT = "grant select on pg_temp.t_tpl to fstore_control"

CASES: list[Case] = [
    # nobody but the creator reads, writes or drops a spine table: not another Data Scientist of
    # the same project, not A's Data Owner, not another project's users, not a share partner
    *[deny(f"{actor}_reads_spine", actor, "select * from {spine}", match="permission denied for table s_")
      for actor in ("carol", "alice", "b_bob", "b_alice", "c_bob")],
    *[deny(f"{actor}_writes_spine", actor, "insert into {spine} values (2, now(), 'x')",
           match="permission denied for table s_") for actor in ("carol", "alice", "b_bob", "c_bob")],
    deny("owner_as_project_owner_reads_spine", "alice", "set role {a}__owner", "select * from {spine}",
         match="permission denied for table s_"),
    *[deny(f"{actor}_drops_spine", actor, "drop table {spine}", match="must be owner of table s_")
      for actor in ("carol", "b_alice", "c_bob")],
    *[deny(f"{actor}_drops_spine_through_fstore", actor, "select fstore.drop_spine_table('{spine}')",
           match="does not exist or is not") for actor in ("carol", "alice", "b_bob", "c_bob")],
    deny("scientist_truncates_spine", "carol", "truncate {spine}", match="permission denied for table s_"),
    deny("scientist_alters_spine", "b_bob", "alter table {spine} add column x int", match="must be owner of table s_"),
    deny("partner_grants_spine", "c_bob", "grant select on {spine} to public", match="permission denied|no privileges"),
    # the catalog of spine tables: nobody reads it
    deny("scientist_lists_spine_catalog", "carol", "select * from fstore.spine_tables",
         match="permission denied for table spine_tables"),
    deny("other_project_lists_spine_catalog", "b_bob", "select * from fstore.spine_tables",
         match="permission denied for table spine_tables"),
    # hijacking: nobody can create (pre-create) a table in fstore_spines, nor distribute one there
    *[deny(f"{actor}_precreates_spine", actor, "create table fstore_spines.s_00000000000000000000000000000000 (x int)",
           match="permission denied for schema fstore_spines") for actor in ("bob", "alice", "b_alice", "c_bob")],
    deny("scientist_creates_view_in_spines", "bob", "create view fstore_spines.v as select 1",
         match="permission denied for schema fstore_spines"),
    deny("owner_distributes_a_table", "b_alice", "select create_distributed_table('{spine}', 'account_id')",
         match="permission denied for function create_distributed_table"),
    # a spine co-located with a group the caller may not read, or made like a table not its own
    deny("other_project_colocates_with_a", "b_bob", TEMPLATE, GRANT,
         "select fstore.create_spine_table('pg_temp.t_tpl', 'account_id', '{left_table}')",
         match="is not a distributed feature group of a project visible|permission denied for schema"),
    deny("spine_like_a_feature_table", "bob",
         "select fstore.create_spine_table('{left_table}', 'account_id', '{left_table}')",
         match="only like an ordinary temporary table"),
    deny("spine_like_someone_elses_spine", "carol",
         "select fstore.create_spine_table('{spine}', 'account_id', '{left_table}')",
         match="only like an ordinary temporary table"),
    deny("spine_without_the_key", "bob", "create temp table if not exists t_nokey (event_time timestamptz)",
         "grant select on pg_temp.t_nokey to fstore_control",
         "select fstore.create_spine_table('pg_temp.t_nokey', 'account_id', '{left_table}')",
         state="42703", match="has no column"),
    # the allowed counterparts: the partner of A may make a spine of its own co-located with A's group
    allow("partner_makes_own_spine", "c_bob", TEMPLATE, GRANT,
          "select fstore.drop_spine_table(fstore.create_spine_table('pg_temp.t_tpl', 'account_id', '{left_table}'))",
          rows=[(True,)]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_spine_attack(world: dict[str, Any], conns: dict[str, psycopg.Connection[Any]], bobs_spine: str,
                      case: Case) -> None:
    names = {k: v for k, v in world.items() if isinstance(v, str)} | {"spine": bobs_spine}
    run_case(conns[case.actor], case, names)


def test_spine_table_names_leak_nothing(world: dict[str, Any], conns: dict[str, psycopg.Connection[Any]],
                                        bobs_spine: str) -> None:
    """Another project's user listing pg_class / pg_tables sees a random name: no project, no
    person, no feature group; the owner is fstore_control and the only grantee is the creator."""
    listed = conns["b_bob"].execute(
        "select c.relname, c.relowner::regrole::text from pg_class c"
        " where c.relnamespace = 'fstore_spines'::regnamespace and c.relkind = 'r'").fetchall()
    assert listed and all(re.fullmatch(r"s_[0-9a-f]{32}", name) for name, _ in listed), listed
    assert {owner for _, owner in listed} == {"fstore_control"}
    assert [n for (n,) in conns["c_bob"].execute(
        "select tablename from pg_tables where schemaname = 'fstore_spines'").fetchall()] == [n for n, _ in listed]
    for name, _ in listed:
        assert world["a"] not in name and "bob" not in name and "left" not in name
    grantees = conns["b_bob"].execute(
        "select distinct g.grantee::regrole::text from pg_class c, aclexplode(c.relacl) g"
        " where c.oid = %s::regclass and g.grantee <> c.relowner", (bobs_spine,)).fetchall()
    assert grantees == [(f"{world['a']}__bob",)]
