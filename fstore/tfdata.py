"""Exports read back as ``tf.data`` datasets, batched, with the label split off.

* TFRecord (a file with ``<file>.spec.json`` next to it, or a directory of split
  files with ``spec.json``): ``TFRecordDataset`` and ``tf.io.parse_example`` with the
  feature description the spec gives (fixed shapes, ragged lists, NULL defaults).
* Parquet (a file, or a directory of split files): read with pyarrow a batch at a
  time through ``Dataset.from_generator`` (columns as :mod:`fstore.arrays` reads them:
  floats as float32, integers, booleans and times as int64, strings as bytes,
  fixed-size lists as vectors; NULL numbers NaN or 0).

TensorFlow is the optional extra ``fstore[tf]``.

Example::

    ds = tf_dataset(Path("train_dir"), label="is_fraud", split="train", batch_size=256)
    model.fit(ds, epochs=3)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fstore.arrays import column_kind, export_files, to_numpy
from fstore.errors import InvalidInput
from fstore.tfrecord import DIR_SPEC_NAME, SPEC_SUFFIX


def _require_tensorflow() -> None:
    """TensorFlow is an optional extra: say how to get it."""
    try:
        import tensorflow  # noqa: F401
    except ImportError as exc:
        raise InvalidInput("tf.data needs TensorFlow: pip install 'fstore[tf]'") from exc


def tf_dataset(path: str | Path, *, label: str | Sequence[str] | None = None, batch_size: int = 256,
               split: str | None = None, columns: Sequence[str] | None = None,
               defaults: dict[str, Any] | None = None) -> Any:
    """A batched ``tf.data.Dataset`` of feature dicts, or ``(features, label)`` pairs.

    ``label`` defaults to the label recorded in a TFRecord spec; ``split`` picks one
    split of a split export; ``columns`` the features to keep; ``defaults`` values for
    NULLs per column (floats are NaN, other types 0 or b"").
    """
    path = Path(path)
    _require_tensorflow()
    parquet = path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet")))
    if parquet:
        files = export_files(path, ".parquet", split)
        spec: dict[str, Any] = {}
    else:
        spec, files = read_spec(path)
        if split is not None:
            files = [f for f in files if f.stem == split]
            if not files:
                raise InvalidInput(f"export {path} has no split {split!r}")
    if label is None:
        label = spec.get("label") or None
    labels = [label] if isinstance(label, str) else list(label or [])
    if parquet:
        return parquet_dataset(files, labels=labels, batch_size=batch_size, columns=columns, defaults=defaults)
    return tfrecord_dataset(files, spec, labels=labels, batch_size=batch_size, columns=columns, defaults=defaults)


# --- TFRecord -----------------------------------------------------------------------------------
def read_spec(path: Path) -> tuple[dict[str, Any], list[Path]]:
    """The spec and record files of a TFRecord export (a file, or a directory of splits)."""
    path = Path(path)
    if path.is_dir():
        spec_path = path / DIR_SPEC_NAME
        if not spec_path.exists():
            raise InvalidInput(f"{path} is not a TFRecord export: {DIR_SPEC_NAME} is missing")
        return json.loads(spec_path.read_text()), sorted(path.glob("*.tfrecord"))
    spec_path = path.with_name(path.name + SPEC_SUFFIX)
    if not path.exists():
        raise InvalidInput(f"no export at {path}")
    if not spec_path.exists():
        raise InvalidInput(f"{path} has no feature spec {spec_path.name} next to it")
    return json.loads(spec_path.read_text()), [path]


def parse_features(spec: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``tf.io.parse_example`` feature description of a spec (``defaults`` per column)."""
    import tensorflow as tf

    defaults = defaults or {}
    dtypes = {"float": tf.float32, "int64": tf.int64, "bytes": tf.string}
    fallback = {"float": float("nan"), "int64": 0, "bytes": b""}
    description: dict[str, Any] = {}
    for name, column in spec["columns"].items():
        dtype = dtypes[column["kind"]]
        if column["shape"] is None:
            description[name] = tf.io.RaggedFeature(dtype)
        else:
            default = defaults.get(name, fallback[column["kind"]])
            shape = list(column["shape"])
            description[name] = tf.io.FixedLenFeature(
                shape, dtype, default_value=np.full(shape, default).tolist() if shape else default)
    return description


def _select(names: Sequence[str], labels: list[str], columns: Sequence[str] | None) -> list[str]:
    for name in [*labels, *(columns or [])]:
        if name not in names:
            raise InvalidInput(f"column {name!r} is not in the export (columns: {', '.join(names)})")
    keep = set(columns) | set(labels) if columns is not None else set(names)
    return [n for n in names if n in keep]


def _split_label(labels: list[str]) -> Any:
    def split(features: dict[str, Any]) -> Any:
        if not labels:
            return features
        target = features.pop(labels[0]) if len(labels) == 1 else {k: features.pop(k) for k in labels}
        return features, target
    return split


def tfrecord_dataset(files: Sequence[Path], spec: dict[str, Any], *, labels: list[str], batch_size: int,
                     columns: Sequence[str] | None = None, defaults: dict[str, Any] | None = None) -> Any:
    """A batched dataset over TFRecord files parsed with their spec."""
    import tensorflow as tf

    description = parse_features(spec, defaults)
    description = {n: description[n] for n in _select(list(description), labels, columns)}
    split = _split_label(labels)

    def parse(serialized: Any) -> Any:
        return split(tf.io.parse_example(serialized, description))

    dataset = tf.data.TFRecordDataset([str(f) for f in files])
    return dataset.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# --- Parquet ------------------------------------------------------------------------------------
def _tensor_spec(field: pa.Field) -> tuple[Any, Any]:
    """(tf.TensorSpec of a batch of the column, numpy converter) for an Arrow field."""
    import tensorflow as tf

    kind, width = column_kind(field)
    dtype = {"float": tf.float32, "int": tf.int64, "bytes": tf.string}[kind]
    shape = [None] if width is None else [None, width]
    return tf.TensorSpec(shape, dtype), lambda column: to_numpy(column, kind, width)


def parquet_dataset(files: Sequence[Path], *, labels: list[str], batch_size: int,
                    columns: Sequence[str] | None = None, defaults: dict[str, Any] | None = None) -> Any:
    """A batched dataset over Parquet files, read with pyarrow one batch at a time."""
    import pyarrow.parquet as pq
    import tensorflow as tf

    if defaults:
        raise InvalidInput("defaults= applies to TFRecord exports; Parquet NULLs become NaN or 0")
    schema = pq.read_schema(files[0])
    names = _select(schema.names, labels, columns)
    converters = {n: _tensor_spec(schema.field(n)) for n in names}

    def batches() -> Iterator[dict[str, np.ndarray]]:
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_size, columns=names):
                yield {n: converters[n][1](batch.column(n)) for n in names}

    signature = {n: converters[n][0] for n in names}
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    return dataset.map(_split_label(labels)).prefetch(tf.data.AUTOTUNE)
