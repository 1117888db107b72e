"""TFRecord exports: ``tf.train.Example`` rows encoded a batch at a time, a JSON
feature spec written next to the records, and ``tf.data`` read-back.

Writing does not import TensorFlow: the Example protobuf wire format and the
TFRecord framing (length, masked CRC32C) are produced for a whole batch at once,
by the C encoder :mod:`fstore._tfrecord_native` (built when fstore is installed;
one pass per row, hardware CRC32C, the GIL released so that the export's read-ahead
keeps fetching) or, where it is not built, by the numpy encoder of
:mod:`fstore.tfrecord_numpy`. Both write the same bytes. Reading back is
:mod:`fstore.tfdata` (real ``tf.data``, driven by the spec).

Type mapping (the spec keeps the Arrow type of every column):

=======================================  ==========================================
Arrow                                    Example feature
=======================================  ==========================================
float16/32/64, decimal                   float_list (float32; NULL written as NaN)
int8..int64, uint8..uint32, bool         int64_list (NULL: feature omitted)
timestamp, date, time, duration          int64_list in the Arrow unit (NULL: omitted)
string, binary                           bytes_list (NULL: omitted)
list/fixed_size_list of float            float_list of the row's values (NULL: NaN-filled
                                         when the length is fixed, else omitted)
list/fixed_size_list of integer          int64_list of the row's values
=======================================  ==========================================

Example::

    sink = TFRecordSink(Path("train.tfrecord"), batch.schema)
    sink.write(batch)
    columns = sink.close()          # per column: kind, shape, Arrow type, NULLs (the spec's "columns")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fstore import tfrecord_numpy
from fstore.errors import InvalidInput
from fstore.tfrecord_numpy import _as_int64, _floats, _list_parts, _varint_bytes

try:  # the C encoder, built by ``pip install`` (setup.py) where a compiler is there
    import fstore._tfrecord_native as _native
except ImportError:  # pragma: no cover - the numpy encoder writes the same bytes
    _native = None

SPEC_VERSION = 1
SPEC_SUFFIX = ".spec.json"
DIR_SPEC_NAME = "spec.json"
ROW_BYTES_BUDGET = 32 << 20  # bytes of the padded row matrix encoded at once
# "native" (C) where it is built, else "numpy"; set to "numpy" to use the reference encoder
ENCODER = "native" if _native is not None else "numpy"
_KIND_CODES = {"float": 0, "int64": 1, "bytes": 2}


# --- one column's feature per row ---------------------------------------------------------
def _column_kind(field: pa.Field) -> tuple[str, pa.DataType | None]:
    """('float'|'int64'|'bytes', list value type or None) for an Arrow field, or InvalidInput."""
    t = field.type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float", None
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
        return "int64", None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
            or pa.types.is_large_binary(t):
        return "bytes", None
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        v = t.value_type
        if pa.types.is_floating(v) or pa.types.is_decimal(v):
            return "float", v
        if pa.types.is_integer(v) or pa.types.is_boolean(v):
            return "int64", v
    raise InvalidInput(
        f"column {field.name!r} has type {field.type}, which TFRecord export does not support "
        "(numbers, booleans, times, strings, and lists of numbers are)"
    )


def _native_column(name: str, kind: str, value_type: pa.DataType | None, array: pa.Array,
                   stats: dict[str, Any]) -> tuple[int, bytes, Any, np.ndarray | None, np.ndarray | None]:
    """One column as the C encoder takes it: (kind code, key field, values, offsets or None,
    validity as uint8 or None: the feature is omitted where it is 0), counting its NULLs and
    list lengths in ``stats``. The same mapping as the numpy encoder's ``_encode_column``."""
    n = len(array)
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    valid = None if array.null_count == 0 else \
        np.ascontiguousarray(array.is_valid().to_numpy(zero_copy_only=False))
    stats["null_count"] += 0 if valid is None else n - int(valid.sum())
    key = name.encode()
    key_field = b"\x0a" + _varint_bytes(len(key)) + key
    code = _KIND_CODES[kind]
    flags = None if valid is None else valid.view(np.uint8)
    if value_type is None and kind == "float":  # NULL as NaN, never omitted
        return code, key_field, _floats(array).astype("<f4"), None, None
    if value_type is None and kind == "int64":
        return code, key_field, _as_int64(array, name), None, flags
    if value_type is None:  # bytes: the one element of a bytes_list
        if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type):
            array = pc.cast(array, pa.binary())
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset:array.offset + n + 1]
        data = array.buffers()[2]
        return code, key_field, data if data is not None else b"", offsets.astype(np.int64), flags
    if kind == "float" and pa.types.is_fixed_size_list(array.type):  # a vector: NULL as NaNs
        size = array.type.list_size
        values = _floats(array.values.slice(array.offset * size, n * size)).reshape(n, size).copy()
        if valid is not None:
            values[~valid] = np.nan
        if n and (valid is None or valid.any()):
            stats["min_length"] = min(stats["min_length"], size)
            stats["max_length"] = max(stats["max_length"], size)
        return code, key_field, values.astype("<f4"), np.arange(n + 1, dtype=np.int64) * size, None
    if pa.types.is_fixed_size_list(array.type):
        array = pc.cast(array, pa.list_(array.type.value_type))
    flat, offsets = _list_parts(array)
    counts = np.diff(offsets)
    present = counts if valid is None else counts[valid]
    if len(present):
        stats["min_length"] = min(stats["min_length"], int(present.min()))
        stats["max_length"] = max(stats["max_length"], int(present.max()))
    values = _floats(flat).astype("<f4") if kind == "float" else _as_int64(flat, name)
    return code, key_field, values, np.ascontiguousarray(offsets, dtype=np.int64), flags


