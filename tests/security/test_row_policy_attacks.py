"""Row policies: a restrictive policy filters a Data Scientist's rows and not the Data
Owner's, survives new tables, and cannot be turned into a way to run SQL as someone
else -- not even through a predicate planted in the catalog by the superuser and
applied inside fstore's own SECURITY DEFINER code (training tables).
"""

from __future__ import annotations

import json

import psycopg
import pytest

from fstore import policies
from fstore.projects import share_project
from fstore.connection import connect_operator
from fstore.home import FstoreHome

HOSTILE = "true); alter role {role} superuser; select (1"


def test_declared_policy_filters_scientists_not_owners(make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    b = make_project(owner="carol")
    declared = [policies.RowPolicy("consented", "accounts", ("data_scientist",), "consent"),
                policies.RowPolicy("not_test", "accounts", ("everyone",), "not is_test")]
    with a.connect("alice") as alice:
        policies.apply_policies(alice, a.name, declared)
        alice.execute(f"set role {a.name}__owner")  # created after the policies: the DDL guard applies them
        alice.execute(f"create table {a.name}.accounts (id int primary key, consent boolean, is_test boolean)")
        alice.execute("reset role")
        alice.execute(f"insert into {a.name}.accounts select g, g % 2 = 0, g > 8 from generate_series(1, 10) g")
        assert alice.execute(f"select count(*) from {a.name}.accounts").fetchone()[0] == 8  # everyone: not is_test
        share_project(alice, a.name, b.name)
    with a.connect("bob") as bob:
        assert bob.execute(f"select count(*) from {a.name}.accounts").fetchone()[0] == 4
        assert bob.execute(f"select count(*) from {a.name}.accounts where not consent").fetchone()[0] == 0
    with b.connect("carol") as carol:  # a policy for everyone reaches the readers of a share too
        assert carol.execute(f"select count(*) from {a.name}.accounts where is_test").fetchone()[0] == 0
    tally.allow("policy_owner_sees_consented_and_not", "policy_reapplied_to_new_table")
    tally.deny("policy_scientist_filtered", "policy_scientist_non_consent_hidden", "policy_everyone_hides_from_share")


def test_hostile_predicates_never_run(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    bob_role = a.role("bob")
    with a.connect("alice") as alice:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="structured tree"):
            alice.execute("select fstore.set_row_policies(%s, %s::jsonb)", (a.name, json.dumps(
                [{"name": "x", "table": "t", "roles": ["data_scientist"],
                  "using": HOSTILE.format(role=a.role("alice"))}])))
    # a predicate that reached the catalog some other way (an old release, a restore): its
    # text is never used, the tree is rendered again (and a hostile tree is refused)
    with connect_operator(home, autocommit=True) as operator:
        operator.execute(
            "insert into fstore.row_policies (project, name, table_name, roles, predicate, predicate_tree) "
            "values (%s, 'p_text', 'planted', array['data_scientist'], %s, '{\"column\": \"ok\"}'), "
            "       (%s, 'p_tree', 'planted_tree', array['data_scientist'], 'x', %s)",
            (a.name, HOSTILE.format(role=bob_role), a.name,
             json.dumps({"column": HOSTILE.format(role=bob_role)})))
    with a.connect("alice") as alice:
        alice.execute(f"set role {a.name}__owner")
        alice.execute(f"create table {a.name}.planted (id int, ok boolean)")
        policy = alice.execute("select pg_get_expr(polqual, polrelid) from pg_policy "
                               "where polrelid = %s::regclass and polname = 'fstore_rls_p_text'",
                               (f"{a.name}.planted",)).fetchone()[0]
        assert "superuser" not in policy and "ok" in policy
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="invalid column name"):
            alice.execute(f"create table {a.name}.planted_tree (id int)")
    with connect_operator(home, autocommit=True) as operator:
        supers = operator.execute("select count(*) from pg_roles where rolname = any(%s) and rolsuper",
                                  ([a.role("alice"), bob_role],)).fetchone()[0]
        assert supers == 0
        operator.execute("delete from fstore.row_policies where project = %s", (a.name,))
    tally.deny("hostile_predicate_as_text", "planted_predicate_text_never_runs", "planted_predicate_tree_refused")
