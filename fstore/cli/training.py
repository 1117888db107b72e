"""Training-data commands: ``fstore train create``, ``fstore train list``, ``fstore train show``.

They run as the project-user given by ``--as`` (its certificate); the database
decides what that identity may read and build.

Example::

    fstore train create fraud_train --spine fraud.labels --feature activity:* \\
        --label is_fraud --split train=0.8 --split test=0.2 --seed 7 --as fraud__bob
    fstore train list --as fraud__bob
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import fstore
from fstore import training
from fstore.cli import as_option, console, home_of, main
from fstore.errors import InvalidInput
from fstore.roles import split_project_user

FORMATS = ["parquet", "csv", "npy", "tfrecord", "arrow"]


def _store(ctx: click.Context, as_role: str) -> fstore.FeatureStore:
    project, user = split_project_user(as_role)
    return fstore.connect(project, user, home=home_of(ctx))


def parse_split(values: tuple[str, ...]) -> dict[str, Any] | None:
    """``train=0.8`` (a fraction) or ``train=2024-01-01..2024-06-01`` (a time range; an empty end is open).

    >>> parse_split(("train=0.8", "test=0.2"))
    {'train': 0.8, 'test': 0.2}
    >>> parse_split(("old=..2024-06-01", "new=2024-06-01.."))
    {'old': [None, '2024-06-01'], 'new': ['2024-06-01', None]}
    """
    if not values:
        return None
    split: dict[str, Any] = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep or not name:
            raise InvalidInput(f"invalid --split {value!r}: use NAME=FRACTION or NAME=START..END")
        if ".." in spec:
            start, _, end = spec.partition("..")
            split[name] = [start or None, end or None]
        else:
            try:
                split[name] = float(spec)
            except ValueError:
                raise InvalidInput(f"invalid --split {value!r}: {spec!r} is not a fraction") from None
    return split


def parse_keys(values: tuple[str, ...]) -> dict[str, str] | None:
    """``--key customer=account_id`` pairs as a mapping of spine column to feature-group key."""
    if not values:
        return None
    keys = {}
    for value in values:
        spine_column, sep, key = value.partition("=")
        if not sep or not spine_column or not key:
            raise InvalidInput(f"invalid --key {value!r}: use SPINE_COLUMN=GROUP_KEY")
        keys[spine_column] = key
    return keys


@main.group("train")
def train_group() -> None:
    """Build point-in-time training datasets and list them."""


@train_group.command("create")
@click.argument("name")
@click.option("--spine", required=True, help="A table ([schema.]table) or one SELECT query, run as you.")
@click.option("--feature", "features", multiple=True, required=True, metavar="REF",
              help="group:feature, group:*, group@2:feature or project.group:feature (repeat).")
@click.option("--label", "labels", multiple=True, metavar="COLUMN", help="Spine column holding the label (repeat).")
@click.option("--split", "splits", multiple=True, metavar="NAME=SPEC",
              help="train=0.8 (fraction, with --seed) or train=2024-01-01..2024-06-01 (time range) (repeat).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of a fraction split.")
@click.option("--event-time-column", default="event_time", show_default=True)
@click.option("--ttl", default=None, help="Ignore feature rows older than this, e.g. '30 days'.")
@click.option("--key", "keys", multiple=True, metavar="SPINE_COLUMN=GROUP_KEY", help="Map a spine column to a key.")
@click.option("--full-feature-names", is_flag=True, help="Name features group__feature.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="Also export to --path.")
@click.option("--path", type=click.Path(dir_okay=True), default=None, help="Export file (format from --format or suffix).")
@click.option("--description", default="")
@as_option
@click.pass_context
def train_create(ctx: click.Context, name: str, spine: str, features: tuple[str, ...], labels: tuple[str, ...],
                 splits: tuple[str, ...], seed: int, event_time_column: str, ttl: str | None,
                 keys: tuple[str, ...], full_feature_names: bool, fmt: str | None, path: str | None,
                 description: str, as_role: str) -> None:
    """Build training dataset NAME from a spine and features; store it with its provenance."""
    fs = _store(ctx, as_role)
    kwargs = dict(label=list(labels) or None, split=parse_split(splits), seed=seed, format=fmt, path=path,
                  event_time_column=event_time_column, ttl=ttl, full_feature_names=full_feature_names,
                  keys=parse_keys(keys), description=description)
    with fs:
        if path is None:
            dataset = training.create_training_dataset(fs, name, spine, list(features), **kwargs)
        else:
            columns = (TextColumn("exporting"), BarColumn(), TextColumn("{task.completed:,} rows"),
                       TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as bar:
                task = bar.add_task("export", total=None)
                dataset = training.create_training_dataset(
                    fs, name, spine, list(features), progress=lambda rows: bar.update(task, completed=rows),
                    **kwargs)
    groups = ", ".join(f"{g['project']}.{g['name']}@{g['version']} (commits <= {g.get('max_commit')})"
                       for g in dataset.feature_groups)
    console.print(f"created training dataset {dataset.name} version {dataset.version}: {dataset.rows:,} rows "
                  f"in {dataset.project}.{dataset.table_name} from {groups}", highlight=False)
    for export in dataset.exports:
        console.print(f"exported {export['rows']:,} rows as {export['format']} to {export['path']}", highlight=False)


@train_group.command("list")
@click.option("--name", default=None, help="Only this dataset's versions.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@as_option
@click.pass_context
def train_list(ctx: click.Context, name: str | None, as_json: bool, as_role: str) -> None:
    """Training datasets visible to the identity (its project's and shared ones)."""
    with _store(ctx, as_role) as fs:
        datasets = training.list_training_datasets(fs, name)
    if as_json:
        click.echo(json.dumps([d.__dict__ for d in datasets], indent=2, default=str))
        return
    table = Table("project", "name", "version", "rows", "features", "label", "split", "created_by", "created_at")
    for d in datasets:
        table.add_row(d.project, d.name, str(d.version), f"{d.rows:,}", " ".join(d.features), " ".join(d.label),
                      ", ".join(d.split) if d.split else "", d.created_by, d.created_at[:19])
    console.print(table)


@train_group.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Default: the latest.")
@as_option
@click.pass_context
def train_show(ctx: click.Context, name: str, version: int | None, as_role: str) -> None:
    """The provenance of training dataset NAME, as JSON."""
    with _store(ctx, as_role) as fs:
        dataset = training.training_dataset(fs, name, version)
    click.echo(json.dumps(dataset.__dict__, indent=2, default=str))
