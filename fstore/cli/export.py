"""``fstore export``: write a training dataset or a table to Parquet, CSV, NPY, TFRecord or Arrow.

Runs as the project-user given by ``--as`` (its certificate); the database decides
what that identity may read. A training dataset brings its label and split along.

Example::

    fstore export fraud_train --format tfrecord --out train.tfrecord --as fraud__bob
    fstore export fraud_train@2 --format npy --out train_npy --feature amount --feature n --as fraud__bob
    fstore export account_activity__v1 --format parquet --out activity.parquet --as fraud__bob
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from fstore import export
from fstore.cli.base import console, err_console, main, project_user_option, store_as
from fstore.cli.paths import check_target, describe_split_target, parents_option


@main.command("export")
@click.argument("source", metavar="TABLE_OR_TRAINING_DATASET")
@click.option("--format", "fmt", type=click.Choice(list(export.FORMATS)), default="parquet", show_default=True,
              help="File format.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=True),
              help="The file to write; a directory of that name, one file per split, when the rows are split "
                   "(a training dataset's split or --split-column), and always for npy.")
@parents_option
@project_user_option
@click.option("--label", "labels", multiple=True, help="Label column (default: the training dataset's).")
@click.option("--split-column", default=None, help="Write one file per value of this column "
              "(default: the training dataset's split).")
@click.option("--no-split", is_flag=True, help="Keep a training dataset's split column in one file.")
@click.option("--feature", "features", multiple=True, help="NPY: a column of features.npy (repeatable).")
@click.option("--dtype", default="float64", show_default=True, help="NPY: element type of features.npy.")
@click.option("--overwrite/--no-overwrite", default=True, show_default=True, help="Replace an existing export.")
@click.pass_context
def export_command(ctx: click.Context, source: str, fmt: str, out: str, parents: bool, as_role: str,
                   labels: tuple[str, ...], split_column: str | None, no_split: bool, features: tuple[str, ...],
                   dtype: str, overwrite: bool) -> None:
    """Export TABLE_OR_TRAINING_DATASET (``name`` or ``name@version``; or a table, ``table`` in
    your project or ``schema.table``) as streamed batches, with a progress bar.

    A split export (a training dataset's split, or --split-column) writes a directory at
    --out with one file per split: `--out train.csv` gives train.csv/train.csv and
    train.csv/test.csv. The parent of --out must exist (or pass --parents)."""
    check_target(Path(out), parents)
    with store_as(ctx, as_role) as fs:
        found = export.resolve_source(fs, source)
        label = list(labels) or found.label
        split = None if no_split else (split_column or found.split_column)
        if split:
            err_console.print(f"note: writing {describe_split_target(Path(out), [], fmt)}, split by column "
                              f"{split!r} (--no-split writes one file)", highlight=False)
        columns = [TextColumn("[bold]{task.description}"), SpinnerColumn(), BarColumn(),
                   TextColumn("{task.completed:,} rows"), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"{found.description} -> {fmt}", total=None)
            result = export.export_query(
                fs, found.query, out, fmt, label=label or None, split_column=split,
                features=list(features) or None, dtype=dtype, overwrite=overwrite,
                progress=lambda rows: progress.update(task, completed=rows))
            progress.update(task, total=result.rows, completed=result.rows)
    where = describe_split_target(result.path, list(result.splits), fmt) if split else str(result.path)
    splits = ", ".join(f"{k} {v:,}" for k, v in result.splits.items())
    console.print(f"wrote {result.rows:,} rows to {where} ({fmt}, {result.bytes:,} bytes"
                  + (f"; rows per split: {splits}" if splits else "") + ")", highlight=False)
