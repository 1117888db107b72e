"""Bias by slice follows row policies: a Data Scientist bound by an entity policy (the demo's
hide_pep_accounts), and a share partner, get slices of a feature group and label rates of
a training dataset over the rows they may read only -- a hidden row's slice value never
appears, not even folded -- while the Data Owner sees every slice; a project the data is
not shared with gets nothing. Each actor connects with their own certificate.

The stored statistics of a commit stay hidden from a bound reader (fstore.statistics_visible):
statistics per slice are computed now, as the caller (SECURITY INVOKER), so RLS filters them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pyarrow as pa
import pytest

import fstore
from fstore import policies, projects
from fstore.home import FstoreHome

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
HIDDEN_COUNTRY = "PEPLAND"
PEPS = (3, 7, 11)
ACCOUNTS = 40


def _world(home: FstoreHome, make_project) -> tuple[Any, Any, Any, int]:
    """Project A (alice owner, bob scientist) with accounts, an entity policy hiding PEPs, a group
    `profile` whose PEP rows are the only ones of country PEPLAND, and a labelled training dataset;
    A is shared with B (carol); D (hank) has no share."""
    a = make_project(owner="alice", scientists=["bob"])
    b = make_project(owner="carol")
    d = make_project(owner="hank")
    with fstore.connect(a.name, "alice", home=home) as alice:
        conn = alice.conn
        conn.execute(f"set role {a.name}__owner")
        conn.execute(f"create table {a.name}.accounts (account_id bigint primary key, is_pep boolean not null)")
        conn.execute(f"create table {a.name}.labels (account_id bigint, event_time timestamptz, is_fraud boolean)")
        conn.execute("reset role")
        conn.execute(f"insert into {a.name}.accounts select g, g = any(%s) from generate_series(1, {ACCOUNTS}) g",
                     (list(PEPS),))
        conn.execute(f"insert into {a.name}.labels select g, %s, g %% 3 = 0 from generate_series(1, {ACCOUNTS}) g",
                     (T0 + dt.timedelta(days=2),))
        policies.apply_policies(conn, a.name, [policies.RowPolicy(
            "hide_pep_accounts", "accounts", ("data_scientist",), "not is_pep", entity="account_id")])
        fg = alice.create_feature_group("profile", 1, keys=["account_id"], features={
            "account_id": "bigint", "country": "text", "is_pep": "boolean", "income": "double precision"})
        fg.insert(pa.Table.from_pylist([
            {"account_id": i, "country": HIDDEN_COUNTRY if i in PEPS else ("DE" if i % 2 else "FR"),
             "is_pep": i in PEPS, "income": 1000.0 * i, "event_time": T0} for i in range(1, ACCOUNTS + 1)]))
        alice.create_training_dataset("scored", f"select * from {a.name}.labels", ["profile:country"],
                                      label="is_fraud")
        projects.share_project(conn, a.name, b.name)
    return a, b, d, fg.id


def _slices(rows: list[tuple[Any, ...]]) -> set[Any]:
    return {r[0] for r in rows}


def test_slices_show_a_bound_reader_only_the_rows_they_may_read(home: FstoreHome, make_project, tally) -> None:
    a, b, d, fg_id = _world(home, make_project)
    visible = ACCOUNTS - len(PEPS)
    with fstore.connect(a.name, "alice", home=home) as alice:  # the Data Owner: every slice
        owner = alice.get_feature_group("profile").statistics(slice_by="country", min_slice_rows=1)
        assert {s.name for s in owner.slices} == {"(all)", "DE", "FR", HIDDEN_COUNTRY}
        assert owner.whole.rows == ACCOUNTS
        assert HIDDEN_COUNTRY in {s.name for s in alice.label_rate_by_slice("scored", "country", min_slice_rows=1).slices}
        assert alice.conn.execute("select fstore.statistics_visible(%s)", (fg_id,)).fetchone()[0] is True
    for project, user, prefix in ((a, "bob", ""), (b, "carol", f"{a.name}.")):
        with fstore.connect(project.name, user, home=home) as reader:
            conn = reader.conn
            # the stored statistics describe hidden rows: a bound reader gets none of them
            assert conn.execute("select fstore.statistics_visible(%s)", (fg_id,)).fetchone()[0] is False
            group = reader.get_feature_group(f"{prefix}profile")
            sliced = group.statistics(slice_by="country", min_slice_rows=1)
            assert {s.name for s in sliced.slices} == {"(all)", "DE", "FR"}, user
            assert sliced.whole.rows == visible and sum(s.rows for s in sliced.slices[1:]) == visible
            assert sliced.whole.features["income"]["max"] == 1000.0 * ACCOUNTS  # 40 is no PEP
            folded = group.statistics(slice_by="country")  # every slice is small: all in (other), PEPs not counted
            assert folded.folded is not None and folded.folded.rows == visible
            assert [s.name for s in group.statistics(slice_by="is_pep", min_slice_rows=1).slices] == ["(all)", "false"]
            # straight in SQL with the reader's own certificate
            rows = conn.execute("select slice, rows from fstore.slice_statistics(%s, 'country', null, null, 1)",
                                (fg_id,)).fetchall()
            assert HIDDEN_COUNTRY not in _slices(rows) and dict(rows)["(all)"] == visible
            if project is a:
                rates = reader.label_rate_by_slice("scored", "country", min_slice_rows=1)
                assert {s.name for s in rates.slices} == {"(all)", "DE", "FR"} and rates.whole.rows == visible
                rows = conn.execute("select slice from fstore.training_dataset_slices('scored', 'country', "
                                    "p_min_slice_rows => 1)").fetchall()
                assert HIDDEN_COUNTRY not in _slices(rows)
    tally.deny("slices_hidden_value_to_scientist", "slices_hidden_value_to_share_partner",
               "slices_hidden_rows_not_folded", "slices_sql_hidden_value_to_scientist",
               "label_rate_slices_hidden_value_to_scientist", "stored_statistics_hidden_from_bound_slicer")
    tally.allow("slices_owner_sees_every_value", "slices_of_visible_rows", "label_rate_slices_owner")


def test_a_project_without_a_share_gets_no_slices(home: FstoreHome, make_project, tally) -> None:
    a, _, d, fg_id = _world(home, make_project)
    with fstore.connect(d.name, "hank", home=home) as hank:
        with pytest.raises(psycopg.errors.NoDataFound, match="does not exist or is not visible"):
            hank.conn.execute("select * from fstore.slice_statistics(%s, 'country')", (fg_id,))
        with pytest.raises(psycopg.errors.NoDataFound, match="does not exist or is not visible"):
            hank.conn.execute("select * from fstore.training_dataset_slices('scored', 'country', p_project => %s)",
                              (a.name,))
        with pytest.raises(fstore.NotFound):
            hank.get_feature_group(f"{a.name}.profile")
    tally.deny("slices_of_unshared_group", "label_rate_slices_of_unshared_dataset")


def test_a_column_the_reader_may_not_read_is_refused_by_name(home: FstoreHome, make_project, tally) -> None:
    """A feature withheld from Data Scientists by column privileges (as a sensitive feature is) is
    left out of their slices, and asking for it, or slicing by it, is refused naming it."""
    a, _, _, fg_id = _world(home, make_project)
    with fstore.connect(a.name, "alice", home=home) as alice:
        conn = alice.conn
        conn.execute(f"set role {a.name}__owner")
        conn.execute(f"revoke select on {a.name}.profile__v1 from {a.name}__data_scientist")
        conn.execute(f"grant select (account_id, country, event_time, _commit_id) on {a.name}.profile__v1 "
                     f"to {a.name}__data_scientist")
        td_table = alice.training_dataset("scored").table_name
        conn.execute(f"revoke select on {a.name}.{td_table} from {a.name}__data_scientist")
        conn.execute(f"grant select (account_id, event_time, is_fraud, _row) on {a.name}.{td_table} "
                     f"to {a.name}__data_scientist")
        conn.execute("reset role")
    with fstore.connect(a.name, "bob", home=home) as bob:
        with pytest.raises(fstore.PermissionDenied, match="permission denied for column country of training dataset"):
            bob.label_rate_by_slice("scored", "country")
        assert bob.label_rate_by_slice("scored", "account_id").whole.rows == ACCOUNTS - len(PEPS)
        group = bob.get_feature_group("profile")
        assert list(group.statistics(slice_by="country").whole.features) == []  # income, is_pep withheld
        with pytest.raises(fstore.PermissionDenied, match="permission denied for feature income of feature group"):
            group.statistics(slice_by="country", features=["income"])
        with pytest.raises(fstore.PermissionDenied, match="permission denied for feature is_pep of feature group"):
            group.statistics(slice_by="is_pep")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for feature income"):
            bob.conn.execute("select * from fstore.slice_statistics(%s, 'income')", (fg_id,))
    tally.deny("slices_withheld_feature_named", "slices_by_withheld_feature_named", "slices_sql_withheld_feature",
               "label_rate_slices_by_withheld_column")
    tally.allow("slices_without_withheld_features", "label_rate_slices_by_readable_column")
