"""Exports of a training dataset or any query: Parquet, CSV, NPY, TFRecord, Arrow IPC.

Rows stream from an Arrow ``RecordBatchReader`` (the database's ADBC cursor, or a
training-data builder) one batch at a time, so memory stays bounded whatever the
size. Every export is written under a temporary name in the target's directory and
renamed into place at the end; on any error the temporary files are removed and
nothing appears under the final name.

Layout on disk:

* ``parquet``, ``csv``, ``arrow``, ``tfrecord``: one file at ``path`` (TFRecord adds
  its feature spec ``<path>.spec.json``);
* with ``split_column``: a directory at ``path`` with one file per split value
  (``train.parquet``, ``test.parquet``; TFRecord adds ``spec.json``), the split
  column itself left out;
* ``npy``: a directory with ``features.npy`` (2-D) and ``labels.npy`` (when a label is
  given), per split in ``<split>/`` subdirectories, and ``meta.json`` naming the
  feature columns in order.

A training dataset is exported by name (:func:`export`): its label and split come
from its record, its rows come in spine order, and the internal ``_row`` column is
never written.

Example::

    result = export(fs, "fraud_train", "train.tfrecord")           # the latest version, labelled
    export_query(fs, "account_activity__v1", "activity.parquet", "parquet")
    ds = tf_dataset(fs, "train.tfrecord", batch_size=256)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from fstore.connection import adbc_session
from fstore.datasets import TrainingDataset, dataset_of_table, find_training_dataset, parse_name, record_export, \
    rows_query
from fstore.errors import Conflict, InvalidInput, NotFound
from fstore.npy import NpySink
from fstore.pgarrow import is_list, normalise_batch, normalised
from fstore.prefetch import ReadAhead
from fstore.sensitive import require_readable_columns
from fstore.session import Session
from fstore.tfrecord import DIR_SPEC_NAME, SPEC_SUFFIX, SPEC_VERSION, TFRecordSink, \
    check_tfrecord_schema, merge_column_specs

FORMATS: dict[str, str] = {"parquet": ".parquet", "csv": ".csv", "arrow": ".arrow",
                           "tfrecord": ".tfrecord", "npy": ""}
SUFFIXES: dict[str, str] = {".parquet": "parquet", ".csv": "csv", ".npy": "npy", ".npz": "npy", ".tfrecord": "tfrecord",
                            ".tfrecords": "tfrecord", ".arrow": "arrow", ".feather": "arrow"}
READ_AHEAD = 2  # batches read from the database while one is written
SPLIT_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
Progress = Callable[[int], None]


@dataclass
class ExportResult:
    """What an export wrote: where, how many rows (per split), which files."""

    path: Path
    format: str
    rows: int
    splits: dict[str, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    spec: Path | None = None

    @property
    def bytes(self) -> int:
        """Total size of the files written."""
        return sum(f.stat().st_size for f in self.files if f.exists())


# --- writing files under a temporary name --------------------------------------------------
def _temporary(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp")


@contextmanager
def _published(final: Path, directory: bool, overwrite: bool,
               companions: Sequence[Path] = ()) -> Iterator[tuple[Path, list[Path]]]:
    """Yield a temporary path (and temporary companions) renamed onto the final names on
    success; removed on any error, leaving nothing under the final names."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for target, want_directory in [(final, directory), *((c, False) for c in companions)]:
        if target.exists() and not overwrite:
            raise Conflict(f"{target} exists already (pass overwrite=True to replace it)")
        if target.exists() and target.is_dir() != want_directory:
            raise Conflict(f"{target} exists and is a {'directory' if target.is_dir() else 'file'}; "
                           f"this export writes a {'directory' if want_directory else 'file'}")
    temporary = _temporary(final)
    temporary_companions = [_temporary(c) for c in companions]
    if directory:
        temporary.mkdir()
    try:
        yield temporary, temporary_companions
    except BaseException:
        _remove(temporary)
        for path in temporary_companions:
            _remove(path)
        raise
    for done, target in zip(temporary_companions, companions):
        os.replace(done, target)
    if directory and final.exists():
        old = _temporary(final)
        os.rename(final, old)
        os.rename(temporary, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(temporary, final)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --- one sink per output file ---------------------------------------------------------------
class _ArrowFileSink:
    """Parquet, Arrow IPC or CSV through pyarrow's streaming writers."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        self.fmt = fmt
        self.lists = [f.name for f in schema if fmt == "csv" and is_list(f.type)]
        if fmt == "parquet":
            self.writer: Any = pq.ParquetWriter(path, schema)
        elif fmt == "arrow":
            self.writer = pa.ipc.new_file(path, schema)
        else:
            self.writer = pacsv.CSVWriter(path, self._csv_schema(schema))

    def _csv_schema(self, schema: pa.Schema) -> pa.Schema:
        for name in self.lists:
            schema = schema.set(schema.get_field_index(name), pa.field(name, pa.string()))
        return schema

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the rows of ``batch``."""
        for name in self.lists:  # CSV has no lists: write them as JSON arrays
            i = batch.schema.get_field_index(name)
            text = pa.array([None if v is None else json.dumps(v) for v in batch.column(i).to_pylist()],
                            type=pa.string())
            batch = batch.set_column(i, pa.field(name, pa.string()), text)
        self.writer.write_batch(batch)

    def close(self) -> dict[str, Any]:
        """Finish the file (Parquet footer, Arrow IPC footer)."""
        self.writer.close()
        return {}

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        try:
            self.writer.close()
        except Exception:  # already broken: the caller removes the file
            pass


def labels_of(label: str | Sequence[str] | None) -> list[str]:
    """Label column(s) as a list: ``"y"`` -> ``["y"]``, None -> ``[]``."""
    return [label] if isinstance(label, str) else list(label or [])


def format_of(format: str | None, path: str | Path | None) -> str | None:
    """The export format: ``format`` if given, else from ``path``'s suffix (None without a path).

    >>> format_of(None, "out/train.tfrecord")
    'tfrecord'
    """
    if path is None:
        if format is not None:
            raise InvalidInput(f"format {format!r} needs a path to write to")
        return None
    if format is not None:
        return _check_format(format)
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidInput(f"cannot tell the format of {str(path)!r}: give format= "
                           f"({', '.join(sorted(FORMATS))})")
    return SUFFIXES[suffix]


class _Writer:
    """Opens one sink per split (or one in all) inside the temporary target."""

    def __init__(self, root: Path, fmt: str, schema: pa.Schema, *, split: str | None,
                 labels: list[str], features: Sequence[str] | None, dtype: Any) -> None:
        self.root, self.fmt, self.split = root, fmt, split
        self.labels, self.features, self.dtype = labels, features, dtype
        self.schema = schema if split is None else schema.remove(schema.get_field_index(split))
        self.sinks: dict[str | None, Any] = {}
        self.rows: dict[str | None, int] = {}
        if fmt == "npy":
            NpySink.check(self.schema, labels, features)  # fail before any row is read
        elif fmt == "tfrecord":
            check_tfrecord_schema(self.schema)

    def _sink(self, key: str | None) -> Any:
        if key not in self.sinks:
            if self.fmt == "npy":
                target = self.root if key is None else self.root / key
                target.mkdir(exist_ok=True)
                sink: Any = NpySink(target, self.schema, self.labels, self.features, self.dtype)
            else:
                target = self.root if key is None else self.root / f"{key}{FORMATS[self.fmt]}"
                sink = TFRecordSink(target, self.schema) if self.fmt == "tfrecord" \
                    else _ArrowFileSink(target, self.schema, self.fmt)
            self.sinks[key] = sink
            self.rows[key] = 0
        return self.sinks[key]

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the rows of ``batch`` to its split's file (or to the one file)."""
        if self.split is None:
            self._sink(None).write(batch)
            self.rows[None] += batch.num_rows
            return
        column = batch.column(self.split)
        if column.null_count:
            raise InvalidInput(f"split column {self.split!r} has NULL values")
        rest = batch.drop_columns([self.split])
        for value in pc.unique(column).to_pylist():
            key = str(value)
            if not SPLIT_VALUE.match(key):
                raise InvalidInput(f"split column {self.split!r} has value {key!r}, which cannot name a file "
                                   "(use letters, digits, '_', '.', '-')")
            part = rest.filter(pc.equal(column, value))
            self._sink(key).write(part)
            self.rows[key] += part.num_rows

    def close(self) -> dict[str, Any]:
        """Finish every file; returns the export's metadata (TFRecord spec columns, NPY meta)."""
        if not self.sinks and self.split is None:
            self._sink(None)  # an empty export still has its (empty) file
        closed = [sink.close() for sink in self.sinks.values()]
        if self.fmt == "tfrecord":
            return {"columns": merge_column_specs(closed) if closed else TFRecordSink.empty_spec(self.schema)}
        if self.fmt == "npy":
            return closed[0] if closed else {"features": NpySink.check(self.schema, self.labels, self.features)}
        return {}

    def abort(self) -> None:
        """Close every file without finishing it."""
        for sink in self.sinks.values():
            sink.abort()


def write_batches(reader: pa.RecordBatchReader | pa.Table, path: str | Path, format: str, *,
                  label: str | Sequence[str] | None = None, split_column: str | None = None,
                  features: Sequence[str] | None = None, dtype: Any = np.float64,
                  progress: Progress | None = None, overwrite: bool = True) -> ExportResult:
    """Stream record batches into an export file (or directory) of the given format.

    ``label`` names the label column(s) (NPY: ``labels.npy``; TFRecord: recorded in the
    spec, so :func:`tf_dataset` yields ``(features, label)``); ``split_column`` writes one
    file per split value; ``features`` (NPY) the columns of ``features.npy`` (default: all
    but label and split) and ``dtype`` its element type; ``progress(rows_so_far)`` is
    called after every batch. Returns what was written.

    Example::

        reader = pa.Table.from_pandas(df).to_reader()
        write_batches(reader, "out/train", "npy", label="is_fraud", split_column="split")
    """
    fmt = _check_format(format)
    final = Path(path)
    labels = labels_of(label)
    batches = normalised(reader)
    first = next(batches, None)
    schema = first.schema if first is not None else _empty_schema(reader)
    for name in [*labels, *([split_column] if split_column else [])]:
        if name not in schema.names:
            raise InvalidInput(f"column {name!r} is not in the data (columns: {', '.join(schema.names)})")
    directory = fmt == "npy" or split_column is not None
    companions = [final.with_name(final.name + SPEC_SUFFIX)] if fmt == "tfrecord" and not directory else []
    with _published(final, directory, overwrite, companions) as (temporary, temporary_companions):
        writer = _Writer(temporary, fmt, schema, split=split_column, labels=labels, features=features,
                         dtype=dtype)
        done = 0
        try:
            for batch in ([first] if first is not None else []):
                writer.write(batch)
                done += batch.num_rows
                if progress:
                    progress(done)
            for batch in batches:
                writer.write(batch)
                done += batch.num_rows
                if progress:
                    progress(done)
            closed = writer.close()
        except BaseException:
            writer.abort()
            raise
        splits = {k: v for k, v in writer.rows.items() if k is not None}
        spec_path = None
        meta = {"format": fmt, "label": labels, "rows": done, "splits": splits, **closed}
        if fmt == "tfrecord":
            spec_path = temporary_companions[0] if companions else temporary / DIR_SPEC_NAME
            spec_path.write_text(json.dumps({"version": SPEC_VERSION, **meta}, indent=1))
        elif fmt == "npy":
            (temporary / "meta.json").write_text(json.dumps(meta, indent=1))
    files = sorted(p for p in final.rglob("*") if p.is_file()) if directory else [final, *companions]
    spec_final = (companions[0] if companions else final / DIR_SPEC_NAME) if fmt == "tfrecord" else None
    return ExportResult(path=final, format=fmt, rows=done, splits=splits, files=files, spec=spec_final)


def _check_format(fmt: str) -> str:
    fmt = (fmt or "").lower()
    if fmt == "ipc":
        fmt = "arrow"
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}")
    return fmt


