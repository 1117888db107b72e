"""The two TFRecord encoders (C, and the numpy reference it replaced) write the same bytes
and the same spec statistics, for every kind of column, NULLs, slices and dictionaries;
the C encoder is the one exports use when fstore is installed by scripts/setup.sh."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from fstore import tfrecord
from fstore.errors import InvalidInput
from fstore.export import write_batches


def _stats(schema: pa.Schema) -> dict[str, dict[str, Any]]:
    return {f.name: {"null_count": 0, "min_length": 1 << 62, "max_length": -1} for f in schema}


def _table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    nulls = rng.random(n) < 0.15
    words = ["", "a", "é✓", "x" * 300, "note"]
    base = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    return pa.table({
        "id": pa.array(rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)),
        "small": pa.array(np.where(nulls, None, rng.integers(0, 200, n)).tolist(), pa.int32()),
        "u64": pa.array(rng.integers(0, 2**62, n).astype(np.uint64)),
        "flag": pa.array([None if k else bool(v) for k, v in zip(nulls, rng.random(n) < 0.5)]),
        "t": pa.array([base + dt.timedelta(seconds=int(s)) for s in rng.integers(0, 10**8, n)],
                      pa.timestamp("us", tz="UTC")),
        "d": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=int(x)) for x in rng.integers(0, 900, n)]),
        "x": pa.array(np.where(nulls, None, rng.normal(size=n)).tolist(), pa.float64()),
        "f16": pa.array(rng.normal(size=n).astype(np.float16)),
        "price": pa.array([decimal.Decimal(int(v)) / 4 for v in rng.integers(0, 4000, n)], pa.decimal128(10, 2)),
        "s": pa.array([None if k else words[int(v)] for k, v in zip(nulls[::-1], rng.integers(0, 5, n))]),
        "ls": pa.array([words[int(v)] for v in rng.integers(0, 5, n)], pa.large_string()),
        "bin": pa.array([bytes(rng.integers(0, 256, int(m), dtype=np.uint8)) for m in rng.integers(0, 9, n)]),
        "cat": pa.array([words[int(v)] for v in rng.integers(0, 5, n)]).dictionary_encode(),
        "vec": pa.array([None if k else list(rng.normal(size=3)) for k in nulls], pa.list_(pa.float32(), 3)),
        "ivec": pa.array([list(rng.integers(-5, 5, 2)) for _ in range(n)], pa.list_(pa.int64(), 2)),
        "ragged": pa.array([None if k else list(rng.normal(size=int(m)))
                            for k, m in zip(nulls[::-1], rng.integers(0, 5, n))], pa.list_(pa.float64())),
        "iragged": pa.array([list(rng.integers(-2**40, 2**40, int(m))) for m in rng.integers(0, 4, n)],
                            pa.large_list(pa.int64())),
    })


def _encode(batch: pa.RecordBatch, encoder: str) -> tuple[bytes, dict[str, Any]]:
    kinds = {f.name: tfrecord._column_kind(f) for f in batch.schema}
    stats = _stats(batch.schema)
    return tfrecord.encode_records(batch, kinds, stats, encoder=encoder), stats


def test_the_c_encoder_is_built() -> None:
    assert tfrecord.ENCODER == "native" and tfrecord._native is not None
    assert tfrecord._native.crc32c(b"123456789") == 0xE3069283  # the CRC32C check value


@pytest.mark.parametrize("seed", [1, 2])
def test_both_encoders_write_the_same_bytes_and_statistics(seed: int) -> None:
    table = _table(700, seed)
    for batch in [*table.to_batches(max_chunksize=300), table.slice(37, 400).combine_chunks().to_batches()[0],
                  table.slice(5, 0).to_batches()[0] if table.slice(5, 0).num_rows else
                  pa.RecordBatch.from_pylist([], schema=table.schema)]:
        ours, our_stats = _encode(batch, "native")
        reference, reference_stats = _encode(batch, "numpy")
        assert ours == reference and our_stats == reference_stats


def test_files_written_by_either_encoder_are_identical(tmp_path: Path, monkeypatch: Any) -> None:
    table = _table(500, 3)
    written = {}
    for encoder in ("native", "numpy"):
        monkeypatch.setattr(tfrecord, "ENCODER", encoder)
        result = write_batches(table.to_reader(max_chunksize=128), tmp_path / f"{encoder}.tfrecord", "tfrecord")
        written[encoder] = (result.path.read_bytes(), result.spec.read_text())
    assert written["native"] == written["numpy"]


def test_the_c_encoder_refuses_inconsistent_buffers() -> None:
    key = b"\x0a\x01a"
    with pytest.raises(ValueError, match="offsets"):
        tfrecord._native.encode(2, [(2, key, b"abc", np.array([0, 2, 9], dtype=np.int64), None)])
    with pytest.raises(ValueError, match="fewer values"):
        tfrecord._native.encode(3, [(0, key, np.zeros(2, dtype="<f4"), None, None)])
    with pytest.raises(ValueError, match="valid"):
        tfrecord._native.encode(2, [(1, key, np.zeros(2, dtype=np.int64), None, np.ones(1, dtype=np.uint8))])
    with pytest.raises(InvalidInput, match="too large"):
        _encode(pa.record_batch({"u": pa.array([2**64 - 1], pa.uint64())}), "native")
