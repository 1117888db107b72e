"""NPY exports: features and labels as ``.npy`` arrays, written block by block.

An ``.npy`` file is a header followed by the raw C-order rows, so it can be written
as a stream: the header (``numpy.lib.format``, which leaves room for the first
dimension to grow, so its length does not change) goes first with 0 rows, rows are
appended as batches arrive, and the header is written again with the real shape at
the end. Memory stays at one batch whatever the row count.

Example::

    sink = NpySink(Path("out/train"), schema, labels=["is_fraud"], features=None, dtype=np.float32)
    sink.write(batch)
    meta = sink.close()          # {"features": ["amount", "emb[0]", ...], "dtype": "float32", ...}
    np.load("out/train/features.npy").shape   # (rows, len(meta["features"]))
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fstore.errors import InvalidInput
from fstore.pgarrow import is_list



class NpyAppender:
    """One ``.npy`` file whose rows are appended in blocks; the shape is written on close."""

    def __init__(self, path: Path, dtype: Any, trailing: tuple[int, ...]) -> None:
        self.path = path
        self.dtype = np.dtype(dtype)
        self.trailing = trailing
        self.rows = 0
        self._file: BinaryIO = open(path, "wb")
        self._header_bytes = len(self._header(0))
        self._file.write(self._header(0))

    def _header(self, rows: int) -> bytes:
        """The ``.npy`` header for ``rows`` rows, written by numpy (format 1.0)."""
        out = io.BytesIO()
        np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(self.dtype),
                                                   "fortran_order": False, "shape": (rows, *self.trailing)})
        return out.getvalue()

    def append(self, block: np.ndarray) -> None:
        """Append rows (shape ``(k, *trailing)``)."""
        self._file.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += len(block)

    def close(self) -> None:
        """Write the final shape into the header and close the file."""
        header = self._header(self.rows)
        if len(header) != self._header_bytes:  # numpy keeps room for the first dimension to grow
            self._file.close()
            raise InvalidInput(f"the .npy header of {self.path} would change length at {self.rows} rows")
        self._file.seek(0)
        self._file.write(header)
        self._file.close()

    def abort(self) -> None:
        """Close without finishing (the caller removes the file)."""
        self._file.close()


def _value_type(arrow_type: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if is_list(arrow_type):
        return arrow_type.value_type
    return arrow_type


def _is_numeric(arrow_type: pa.DataType) -> bool:
    v = _value_type(arrow_type)
    return pa.types.is_integer(v) or pa.types.is_floating(v) or pa.types.is_boolean(v) \
        or pa.types.is_decimal(v)


def _label_dtype(fields: Sequence[pa.Field]) -> np.dtype:
    kinds = []
    for f in fields:
        v = _value_type(f.type)
        if pa.types.is_boolean(v):
            kinds.append(np.dtype(bool))
        elif pa.types.is_integer(v):
            kinds.append(np.dtype(np.int64))
        elif pa.types.is_floating(v) or pa.types.is_decimal(v):
            kinds.append(np.dtype(np.float64))
    return np.result_type(*kinds)


def _block(column: pa.Array, name: str, dtype: np.dtype, width: int | None) -> np.ndarray:
    """A column as an (n, width) block of ``dtype``; NULL numbers as NaN (floats only)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    n = len(column)
    floating = np.issubdtype(dtype, np.floating)
    if is_list(column.type):
        if pa.types.is_fixed_size_list(column.type):
            size = column.type.list_size
            flat = column.values.slice(column.offset * size, n * size)
        else:
            lengths = pc.list_value_length(column).fill_null(width).to_numpy(zero_copy_only=False)
            if (lengths != width).any():
                raise InvalidInput(f"column {name!r} has lists of different lengths "
                                   f"({int(lengths.min())} to {int(lengths.max())}); NPY needs one length")
            flat = pc.list_flatten(column.fill_null(pa.scalar([0] * width, column.type))) \
                if column.null_count else pc.list_flatten(column)
            size = width or 0
        values = _numbers(flat, name, dtype, floating).reshape(n, size)
        if column.null_count:
            if not floating:
                raise InvalidInput(f"column {name!r} has NULL values; use a float dtype to export them as NaN")
            values = values.copy()
            values[~column.is_valid().to_numpy(zero_copy_only=False)] = np.nan
        return values
    return _numbers(column, name, dtype, floating).reshape(n, 1)


