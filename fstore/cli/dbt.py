"""dbt commands: ``dbt-profile`` writes a user's profile; ``dbt run`` / ``dbt lineage`` run as that user.

Any dbt project that installs fstore's dbt package (``dbt_package/``) works; the
default is the demo's (``dbt_project/``).

Example::

    fstore dbt-profile fraud alice
    fstore dbt run fraud alice -- --select account_activity
    fstore dbt run fraud alice --project-dir ~/analytics -- --full-refresh
"""

from __future__ import annotations

from pathlib import Path

import click

from fstore import dbt as fdbt
from fstore.cli.base import console, home_of, main
from fstore.roles import project_user_role


@main.command("dbt-profile")
@click.argument("project")
@click.argument("user")
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Where to write profiles.yml (default $FSTORE_HOME/dbt/PROJECT__USER).")
@click.pass_context
def dbt_profile(ctx: click.Context, project: str, user: str, directory: str | None) -> None:
    """Write a dbt profile that logs in as PROJECT__USER with that user's certificate."""
    path = fdbt.write_profile(home_of(ctx), project, user, directory)
    console.print(f"wrote {path}")
    console.print(f"use it with: dbt run --profiles-dir {path.parent} --project-dir YOUR_PROJECT "
                  f"(one that installs {fdbt.PACKAGE_DIR}; the demo's: {fdbt.DEMO_PROJECT_DIR})", highlight=False)


@main.group("dbt")
def dbt_group() -> None:
    """Run dbt as a project-user (feature_group models commit to the feature store)."""


@dbt_group.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("project")
@click.argument("user")
@click.option("--project-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="dbt project directory, one that installs fstore's dbt package (default: the demo's).")
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def dbt_run(ctx: click.Context, project: str, user: str, project_dir: str | None,
            dbt_args: tuple[str, ...]) -> None:
    """`dbt run` as PROJECT__USER; arguments after `--` go to dbt (e.g. `-- --select x`).

    Runs `dbt deps` first when the project's packages are not installed yet.
    """
    args = list(dbt_args)
    if args[:1] == ["--"]:
        args = args[1:]
    run = fdbt.run_dbt(home_of(ctx), project, user, ["run", *args],
                       Path(project_dir) if project_dir else fdbt.DEMO_PROJECT_DIR)
    for name, upstream in run.lineage.items():
        tables = ", ".join(e["relation"] for e in upstream if e.get("relation"))
        console.print(f"lineage of {name}: {tables}", highlight=False)
    run.raise_for_failure()


@dbt_group.command("lineage")
@click.argument("project")
@click.argument("user")
@click.option("--target-path", type=click.Path(file_okay=False, exists=True), default=None,
              help="dbt target directory of the run (default: where `fstore dbt run` writes it).")
@click.pass_context
def dbt_lineage(ctx: click.Context, project: str, user: str, target_path: str | None) -> None:
    """Add the tables parsed from the last run's compiled SQL to each feature group's lineage."""
    home = home_of(ctx)
    role = project_user_role(project, user)
    updated = fdbt.record_lineage(home, role, target_path or fdbt.dbt_dir(home, role) / "target")
    for name, upstream in updated.items():
        tables = ", ".join(e["relation"] for e in upstream if e.get("relation"))
        console.print(f"lineage of {name}: {tables}", highlight=False)
    if not updated:
        console.print("no committed feature_group models in the last run")
