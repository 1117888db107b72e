"""PyTorch over exports (fstore[torch]): fs.torch_dataset is an IterableDataset over a Parquet,
Arrow or NPY export of a training dataset, with the label split off; DataLoader workers each
read their own share, so every row comes once."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset

import fstore
from fstore.errors import InvalidInput
from fstore.export import write_batches
from tests.retrieval.conftest import commit_rows, create_group

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def exported(fraud: Any, home: Any, tmp_path: Path) -> tuple[fstore.FeatureStore, pa.Table]:
    """Training dataset ``torch_train`` (label is_fraud, split train/test), exported to Parquet."""
    with fraud.connect("alice") as alice:
        account = create_group(alice, fraud.name, "account", {"account_id": "bigint", "event_time": "timestamptz",
                                                               "balance": "double precision", "n_tx": "integer"},
                               ["account_id"])
        commit_rows(alice, account, [(a, T0 + dt.timedelta(days=d), 10.0 * a + d, d)
                                     for a in range(1, 31) for d in range(0, 20, 5)])
    fs = fstore.connect(fraud.name, "bob", home=home)
    spine = pa.table({"account_id": pa.array([1 + i % 35 for i in range(200)], pa.int64()),
                      "event_time": pa.array([T0 + dt.timedelta(hours=3 * i) for i in range(200)]),
                      "is_fraud": pa.array([i % 7 == 0 for i in range(200)])})
    fs.create_training_dataset("torch_train", spine, ["account:*"], label="is_fraud",
                               split={"train": 0.75, "test": 0.25}, seed=2, path=tmp_path / "train.parquet")
    return fs, fs.get_training_dataset("torch_train")


def _split(table: pa.Table, name: str) -> pa.Table:
    return table.filter(pc.equal(table["split"], name))


def test_rows_and_labels_of_a_split_parquet_export(exported: Any, tmp_path: Path) -> None:
    fs, stored = exported
    dataset = fs.torch_dataset(tmp_path / "train.parquet", split="train", label="is_fraud")
    assert isinstance(dataset, IterableDataset)
    items = list(dataset)
    train = _split(stored, "train")
    assert len(items) == train.num_rows > 100
    features, label = items[0]
    assert set(features) == {"account_id", "event_time", "balance", "n_tx"}  # no split, no _row
    assert features["balance"].dtype == torch.float32 and features["n_tx"].dtype == torch.int64
    assert label.dtype == torch.int64  # booleans as 0/1
    expected = train.to_pylist()
    for (got, y), row in zip(items, expected):
        assert int(got["account_id"]) == row["account_id"] and int(y) == int(row["is_fraud"])
        if row["balance"] is None:  # no feature row at that time: NULL becomes NaN
            assert math.isnan(float(got["balance"])) and int(got["n_tx"]) == 0
        else:
            assert float(got["balance"]) == pytest.approx(row["balance"]) and int(got["n_tx"]) == row["n_tx"]


def test_a_data_loader_with_workers_reads_every_row_once(exported: Any, tmp_path: Path) -> None:
    fs, stored = exported
    train = _split(stored, "train").drop_columns(["split"])
    write_batches(train.to_reader(max_chunksize=20), tmp_path / "groups.parquet", "parquet")  # 8 row groups
    loader = DataLoader(fs.torch_dataset(tmp_path / "groups.parquet", label="is_fraud",
                                         columns=["account_id", "balance"]),
                        batch_size=16, num_workers=2)
    ids, labels = [], []
    for features, label in loader:
        assert set(features) == {"account_id", "balance"} and features["balance"].shape[0] == label.shape[0]
        ids += features["account_id"].tolist()
        labels += label.tolist()
    assert sorted(ids) == sorted(train.column("account_id").to_pylist())
    assert sum(labels) == sum(train.column("is_fraud").to_pylist())
    blocks = list(fs.torch_dataset(tmp_path / "groups.parquet", batch_size=50))  # blocks of rows, no label
    assert [len(b["account_id"]) for b in blocks] == [20] * 7 + [train.num_rows - 140] and "is_fraud" in blocks[0]


def test_arrow_and_npy_exports(exported: Any, tmp_path: Path) -> None:
    fs, stored = exported
    fs.export("torch_train", tmp_path / "train.arrow")
    test = _split(stored, "test")
    rows = list(fs.torch_dataset(tmp_path / "train.arrow", split="test", label="is_fraud"))
    assert [int(f["account_id"]) for f, _ in rows] == test.column("account_id").to_pylist()

    fs.export("torch_train", tmp_path / "npy", "npy", features=["balance", "n_tx"])
    pairs = list(fs.torch_dataset(tmp_path / "npy", split="test"))
    assert len(pairs) == test.num_rows and pairs[0][0].shape == (2,) and pairs[0][0].dtype == torch.float64
    labels = [bool(y) for _, y in pairs]
    assert labels == test.column("is_fraud").to_pylist()
    n_tx = np.array([float(x[1]) for x, _ in pairs])
    expected = np.array([np.nan if v is None else v for v in test.column("n_tx").to_pylist()], dtype=float)
    assert np.array_equal(n_tx, expected, equal_nan=True)


def test_refusals_name_the_problem(exported: Any, tmp_path: Path) -> None:
    fs, _ = exported
    with pytest.raises(InvalidInput, match="has no split 'validation'"):
        fs.torch_dataset(tmp_path / "train.parquet", split="validation")
    with pytest.raises(InvalidInput, match="column 'nope' is not in the export"):
        fs.torch_dataset(tmp_path / "train.parquet", split="train", label="nope")
    with pytest.raises(InvalidInput, match="no export at"):
        fs.torch_dataset(tmp_path / "missing.parquet")
    with pytest.raises(InvalidInput, match="batch_size must be a positive integer"):
        fs.torch_dataset(tmp_path / "train.parquet", batch_size=0)
