"""``fstore forget PROJECT --key k=v ... --as ROLE``: erase one entity everywhere in a project
(GDPR article 17; :mod:`fstore.erasure`). Data Owners only; the database decides and audits.

It prints the rows removed per table and what fstore cannot reach (files already
exported, by path; fits; copies in other projects); ``--json`` prints the whole report.

Example::

    fstore forget fraud --key account_id=42 --as fraud__alice
    fstore forget fraud --key account_id=42 --json --as fraud__alice
"""

from __future__ import annotations

import click
from rich.table import Table

from fstore import erasure
from fstore.cli.base import console, main, project_user_option, store_as
from fstore.cli.output import echo_json, json_option
from fstore.errors import InvalidInput
from fstore.roles import split_project_user


def parse_entity(values: tuple[str, ...]) -> dict[str, str]:
    """``--key account_id=42`` pairs as ``{column: value}`` (the database casts each value).

    >>> parse_entity(("account_id=42",))
    {'account_id': '42'}
    """
    if not values:
        raise InvalidInput("give the entity's keys: --key COLUMN=VALUE (for example --key account_id=42)")
    keys: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise InvalidInput(f"invalid --key {value!r}: use COLUMN=VALUE")
        if name in keys:
            raise InvalidInput(f"--key {name} given twice: one entity has one value per key")
        keys[name] = text
    return keys


def show_report(report: erasure.ErasureReport) -> None:
    """The rows removed per table, then what needs action outside fstore."""
    keys = ", ".join(f"{k}={v}" for k, v in report.keys.items())
    table = Table(title=f"erasure {report.erasure} of {keys} in {report.project}: {report.rows:,} rows removed")
    for column in ("table", "kind", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for t in report.tables:
        table.add_row(t["table"], t["kind"], f"{t['rows']:,}")
    console.print(table)
    recomputed = sum(1 for s in report.statistics if s["action"] == "recomputed")
    console.print(f"statistics of {recomputed} commit(s) recomputed; {report.served_vectors} served vector(s) removed; "
                  f"{len(report.temp_tables)} temporary table(s) in other sessions ({report.sessions_ended} "
                  "session(s) ended)")
    if not report.action_needed:
        console.print("nothing outside fstore's reach holds the entity")
        return
    console.print("[bold]needs action[/bold] (fstore cannot reach these):")
    for export in report.needs_action.get("exports", []):
        console.print(f"  file {export['path']} ({export['format']}, {export['training_dataset']}@"
                      f"{export['version']}, exported by {export['exported_by']}): {export['action']}")
    for fit in report.needs_action.get("feature_view_fits", []):
        console.print(f"  feature view {fit['feature_view']}@{fit['version']} fit on {fit['training_dataset']}@"
                      f"{fit['training_dataset_version']}: {fit['action']}")
    for copy in report.needs_action.get("copies_in_other_projects", []):
        console.print(f"  training dataset {copy['project']}.{copy['training_dataset']}@{copy['version']}: "
                      f"{copy['action']}")


@main.command("forget")
@click.argument("project")
@click.option("--key", "keys", multiple=True, metavar="COLUMN=VALUE",
              help="A key of the entity (repeat for a composite key), e.g. --key account_id=42.")
@project_user_option
@json_option
@click.pass_context
def forget_command(ctx: click.Context, project: str, keys: tuple[str, ...], as_role: str, as_json: bool) -> None:
    """Erase one entity everywhere in PROJECT, in one transaction (Data Owners only; audited).

    Removes its rows from every feature-group version (offline and online), stored training
    dataset, served-vector log and temporary table; recomputes the statistics of the commits
    that held them; lists exported files by path, which you must delete yourself.
    """
    entity = parse_entity(keys)
    role_project, _ = split_project_user(as_role)
    if role_project != project:
        raise InvalidInput(f"--as {as_role} is a member of {role_project}, not of {project}: "
                           f"run it as a Data Owner of {project} (--as {project}__USER)")
    with store_as(ctx, as_role) as fs:
        report = fs.forget(entity)
    if as_json:
        echo_json(report.as_dict())
    else:
        show_report(report)
