"""Exports read back as ``tf.data`` datasets, batched, with the label split off.

* TFRecord (a file with ``<file>.spec.json`` next to it, or a directory of split
  files with ``spec.json``): ``TFRecordDataset`` and ``tf.io.parse_example`` with the
  feature description the spec gives (fixed shapes, ragged lists, NULL defaults).
* Parquet (a file, or a directory of split files): read with pyarrow a batch at a
  time through ``Dataset.from_generator`` (floats as float32, integers, booleans and
  times as int64, strings as bytes, fixed-size lists as vectors; NULL numbers NaN or 0).

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
import pyarrow.compute as pc

from fstore.errors import InvalidInput
from fstore.tfrecord import DIR_SPEC_NAME, SPEC_SUFFIX


def tf_dataset(path: str | Path, *, label: str | Sequence[str] | None = None, batch_size: int = 256,
               split: str | None = None, columns: Sequence[str] | None = None,
               defaults: dict[str, Any] | None = None) -> Any:
    """A batched ``tf.data.Dataset`` of feature dicts, or ``(features, label)`` pairs.

    ``label`` defaults to the label recorded in a TFRecord spec; ``split`` picks one
    split of a split export; ``columns`` the features to keep; ``defaults`` values for
    NULLs per column (floats are NaN, other types 0 or b"").
    """
    path = Path(path)
    parquet = path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet")))
    if parquet:
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
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

    t = field.type
    if pa.types.is_fixed_size_list(t) and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        floating = pa.types.is_floating(t.value_type)
        size = t.list_size

        def vectors(column: pa.Array) -> np.ndarray:
            values = pc.cast(column.values.slice(column.offset * size, len(column) * size),
                             pa.float32() if floating else pa.int64())
            out = values.fill_null(np.nan if floating else 0).to_numpy(zero_copy_only=False).reshape(-1, size)
            if column.null_count:
                out = out.copy()
                out[~column.is_valid().to_numpy(zero_copy_only=False)] = np.nan if floating else 0
            return out
        return tf.TensorSpec([None, size], tf.float32 if floating else tf.int64), vectors
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return tf.TensorSpec([None], tf.float32), \
            lambda c: pc.cast(c, pa.float32()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
        def ints(column: pa.Array) -> np.ndarray:
            if pa.types.is_temporal(column.type):
                column = column.view(pa.int64() if column.type.bit_width == 64 else pa.int32())
            return pc.cast(column, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return tf.TensorSpec([None], tf.int64), ints
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
        return tf.TensorSpec([None], tf.string), \
            lambda c: np.array([b"" if v is None else (v.encode() if isinstance(v, str) else v)
                                for v in c.to_pylist()], dtype=object)
    raise InvalidInput(f"column {field.name!r} has type {t}, which the Parquet reader for tf.data does not "
                       "support (export to TFRecord for ragged lists)")


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
