"""``fstore export``: write a training dataset or a table to Parquet, CSV, NPY, TFRecord or Arrow.

Runs as the project-user given by ``--as`` (its certificate); the database decides
what that identity may read. A training dataset brings its label and split along.

Example::

    fstore export fraud_train --format tfrecord --out train.tfrecord --as fraud__bob
    fstore export fraud_train@2 --format npy --out train_npy --feature amount --feature n --as fraud__bob
    fstore export account_activity__v1 --format parquet --out activity.parquet --as fraud__bob
"""

from __future__ import annotations

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

import fstore
from fstore import export
from fstore.cli import console, home_of, main
from fstore.roles import split_project_user


@main.command("export")
@click.argument("source", metavar="TABLE_OR_TRAINING_DATASET")
@click.option("--format", "fmt", type=click.Choice(list(export.FORMATS)), default="parquet", show_default=True,
              help="File format.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=True), help="File (or directory) to write.")
@click.option("--as", "as_role", required=True, envvar="FSTORE_AS", metavar="ROLE",
              help="Project-user to read as (its certificate), e.g. fraud__bob; default $FSTORE_AS.")
@click.option("--label", "labels", multiple=True, help="Label column (default: the training dataset's).")
@click.option("--split-column", default=None, help="Write one file per value of this column "
              "(default: the training dataset's split).")
@click.option("--no-split", is_flag=True, help="Keep a training dataset's split column in one file.")
@click.option("--feature", "features", multiple=True, help="NPY: a column of features.npy (repeatable).")
@click.option("--dtype", default="float64", show_default=True, help="NPY: element type of features.npy.")
@click.option("--overwrite/--no-overwrite", default=True, show_default=True, help="Replace an existing export.")
@click.pass_context
def export_command(ctx: click.Context, source: str, fmt: str, out: str, as_role: str, labels: tuple[str, ...],
                   split_column: str | None, no_split: bool, features: tuple[str, ...], dtype: str,
                   overwrite: bool) -> None:
    """Export TABLE_OR_TRAINING_DATASET (``name`` or ``name@version``; or a table, ``table`` in
    your project or ``schema.table``) as streamed batches, with a progress bar."""
    project, user = split_project_user(as_role)
    with fstore.connect(project, user, home=home_of(ctx)) as fs:
        found = export.resolve_source(fs, source)
        label = list(labels) or found.label
        split = None if no_split else (split_column or found.split_column)
        columns = [TextColumn("[bold]{task.description}"), SpinnerColumn(), BarColumn(),
                   TextColumn("{task.completed:,} rows"), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"{found.description} -> {fmt}", total=None)
            result = export.export_query(
                fs, found.query, out, fmt, label=label or None, split_column=split,
                features=list(features) or None, dtype=dtype, overwrite=overwrite,
                progress=lambda rows: progress.update(task, completed=rows))
            progress.update(task, total=result.rows, completed=result.rows)
    splits = ", ".join(f"{k} {v:,}" for k, v in result.splits.items())
    console.print(f"wrote {result.rows:,} rows to [bold]{result.path}[/] ({fmt}, {result.bytes:,} bytes"
                  + (f"; splits: {splits}" if splits else "") + ")", highlight=False)
