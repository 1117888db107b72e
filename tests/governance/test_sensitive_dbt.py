"""Sensitive features from dbt: a column's ``meta: {sensitive: true}`` in the model's YAML marks it,
through a real ``dbt run`` with the Data Owner's certificate; the next version (a bumped
``version``) carries the mark; ``sensitive: false`` unmarks it; a bad value is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

import fstore
from fstore import projects
from fstore.connection import connect
from fstore.home import FstoreHome
from tests.conftest import unique
from tests.dbt.conftest import DbtProject, assert_failed

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
SPINE = pa.table({"account_id": [1, 2], "event_time": [T0 + dt.timedelta(days=1)] * 2})


@pytest.fixture(scope="module")
def project(home: FstoreHome, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbtProject]:
    name = unique("dbs")
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, name, "alice")
    with connect(home, f"{name}__alice", autocommit=True) as alice:
        projects.add_member(home, alice, name, "bob", "data-scientist")
    p = DbtProject(home, name, tmp_path_factory.mktemp(name))
    try:
        yield p
    finally:
        p.close()
        with connect(home, "fstore_admin", autocommit=True) as admin:
            projects.delete_project(home, admin, name)


def _model(p: DbtProject, version: int, flag: Any) -> None:
    (p.dir / "models" / "kyc.sql").write_text(f"""
{{{{ config(materialized='feature_group', keys=['account_id'], event_time='event_time', version={version},
            online=true) }}}}
select account_id, event_time, country, is_pep from {{{{ source('raw', 'accounts') }}}}
""")
    column: dict[str, Any] = {"name": "is_pep", "description": "politically exposed person"}
    if flag is not None:
        column["meta"] = {"sensitive": flag}
    (p.dir / "models" / "kyc.yml").write_text(yaml.safe_dump({"version": 2, "models": [
        {"name": "kyc", "columns": [{"name": "country", "description": "country"}, column]}]}))


def _marks(p: DbtProject) -> list[str]:
    return [r[0] for r in p.query("select feature from fstore.sensitive_features where project = %s "
                                  "and feature_group = 'kyc'", (p.name,))]


def _bob_refused(p: DbtProject, ref: str) -> bool:
    with fstore.connect(p.name, "bob", home=p.home) as bob:
        assert bob.get_historical_features(SPINE, [f"{ref}:country"]).column("country").to_pylist() == ["DE", "FR"]
        try:
            bob.get_historical_features(SPINE, [f"{ref}:is_pep"])
        except fstore.PermissionDenied as exc:
            assert "permission denied for feature is_pep of feature group" in str(exc)
            return True
        return False


def test_column_meta_marks_and_the_next_version_keeps_it(project: DbtProject) -> None:
    p = project
    p.raw_table("accounts", "account_id bigint, event_time timestamptz, country text, is_pep boolean",
                [(1, T0, "DE", True), (2, T0, "FR", False)])
    _model(p, 1, True)
    p.run("kyc").raise_for_failure()
    assert _marks(p) == ["is_pep"] and _bob_refused(p, "kyc@1")
    # version 2 from a YAML that no longer says it: the mark is the group's, carried forward
    _model(p, 2, None)
    p.run("kyc").raise_for_failure()
    assert p.feature_group("kyc", 2) is not None
    assert _marks(p) == ["is_pep"] and _bob_refused(p, "kyc@2")
    # sensitive: false unmarks it, for every version
    _model(p, 2, False)
    p.run("kyc").raise_for_failure()
    assert _marks(p) == [] and not _bob_refused(p, "kyc@2") and not _bob_refused(p, "kyc@1")
    # a value that is not true or false is refused by name
    _model(p, 2, "yes")
    assert_failed(p.run("kyc"), "column is_pep: meta `sensitive` must be true or false")
