"""Erasure of an entity (GDPR article 17): after ``fs.forget({"account_id": 20})`` no table,
statistic, vector search, online lookup, feature-view vector or training read returns the
account; an older training dataset says that rows were erased; the report counts what went
per table and lists the exported file by path; a failed erasure leaves everything in place.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import sql

from fstore.erasure import ErasedRowsWarning
from fstore.errors import InvalidInput, PermissionDenied
from tests.governance.conftest import ACCOUNTS, EMBEDDING, ERASED, UNIQUE_COUNTRY, World


def _tables_with_account(conn: psycopg.Connection[Any], project: str) -> dict[str, int]:
    """Every table of the project with an account_id column: rows of the erased account."""
    names = [r[0] for r in conn.execute(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " join pg_attribute a on a.attrelid = c.oid and a.attname = 'account_id'"
        " where n.nspname = %s and c.relkind = 'r' order by 1", (project,))]
    return {name: conn.execute(sql.SQL("select count(*) from {} where account_id = %s")
                               .format(sql.Identifier(project, name)), (ERASED,)).fetchone()[0] for name in names}


def _served(conn: psycopg.Connection[Any]) -> int:
    return conn.execute("select count(*) from fstore.served_vectors where keys->>'account_id' = %s",
                        (str(ERASED),)).fetchone()[0]


def test_after_erasure_nothing_returns_the_entity(world: World) -> None:
    a = world.name
    with world.connect("alice") as alice:
        before = _tables_with_account(alice.conn, a)
        assert before["labels"] == 1  # a plain table of the Data Owner's: not fstore's to erase
        assert before["profile__v1"] == 2 and before["profile__v1__online"] == 1 and before["pairs__v1"] == 2
        assert before["tx__v1"] == 3 and before["train__td1"] == 1 and before["train__td2"] == 1
        assert _served(alice.conn) == 2
        stats = alice.get_feature_group("profile", 1).statistics()
        assert stats["income"]["max"] == 99999.0 + 1
        assert UNIQUE_COUNTRY in [t["value"] for t in stats["country"]["top_values"]]
        commits_before = alice.conn.execute("select count(*), sum(rows) from fstore.commits c join fstore.feature_groups g"
                                            " on g.id = c.feature_group_id where g.project = %s", (a,)).fetchone()

        report = alice.forget({"account_id": ERASED})

        # the report: rows per table, as counted before
        managed = {k: v for k, v in before.items() if k != "labels"}
        assert {t["table"].rpartition(".")[2]: t["rows"] for t in report.tables} == managed
        assert report.rows == sum(managed.values())
        assert report.keys == {"account_id": str(ERASED)} and report.served_vectors == 2
        assert report.needs_action["exports"] == [
            {**report.needs_action["exports"][0], "path": str(world.export_path.resolve()), "training_dataset": "train",
             "version": 1}]
        assert [f["feature_view"] for f in report.needs_action["feature_view_fits"]] == ["scoring"]
        assert report.action_needed
        recomputed = [s for s in report.statistics if s["feature_group"] == "profile"]
        assert len(recomputed) == 4 and {s["action"] for s in recomputed} == {"recomputed"}

        # no table holds the account any more (but the plain table, which is the owner's)
        after = _tables_with_account(alice.conn, a)
        assert after == {name: (1 if name == "labels" else 0) for name in before}
        assert alice.conn.execute(f"select count(*) from {a}.other__v1").fetchone()[0] == 1  # another key
        # the other accounts are all there
        assert alice.conn.execute(f"select count(*) from {a}.profile__v1__online").fetchone()[0] == ACCOUNTS - 1
        assert alice.conn.execute(f"select count(*) from {a}.tx__v1").fetchone()[0] == 57
        # commit records are history: they keep their counts
        assert alice.conn.execute("select count(*), sum(rows) from fstore.commits c join fstore.feature_groups g"
                                  " on g.id = c.feature_group_id where g.project = %s", (a,)).fetchone() == commits_before

        # statistics: recomputed over the rows left, for every commit that held the account
        for version in (1, 2):
            group = alice.get_feature_group("profile", version)
            for commit in group.commits():
                stats = group.statistics(commit.id)
                assert stats["income"]["max"] < 99999.0 and stats["account_id"]["max"] == ACCOUNTS - 1
                assert stats["income"]["rows"] == ACCOUNTS - 1 and stats["income"]["recomputed_after_erasure"]
                assert UNIQUE_COUNTRY not in [t["value"] for t in stats["country"]["top_values"]]
        # slices over the rows: no slice of the erased account's country
        sliced = alice.get_feature_group("profile", 2).statistics(slice_by="country", min_slice_rows=1)
        assert UNIQUE_COUNTRY not in {s.name for s in sliced.slices}

        # online lookup, vector search, feature-view vector, served-vector log
        online = alice.get_online_features(["profile:country", "profile:income"], [{"account_id": ERASED}, {"account_id": 1}])
        assert online.to_pylist()[0]["country"] is None and online.to_pylist()[1]["country"] is not None
        nearest = alice.nearest("profile", "embedding", EMBEDDING, k=ACCOUNTS)
        assert ERASED not in nearest.column("account_id").to_pylist() and nearest.num_rows == ACCOUNTS - 1
        assert _served(alice.conn) == 0
        view = alice.get_feature_view("scoring")
        view.get_feature_vector({"account_id": ERASED})
        assert view.last_found is False  # (a request after the erasure is logged anew, as not found)
        view.close()

        # training reads: the rows are gone and the dataset says so
        with pytest.warns(ErasedRowsWarning, match=r"train@1: 1 of its 20 rows were erased"):
            table = alice.get_training_dataset("train", 1)
        assert ERASED not in table.column("account_id").to_pylist() and table.num_rows == ACCOUNTS - 1
        with pytest.warns(ErasedRowsWarning):
            assert alice.training_dataset("train", 2).erased_rows == 1
        fit_table = view.get_training_data(with_keys=True)  # the view's own training dataset
        assert ERASED not in fit_table.column("account_id").to_pylist()

        # the record and the audit keep key names and counts, never the value
        record = alice.conn.execute("select key_names, key_values, state, report from fstore.erasures where id = %s",
                                    (report.erasure,)).fetchone()
        assert record[:3] == (["account_id"], None, "done") and record[3]["rows"] == report.rows
        [details] = alice.conn.execute("select details from fstore.audit_log where project = %s and action = 'forget'",
                                       (a,)).fetchone()
        assert details["rows"] == report.rows and "keys" not in details and f'"{ERASED}"' not in json.dumps(details)

    # the Data Scientist reads the same: no row, no statistic of the account
    with world.connect("bob") as bob:
        with pytest.warns(ErasedRowsWarning):
            assert ERASED not in bob.get_training_dataset("train", 1).column("account_id").to_pylist()
        assert bob.conn.execute(f"select count(*) from {a}.profile__v2 where account_id = %s", (ERASED,)).fetchone() == (0,)
        assert bob.get_feature_group("profile", 2).statistics()["income"]["max"] < 99999.0


def test_other_sessions_temporary_copies_go_and_own_are_cleaned(world: World) -> None:
    a = world.name
    with world.connect("bob") as bob, world.connect("alice") as alice:
        bob.conn.execute("create temp table my_spine as select account_id from generate_series(1, 20) account_id")
        alice.conn.execute(f"create temp table scratch as select * from {a}.labels")
        report = alice.forget({"account_id": ERASED})
        assert [t["owner"] for t in report.temp_tables] == [f"{a}__bob"] and report.sessions_ended == 1
        assert report.own_temp_tables == [{"table": "scratch", "rows": 1}]
        assert alice.conn.execute("select count(*) from scratch where account_id = %s", (ERASED,)).fetchone() == (0,)
        with pytest.raises(psycopg.OperationalError):  # his session, and its copy, are gone
            bob.conn.execute("select count(*) from my_spine")


def test_bad_keys_are_refused_by_name_and_nothing_is_removed(world: World) -> None:
    with world.connect("alice") as alice:
        before = _tables_with_account(alice.conn, world.name)
        with pytest.raises(InvalidInput, match="no feature group of project .* has an entity key acount_id"):
            alice.forget({"acount_id": ERASED})
        with pytest.raises(InvalidInput, match="key account_id: abc is not a valid bigint"):
            alice.forget({"account_id": "abc"})
        with pytest.raises(InvalidInput, match="has all of the columns account_id, customer_id"):
            alice.forget({"account_id": ERASED, "customer_id": ERASED})
        with pytest.raises(InvalidInput, match="has an entity key country"):  # a feature: not an entity
            alice.forget({"country": UNIQUE_COUNTRY})
        with pytest.raises(InvalidInput, match="key account_id: give a plain value"):
            alice.forget({"account_id": [ERASED]})
        assert _tables_with_account(alice.conn, world.name) == before


def _distributed(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("select fstore.is_distributed(%s::regclass)", (table,)).fetchone()[0]


def test_a_failed_erasure_leaves_nothing_half_deleted(world: World) -> None:
    a = world.name
    with world.connect("alice") as alice:
        conn = alice.conn
        before = _tables_with_account(conn, a)
        total = conn.execute(f"select count(*) from {a}.profile__v1").fetchone()[0]
        if _distributed(conn, f"{a}.profile__v1"):
            # on a cluster the shards take a DELETE from fstore's erasure definer only: by hand,
            # even the erased entity's rows are refused
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                with conn.transaction():
                    conn.execute("select fstore.begin_erasure(%s, %s)", (a, json.dumps({"account_id": str(ERASED)})))
                    conn.execute(f"delete from {a}.profile__v1 where account_id = %s", (ERASED,))
        else:
            # by hand: open the erasure, delete the entity's rows, then another's -- refused midway
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="this row's account_id is another's"):
                with conn.transaction():
                    erasure = conn.execute("select id from fstore.begin_erasure(%s, %s)",
                                           (a, json.dumps({"account_id": str(ERASED)}))).fetchone()[0]
                    assert erasure is not None
                    deleted = conn.execute(f"delete from {a}.profile__v1 where account_id = %s", (ERASED,)).rowcount
                    assert deleted == 2
                    conn.execute(f"delete from {a}.profile__v1 where account_id in (%s, 1)", (ERASED,))
            # begun, rows deleted, never finished: the commit is refused, the rows come back
            with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="begun and not finished"):
                with conn.transaction():
                    conn.execute("select fstore.begin_erasure(%s, %s)", (a, json.dumps({"account_id": str(ERASED)})))
                    conn.execute(f"delete from {a}.profile__v1 where account_id = %s", (ERASED,))
        # a second erasure in the same transaction (another entity) is refused
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="one erasure .* per transaction"):
            with conn.transaction():
                conn.execute("select fstore.forget(%s, %s)", (a, json.dumps({"account_id": ERASED})))
                conn.execute("select fstore.forget(%s, %s)", (a, json.dumps({"account_id": 1})))
        assert _tables_with_account(conn, a) == before
        assert conn.execute(f"select count(*) from {a}.profile__v1").fetchone()[0] == total
        assert conn.execute("select count(*) from fstore.erasures where project = %s", (a,)).fetchone() == (0,)
        assert _served(conn) == 2


def test_a_data_scientist_may_not_forget(world: World) -> None:
    with world.connect("bob") as bob:
        with pytest.raises(PermissionDenied, match="only a Data Owner of project .* may erase entities"):
            bob.forget({"account_id": ERASED})
    with world.connect("alice") as alice:
        assert _tables_with_account(alice.conn, world.name)["profile__v1"] == 2


def test_a_row_policy_that_hides_rows_from_the_data_owner_refuses_the_erasure(world: World) -> None:
    from fstore import policies

    a = world.name
    with world.connect("alice") as alice:
        policies.apply_policies(alice.conn, a, [policies.RowPolicy("owners_see_de", "profile", ("data_owner",),
                                                                   "country = 'DE'")])
        # (a distributed profile's rows are deleted by fstore_writer, whom no policy binds: then
        # the first table the policy hides rows of is the training dataset built from it)
        hidden = "(profile__v1|train__td1)" if _distributed(alice.conn, f"{a}.profile__v1") else "profile__v1"
        with pytest.raises(PermissionDenied, match=f"hides rows of .*{hidden} from"):
            alice.forget({"account_id": ERASED})
        policies.apply_policies(alice.conn, a, [])
        assert alice.forget({"account_id": ERASED}).rows > 0
