"""psql explains fstore: every fstore function and catalog table carries a COMMENT
(\\df+, \\d+), feature groups' tables and columns carry their descriptions, and a
Data Scientist gets point-in-time features into a table in one statement."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import psycopg


def _psql(role: str, *commands: str) -> str:
    """Run psql as ``role`` (its pg_service entry, its certificate), one session, these commands."""
    args = ["psql", f"service={role}", "-X", "-v", "ON_ERROR_STOP=1", "-At"]
    for command in commands:
        args += ["-c", command]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_fstore_function_and_catalog_table_says_what_it_is(operator: psycopg.Connection[Any]) -> None:
    undocumented = operator.execute(
        "select p.oid::regprocedure::text from pg_proc p where p.pronamespace = 'fstore'::regnamespace"
        "   and coalesce(obj_description(p.oid, 'pg_proc'), '') = '' order by 1").fetchall()
    assert undocumented == []
    tables = operator.execute(
        "select c.relname from pg_class c where c.relnamespace = 'fstore'::regnamespace and c.relkind in ('r', 'v')"
        "   and coalesce(obj_description(c.oid, 'pg_class'), '') = '' order by 1").fetchall()
    assert tables == []


def test_a_scientist_finds_the_point_in_time_function_and_uses_it_in_one_statement(make_project: Any) -> None:
    project = make_project(owner="alice", scientists=["bob"])
    columns = [{"name": "account_id", "type": "bigint", "description": "the account"},
               {"name": "amount", "type": "double precision", "description": "sum of the last 7 days"}]
    with project.connect("alice") as alice:
        with alice.transaction():
            alice.execute(f"set local role {project.name}__owner")
            fg = alice.execute("select fstore.create_feature_group(%s, 'activity', 1, array['account_id'], "
                               "'event_time', %s::jsonb, p_description => 'weekly activity')",
                               (project.name, json.dumps(columns))).fetchone()[0]
        with alice.transaction():
            alice.execute("create temp table stage (account_id bigint, amount float8, event_time timestamptz) "
                          "on commit drop")
            alice.execute("insert into stage select g, g * 1.5, '2024-01-01' from generate_series(1, 5) g")
            alice.execute("select fstore.commit_feature_rows(%s, 'pg_temp.stage'::regclass)", (fg,))
    bob = project.role("bob")
    found = _psql(bob, r"\df+ fstore.historical_features")
    assert "Point-in-time features into a new temporary table, in one statement" in found
    assert "Offline history of feature group activity version 1: weekly activity" in _psql(
        bob, rf"\dt+ {project.name}.activity__v1")
    table = _psql(bob, rf"\d+ {project.name}.activity__v1")
    assert "sum of the last 7 days" in table and "the commit that wrote this row" in table
    rows = _psql(bob,
                 "create temp table spine as select g::bigint as account_id, timestamptz '2024-02-01' as event_time "
                 "from generate_series(1, 6) g",
                 "select fstore.historical_features('train', 'spine'::regclass, array['activity:amount'])",
                 "select account_id, amount from train")
    lines = rows.strip().splitlines()
    assert lines[:2] == ["SELECT 6", "6"]  # the spine; one row per spine row
    assert lines[2:] == [f"{g}|{g * 1.5:g}" for g in range(1, 6)] + ["6|"]