def encode_records(batch: pa.RecordBatch, kinds: dict[str, tuple[str, pa.DataType | None]],
                   stats: dict[str, dict[str, Any]], *, encoder: str | None = None) -> bytes:
    """The TFRecord-framed ``tf.train.Example`` bytes of every row of ``batch``, by the
    C encoder or the numpy one (``encoder``; default :data:`ENCODER`)."""
    if not kinds:
        raise InvalidInput("a TFRecord export needs at least one column")
    if (encoder or ENCODER) == "numpy" or _native is None:
        return tfrecord_numpy.encode_records(batch, kinds, stats)
    columns = [_native_column(name, *kinds[name], batch.column(name), stats[name]) for name in kinds]
    return _native.encode(batch.num_rows, columns)


def _chunks(batch: pa.RecordBatch) -> list[pa.RecordBatch]:
    """Slices of a batch small enough for the padded row matrix (ROW_BYTES_BUDGET)."""
    per_row = max(1, batch.nbytes // max(1, batch.num_rows)) * 4 + 64
    rows = max(1, ROW_BYTES_BUDGET // per_row)
    return [batch.slice(i, rows) for i in range(0, batch.num_rows, rows)]


def check_tfrecord_schema(schema: pa.Schema) -> None:
    """Raise :class:`InvalidInput` naming the first column TFRecord cannot hold."""
    for f in schema:
        _column_kind(f)


class TFRecordSink:
    """Writes record batches to one TFRecord file; ``close()`` returns its feature spec."""

    def __init__(self, path: Path, schema: pa.Schema, *, exclude: Sequence[str] = (),
                 encoder: str | None = None) -> None:
        self.path = path
        self.encoder = encoder
        self.kinds = {f.name: _column_kind(f) for f in schema if f.name not in exclude}
        self.schema = schema
        self.stats = {name: {"null_count": 0, "min_length": 1 << 62, "max_length": -1}
                      for name in self.kinds}
        self.rows = 0
        self._file: BinaryIO = open(path, "wb")

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the rows of ``batch``."""
        for chunk in _chunks(batch):
            self._file.write(encode_records(chunk, self.kinds, self.stats, encoder=self.encoder))
        self.rows += batch.num_rows

    def close(self) -> dict[str, Any]:
        """Finish the file; return the column specs observed (shape, dtype, nulls)."""
        self._file.close()
        return column_specs(self.schema, self.kinds, self.stats)

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        self._file.close()

    @staticmethod
    def empty_spec(schema: pa.Schema) -> dict[str, Any]:
        """The column specs of an export without rows."""
        kinds = {f.name: _column_kind(f) for f in schema}
        stats = {name: {"null_count": 0, "min_length": 1 << 62, "max_length": -1} for name in kinds}
        return column_specs(schema, kinds, stats)


def merge_column_specs(specs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One spec for files of the same columns (the splits of an export): NULLs add up; a
    list column is fixed-length only if it has one length in every file that has values."""
    merged: dict[str, Any] = {}
    for name, first in specs[0].items():
        columns = [spec[name] for spec in specs]
        shapes = [c["shape"] for c in columns if c["shape"] != [0]] or [first["shape"]]
        merged[name] = {**first, "shape": shapes[0] if all(s == shapes[0] for s in shapes) else None,
                        "null_count": sum(c["null_count"] for c in columns)}
    return merged


def column_specs(schema: pa.Schema, kinds: dict[str, tuple[str, pa.DataType | None]],
                 stats: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per column: ``{"kind", "shape", "arrow_type", "null_count"}`` (shape None = ragged)."""
    specs: dict[str, Any] = {}
    for name, (kind, value_type) in kinds.items():
        s = stats[name]
        field_type = schema.field(name).type
        if value_type is None:
            shape: list[int] | None = []
        elif pa.types.is_fixed_size_list(field_type):
            shape = [field_type.list_size]
        elif s["max_length"] >= 0 and s["min_length"] == s["max_length"]:
            shape = [s["max_length"]]
        elif s["max_length"] < 0:
            shape = [0]
        else:
            shape = None
        specs[name] = {"kind": kind, "shape": shape, "arrow_type": str(field_type),
                       "null_count": s["null_count"]}
    return specs
