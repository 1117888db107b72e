"""Attacks on erasure, the one audited exception to append-only history: a Data Scientist,
a share partner (read-only and read-write), another project's Data Owner and the platform
admin try to forget an entity of A (through fstore.forget, through the erasure steps,
through a direct DELETE on the offline, online and training tables, through a forged
erasure record) and are refused; A's Data Owner may erase, but only through the erasure
code path, only one entity per transaction, only rows of that entity, only by an entity
key, and only with the erasure finished (audited) when the transaction commits.

Every case runs as a real member over TLS with its own certificate (see conftest). The
shared world's allowed cases open an erasure inside a transaction that is rolled back, so the
world keeps its rows (and no other session is ended); the hand-written test at the end
erases for real, with fstore.forget, in projects of its own.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import psycopg
import pytest

import fstore
from fstore import projects
from fstore.errors import PermissionDenied
from tests.security.attack import Case, allow, deny, run_case

AS_OWNER = "set local role {a}__owner"
NOT_OWNER = "only a Data Owner of project {a} may erase entities"
APPEND_ONLY = "is not allowed: feature-group history is append-only"
STORED_ONCE = "a training dataset is stored once and never changed"
ENTITY = '\'{"id": "1"}\''
FORGET = "select fstore.forget('{a}', '{\"id\": 1}')"
BEGIN = "select fstore.begin_erasure('{a}', " + ENTITY + ")"
FAKE_RECORD = ("insert into fstore.erasures (project, key_names, key_values, keys_sha256, targets)"
               " values ('{a}', '{id}', " + ENTITY + ", 'x', '[]')")

OUTSIDERS = {
    "bob": "permission denied for table",      # A's Data Scientist: no DELETE
    "carol": "permission denied for table",    # B, shared read-only
    "hank": "permission denied for schema {a}",  # D, not shared
    "admin": "permission denied for schema {a}",
}

CASES: list[Case] = []
for actor, table_refusal in OUTSIDERS.items():
    CASES += [
        deny(f"{actor}_forgets_in_a", actor, FORGET, match=NOT_OWNER),
        deny(f"{actor}_begins_erasure_in_a", actor, "begin", BEGIN, match=NOT_OWNER),
        deny(f"{actor}_deletes_offline_of_a", actor, "delete from {a}.fg__v1 where id = 1", match=table_refusal),
        deny(f"{actor}_deletes_training_of_a", actor, "delete from {a}.{td} where id = 1", match=table_refusal),
        deny(f"{actor}_fakes_erasure_record", actor, FAKE_RECORD, match="permission denied for table erasures"),
        deny(f"{actor}_fakes_erased_rows", actor,
             "insert into fstore.erased_rows (erasure_id, project, relid, table_name, kind)"
             " values (1, '{a}', 1, 'x', 'offline')", match="permission denied for table erased_rows"),
    ]
CASES += [
    # C, shared read-write: its Data Owner writes rows of A, and still may not erase them
    deny("rw_partner_forgets_in_a", "frank", FORGET, match=NOT_OWNER),
    deny("rw_partner_begins_erasure_in_a", "frank", "begin", BEGIN, match=NOT_OWNER),
    deny("rw_partner_deletes_offline_of_a", "frank", "delete from {a}.fg__v1 where id = 1", match=APPEND_ONLY),
    deny("rw_partner_deletes_training_of_a", "frank", "delete from {a}.{td} where id = 1",
         match="permission denied for table {td}"),
    deny("rw_partner_fakes_erasure_record", "frank", FAKE_RECORD, match="permission denied for table erasures"),
    # A's Data Owner: no DELETE outside an erasure, no erasure outside the code path
    deny("owner_deletes_history_without_erasure", "alice", "delete from {a}.fg__v1 where id = 1", match=APPEND_ONLY),
    deny("owner_deletes_td_without_erasure", "alice", "begin", AS_OWNER, "delete from {a}.{td} where id = 1",
         match=STORED_ONCE),
    deny("owner_fakes_erasure_record", "alice", FAKE_RECORD, match="permission denied for table erasures"),
    deny("owner_opens_recorded_erasure", "alice", "update fstore.erasures set state = 'open'",
         match="permission denied for table erasures"),
    deny("owner_calls_counting_trigger", "alice", "select fstore.count_erased_rows()",
         match="permission denied for function count_erased_rows"),
    deny("owner_reads_erasure_targets", "alice", "select fstore.erasure_targets('{a}', '{id}')",
         match="permission denied for function erasure_targets"),
    deny("owner_attaches_counting_trigger", "alice", "begin", "create temp table x (id int)",
         "create trigger c after delete on x referencing old table as fstore_erased for each statement "
         "execute function fstore.count_erased_rows()", match="permission denied for function (fstore.)?count_erased_rows"),
    deny("owner_finishes_unopened_erasure", "alice", "begin", "select fstore.finish_erasure(1)",
         match="erasure 1 is not open in this session"),
    deny("owner_rewrites_statistics", "alice", "begin",
         "select fstore.replace_erased_statistics(1, 1, '{}'::jsonb)",
         match="change only in an erasure of its rows open in this session"),
    deny("owner_rewrites_statistics_in_erasure", "alice", "begin", BEGIN,
         "select fstore.replace_erased_statistics((select id from fstore.erasures where state = 'open'), 1, '{}')",
         match="change only in an erasure of its rows"),
    # inside an open erasure: only the entity's rows, only DELETE, one entity
    deny("owner_erasure_deletes_another_entity", "alice", "begin",
         "select fstore.begin_erasure('{a}', '{\"id\": \"2\"}')", AS_OWNER, "delete from {a}.{td} where id = 1",
         match="this row's id is another's"),
    deny("owner_erasure_deletes_all_rows", "alice", "begin",
         "select fstore.begin_erasure('{a}', '{\"id\": \"2\"}')", AS_OWNER, "delete from {a}.{td}",
         match="this row's id is another's"),
    deny("owner_erasure_updates_td", "alice", "begin", BEGIN, AS_OWNER, "update {a}.{td} set amount = 0",
         match=STORED_ONCE),
    deny("owner_erasure_updates_history", "alice", "begin", BEGIN, "update {a}.fg__v1 set amount = 0",
         match=APPEND_ONLY),
    deny("owner_erasure_truncates", "alice", "begin", BEGIN, AS_OWNER, "truncate {a}.{td}", match=STORED_ONCE),
    deny("owner_erasure_truncates_history", "alice", "begin", BEGIN, AS_OWNER, "truncate {a}.fg__v1",
         match=APPEND_ONLY),
    deny("owner_second_erasure_same_transaction", "alice", "begin", BEGIN,
         "select fstore.begin_erasure('{a}', '{\"id\": \"2\"}')", state="55000", match="one erasure .* per transaction"),
    deny("owner_erasure_by_a_feature_column", "alice", "begin",
         "select fstore.begin_erasure('{a}', '{\"amount\": \"1.5\"}')", state="22023",
         match="has an entity key amount"),
    deny("owner_forgets_by_a_feature_column", "alice", "select fstore.forget('{a}', '{\"amount\": 1.5}')",
         state="22023", match="has an entity key amount"),
    deny("owner_erasure_left_unfinished", "alice", "begin", BEGIN, AS_OWNER,
         "delete from {a}.{td} where id = 1", "commit", state="55000", match="begun and not finished"),
    deny("owner_erasure_without_triggers", "alice", "begin", BEGIN, "set local session_replication_role = replica",
         match="permission denied to set parameter"),
    deny("owner_disables_erasure_row_check", "alice", "begin", AS_OWNER,
         "alter table {a}.{td} disable trigger fstore_erasure_rows", match="fstore_erasure_rows is disabled"),
    deny("owner_drops_erasure_row_check", "alice", "begin", AS_OWNER, "drop trigger fstore_erasure_rows on {a}.{td}",
         match="is fstore's and goes only with its table"),
    deny("owner_drops_erasure_count", "alice", "begin", AS_OWNER, "drop trigger fstore_erasure_count on {a}.fg__v1",
         match="is fstore's and goes only with its table"),
    # what A's Data Owner may do (rolled back: the world keeps its rows)
    allow("owner_erasure_deletes_the_entity", "alice", "begin", BEGIN, AS_OWNER,
          "delete from {a}.{td} where id = 1 returning id", rows=[(1,)]),
    allow("owner_reads_own_erasures", "alice", "select count(*) >= 0 from fstore.erasures", rows=[(True,)]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_erasure_attack(case: Case, world, tally) -> None:
    run_case(world.conn(case.actor), case, world.names)
    tally.add(case.kind, case.id)


def _group(fs: fstore.FeatureStore, accounts: range) -> Any:
    fg = fs.create_feature_group("acct", 1, keys=["account_id"], online=True, features={
        "account_id": "bigint", "event_time": "timestamptz", "score": "double precision"})
    fg.insert(pd.DataFrame({"account_id": list(accounts), "event_time": pd.Timestamp("2024-01-01", tz="UTC"),
                            "score": [float(a) for a in accounts]}))
    return fg


def test_a_partners_own_erasure_opens_none_of_the_sources_tables(home: Any, make_project: Any, tally: Any) -> None:
    """Frank (Data Owner of Q, A shared read-write with Q) opens an erasure in his own project
    and tries to use it on A's rows, offline and online; then A's Data Owner erases for real."""
    p = make_project(owner="alice", scientists=["bob"])
    q = make_project(owner="frank")
    with fstore.connect(p.name, "alice", home=home) as alice:
        _group(alice, range(1, 6))
        projects.share_project(alice.conn, p.name, q.name, read_write=True)
    with fstore.connect(q.name, "frank", home=home) as frank:
        _group(frank, range(1, 4))
        conn = frank.conn
        for table in ("acct__v1", "acct__v1__online"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only|change only by commits"):
                with conn.transaction():
                    conn.execute("select fstore.begin_erasure(%s, %s)", (q.name, json.dumps({"account_id": "1"})))
                    conn.execute(f"delete from {q.name}.acct__v1 where account_id = 1")  # his own: allowed
                    conn.execute(f"delete from {p.name}.{table} where account_id = 1")  # A's: refused
        assert conn.execute(f"select count(*) from {p.name}.acct__v1").fetchone() == (5,)
        assert conn.execute(f"select count(*) from {q.name}.acct__v1").fetchone() == (3,)
        assert frank.forget({"account_id": 1}).rows == 2  # his own project: offline and online
    with fstore.connect(p.name, "bob", home=home) as bob:
        with pytest.raises(PermissionDenied, match="may erase entities"):
            bob.forget({"account_id": 1})
    with fstore.connect(p.name, "alice", home=home) as alice:
        report = alice.forget({"account_id": 1})
        assert {t["table"].rpartition(".")[2]: t["rows"] for t in report.tables} == {"acct__v1": 1, "acct__v1__online": 1}
        assert alice.conn.execute(f"select count(*) from {p.name}.acct__v1 where account_id = 1").fetchone() == (0,)
        assert alice.conn.execute("select count(*) from fstore.audit_log where project = %s and action = 'forget'",
                                  (p.name,)).fetchone() == (1,)
    tally.deny("rw_partner_own_erasure_on_sources_offline", "rw_partner_own_erasure_on_sources_online",
               "scientist_forgets_in_python")
    tally.allow("partner_erases_in_own_project", "owner_erases_for_real")
