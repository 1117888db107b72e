"""Data derived from a project follows its row policies and its shares: statistics,
online lookups, training datasets (built by whoever may read), an entity hidden
everywhere by one policy, copies in a partner project after unshare, a partner's
copy that never passes to a third project, and a deleted project's audit history.

Each test builds its own projects and connects as each actor with their own certificate.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pyarrow as pa
import pytest

import fstore
from fstore import policies, projects
from fstore.connection import connect
from fstore.errors import FstoreError, InvalidInput, PermissionDenied
from fstore.home import FstoreHome
from tests.conftest import TEST_CLUSTER_WORKERS, unique

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
SECRET = "SECRETLAND"


def _payments(fs: fstore.FeatureStore, secret_rows: int = 5) -> Any:
    """A feature group `payments` (account_id, country, amount), online, with SECRETLAND rows."""
    rows = [{"account_id": i, "country": SECRET if i <= secret_rows else "DE", "amount": float(i),
             "event_time": T0 + dt.timedelta(hours=i)} for i in range(1, 21)]
    fg = fs.create_feature_group("payments", 1, keys=["account_id"], online=True,
                                 features={"account_id": "bigint", "country": "text", "amount": "double precision"})
    fg.insert(pa.Table.from_pylist(rows))
    return fg


def _countries(stats: dict[str, Any]) -> set[str]:
    return {v["value"] for v in stats["country"]["top_values"]}


def test_statistics_show_a_bound_reader_only_what_they_may_read(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    b = make_project(owner="carol")
    with fstore.connect(a.name, "alice", home=home) as alice:
        fg = _payments(alice)
        policies.apply_policies(alice.conn, a.name, [
            policies.RowPolicy("no_secretland", "payments", ("data_scientist",), f"country <> '{SECRET}'")])
        projects.share_project(alice.conn, a.name, b.name)
        stored = alice.get_feature_group("payments").statistics()
        assert SECRET in _countries(stored) and stored["country"]["rows"] == 20 and "scope" not in stored["amount"]
    for project, user in ((a, "bob"), (b, "carol")):
        with fstore.connect(project.name, user, home=home) as reader:
            hidden = reader.conn.execute(
                "select count(*) from fstore.commit_statistics s join fstore.commits c on c.id = s.commit_id"
                " where c.feature_group_id = %s", (fg.id,)).fetchone()[0]
            assert hidden == 0
            group = reader.get_feature_group(f"{a.name}.payments" if project is b else "payments")
            mine = group.statistics()
            assert SECRET not in _countries(mine)
            assert mine["country"]["rows"] == 15 and mine["amount"]["min"] == 6 and mine["amount"]["scope"] == "visible rows"
    tally.deny("statistics_of_hidden_rows_to_scientist", "statistics_of_hidden_rows_to_share_partner",
               "stored_statistics_rows_to_bound_reader")
    tally.allow("statistics_of_visible_rows", "owner_reads_stored_statistics")


def test_an_entity_policy_hides_an_account_everywhere(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    b = make_project(owner="carol")
    with fstore.connect(a.name, "alice", home=home) as alice:
        conn = alice.conn
        conn.execute(f"set role {a.name}__owner")
        conn.execute(f"create table {a.name}.accounts (account_id bigint primary key, is_pep boolean not null)")
        conn.execute(f"create table {a.name}.labels (account_id bigint, event_time timestamptz, is_fraud int)")
        conn.execute("reset role")
        conn.execute(f"insert into {a.name}.accounts select g, g in (3, 7) from generate_series(1, 20) g")
        conn.execute(f"insert into {a.name}.labels select g, %s, g %% 2 from generate_series(1, 20) g",
                     (T0 + dt.timedelta(days=2),))
        policies.apply_policies(conn, a.name, [policies.RowPolicy(
            "hide_pep", "accounts", ("data_scientist",), "not is_pep", entity="account_id")])
        fg = _payments(alice, secret_rows=0)  # created after the policy: it gets the entity policy too
        td = alice.create_training_dataset("by_alice", f"select * from {a.name}.labels", ["payments:amount"])
        assert td.rows == 20
        projects.share_project(conn, a.name, b.name)
        assert conn.execute(f"select count(*) from {a.name}.payments__v1__online").fetchone()[0] == 20
        assert len(alice.get_training_dataset("by_alice")) == 20
    hidden = (3, 7)
    for project, user, prefix in ((a, "bob", ""), (b, "carol", f"{a.name}.")):
        with fstore.connect(project.name, user, home=home) as reader:
            conn = reader.conn
            for table in ("accounts", "labels", "payments__v1", "payments__v1__online", td.table_name):
                seen = conn.execute(f"select count(*), count(*) filter (where account_id in (3, 7)) "
                                    f"from {a.name}.{table}").fetchone()
                assert seen == (18, 0), (user, table, seen)
            online = reader.get_online_features([f"{prefix}payments:amount"], [{"account_id": k} for k in (1, 3, 7)])
            assert online.column("amount").to_pylist() == [1.0, None, None]
            if project is a:
                assert len(reader.get_training_dataset("by_alice")) == 18
                again = reader.create_training_dataset("by_bob", f"select * from {a.name}.labels", ["payments:amount"])
                assert again.rows == 18
            stats = reader.get_feature_group(f"{prefix}payments").statistics()
            assert stats["account_id"]["rows"] == 18 and stats["account_id"]["scope"] == "visible rows"
    with fstore.connect(a.name, "alice", home=home) as alice:  # the Data Owner still sees every account
        assert alice.conn.execute(f"select count(*) from {a.name}.payments__v1 where account_id = any(%s)",
                                  (list(hidden),)).fetchone()[0] == 2
    tally.deny("entity_hidden_in_source_table", "entity_hidden_in_other_tables", "entity_hidden_in_offline_group",
               "entity_hidden_in_online_table", "entity_hidden_in_online_lookup", "entity_hidden_in_owner_built_dataset",
               "entity_hidden_in_own_dataset", "entity_hidden_in_statistics", "entity_hidden_from_share_partner")
    tally.allow("entity_visible_to_owner", "entity_policy_on_later_tables")


def test_a_training_dataset_carries_the_row_policies_of_its_groups(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    with fstore.connect(a.name, "alice", home=home) as alice:
        _payments(alice)
        policies.apply_policies(alice.conn, a.name, [
            policies.RowPolicy("no_secretland", "payments", ("data_scientist",), f"country <> '{SECRET}'")])
        alice.conn.execute(f"set role {a.name}__owner")
        alice.conn.execute(f"create table {a.name}.spine as select g as account_id, %s::timestamptz as event_time "
                           "from generate_series(1, 20) g", (T0 + dt.timedelta(days=2),))
        alice.conn.execute("reset role")
        with_country = alice.create_training_dataset("with_country", f"select * from {a.name}.spine",
                                                     ["payments:country", "payments:amount"])
        without = alice.create_training_dataset("without_country", f"select * from {a.name}.spine", ["payments:amount"])
        assert with_country.rows == without.rows == 20
    with fstore.connect(a.name, "bob", home=home) as bob:
        rows = bob.get_training_dataset("with_country")
        assert rows.num_rows == 15 and SECRET not in rows.column("country").to_pylist()
        # the policy's column is not in this dataset: it cannot be checked, so it hides every row
        assert bob.get_training_dataset("without_country").num_rows == 0
    with fstore.connect(a.name, "alice", home=home) as alice:
        assert alice.get_training_dataset("without_country").num_rows == 20
    tally.deny("dataset_by_owner_filtered_for_scientist", "dataset_without_policy_column_fails_closed")
    tally.allow("dataset_by_owner_whole_for_owner")


def test_copies_follow_the_share(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice")
    b = make_project(owner="carol", scientists=["dave"])
    d = make_project(owner="hank")
    with fstore.connect(a.name, "alice", home=home) as alice:
        _payments(alice)
        projects.share_project(alice.conn, a.name, b.name)
    with fstore.connect(b.name, "carol", home=home) as carol:
        carol.conn.execute(f"set role {b.name}__owner")
        carol.conn.execute(f"create table {b.name}.spine as select g as account_id, %s::timestamptz as event_time "
                           "from generate_series(1, 20) g", (T0 + dt.timedelta(days=2),))
        carol.conn.execute("reset role")
        copy = carol.create_training_dataset("from_a", f"select * from {b.name}.spine", [f"{a.name}.payments:amount"])
        assert copy.rows == 20
        projects.share_project(carol.conn, b.name, d.name)  # B shares with D, which A never shared with
    with fstore.connect(d.name, "hank", home=home) as hank:
        assert hank.conn.execute(f"select count(*) from {b.name}.{copy.table_name}").fetchone()[0] == 0
        assert hank.conn.execute(f"select count(*) from {b.name}.spine").fetchone()[0] == 20  # B's own data
    with fstore.connect(b.name, "dave", home=home) as dave:
        assert len(dave.get_training_dataset("from_a")) == 20
    with fstore.connect(a.name, "alice", home=home) as alice:
        projects.unshare_project(alice.conn, a.name, b.name)
        assert alice.conn.execute(
            "select details->'dropped'->0->>'name' from fstore.audit_log where project = %s "
            "and action = 'unshare_project' order by id desc limit 1", (a.name,)).fetchone()[0] == "from_a"
    with fstore.connect(b.name, "carol", home=home) as carol:
        with pytest.raises(FstoreError, match="does not exist"):
            carol.get_training_dataset("from_a")
        assert carol.conn.execute("select to_regclass(%s)", (f"{b.name}.{copy.table_name}",)).fetchone()[0] is None
        recorded = carol.conn.execute(
            "select details->>'reason' from fstore.audit_log where project = %s and action = 'drop_training_dataset'",
            (b.name,)).fetchone()[0]
        assert recorded == "unshared"
    tally.deny("partner_copy_never_reaches_third_project", "partner_copy_dropped_on_unshare",
               "partner_copy_catalog_gone_on_unshare")
    tally.allow("partner_builds_from_share", "partner_scientist_reads_copy", "unshare_records_dropped_copies")


def test_a_shared_copy_is_refused_by_name_once_its_source_is_not_visible(home: FstoreHome, make_project,
                                                                           tally) -> None:
    a = make_project(owner="alice")
    b = make_project(owner="carol")
    d = make_project(owner="hank")
    with fstore.connect(a.name, "alice", home=home) as alice:
        _payments(alice)
        projects.share_project(alice.conn, a.name, b.name)
    with fstore.connect(b.name, "carol", home=home) as carol:
        carol.create_training_dataset("from_a", "select 1::bigint as account_id, now() as event_time",
                                      [f"{a.name}.payments:amount"])
        projects.share_project(carol.conn, b.name, d.name)
    with connect(home, d.role("hank"), autocommit=True) as hank:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"built from project {a.name}"):
            hank.execute("select fstore.find_training_dataset('from_a', null, %s)", (b.name,))
    tally.deny("third_project_finds_partner_copy")


def test_a_new_project_with_an_old_name_reads_no_old_history(home: FstoreHome, tally) -> None:
    name = unique("reborn")
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, name, "olga")
    with connect(home, f"{name}__olga", autocommit=True) as olga:
        projects.add_member(home, olga, name, "oscar", "data-scientist")
        projects.remove_member(home, olga, name, "oscar")
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.delete_project(home, admin, name)
        projects.create_project(home, admin, name, "nina")
    try:
        with connect(home, f"{name}__nina", autocommit=True) as nina:
            actions = [a for (a,) in nina.execute(
                "select action from fstore.audit_log where project = %s order by id", (name,))]
            assert actions == ["create_project"]
        with connect(home, "fstore_admin", autocommit=True) as admin:
            everything = admin.execute("select count(*) from fstore.audit_log where project = %s", (name,)).fetchone()[0]
            assert everything >= 5  # the admin keeps the whole history
    finally:
        with connect(home, "fstore_admin", autocommit=True) as admin:
            projects.delete_project(home, admin, name)
    tally.deny("reborn_project_reads_old_audit")
    tally.allow("admin_reads_whole_audit_history")


def test_another_role_cannot_stall_a_group_s_commits(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice")
    d = make_project(owner="hank")
    with fstore.connect(a.name, "alice", home=home) as alice:
        fg = alice.create_feature_group("stall", 1, keys=["id"], features={"id": "bigint", "x": "double precision"})
        with connect(home, d.role("hank"), autocommit=True) as hank:
            if TEST_CLUSTER_WORKERS:  # the two-integer key space is the commit barrier's on a coordinator
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    hank.execute("select pg_advisory_lock(1718837249, %s)", (fg.id,))
            else:
                hank.execute("select pg_advisory_lock(1718837249, %s)", (fg.id,))  # the old commit lock's key
            hank.execute("select pg_advisory_lock(%s)", (fg.id,))
            alice.conn.execute("set lock_timeout = '5s'")
            fg.insert(pa.Table.from_pylist([{"id": 1, "x": 1.0, "event_time": T0}]))
            assert fg.read().num_rows == 1
    tally.deny("advisory_key_stalls_commits")
    tally.allow("commit_beside_foreign_advisory_lock")


def test_vector_search_filters_take_whole_qualified_names(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    with fstore.connect(a.name, "alice", home=home) as alice:
        alice.create_feature_group("items", 1, keys=["item_id"], online=True, options={"hnsw": ["embedding"]},
                                   features={"item_id": "bigint", "country": "text", "embedding": "vector(2)"})
    with fstore.connect(a.name, "bob", home=home) as bob:
        bob.conn.execute("create domain pg_temp.varchar as text check (pg_notify('x', value) is not null)")
        for where in ("country::pg_temp.varchar is not null", "pg_temp.lower(country) = 'x'",
                      "country::pg_catalog.varchar(2) = 'de'"):
            with pytest.raises(InvalidInput):
                bob.nearest("items", "embedding", [1.0, 0.0], where=where)
        assert bob.nearest("items", "embedding", [1.0, 0.0], where="country::varchar = 'de'").num_rows == 0
    tally.deny("filter_cast_to_temp_type", "filter_temp_function", "filter_cast_with_modifier")
    tally.allow("filter_cast_to_builtin")


def test_an_unshared_group_is_refused_by_name(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    d = make_project(owner="hank")
    with fstore.connect(d.name, "hank", home=home) as hank:
        hank.create_feature_group("private", 1, keys=["id"], features={"id": "bigint", "x": "double precision"})
    with fstore.connect(a.name, "bob", home=home) as bob:
        with pytest.raises(PermissionDenied, match=f"project {d.name} is not shared"):
            bob.get_historical_features("select 1::bigint as id, now() as event_time", [f"{d.name}.private:x"])
    tally.deny("unshared_group_refused_by_name")
