"""Training-data commands: ``fstore train create``, ``list``, ``show`` and ``slices`` (label rate per slice).

They run as the project-user given by ``--as`` (its certificate); the database
decides what that identity may read and build.

Example::

    fstore train create fraud_train --spine fraud.labels --feature activity:* \\
        --label is_fraud --split train=0.8 --split test=0.2 --seed 7 --as fraud__bob
    fstore train list --as fraud__bob
    fstore train slices fraud_train --slice-by country --split train --as fraud__bob
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fstore import training
from fstore.cli.base import console, err_console, main, project_user_option, store_as
from fstore.cli.paths import check_target, describe_split_target, format_for, parents_option
from fstore.cli.output import echo_json, json_option, jsonable
from fstore.errors import Conflict, InvalidInput

FORMATS = ["parquet", "csv", "npy", "tfrecord", "arrow"]


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


@contextmanager
def cli_words() -> Iterator[None]:
    """The library's refusals of a reused name, in the command's words: ``new_version=True`` is
    ``--new-version``, ``version=N`` is ``--version N``."""
    try:
        yield
    except Conflict as exc:
        text = re.sub(r"\bversion=(\d+)", r"--version \1",
                      Exception.__str__(exc).replace("new_version=True", "--new-version"))
        raise Conflict(text, sqlstate=exc.sqlstate) from exc


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
@click.option("--path", type=click.Path(dir_okay=True), default=None,
              help="Also export to this file (format from --format or the suffix); with --split a directory "
                   "of that name, one file per split (train.parquet, test.parquet).")
@parents_option
@click.option("--description", default="")
@click.option("--new-version", is_flag=True, help="NAME exists: build its next version (without it, refused).")
@click.option("--version", "version", type=int, default=None,
              help="Build this version of NAME (the next one); refused otherwise.")
@project_user_option
@click.pass_context
def train_create(ctx: click.Context, name: str, spine: str, features: tuple[str, ...], labels: tuple[str, ...],
                 splits: tuple[str, ...], seed: int, event_time_column: str, ttl: str | None,
                 keys: tuple[str, ...], full_feature_names: bool, fmt: str | None, path: str | None,
                 parents: bool, description: str, new_version: bool, version: int | None, as_role: str) -> None:
    """Build training dataset NAME from a spine and features; store it with its provenance."""
    split = parse_split(splits)
    if path is not None:
        check_target(Path(path), parents)
        out_format = format_for(Path(path), fmt)
        if split and out_format:
            err_console.print(f"note: writing {describe_split_target(Path(path), list(split), out_format)}",
                              highlight=False)
    fs = store_as(ctx, as_role)
    kwargs = dict(label=list(labels) or None, split=split, seed=seed, format=fmt, path=path,
                  event_time_column=event_time_column, ttl=ttl, full_feature_names=full_feature_names,
                  keys=parse_keys(keys), description=description, version=version, new_version=new_version)
    with fs, cli_words():
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
        where = describe_split_target(Path(export["path"]), list(split or ()), export["format"]) if split \
            else str(export["path"])
        console.print(f"exported {export['rows']:,} rows as {export['format']} to {where}", highlight=False)


@train_group.command("list")
@click.option("--name", default=None, help="Only this dataset's versions.")
@json_option
@project_user_option
@click.pass_context
def train_list(ctx: click.Context, name: str | None, as_json: bool, as_role: str) -> None:
    """Training datasets visible to the identity (its project's and shared ones)."""
    with store_as(ctx, as_role) as fs:
        datasets = training.list_training_datasets(fs, name)
    if as_json:
        echo_json(datasets)
        return
    table = Table("project", "name", "version", "rows", "features", "label", "split", "created_by", "created_at")
    for d in datasets:
        table.add_row(d.project, d.name, str(d.version), f"{d.rows:,}", " ".join(d.features), " ".join(d.label),
                      ", ".join(d.split) if d.split else "", d.created_by, d.created_at[:19])
    console.print(table)


@train_group.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Default: the latest.")
@json_option
@project_user_option
@click.pass_context
def train_show(ctx: click.Context, name: str, version: int | None, as_json: bool, as_role: str) -> None:
    """The provenance of training dataset NAME: its spine, feature groups and the commits they were
    read up to, label, split, seed and exports (--json: the whole catalog record)."""
    with store_as(ctx, as_role) as fs:
        d = training.training_dataset(fs, name, version)
    if as_json:
        echo_json(d)
        return
    header = Table(show_header=False, box=None)
    header.add_column(style="bold")
    header.add_column()
    for key, value in (
        ("training dataset", f"{d.project}.{d.name} version {d.version}"),
        ("description", d.description or "-"), ("table", f"{d.project}.{d.table_name}"),
        ("rows", f"{d.rows:,}"), ("features", ", ".join(d.features)),
        ("label", ", ".join(d.label) or "-"), ("split", _split_text(d.split, d.seed)),
        ("spine", f"{', '.join(d.spine_columns)} (event time {d.event_time_column}, hash {d.spine_hash[:12]})"),
        ("ttl", d.ttl or "-"),
        ("feature groups", "\n".join(f"{g['project']}.{g['name']}@{g['version']} (commits <= {g.get('max_commit')})"
                                     for g in d.feature_groups) or "-"),
        ("created", f"{d.created_at[:19]} by {d.created_by}" + (f" (app {d.app_id})" if d.app_id else "")),
        ("exports", "\n".join(f"{e.get('format')} {e.get('path')} ({e.get('rows')} rows)" for e in d.exports) or "-"),
    ):
        header.add_row(key, str(value))
    console.print(header, highlight=False)


@train_group.command("slices")
@click.argument("name")
@click.option("--slice-by", required=True, metavar="COLUMN", help="A column of the dataset (not the label).")
@click.option("--version", type=int, default=None, help="Default: the latest.")
@click.option("--label", default=None, help="Which label (default: the dataset's only one).")
@click.option("--split", "split_name", default=None, help="Only the rows of this split (e.g. train).")
@click.option("--min-slice-rows", type=int, default=30, show_default=True,
              help="Smaller slices are folded into one '(other)' slice.")
@click.option("--max-difference", type=float, default=0.1, show_default=True,
              help="Flag a slice whose label rate differs from the rest's by at least this much ...")
@click.option("--alpha", type=float, default=0.05, show_default=True,
              help="... and whose two-proportion z test gives p < alpha (0 or less: no test).")
@json_option
@project_user_option
@click.pass_context
def train_slices(ctx: click.Context, name: str, slice_by: str, version: int | None, label: str | None,
                 split_name: str | None, min_slice_rows: int, max_difference: float, alpha: float, as_json: bool,
                 as_role: str) -> None:
    """The label rate of training dataset NAME per value of COLUMN, each slice against the rest,
    over the rows you may read; slices that differ beyond the thresholds are flagged."""
    from fstore.cli.slices import show_label_rates
    from fstore.slices import label_rate_by_slice

    with store_as(ctx, as_role) as fs:
        rates = label_rate_by_slice(fs, name, slice_by, version=version, label=label, split=split_name,
                                    min_slice_rows=min_slice_rows, max_difference=max_difference,
                                    alpha=alpha if alpha > 0 else None)
    if as_json:
        echo_json({**jsonable(rates), "flagged": rates.flagged})
        return
    show_label_rates(rates)


def _split_text(split: dict[str, Any] | None, seed: int) -> str:
    if not split:
        return "-"
    parts = [f"{k} {'..'.join(x or '' for x in v) if isinstance(v, list) else v}" for k, v in split.items()]
    return ", ".join(parts) + (f" (seed {seed})" if all(not isinstance(v, list) for v in split.values()) else "")
