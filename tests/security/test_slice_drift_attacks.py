"""Drift per slice follows row policies and sensitive features: a Data Scientist bound by an
entity policy (hide_pep_accounts) and a share partner get per-slice drift computed on the rows
they may read only -- a hidden row's slice never appears, not even folded, and the rows counted
are the visible ones -- while the Data Owner sees every slice; slicing by a sensitive column is
refused naming it, for the project's Data Scientist and for a share partner alike, in Python
and in SQL; a project the data is not shared with gets nothing."""

from __future__ import annotations

import datetime as dt
import json
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


def _world(home: FstoreHome, make_project) -> tuple[Any, Any, Any, int, list[int]]:
    """Project A (alice owner, bob scientist) with an entity policy hiding PEPs and a group `profile`
    (is_pep sensitive) whose PEP rows are the only ones of country PEPLAND, committed twice (the
    second time PEPLAND's income moved); A is shared with B (carol); D (hank) has no share."""
    a = make_project(owner="alice", scientists=["bob"])
    b = make_project(owner="carol")
    d = make_project(owner="hank")
    with fstore.connect(a.name, "alice", home=home) as alice:
        conn = alice.conn
        conn.execute(f"set role {a.name}__owner")
        conn.execute(f"create table {a.name}.accounts (account_id bigint primary key, is_pep boolean not null)")
        conn.execute("reset role")
        conn.execute(f"insert into {a.name}.accounts select g, g = any(%s) from generate_series(1, {ACCOUNTS}) g",
                     (list(PEPS),))
        policies.apply_policies(conn, a.name, [policies.RowPolicy(
            "hide_pep_accounts", "accounts", ("data_scientist",), "not is_pep", entity="account_id")])
        fg = alice.create_feature_group("profile", 1, keys=["account_id"], features={
            "account_id": "bigint", "country": "text", "is_pep": "boolean", "income": "double precision"})
        commits = []
        for day, moved in ((0, 0.0), (10, 1e6)):
            commits.append(fg.insert(pa.Table.from_pylist([
                {"account_id": i, "country": HIDDEN_COUNTRY if i in PEPS else ("DE" if i % 2 else "FR"),
                 "is_pep": i in PEPS, "income": 1000.0 * i + (moved if i in PEPS else 0.0),
                 "event_time": T0 + dt.timedelta(days=day, seconds=i)} for i in range(1, ACCOUNTS + 1)])).id)
        fg.set_sensitive(["is_pep"])
        projects.share_project(conn, a.name, b.name)
    return a, b, d, fg.id, commits


def test_slice_drift_shows_a_bound_reader_only_the_rows_they_may_read(home: FstoreHome, make_project, tally) -> None:
    a, b, d, fg_id, commits = _world(home, make_project)
    visible = ACCOUNTS - len(PEPS)
    with fstore.connect(a.name, "alice", home=home) as alice:  # the Data Owner: every slice, PEPLAND drifted
        owner = alice.drift("profile", commits[0], commits[1], slice_by="country", min_slice_rows=1)
        assert {s.name for s in owner.slices} == {"DE", "FR", HIDDEN_COUNTRY}
        assert owner.drifted_slices == [HIDDEN_COUNTRY]
        assert owner.features[0].baseline_rows == ACCOUNTS
        assert [s.name for s in alice.drift("profile", commits[0], commits[1], slice_by="is_pep",
                                            min_slice_rows=1).slices] == ["false", "true"]
    for project, user, prefix in ((a, "bob", ""), (b, "carol", f"{a.name}.")):
        with fstore.connect(project.name, user, home=home) as reader:
            group = f"{prefix}profile"
            sliced = reader.drift(group, commits[0], commits[1], slice_by="country", min_slice_rows=1)
            assert {s.name for s in sliced.slices} == {"DE", "FR"}, user
            assert sum(s.baseline_rows for s in sliced.slices) == visible == sliced.features[0].baseline_rows
            assert sliced.drifted_slices == [] and sliced.drifted == []  # the moved rows are the hidden ones
            folded = reader.drift(group, commits[0], commits[1], slice_by="country", min_slice_rows=30)
            assert [(s.name, s.baseline_rows) for s in folded.slices] == [("(other)", visible)]  # PEPs not counted
            # slicing by the sensitive column: refused by name, in Python and in SQL
            with pytest.raises(fstore.PermissionDenied, match="permission denied for feature is_pep .*sensitive"):
                reader.drift(group, commits[0], commits[1], slice_by="is_pep")
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="feature is_pep"):
                reader.conn.execute("select * from fstore.slice_drift(%s, 'is_pep', %s::jsonb, %s::jsonb)",
                                    (fg_id, json.dumps({"commit": commits[0]}), json.dumps({"commit": commits[1]})))
            reader.conn.rollback()
            # straight in SQL with the reader's own certificate: the hidden slice never appears
            rows = reader.conn.execute(
                "select distinct slice, slice_baseline_rows from fstore.slice_drift(%s, 'country', %s::jsonb, "
                "%s::jsonb, p_min_slice_rows => 1)",
                (fg_id, json.dumps({"commit": commits[0]}), json.dumps({"commit": commits[1]}))).fetchall()
            assert HIDDEN_COUNTRY not in {r[0] for r in rows} and dict(rows)["(all)"] == visible
            reader.conn.rollback()
            assert "is_pep" not in {f.feature for s in sliced.slices for f in s.features}
    tally.deny("slice_drift_hidden_value_to_scientist", "slice_drift_hidden_value_to_share_partner",
               "slice_drift_hidden_rows_not_folded", "slice_drift_by_sensitive_to_scientist",
               "slice_drift_by_sensitive_to_share_partner", "slice_drift_sql_by_sensitive",
               "slice_drift_sql_hidden_value")
    tally.allow("slice_drift_owner_sees_every_value", "slice_drift_owner_slices_by_sensitive",
                "slice_drift_of_visible_rows")


def test_a_project_without_a_share_gets_no_slice_drift(home: FstoreHome, make_project, tally) -> None:
    a, _, d, fg_id, commits = _world(home, make_project)
    with fstore.connect(d.name, "hank", home=home) as hank:
        with pytest.raises(psycopg.errors.NoDataFound, match="does not exist or is not visible"):
            hank.conn.execute("select * from fstore.slice_drift(%s, 'country', %s::jsonb, %s::jsonb)",
                              (fg_id, json.dumps({"commit": commits[0]}), json.dumps({"commit": commits[1]})))
    tally.deny("slice_drift_of_unshared_group")