def _empty_schema(reader: pa.RecordBatchReader | pa.Table) -> pa.Schema:
    empty = pa.RecordBatch.from_pylist([], schema=reader.schema)
    return normalise_batch(empty).schema


# --- from the database ------------------------------------------------------------------------
def relation_query(relation: str, project: str, *, exclude: Sequence[str] = (),
                   columns: Sequence[str] | None = None, order_by: str | None = None) -> sql.Composed:
    """``select <columns> from <schema>.<table> [order by ...]`` for ``table`` (in the
    project's schema) or ``schema.table``, with every name as an identifier."""
    schema, _, table = relation.rpartition(".")
    names = [c for c in (columns or []) if c not in exclude]
    select = sql.SQL(", ").join(map(sql.Identifier, names)) if names else sql.SQL("*")
    query = sql.SQL("select {} from {}").format(select, sql.Identifier(schema or project, table))
    if order_by:
        query += sql.SQL(" order by {}").format(sql.Identifier(order_by))
    return query


def export_query(fs: Session, query: sql.Composable | str, path: str | Path, format: str, *,
                 label: str | Sequence[str] | None = None, split_column: str | None = None,
                 features: Sequence[str] | None = None, dtype: Any = np.float64,
                 progress: Progress | None = None, overwrite: bool = True) -> ExportResult:
    """Export the rows of a query (a ``psycopg.sql`` composable) or a table name, read from
    the database as a stream of Arrow batches (ADBC) with the caller's identity and rights.

    Example::

        export_query(fs, "account_activity__v1", "activity.parquet", "parquet")
        export_query(fs, sql.SQL("select * from {} where amount > {}").format(
            sql.Identifier("fraud", "tx__v1"), sql.Literal(10)), "big.csv", "csv")
    """
    _check_format(format)
    if isinstance(query, str):
        query = relation_query(query, fs.project)
    text = query.as_string(fs.conn)
    with adbc_session(fs.material) as (_, cursor):
        cursor.execute(text)
        with ReadAhead(cursor.fetch_record_batch(), depth=READ_AHEAD) as reader:
            return write_batches(reader, path, format, label=label, split_column=split_column,
                                 features=features, dtype=dtype, progress=progress, overwrite=overwrite)