def _numbers(array: pa.Array, name: str, dtype: np.dtype, floating: bool) -> np.ndarray:
    if pa.types.is_boolean(array.type) or pa.types.is_decimal(array.type):
        array = pc.cast(array, pa.int8() if pa.types.is_boolean(array.type) else pa.float64())
    if array.null_count:
        if not floating:
            raise InvalidInput(f"column {name!r} has NULL values; use a float dtype to export them as NaN")
        array = pc.cast(array, pa.float64()).fill_null(np.nan)
    return array.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


class NpySink:
    """``features.npy`` (+ ``labels.npy``) in one directory, from record batches."""

    @staticmethod
    def check(schema: pa.Schema, labels: Sequence[str], features: Sequence[str] | None) -> list[str]:
        """The feature columns, or :class:`InvalidInput` naming every non-numeric one."""
        names = list(features) if features is not None else \
            [f.name for f in schema if f.name not in set(labels)]
        missing = [n for n in [*names, *labels] if n not in schema.names]
        if missing:
            raise InvalidInput(f"column(s) {', '.join(map(repr, missing))} not in the data "
                               f"(columns: {', '.join(schema.names)})")
        bad = [f"{n!r} ({schema.field(n).type})" for n in [*names, *labels] if not _is_numeric(schema.field(n).type)]
        if bad:
            raise InvalidInput(f"NPY export needs numeric columns; not numeric: {', '.join(bad)} "
                               "(choose the feature columns with features=[...])")
        if not names:
            raise InvalidInput("NPY export needs at least one feature column")
        return names

    def __init__(self, directory: Path, schema: pa.Schema, labels: Sequence[str],
                 features: Sequence[str] | None, dtype: Any) -> None:
        self.names = self.check(schema, labels, features)
        self.labels = list(labels)
        self.schema = schema
        self.dtype = np.dtype(dtype)
        self.label_dtype = _label_dtype([schema.field(n) for n in self.labels]) if self.labels else None
        self.directory = directory
        self.widths: dict[str, int | None] = {
            n: (schema.field(n).type.list_size if pa.types.is_fixed_size_list(schema.field(n).type)
                else None if is_list(schema.field(n).type) else 1)
            for n in [*self.names, *self.labels]}
        self.features: NpyAppender | None = None
        self.label_file: NpyAppender | None = None

    def _width(self, batch: pa.RecordBatch, name: str) -> int:
        if self.widths[name] is None:  # a variable list column: its first row decides
            lengths = pc.list_value_length(batch.column(name)).drop_null()
            self.widths[name] = int(lengths[0].as_py()) if len(lengths) else None
        return self.widths[name] or 0

    def write(self, batch: pa.RecordBatch) -> None:
        """Append the rows of ``batch``."""
        blocks = [_block(batch.column(n), n, self.dtype, self._width(batch, n)) for n in self.names]
        if self.features is None:
            self.features = NpyAppender(self.directory / "features.npy", self.dtype,
                                        (sum(b.shape[1] for b in blocks),))
        self.features.append(np.concatenate(blocks, axis=1) if len(blocks) > 1 else blocks[0])
        if self.labels:
            label_blocks = [_block(batch.column(n), n, self.label_dtype, self._width(batch, n))
                            for n in self.labels]
            values = np.concatenate(label_blocks, axis=1)
            if values.shape[1] == 1:
                values = values[:, 0]
            if self.label_file is None:
                self.label_file = NpyAppender(self.directory / "labels.npy", self.label_dtype,
                                              tuple(values.shape[1:]))
            self.label_file.append(values)

    def close(self) -> dict[str, Any]:
        """Finish the files; returns the feature column names in order and the dtypes."""
        if self.features is None:  # no rows: empty arrays of the right width
            widths = [self.widths[n] or 0 for n in self.names]
            self.features = NpyAppender(self.directory / "features.npy", self.dtype, (sum(widths),))
            if self.labels:
                trailing = () if len(self.labels) == 1 and self.widths[self.labels[0]] == 1 else \
                    (sum(self.widths[n] or 0 for n in self.labels),)
                self.label_file = NpyAppender(self.directory / "labels.npy", self.label_dtype, trailing)
        self.features.close()
        if self.label_file is not None:
            self.label_file.close()
        columns = []
        for n in self.names:
            width = self.widths[n]
            columns += [n] if width == 1 else [f"{n}[{i}]" for i in range(width or 0)]
        return {"features": columns, "dtype": str(self.dtype),
                "label_dtype": str(self.label_dtype) if self.label_dtype is not None else None}

    def abort(self) -> None:
        """Close the files without finishing them."""
        for f in (self.features, self.label_file):
            if f is not None:
                f.abort()
