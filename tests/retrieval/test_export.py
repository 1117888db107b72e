"""Exports: a data scientist writes rows out as Parquet, CSV, Arrow, NPY or TFRecord and
reads them back with the usual tools (pyarrow, numpy, real tf.data) to the same values.
A failed export leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from psycopg import sql

import fstore
from fstore.cli import main
from fstore.errors import Conflict, InvalidInput, PermissionDenied
from fstore.export import export_query, tf_dataset, write_batches
from tests.retrieval.conftest import commit_rows, create_group

UTC = dt.timezone.utc
BASE = dt.datetime(2024, 3, 1, tzinfo=UTC)
TXN = {"account_id": "bigint", "event_time": "timestamptz", "amount": "double precision", "n": "integer",
       "note": "text", "flag": "boolean", "price": "numeric(10,2)", "embedding": "vector(3)", "label": "integer"}
COLUMNS = [c for c in TXN]
ROWS = 240


def txn_rows() -> list[tuple]:
    """Generated rows: NULLs in amount, n and note; values exact in float32."""
    rows = []
    for i in range(1, ROWS + 1):
        rows.append((i, BASE + dt.timedelta(minutes=i), None if i % 7 == 0 else i * 0.25,
                     None if i % 11 == 0 else i * 3, None if i % 13 == 0 else f"note {i} é",
                     i % 3 == 0, decimal.Decimal(i) / 4, [i * 0.5, -i * 0.25, 1.0], i % 2))
    return rows


@pytest.fixture
def exported(fraud: Any) -> Any:
    """Project fraud with feature group txn filled with ROWS rows; bob's feature store handle."""
    with fraud.connect("alice") as alice:
        group = create_group(alice, fraud.name, "txn", TXN, ["account_id"])
        commit_rows(alice, group, [(*r[:7], str(r[7]), r[8]) for r in txn_rows()])
    with fstore.connect(fraud.name, "bob", home=fraud.home) as fs:
        yield fs


def ordered_query(fs: Any, *extra: sql.Composable) -> sql.Composed:
    select = [sql.Identifier(c) for c in COLUMNS] + list(extra)
    return sql.SQL("select {} from {} order by account_id").format(
        sql.SQL(", ").join(select), sql.Identifier(fs.project, "txn__v1"))


def expected() -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, r)) for r in txn_rows()]


def same_row(got: dict[str, Any], want: dict[str, Any]) -> None:
    for name, value in want.items():
        if name == "embedding":
            assert list(got[name]) == pytest.approx(value), name
        else:
            assert got[name] == value, (name, got[name], value)


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_parquet_and_arrow_read_back_with_pyarrow(exported: Any, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"txn.{fmt}"
    result = export_query(exported, ordered_query(exported), path, fmt)
    table = pq.read_table(path) if fmt == "parquet" else pa.ipc.open_file(path).read_all()
    assert result.rows == ROWS == table.num_rows and result.files == [path]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 3)
    assert table.schema.field("price").type == pa.decimal128(10, 2)
    for got, want in zip(table.to_pylist(), expected()):
        same_row(got, want)
    assert listing(tmp_path) == [path.name]


def test_csv_reads_back_with_pyarrow(exported: Any, tmp_path: Path) -> None:
    path = tmp_path / "txn.csv"
    export_query(exported, ordered_query(exported), path, "csv")
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(
        column_types={"price": pa.string(), "embedding": pa.string(), "note": pa.string()},
        strings_can_be_null=True))
    for got, want in zip(table.to_pylist(), expected()):
        got["price"] = decimal.Decimal(got["price"])
        got["embedding"] = json.loads(got["embedding"])
        same_row(got, want)


