"""Exports read back as PyTorch datasets: an ``IterableDataset`` over a Parquet, Arrow IPC
or NPY export, with the label split off. PyTorch is the optional extra ``fstore[torch]``.

* Parquet and Arrow IPC (a file, or a directory of split files): read a row group (or
  record batch) at a time with pyarrow; columns become tensors as :mod:`fstore.arrays`
  reads them (floats float32 with NULL as NaN, integers, booleans and times int64,
  fixed-size lists 2-D), strings stay Python strings.
* NPY (a directory with ``features.npy``, ``labels.npy`` and ``meta.json``, per split in
  subdirectories): memory-mapped; features are one float tensor per row.

Each ``DataLoader`` worker reads its own share of the pieces (row groups, batches or row
ranges), so ``num_workers > 1`` yields every row once. Rows come one at a time (let the
``DataLoader`` batch them), or ``batch_size`` at a time.

Example::

    from torch.utils.data import DataLoader
    dataset = torch_dataset("out/fraud_train.parquet", split="train", label="is_fraud")
    for features, label in DataLoader(dataset, batch_size=256, num_workers=2):
        ...
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

try:  # the optional extra fstore[torch]
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError:  # pragma: no cover - said by torch_dataset
    torch = None
    IterableDataset = object  # type: ignore[assignment,misc]

NPY_ROWS_PER_PIECE = 65_536


def torch_dataset(path: str | Path, *, label: str | Sequence[str] | None = None, split: str | None = None,
                  columns: Sequence[str] | None = None, batch_size: int | None = None) -> Any:
    """An ``IterableDataset`` over the export at ``path`` (its format from what is there).

    ``label`` names the label column(s) (NPY: ``labels.npy``, by default when there is
    one): items are then ``(features, label)``, else feature dicts; ``split`` picks one
    split of a split export; ``columns`` the features to keep (Parquet, Arrow);
    ``batch_size`` yields blocks of that many rows instead of single rows.
    """
    if torch is None:
        raise InvalidInput("torch_dataset needs PyTorch: pip install 'fstore[torch]'")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise InvalidInput(f"batch_size must be a positive integer, not {batch_size!r}")
    path = Path(path)
    labels = [label] if isinstance(label, str) else list(label or [])
    if (path / "meta.json").exists() or (split is not None and (path / split / "meta.json").exists()):
        return _NpyDataset(path, split, labels, batch_size)
    suffix = ".arrow" if path.suffix in (".arrow", ".feather") or (path.is_dir() and any(path.glob("*.arrow"))) \
        else ".parquet"
    return _ArrowDataset(export_files(path, suffix, split), labels, columns, batch_size)


def _worker_share(pieces: list[Any]) -> list[Any]:
    """The pieces this ``DataLoader`` worker reads (all of them outside a worker)."""
    info = get_worker_info()
    return pieces if info is None else pieces[info.id::info.num_workers]


def _rows(block: dict[str, Any], n: int, batch_size: int | None) -> Iterator[dict[str, Any]]:
    if batch_size is not None:
        for start in range(0, n, batch_size):
            yield {k: v[start:start + batch_size] for k, v in block.items()}
        return
    for i in range(n):
        yield {k: v[i] for k, v in block.items()}


def _pair(item: dict[str, Any], labels: list[str]) -> Any:
    if not labels:
        return item
    target = item.pop(labels[0]) if len(labels) == 1 else {k: item.pop(k) for k in labels}
    return item, target


class _ArrowDataset(IterableDataset):
    """Rows of Parquet or Arrow IPC files; each piece a Parquet row group or an IPC record batch."""

    def __init__(self, files: list[Path], labels: list[str], columns: Sequence[str] | None,
                 batch_size: int | None) -> None:
        self.files, self.labels, self.batch_size = files, labels, batch_size
        self.parquet = files[0].suffix == ".parquet"
        schema = self._schema(files[0])
        for name in [*labels, *(columns or [])]:
            if name not in schema.names:
                raise InvalidInput(f"column {name!r} is not in the export (columns: {', '.join(schema.names)})")
        keep = set(columns) | set(labels) if columns is not None else set(schema.names)
        self.names = [n for n in schema.names if n in keep]
        self.kinds = {n: column_kind(schema.field(n)) for n in self.names}

    def _schema(self, file: Path) -> pa.Schema:
        import pyarrow.parquet as pq

        return pq.read_schema(file) if self.parquet else pa.ipc.open_file(file).schema

    def _pieces(self) -> list[tuple[Path, int]]:
        import pyarrow.parquet as pq

        return [(f, i) for f in self.files for i in range(
            pq.ParquetFile(f).num_row_groups if self.parquet else pa.ipc.open_file(f).num_record_batches)]

    def _read(self, file: Path, index: int) -> pa.RecordBatch | pa.Table:
        import pyarrow.parquet as pq

        if self.parquet:
            return pq.ParquetFile(file).read_row_group(index, columns=self.names)
        return pa.ipc.open_file(file).get_batch(index).select(self.names)

    def _tensors(self, data: pa.RecordBatch | pa.Table) -> dict[str, Any]:
        block: dict[str, Any] = {}
        for name in self.names:
            kind, width = self.kinds[name]
            if kind == "bytes":
                block[name] = ["" if v is None else v for v in data.column(name).to_pylist()]
            else:
                values = to_numpy(data.column(name), kind, width)
                block[name] = torch.from_numpy(np.require(values, requirements=("C", "W")))  # writable
        return block

    def __iter__(self) -> Iterator[Any]:
        for file, index in _worker_share(self._pieces()):
            data = self._read(file, index)
            for item in _rows(self._tensors(data), data.num_rows, self.batch_size):
                yield _pair(item, self.labels)


class _NpyDataset(IterableDataset):
    """Rows of an NPY export (``features.npy``, ``labels.npy``), memory-mapped; pieces are row ranges."""

    def __init__(self, path: Path, split: str | None, labels: list[str], batch_size: int | None) -> None:
        self.batch_size = batch_size
        self.directory = path / split if split is not None else path
        if not (self.directory / "features.npy").exists():
            raise InvalidInput(f"export {path} has no split {split!r}" if split else f"{path} has no features.npy")
        meta = json.loads((path / "meta.json").read_text())
        self.label = "label" if (self.directory / "labels.npy").exists() else None
        if labels and self.label is None:
            raise InvalidInput(f"the NPY export {path} has no labels.npy")
        if labels and meta.get("label") and labels != meta["label"]:
            raise InvalidInput(f"the NPY export {path} holds label {meta['label']}, not {labels}")
        self.rows = int(np.load(self.directory / "features.npy", mmap_mode="r").shape[0])

    def __iter__(self) -> Iterator[Any]:
        features = np.load(self.directory / "features.npy", mmap_mode="r")
        labels = np.load(self.directory / "labels.npy", mmap_mode="r") if self.label else None
        pieces = [(a, min(a + NPY_ROWS_PER_PIECE, self.rows)) for a in range(0, self.rows, NPY_ROWS_PER_PIECE)]
        for start, end in _worker_share(pieces):
            block = {"features": torch.from_numpy(np.array(features[start:end]))}
            if labels is not None:
                block["label"] = torch.from_numpy(np.array(labels[start:end]))
            for item in _rows(block, end - start, self.batch_size):
                yield (item["features"], item["label"]) if labels is not None else item["features"]


__all__ = ["torch_dataset"]
