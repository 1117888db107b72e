"""dbt runs as the project-user: profiles carry the person's certificate; a Data Owner's
run commits, the same run as a Data Scientist is refused and changes nothing.
"""

from __future__ import annotations

import datetime as dt

import pytest
import yaml
from click.testing import CliRunner

from fstore.cli import main
from fstore.dbt import dbt_dir, merge_upstream, sql_relations, write_profile
from fstore.errors import PermissionDenied
from tests.dbt.conftest import DbtProject, assert_failed

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)

MODEL = """
{{ config(materialized='feature_group', keys=['account_id'], online=true, commit_mode='merge') }}
select account_id, event_time, amount from {{ source('raw', 'perm_events') }}
"""


def test_profiles_log_in_with_the_users_certificate(dbt_project: DbtProject, tmp_path) -> None:
    p = dbt_project
    result = CliRunner().invoke(main, ["--home", str(p.home.root), "dbt-profile", p.name, "alice",
                                       "--dir", str(tmp_path / "alice")])
    assert result.exit_code == 0, result.output
    alice = yaml.safe_load((tmp_path / "alice" / "profiles.yml").read_text())["fstore"]["outputs"]["dev"]
    assert alice["user"] == f"{p.name}__alice" and alice["role"] == f"{p.name}__owner"
    assert alice["password"] == "" and alice["sslmode"] == "verify-full" and alice["schema"] == p.name
    assert alice["sslcert"] == str(p.home.client_cert(f"{p.name}__alice"))
    assert oct((tmp_path / "alice" / "profiles.yml").stat().st_mode & 0o777) == "0o600"

    path = write_profile(p.home, p.name, "bob")
    assert path == dbt_dir(p.home, f"{p.name}__bob") / "profiles.yml"
    bob = yaml.safe_load(path.read_text())["fstore"]["outputs"]["dev"]
    assert bob["user"] == f"{p.name}__bob" and "role" not in bob  # a Data Scientist never becomes the owner

    result = CliRunner().invoke(main, ["--home", str(p.home.root), "dbt-profile", p.name, "nobody"])
    assert result.exit_code == 1 and "no certificate" in result.output


def test_a_data_scientists_run_is_refused_and_changes_nothing(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("perm_events", "account_id bigint, event_time timestamptz, amount numeric",
                [(1, T0, 5), (2, T0, 6)])
    p.write_model("perm_new_fg", MODEL)

    # a new feature group: bob may not create its tables
    run = p.run("perm_new_fg", user="bob")
    assert_failed(run, "permission denied")
    with pytest.raises(PermissionDenied):
        run.raise_for_failure()
    assert p.feature_group("perm_new_fg") is None and not p.exists("perm_new_fg__v1")

    # an existing one: alice created it; bob may not commit to it
    p.run("perm_new_fg").raise_for_failure()
    p.insert("perm_events", [(3, T0, 7)])
    before = p.state("perm_new_fg")
    assert_failed(p.run("perm_new_fg", user="bob"), "permission denied")
    assert p.state("perm_new_fg") == before

    # through the CLI: one line, exit status 1
    result = CliRunner().invoke(main, ["--home", str(p.home.root), "dbt", "run", p.name, "bob",
                                       "--project-dir", str(p.dir), "--", "--select", "perm_new_fg"])
    assert result.exit_code == 1 and "permission denied" in result.output
    assert p.state("perm_new_fg") == before

    # alice's run through the CLI commits the new row
    result = CliRunner().invoke(main, ["--home", str(p.home.root), "dbt", "run", p.name, "alice",
                                       "--project-dir", str(p.dir), "--", "--select", "perm_new_fg"])
    assert result.exit_code == 0, result.output
    assert p.count("perm_new_fg__v1") == 3


def test_lineage_from_compiled_sql() -> None:
    compiled = """
        with __dbt__cte__stg as (select * from "fstore"."fraud"."transactions"),
             recent as (select * from __dbt__cte__stg where amount > 0)
        select r.*, a.country from recent r join fraud.accounts a using (account_id)
         where exists (select 1 from "fraud"."labels" l where l.transaction_id = r.transaction_id)
    """
    assert sql_relations(compiled) == ["fraud.accounts", "fraud.labels", "fraud.transactions"]
    dbt_lineage = [{"relation": "fraud.transactions", "kind": "source", "found_by": ["dbt"]},
                   {"relation": "fraud.old", "kind": "table", "found_by": ["sql"]}]
    assert merge_upstream(dbt_lineage, ["fraud.accounts", "fraud.transactions"]) == [
        {"relation": "fraud.transactions", "kind": "source", "found_by": ["dbt", "sql"]},
        {"relation": "fraud.accounts", "kind": "table", "found_by": ["sql"]},
    ]