def test_npy_arrays_per_split(exported: Any, tmp_path: Path) -> None:
    split = sql.SQL("case when account_id % 4 = 0 then 'test' else 'train' end as split")
    path = tmp_path / "txn_npy"
    result = export_query(exported, ordered_query(exported, split), path, "npy", label="label",
                          split_column="split", features=["amount", "n", "flag", "price", "embedding"],
                          dtype=np.float32)
    assert result.splits == {"train": 180, "test": 60}
    meta = json.loads((path / "meta.json").read_text())
    assert meta["features"] == ["amount", "n", "flag", "price", "embedding[0]", "embedding[1]", "embedding[2]"]
    for name, keep in (("train", lambda r: r["account_id"] % 4), ("test", lambda r: not r["account_id"] % 4)):
        rows = [r for r in expected() if keep(r)]
        features = np.load(path / name / "features.npy")
        labels = np.load(path / name / "labels.npy")
        want = np.array([[np.nan if r["amount"] is None else r["amount"], np.nan if r["n"] is None else r["n"],
                          float(r["flag"]), float(r["price"]), *r["embedding"]] for r in rows], dtype=np.float32)
        assert features.dtype == np.float32 and features.shape == (len(rows), 7)
        np.testing.assert_array_equal(features, want)
        assert labels.dtype == np.int64 and labels.tolist() == [r["label"] for r in rows]


def test_tfrecord_reads_back_through_tf_data(exported: Any, tmp_path: Path) -> None:
    import tensorflow as tf

    path = tmp_path / "txn.tfrecord"
    result = export_query(exported, ordered_query(exported), path, "tfrecord", label="label")
    assert result.spec == tmp_path / "txn.tfrecord.spec.json" and listing(tmp_path) == [
        "txn.tfrecord", "txn.tfrecord.spec.json"]
    dataset = tf_dataset(None, path, batch_size=64)  # the label recorded in the spec
    batches = list(dataset.as_numpy_iterator())
    features = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    labels = np.concatenate([b[1] for b in batches])
    rows = expected()
    assert len(labels) == ROWS and labels.tolist() == [r["label"] for r in rows]
    assert features["account_id"].tolist() == [r["account_id"] for r in rows]
    np.testing.assert_array_equal(features["amount"], np.array(
        [np.nan if r["amount"] is None else r["amount"] for r in rows], dtype=np.float32))
    assert features["n"].tolist() == [r["n"] or 0 for r in rows]  # NULL: the int default 0
    assert features["note"].tolist() == [(r["note"] or "").encode() for r in rows]
    assert features["flag"].tolist() == [int(r["flag"]) for r in rows]
    assert features["price"].tolist() == [float(r["price"]) for r in rows]
    assert features["embedding"].shape == (ROWS, 3)
    assert features["embedding"].tolist() == [r["embedding"] for r in rows]
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert features["event_time"].tolist() == [(r["event_time"] - epoch) // dt.timedelta(microseconds=1)
                                               for r in rows]
    spec = json.loads(result.spec.read_text())
    assert spec["columns"]["amount"]["null_count"] == ROWS // 7
    assert spec["columns"]["event_time"]["arrow_type"] == "timestamp[us, tz=UTC]"

    # the framing is what TensorFlow's own writer produces, byte for byte
    copy = tmp_path / "copy.tfrecord"
    with tf.io.TFRecordWriter(str(copy)) as writer:
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            writer.write(record)
    assert copy.read_bytes() == path.read_bytes()
    example = tf.train.Example.FromString(next(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()))
    assert list(example.features.feature["embedding"].float_list.value) == [0.5, -0.25, 1.0]
    assert list(example.features.feature["note"].bytes_list.value) == ["note 1 é".encode()]