@dataclass
class ExportSource:
    """What to export for a name: a query, and the label, split and record of a training
    dataset (empty, and None, for a plain table)."""

    query: sql.Composed
    label: list[str]
    split_column: str | None
    description: str
    dataset: TrainingDataset | None = None


def resolve_source(fs: Session, name: str) -> ExportSource:
    """A training dataset (``name`` or ``name@version``; also its stored table's name) if one is
    visible, else a table or view (``table`` in the project's schema, or ``schema.table``)."""
    base, version = parse_name(name)
    try:
        dataset: TrainingDataset | None = find_training_dataset(fs, base, version)
    except NotFound:
        if version is not None:
            raise
        dataset = dataset_of_table(fs, base)  # a training dataset's own table: still without _row
    if dataset is None:
        return ExportSource(relation_query(name, fs.project), [], None, f"table {name}")
    return ExportSource(rows_query(dataset), list(dataset.label), dataset.split_column,
                        f"training dataset {dataset.project}.{dataset.name} ({dataset.table_name})", dataset)


def export(fs: Session, source: str | TrainingDataset | sql.Composable, path: str | Path,
           format: str | None = None, *, label: str | Sequence[str] | None = None, split: bool = True,
           split_column: str | None = None, features: Sequence[str] | None = None, dtype: Any = np.float64,
           progress: Progress | None = None, overwrite: bool = True) -> ExportResult:
    """Export a training dataset (by name, ``name@version`` or record), a table or a query.

    A training dataset brings its label and, unless ``split=False``, its split (one file
    per split value in a directory at ``path``); its rows come in spine order without
    the internal ``_row`` column, and the export is recorded in the catalog. ``format``
    defaults to the suffix of ``path``. See :func:`write_batches` for the layouts.

    Example::

        export(fs, "fraud_train", "out/fraud_train.parquet")        # out/fraud_train.parquet/train.parquet, ...
        export(fs, "fraud_train@1", "out/all.tfrecord", split=False)
    """
    fmt = format_of(format, path)
    if isinstance(source, TrainingDataset):
        found = ExportSource(rows_query(source), list(source.label), source.split_column, "", source)
    elif isinstance(source, str):
        found = resolve_source(fs, source)
    else:
        found = ExportSource(source, [], None, "query")  # type: ignore[arg-type]
    if found.dataset is not None:  # a column the caller may not read (a sensitive feature): refused by name
        require_readable_columns(fs, found.dataset.project, found.dataset.table_name, found.dataset.columns)
    elif isinstance(source, str):
        schema, _, table = source.rpartition(".")
        require_readable_columns(fs, schema or fs.project, table)
    result = export_query(fs, found.query, path, fmt or "", label=label or found.label or None,
                          split_column=split_column or (found.split_column if split else None),
                          features=features, dtype=dtype, progress=progress, overwrite=overwrite)
    if found.dataset is not None:
        record_export(fs, found.dataset, result.format, result.path, result.rows)
    return result


# --- reading an export back -------------------------------------------------------------------
def tf_dataset(fs: Any, path: str | Path, *, label: str | Sequence[str] | None = None,
               batch_size: int = 256, split: str | None = None, columns: Sequence[str] | None = None,
               defaults: dict[str, Any] | None = None) -> Any:
    """A batched ``tf.data.Dataset`` over a TFRecord (or Parquet) export.

    Yields dicts of tensors, or ``(features, label)`` pairs when ``label`` is given
    (default: the label recorded in a TFRecord spec). ``split`` picks one split of a
    split export; ``columns`` the features to keep; ``defaults`` values for NULLs
    (TFRecord: floats are NaN, others 0 or b""). ``fs`` may be None: exports are files.
    See :mod:`fstore.tfdata`.

    Example::

        ds = fs.tf_dataset("train_dir", split="train", batch_size=128)
        model.fit(ds, epochs=3)
    """
    from fstore.tfdata import tf_dataset as dataset

    return dataset(path, label=label, batch_size=batch_size, split=split, columns=columns, defaults=defaults)
