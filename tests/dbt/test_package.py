"""fstore's dbt package in an analytics engineer's own, fresh dbt project, installed as
any dbt package is: ``packages.yml`` (the package's local path, or a git repository),
the dispatch entry in ``dbt_project.yml``, ``dbt deps``. Then ``dbt ls``, ``run``,
``test``, ``build``, ``run --full-refresh`` and ``docs generate`` as alice (a Data
Owner, with her certificate) against the real server: a plain view model, a feature
group over it, a table over the feature group, and data tests on all three.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg import sql

from fstore.connection import connect
from fstore.dbt import PACKAGE_DIR, DbtRun, run_dbt
from fstore.policies import RowPolicy, apply_policies
from tests.dbt.conftest import DbtProject, write_user_project

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)

MODELS = {
    # a plain dbt view: dbt-postgres creates <name>__dbt_tmp and renames it; both must be
    # security_invoker for the database to accept them
    "stg_payments": """
{{ config(materialized='view') }}
select account_id, paid_at as event_time, amount, consent from {{ source('raw', 'pkg_payments') }}
""",
    "payment_features": """
{{ config(materialized='feature_group', keys=['account_id'], online=true, commit_mode='merge') }}
select account_id, event_time, amount, amount > 10 as large
  from {{ ref('stg_payments') }}
 where event_time > {{ fstore.watermark() }}
""",
    "daily_amounts": """
{{ config(materialized='table') }}
select date_trunc('day', event_time) as day, count(*) as payments, sum(amount) as amount
  from {{ ref('payment_features') }} group by 1