def test_tfrecord_splits_and_a_keras_model(exported: Any, tmp_path: Path) -> None:
    import tensorflow as tf

    split = sql.SQL("case when account_id % 4 = 0 then 'test' else 'train' end as split")
    path = tmp_path / "txn_tf"
    export_query(exported, ordered_query(exported, split), path, "tfrecord", label="label", split_column="split")
    assert listing(path) == ["spec.json", "test.tfrecord", "train.tfrecord"]
    test = tf_dataset(exported, path, split="test", columns=["amount", "price"], batch_size=16)
    ids = [r for r in expected() if r["account_id"] % 4 == 0]
    labels = np.concatenate([y for _, y in test.as_numpy_iterator()])
    assert labels.tolist() == [r["label"] for r in ids]
    train = tf_dataset(exported, path, split="train", columns=["price"], batch_size=32)
    model = tf.keras.Sequential([tf.keras.layers.Input(shape=(1,)), tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy")
    history = model.fit(train.map(lambda x, y: (tf.expand_dims(x["price"], -1), y)), epochs=1, verbose=0, shuffle=False)
    assert math.isfinite(history.history["loss"][0])
    with pytest.raises(InvalidInput, match="no split 'valid'"):
        tf_dataset(exported, path, split="valid")


def test_npy_refuses_a_non_numeric_column_and_writes_nothing(exported: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"not numeric: 'event_time' .*'note'"):
        export_query(exported, ordered_query(exported), tmp_path / "out", "npy", label="label")
    assert listing(tmp_path) == []


def failing_reader(after: int) -> pa.RecordBatchReader:
    """A reader that yields ``after`` good batches, then raises (a connection lost mid-stream)."""
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k != "embedding"} for r in expected()])

    def batches() -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(table.to_batches(max_chunksize=50)):
            if i == after:
                raise ConnectionError("server closed the connection mid-stream")
            yield batch

    return pa.RecordBatchReader.from_batches(table.schema, batches())


@pytest.mark.parametrize("fmt", ["parquet", "csv", "arrow", "tfrecord", "npy"])
@pytest.mark.parametrize("split", [None, "flag"])
def test_an_error_mid_stream_leaves_no_file_and_no_temporary(tmp_path: Path, fmt: str, split: str | None) -> None:
    features = ["amount", "n"] if fmt == "npy" else None
    with pytest.raises(ConnectionError, match="mid-stream"):
        write_batches(failing_reader(after=2), tmp_path / "out", fmt, label="label", split_column=split,
                      features=features)
    assert listing(tmp_path) == []
    good = write_batches(failing_reader(after=99), tmp_path / "out", fmt, label="label", split_column=split,
                         features=features)
    assert good.rows == ROWS
    before = {p: p.read_bytes() for p in good.files}
    with pytest.raises(ConnectionError):  # a failed re-export keeps the previous one intact
        write_batches(failing_reader(after=1), tmp_path / "out", fmt, label="label", split_column=split,
                      features=features)
    assert {p: p.read_bytes() for p in good.files} == before
    assert [n for n in listing(tmp_path) if n.startswith(".")] == []


def test_existing_export_is_kept_without_overwrite(tmp_path: Path) -> None:
    write_batches(failing_reader(after=99), tmp_path / "a.parquet", "parquet")
    with pytest.raises(Conflict, match="exists already"):
        write_batches(failing_reader(after=99), tmp_path / "a.parquet", "parquet", overwrite=False)
    with pytest.raises(InvalidInput, match="unknown export format 'xlsx'"):
        write_batches(failing_reader(after=99), tmp_path / "a.xlsx", "xlsx")
    with pytest.raises(InvalidInput, match="column 'nope' is not in the data"):
        write_batches(failing_reader(after=99), tmp_path / "b.parquet", "parquet", split_column="nope")
    assert listing(tmp_path) == ["a.parquet"]


def test_a_scientist_of_another_project_cannot_export(exported: Any, make_project: Any, tmp_path: Path) -> None:
    other = make_project(owner="olga", scientists=["dave"], prefix="mkt")
    with fstore.connect(other.name, "dave", home=other.home) as dave:
        with pytest.raises(PermissionDenied):
            export_query(dave, f"{exported.project}.txn__v1", tmp_path / "stolen.parquet", "parquet")
    assert listing(tmp_path) == []


