"""Exports read back for training frameworks: which files, and Arrow columns as numpy.

``tf.data`` (:mod:`fstore.tfdata`) and PyTorch (:mod:`fstore.torchdata`) read Parquet
and Arrow exports the same way: the files of an export (one file, or a directory of
split files), and each column as a numpy block of one of three kinds:

=========================================  =======  ==============================
Arrow                                      kind     numpy (NULL)
=========================================  =======  ==============================
float, decimal                             float    float32 (NaN)
integer, boolean, timestamp, date, time    int      int64 (0; times in their unit)
string, binary                             bytes    object array of bytes (b"")
fixed-size list of float / integer         float    (rows, size) float32 / int64
                                           / int
=========================================  =======  ==============================

Example::

    files = export_files(Path("out/train_dir"), ".parquet", split="train")
    kind, width = column_kind(schema.field("embedding"))      # ("float", 3)
    block = to_numpy(batch.column("embedding"), kind, width)  # shape (rows, 3)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fstore.errors import InvalidInput


def export_files(path: Path, suffix: str, split: str | None = None) -> list[Path]:
    """The files of an export with ``suffix``: ``path`` itself, or the split files of a directory
    (only ``<split><suffix>`` when ``split`` is given)."""
    path = Path(path)
    if not path.exists():
        raise InvalidInput(f"no export at {path}")
    files = sorted(path.glob(f"*{suffix}")) if path.is_dir() else [path]
    if split is not None:
        files = [f for f in files if f.stem == split]
        if not files:
            raise InvalidInput(f"export {path} has no split {split!r}")
    if not files:
        raise InvalidInput(f"{path} holds no {suffix} files")
    return files


def column_kind(field: pa.Field) -> tuple[str, int | None]:
    """``(kind, width)`` of a column: kind ``float``, ``int`` or ``bytes``; width the size of a
    fixed-size list (None for scalars)."""
    t = field.type
    if pa.types.is_fixed_size_list(t) and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        return ("float" if pa.types.is_floating(t.value_type) else "int"), t.list_size
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float", None
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t):
        return "int", None
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytes", None
    raise InvalidInput(f"column {field.name!r} has type {t}, which this reader does not support "
                       "(export to TFRecord for ragged lists)")


def to_numpy(column: pa.Array | pa.ChunkedArray, kind: str, width: int | None = None) -> np.ndarray:
    """A column as a numpy block of its kind (see the table above)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if width is not None:
        floating = kind == "float"
        values = pc.cast(column.values.slice(column.offset * width, len(column) * width),
                         pa.float32() if floating else pa.int64())
        out = values.fill_null(np.nan if floating else 0).to_numpy(zero_copy_only=False).reshape(-1, width)
        if column.null_count:
            out = out.copy()
            out[~column.is_valid().to_numpy(zero_copy_only=False)] = np.nan if floating else 0
        return out
    if kind == "float":
        return pc.cast(column, pa.float32()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    if kind == "int":
        if pa.types.is_temporal(column.type):
            column = column.view(pa.int64() if column.type.bit_width == 64 else pa.int32())
        return pc.cast(column, pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    return np.array([b"" if v is None else (v.encode() if isinstance(v, str) else v) for v in column.to_pylist()],
                    dtype=object)


__all__ = ["column_kind", "export_files", "to_numpy"]