""",
}

SCHEMA = {
    "version": 2,
    "sources": [{"name": "raw", "schema": "{{ target.schema }}", "tables": [{"name": "pkg_payments"}]}],
    "models": [
        {"name": "stg_payments", "description": "Payments as the features read them.",
         "columns": [{"name": "account_id", "data_tests": ["not_null"]}]},
        {"name": "payment_features", "description": "What each account paid.",
         "columns": [{"name": "account_id", "description": "The account.", "data_tests": ["not_null"]},
                     {"name": "amount", "description": "Amount paid.", "data_tests": ["not_null"]}]},
        {"name": "daily_amounts", "columns": [{"name": "day", "data_tests": ["unique", "not_null"]}]},
    ],
}
TESTS = 5


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def user_project(directory: Path, name: str, package: dict[str, Any] | None = None,
                 dispatch: bool = True) -> Path:
    """An analytics engineer's fresh project: fstore's package, these models, their YAML."""
    write_user_project(directory, name, package)
    if not dispatch:
        config = yaml.safe_load((directory / "dbt_project.yml").read_text())
        del config["dispatch"]
        (directory / "dbt_project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    for model, body in MODELS.items():
        (directory / "models" / f"{model}.sql").write_text(body)
    (directory / "models" / "schema.yml").write_text(yaml.safe_dump(SCHEMA, sort_keys=False))
    return directory


def statuses(run: DbtRun) -> dict[str, str]:
    """unique_id -> status of each model and test dbt ran (not the package's on-run-start hook)."""
    return {r.node.unique_id: str(r.status) for r in run.result.results
            if not r.node.unique_id.startswith("operation.")}


def view_options(p: DbtProject, view: str) -> list[str] | None:
    rows = p.query("select c.reloptions from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                   "where n.nspname = %s and c.relname = %s and c.relkind = 'v'", (p.name, view))
    return rows[0][0] if rows else None


@pytest.fixture(scope="module")
def payments(dbt_project: DbtProject) -> DbtProject:
    """The raw table the user's project reads, and a row policy: Data Scientists see only
    the payments whose holders consented."""
    p = dbt_project
    p.raw_table("pkg_payments", "account_id bigint, paid_at timestamptz, amount numeric(10,2), consent boolean",
                [(1, at(1), Decimal("5.00"), True), (1, at(2), Decimal("20.00"), True),
                 (2, at(3), Decimal("7.50"), False)])
    apply_policies(p.alice, p.name, [RowPolicy("consented", "pkg_payments", ("data_scientist",), "consent")])
    return p


def test_a_fresh_project_installs_the_package_and_runs_builds_tests_lists_and_documents(
        payments: DbtProject, tmp_path: Path) -> None:
    p = payments
    project = user_project(tmp_path / "analytics", "analytics")

    def dbt(*args: str) -> DbtRun:
        return run_dbt(p.home, p.name, "alice", list(args), project)

    # dbt deps: the package, its macros only
    dbt("deps").raise_for_failure()
    assert (project / "dbt_packages" / "fstore" / "dbt_project.yml").exists()

    # dbt ls --select: the user's nodes, none of the package's (it has no models or sources)
    listed = dbt("ls", "--select", "+payment_features", "--resource-type", "model", "--output", "name")
    listed.raise_for_failure()
    assert sorted(listed.result) == ["payment_features", "stg_payments"]
    everything = dbt("ls", "--output", "name")
    everything.raise_for_failure()
    assert not any(name.startswith("fstore.") for name in everything.result), everything.result
    assert {n for n in everything.result if not n.startswith(("not_null", "unique"))} == {
        "stg_payments", "payment_features", "daily_amounts", "raw.pkg_payments"}

    # dbt run: the view (security_invoker), the feature group (its relation is its offline
    # table), the table over it
    first = dbt("run")
    first.raise_for_failure()
    assert view_options(p, "stg_payments") == ["security_invoker=true"]
    fg = p.feature_group("payment_features")
    assert fg["offline_table"] == "payment_features__v1"
    assert fg["description"] == "What each account paid."
    assert [c["rows"] for c in p.commits(fg["id"])] == [3]
    assert p.rows("daily_amounts") == [(dt.datetime(2024, 3, 1, tzinfo=UTC), 3, Decimal("32.50"))]
    assert [(e["relation"], e["kind"]) for e in fg["upstream"]] == [(f"{p.name}.stg_payments", "model")]

    # the view reads with its reader's rights: bob (a Data Scientist) sees the consented
    # payments only, as he does in the table itself; alice sees them all
    with connect(p.home, f"{p.name}__bob", autocommit=True) as bob:
        seen = bob.execute(sql.SQL("select account_id from {} order by 1").format(
            sql.Identifier(p.name, "stg_payments"))).fetchall()
    assert seen == [(1,), (1,)]
    assert p.count("stg_payments") == 3

    # a second run: dbt replaces the view (create __dbt_tmp, rename) and it stays
    # security_invoker; the feature group has nothing new and records no commit
    again = dbt("run")
    again.raise_for_failure()
    assert view_options(p, "stg_payments") == ["security_invoker=true"]
    assert not p.exists("stg_payments__dbt_tmp") and not p.exists("stg_payments__dbt_backup")
    assert [c["rows"] for c in p.commits(fg["id"])] == [3]
    assert any("payment_features version 1: nothing new to commit" in line for line in again.logs), again.logs

    # dbt test: the data tests of the view, the feature group and the table
    tested = dbt("test")
    tested.raise_for_failure()
    assert sorted(statuses(tested).values()) == ["pass"] * TESTS

    # dbt build: new data, then models and tests in the graph's order
    p.insert("pkg_payments", [(2, at(30), Decimal("12.00"), True)])
    built = dbt("build")
    built.raise_for_failure()
    assert sorted(statuses(built).values()) == ["pass"] * TESTS + ["success"] * 3
    commits = p.commits(fg["id"])
    assert [(c["rows"], c["source"]) for c in commits] == [(3, "dbt"), (1, "dbt")]
    assert p.rows("payment_features__v1__online", "account_id") == [
        (1, Decimal("20.00"), True, at(2)), (2, Decimal("12.00"), True, at(30))]
    assert len(p.rows("daily_amounts")) == 2

    # --full-refresh: the view and the table are rebuilt; the feature group is recomputed
    # from scratch and committed with merge: all of it is stored, so no commit, same tables
    oid = p.query("select %s::regclass::oid", (f"{p.name}.payment_features__v1",))[0][0]
    refreshed = dbt("run", "--full-refresh")
    refreshed.raise_for_failure()
    assert any("--full-refresh: the model is recomputed from scratch and committed with commit_mode 'merge'"
               in line for line in refreshed.logs), refreshed.logs
    assert p.commits(fg["id"]) == commits
    assert p.query("select %s::regclass::oid", (f"{p.name}.payment_features__v1",))[0][0] == oid
    assert view_options(p, "stg_payments") == ["security_invoker=true"]
    assert p.count("payment_features__v1") == 4

    # dbt docs generate: the catalog has each node's relation; _commit_id is described
    docs = dbt("docs", "generate")
    docs.raise_for_failure()
    catalog = json.loads((docs.target_path / "catalog.json").read_text())
    nodes = catalog["nodes"]
    assert nodes["model.analytics.stg_payments"]["metadata"]["type"] == "VIEW"
    fg_node = nodes["model.analytics.payment_features"]
    assert fg_node["metadata"]["name"] == "payment_features__v1"
    assert list(fg_node["columns"]) == ["account_id", "amount", "large", "event_time", "_commit_id"]
    assert fg_node["columns"]["_commit_id"]["comment"].startswith("the commit that wrote this row (fstore.commits.id)")
    assert fg_node["columns"]["amount"]["comment"] == "Amount paid."
    manifest = json.loads((docs.target_path / "manifest.json").read_text())
    assert manifest["nodes"]["model.analytics.payment_features"]["relation_name"] == \
        f'"fstore"."{p.name}"."payment_features__v1"'
    assert [n["resource_type"] for n in manifest["nodes"].values() if n["package_name"] == "fstore"] == ["operation"]
    assert not [s for s in manifest["sources"].values() if s["package_name"] == "fstore"]
    assert (docs.target_path / "index.html").exists()


def test_installed_from_git_and_without_the_dispatch_entry_the_run_says_what_to_add(
        payments: DbtProject, tmp_path: Path) -> None:
    p = payments
    # the package from a git repository, in a subdirectory at a tag, as packages.yml names it
    repository = tmp_path / "fstore.git"
    shutil.copytree(PACKAGE_DIR, repository / "dbt_package")
    git = ["git", "-C", str(repository), "-c", "user.name=ci", "-c", "user.email=ci@example.org"]
    for command in (["init", "-q", "-b", "main"], ["add", "dbt_package"], ["commit", "-q", "-m", "fstore"],
                    ["tag", "v0.1.0"]):
        subprocess.run(git + command, check=True, capture_output=True)
    package = {"git": f"file://{repository}", "revision": "v0.1.0", "subdirectory": "dbt_package"}
    project = user_project(tmp_path / "gitproject", "gitproject", package, dispatch=False)

    def dbt(*args: str) -> DbtRun:
        return run_dbt(p.home, p.name, "alice", list(args), project)

    dbt("deps").raise_for_failure()
    assert (project / "dbt_packages" / "fstore" / "macros" / "feature_group.sql").exists()

    # without the dispatch entry, dbt's own macros would name the feature group without its
    # version and create views the database refuses: the run stops first and names the fix
    relations = "select relname from pg_class where relnamespace = %s::regnamespace order by 1"
    before = (p.query(relations, (p.name,)), p.query("select count(*) from fstore.commits"))
    refused = dbt("run")
    assert not refused.success
    message = str(refused.exception)
    assert "fstore's dbt macros are not dispatched for project gitproject" in message
    assert "search_order: ['gitproject', 'fstore', 'dbt']" in message
    assert (p.query(relations, (p.name,)), p.query("select count(*) from fstore.commits")) == before

    # with it, the same project runs
    config = yaml.safe_load((project / "dbt_project.yml").read_text())
    config["dispatch"] = [{"macro_namespace": "dbt", "search_order": ["gitproject", "fstore", "dbt"]}]
    (project / "dbt_project.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    dbt("run", "--select", "stg_payments").raise_for_failure()
    assert view_options(p, "stg_payments") == ["security_invoker=true"]

    # fstore.watermark() outside a feature group, and a materialized view: named refusals
    (project / "models" / "wrong_watermark.sql").write_text(
        "{{ config(materialized='view') }}\nselect * from {{ ref('stg_payments') }} "
        "where event_time > {{ fstore.watermark() }}")
    (project / "models" / "matview.sql").write_text(
        "{{ config(materialized='materialized_view') }}\nselect * from {{ ref('stg_payments') }}")
    wrong = dbt("run", "--select", "wrong_watermark matview")
    failed = {f.unique_id.rsplit(".", 1)[1]: " ".join(f.message.split()) for f in wrong.failures}
    assert "fstore.watermark() is the latest event time a feature group has committed; it works only in a " \
           "model with materialized='feature_group'" in failed["wrong_watermark"]
    assert "materialized views are not allowed in project" in failed["matview"]
    assert not p.exists("wrong_watermark") and not p.exists("matview")


def test_incremental_models_run_as_a_data_owner(payments: DbtProject, tmp_path: Path) -> None:
    """dbt's own incremental materialization stages its later runs in a temporary table as
    the project's owner role: that role may create temporary tables (and nothing it makes
    there reaches a project table)."""
    p = payments
    project = tmp_path / "increments"
    write_user_project(project, "increments")
    (project / "models" / "amounts_so_far.sql").write_text("""
{{ config(materialized='incremental', unique_key='account_id') }}
select account_id, sum(amount) as amount from {{ source('raw', 'pkg_payments') }} group by 1
""")
    (project / "models" / "schema.yml").write_text(yaml.safe_dump(
        {"version": 2, "sources": [{"name": "raw", "schema": "{{ target.schema }}", "tables": [{"name": "pkg_payments"}]}]}))
    for _ in range(2):  # the second run is the incremental one
        run = run_dbt(p.home, p.name, "alice", ["run"], project)
        run.raise_for_failure()
    assert p.query(f"select account_id, amount from {p.name}.amounts_so_far order by 1") == p.query(
        f"select account_id, sum(amount) from {p.name}.pkg_payments group by 1 order by 1")