def test_cli_exports_a_table_and_a_training_dataset(exported: Any, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "txn.parquet"
    result = runner.invoke(main, ["--home", str(exported.home.root), "export", "txn__v1", "--format", "parquet",
                                  "--out", str(out), "--as", exported.role])
    assert result.exit_code == 0, result.output
    assert f"wrote {ROWS} rows" in result.output and pq.read_table(out).num_rows == ROWS

    conn = exported.conn
    conn.execute(sql.SQL("create temp table spine as select account_id, event_time + interval '1 second' "
                         "as event_time, label from {} order by account_id")
                 .format(sql.Identifier(exported.project, "txn__v1")))
    conn.execute("select fstore.create_training_table('txn_train', 'pg_temp.spine'::regclass, "
                 "array['txn:amount', 'txn:price'], p_label => array['label'], "
                 "p_split => '{\"train\": 0.75, \"test\": 0.25}'::jsonb, p_seed => 3)")
    out = tmp_path / "train_npy"
    result = runner.invoke(main, ["--home", str(exported.home.root), "export", "txn_train@1", "--format", "npy",
                                  "--out", str(out), "--feature", "amount", "--feature", "price",
                                  "--as", exported.role])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["label"] == ["label"] and set(meta["splits"]) == {"train", "test"}
    assert sum(meta["splits"].values()) == ROWS
    assert np.load(out / "train" / "features.npy").shape == (meta["splits"]["train"], 2)

    result = runner.invoke(main, ["--home", str(exported.home.root), "export", "txn__v1", "--format", "npy",
                                  "--out", str(tmp_path / "bad"), "--as", exported.role])
    assert result.exit_code == 1 and "not numeric" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "arrow", "tfrecord", "npy"])
def test_an_export_without_rows(tmp_path: Path, fmt: str) -> None:
    empty = failing_reader(after=0).schema.empty_table()
    features = ["amount", "n"] if fmt == "npy" else None
    result = write_batches(empty, tmp_path / "none", fmt, label="label", features=features)
    assert result.rows == 0
    if fmt == "parquet":
        assert pq.read_table(result.path).schema.names == empty.schema.names
    elif fmt == "npy":
        assert np.load(result.path / "features.npy").shape == (0, 2)
        assert np.load(result.path / "labels.npy").shape == (0,)
    elif fmt == "tfrecord":
        assert list(tf_dataset(None, result.path).as_numpy_iterator()) == []
    split = write_batches(empty, tmp_path / "none_split", fmt, label="label", split_column="flag",
                          features=features)
    assert split.splits == {} and split.rows == 0
    assert [p.name for p in split.files] == {"tfrecord": ["spec.json"], "npy": ["meta.json"]}.get(fmt, [])


def test_tfrecord_encoding_matches_protobuf_on_random_rows(tmp_path: Path) -> None:
    """Random rows of every supported kind (strings of very different lengths, negative and huge
    integers, NULLs, ragged lists) parse back to the same values with protobuf itself."""
    import tensorflow as tf

    rng = np.random.default_rng(11)
    n = 3000
    text = ["".join(rng.choice(list("abcé✓"), size=rng.integers(0, 400))) for _ in range(n)]
    ints = rng.integers(-2**62, 2**62, n)
    ints[:5] = [0, -1, 127, 128, 2**63 - 1]
    ragged = [list(rng.normal(size=rng.integers(0, 6))) for _ in range(n)]
    table = pa.table({
        "s": pa.array([None if i % 17 == 0 else t for i, t in enumerate(text)]),
        "i": pa.array(ints), "i8": pa.array(rng.integers(-128, 127, n).astype(np.int8)),
        "f": pa.array(np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)), pa.float32()),
        "ragged": pa.array(ragged, pa.list_(pa.float64())),
        "ints": pa.array([list(rng.integers(-1000, 10**12, 3)) for _ in range(n)], pa.list_(pa.int64())),
        "b": pa.array(rng.random(n) < 0.5),
    })
    result = write_batches(table.to_reader(max_chunksize=700), tmp_path / "random.tfrecord", "tfrecord")
    spec = json.loads(result.spec.read_text())["columns"]
    assert spec["ragged"]["shape"] is None and spec["ints"]["shape"] == [3] and spec["s"]["null_count"] == 177
    records = list(tf.data.TFRecordDataset(str(result.path)).as_numpy_iterator())
    assert len(records) == n
    for row, record in zip(table.to_pylist(), records):
        feature = tf.train.Example.FromString(record).features.feature
        if row["s"] is None:
            assert "s" not in feature
        else:
            assert feature["s"].bytes_list.value == [row["s"].encode()]
        assert feature["i"].int64_list.value == [row["i"]]
        assert feature["i8"].int64_list.value == [row["i8"]]
        f = feature["f"].float_list.value[0]
        assert (math.isnan(f) and math.isnan(row["f"])) or f == row["f"]
        assert list(feature["ragged"].float_list.value) == pytest.approx(row["ragged"], rel=1e-6)
        assert list(feature["ints"].int64_list.value) == row["ints"]
        assert feature["b"].int64_list.value == [int(row["b"])]


