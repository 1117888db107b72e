"""A Data Scientist of another project gets nothing without a share: not features, not
training data, not catalog records; with a share they read the same rows as the project."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg import sql

import fstore
from fstore import projects, training
from fstore.errors import NotFound, PermissionDenied
from tests.retrieval.conftest import commit_rows, create_group

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
SPINE = pd.DataFrame({"account_id": [1, 2, 3, 1], "event_time": [T0 + dt.timedelta(days=d) for d in (1, 2, 3, 4)]})


@pytest.fixture
def two_projects(fraud: Any, make_project: Any) -> tuple[Any, Any]:
    """fraud has a feature group and a training dataset; growth (Data Scientist dave) has its own group."""
    with fraud.connect("alice") as alice:
        group = create_group(alice, fraud.name, "activity", {"account_id": "bigint", "event_time": "timestamptz",
                                                             "n_tx": "integer"}, ["account_id"])
        commit_rows(alice, group, [(a, T0 + dt.timedelta(days=d), 10 * a + d) for a in (1, 2, 3) for d in range(5)])
    fstore.connect(fraud.name, "bob", home=fraud.home).create_training_dataset("secret_train", SPINE, ["activity:*"])
    growth = make_project(owner="erin", scientists=["dave"], prefix="growth")
    with growth.connect("erin") as erin:
        own = create_group(erin, growth.name, "activity", {"account_id": "bigint", "event_time": "timestamptz",
                                                           "visits": "integer"}, ["account_id"])
        commit_rows(erin, own, [(1, T0, 7)])
    return fraud, growth


def test_another_projects_scientist_gets_nothing_without_a_share(two_projects: Any, home: Any) -> None:
    fraud, growth = two_projects
    dave = fstore.connect(growth.name, "dave", home=home)
    ref = f"{fraud.name}.activity:*"

    with pytest.raises(PermissionDenied, match="is not shared with"):
        dave.get_historical_features(SPINE, [ref])
    with pytest.raises(PermissionDenied, match="is not shared with"):
        dave.create_training_dataset("copy", SPINE, [ref])
    with pytest.raises(PermissionDenied):  # their table as a spine: read as dave, refused
        dave.get_historical_features(f"{fraud.name}.activity__v1", ["activity:visits"])
    assert training.list_training_datasets(dave) == []
    with pytest.raises(NotFound):
        dave.get_training_dataset("secret_train")

    with growth.connect("dave") as conn:
        conn.execute("create temp table spine (account_id bigint, event_time timestamptz)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="is not shared with"):
            conn.execute("select fstore.training_data_sql('spine'::regclass, %s)", ([ref],))
        for table in ("activity__v1", "secret_train__td1"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("select * from {}").format(sql.Identifier(fraud.name, table)))
        assert conn.execute("select count(*) from fstore.training_datasets").fetchone()[0] == 0
        assert conn.execute("select count(*) from fstore.feature_groups where project = %s",
                            (fraud.name,)).fetchone()[0] == 0
        with pytest.raises(psycopg.errors.NoDataFound):
            conn.execute("select fstore.find_training_dataset('secret_train', null, %s)", (fraud.name,))

    # the project's own groups are still theirs: "activity" means growth's activity
    own = dave.get_historical_features(SPINE, ["activity:*"])
    assert own.column("visits").to_pylist() == [7, None, None, 7]


def test_a_share_gives_the_same_rows_and_unsharing_takes_them_back(two_projects: Any, home: Any) -> None:
    fraud, growth = two_projects
    bob = fstore.connect(fraud.name, "bob", home=home)
    dave = fstore.connect(growth.name, "dave", home=home)
    ref = f"{fraud.name}.activity:n_tx"
    with fraud.connect("alice") as alice:
        projects.share_project(alice, fraud.name, growth.name)

    shared = dave.get_historical_features(SPINE, [ref, "activity:visits"])
    assert shared.column("n_tx").equals(bob.get_historical_features(SPINE, ["activity:n_tx"]).column("n_tx"))
    assert shared.column("visits").to_pylist() == [7, None, None, 7]
    dataset = dave.create_training_dataset("from_shared", SPINE, [ref])
    assert dataset.project == growth.name
    assert [(g["project"], g["name"]) for g in dataset.feature_groups] == [(fraud.name, "activity")]

    with fraud.connect("alice") as alice:
        projects.unshare_project(alice, fraud.name, growth.name)
    with pytest.raises(PermissionDenied, match="is not shared with"):
        dave.get_historical_features(SPINE, [ref])