def test_parquet_export_through_tf_data(exported: Any, tmp_path: Path) -> None:
    split = sql.SQL("case when account_id % 4 = 0 then 'test' else 'train' end as split")
    path = tmp_path / "txn_parquet"
    export_query(exported, ordered_query(exported, split), path, "parquet", split_column="split")
    dataset = tf_dataset(exported, path, split="test", label="label", batch_size=25,
                         columns=["amount", "note", "embedding", "event_time"])
    batches = list(dataset.as_numpy_iterator())
    rows = [r for r in expected() if r["account_id"] % 4 == 0]
    features = {k: np.concatenate([b[0][k] for b in batches]) for k in batches[0][0]}
    assert sorted(features) == ["amount", "embedding", "event_time", "note"]
    assert np.concatenate([b[1] for b in batches]).tolist() == [r["label"] for r in rows]
    np.testing.assert_array_equal(features["amount"], np.array(
        [np.nan if r["amount"] is None else r["amount"] for r in rows], dtype=np.float32))
    assert features["embedding"].tolist() == [r["embedding"] for r in rows]
    assert features["note"].tolist() == [(r["note"] or "").encode() for r in rows]
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    assert features["event_time"].tolist() == [(r["event_time"] - epoch) // dt.timedelta(microseconds=1)
                                               for r in rows]


def test_read_ahead_keeps_order_passes_errors_and_stops_its_thread() -> None:
    import threading

    from fstore.prefetch import ReadAhead

    before = threading.active_count()
    with ReadAhead(failing_reader(after=99), depth=1) as reader:
        ids = [r["account_id"] for b in reader for r in b.to_pylist()]
    assert ids == list(range(1, ROWS + 1))
    seen = 0
    with pytest.raises(ConnectionError, match="mid-stream"):
        with ReadAhead(failing_reader(after=2)) as reader:
            for batch in reader:
                seen += batch.num_rows
    assert seen == 100
    with ReadAhead(failing_reader(after=99), depth=1) as reader:
        reader.read_next_batch()  # stop early: leaving the block ends the thread
    assert threading.active_count() == before


def test_npy_header_is_numpys_and_keeps_its_length_as_rows_grow(tmp_path: Path) -> None:
    """The header is written by numpy.lib.format with 0 rows, then again at close with the real
    shape: numpy leaves room for the first dimension, so it is 128 bytes both times."""
    rows = 300_000
    table = pa.table({"a": np.arange(rows, dtype=np.float64), "b": np.arange(rows, dtype=np.int64),
                      "y": np.arange(rows) % 2 == 0})
    result = write_batches(table.to_reader(max_chunksize=65_536), tmp_path / "big", "npy", label="y",
                           dtype=np.float32)
    assert result.rows == rows
    with open(tmp_path / "big" / "features.npy", "rb") as fh:
        version = np.lib.format.read_magic(fh)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        assert (version, shape, fortran, dtype, fh.tell()) == ((1, 0), (rows, 2), False, np.float32, 128)
    features = np.load(tmp_path / "big" / "features.npy")
    assert features[-1].tolist() == [rows - 1, rows - 1]
    assert np.load(tmp_path / "big" / "labels.npy").sum() == rows // 2
