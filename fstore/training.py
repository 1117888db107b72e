"""Training data: point-in-time retrieval and training datasets with provenance.

A training dataset is the point-in-time join of a spine with features, built by
the database (``fstore.create_training_table`` in ``sql/009_training.sql``, the
same procedure a psql user calls), stored as ``<project>.<name>__td<version>``
and recorded with what it was made from: feature groups, versions, the commits
each one had, a hash of the spine, who built it and with which application.
Reading it later returns exactly the same rows, whatever was committed since.

Example::

    fs = fstore.connect("fraud", "bob")
    ds = fs.create_training_dataset("fraud_train", labels_df, ["activity:*"], label="is_fraud",
                                    split={"train": 0.8, "test": 0.2}, seed=7,
                                    format="parquet", path="/data/fraud_train.parquet")
    same = fs.get_training_dataset("fraud_train", ds.version)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from psycopg import sql

from fstore.errors import InvalidInput, translated
from fstore.pointintime import (
    Spine,
    adbc_translated,
    feature_list,
    get_historical_features,
    load_spine,
    session_settings,
    ttl_text,
)

if TYPE_CHECKING:
    from fstore.store import FeatureStore

__all__ = [
    "TrainingDataset", "create_training_dataset", "get_historical_features", "get_training_dataset",
    "list_training_datasets", "rebuild_training_dataset", "training_dataset",
]

ROW_COLUMN = "_row"
SPLIT_COLUMN = "split"
FORMATS = {".parquet": "parquet", ".csv": "csv", ".npy": "npy", ".npz": "npy", ".tfrecord": "tfrecord",
           ".tfrecords": "tfrecord", ".arrow": "arrow", ".feather": "arrow"}


@dataclass(frozen=True)
class TrainingDataset:
    """The catalog record of one training dataset version (``fstore.training_datasets``)."""

    id: int
    project: str
    name: str
    version: int
    table_name: str
    features: list[str]
    feature_groups: list[dict[str, Any]]
    spine_columns: list[str]
    event_time_column: str
    label: list[str]
    split: dict[str, Any] | None
    seed: int
    spine_hash: str
    rows: int
    created_by: str
    created_at: str
    app_id: str | None = None
    ttl: str | None = None
    description: str = ""
    exports: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "TrainingDataset":
        """Build from a ``to_jsonb`` of a catalog row."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in record.items() if k in names})

    @property
    def commits(self) -> dict[str, int | None]:
        """The newest commit of each feature group the dataset saw, by ``project.group@version``."""
        return {f"{g['project']}.{g['name']}@{g['version']}": g.get("max_commit") for g in self.feature_groups}


CREATE_QUERY = """
select fstore.training_dataset_json(t)
  from (select $3::jsonb as a) args,
       lateral fstore.create_training_table(
         $1, $2::regclass, array(select jsonb_array_elements_text(a->'features')), a->>'event_time_column',
         (a->>'ttl')::interval, (a->>'full_feature_names')::boolean, nullif(a->'keys', 'null'::jsonb),
         array(select jsonb_array_elements_text(a->'label')), nullif(a->'split', 'null'::jsonb),
         (a->>'seed')::bigint, a->>'description') t
"""

FIND_QUERY = ("select fstore.training_dataset_json(t) from (select $2::jsonb as a) args, "
              "lateral fstore.find_training_dataset($1, (a->>'version')::integer) t")


def _labels(label: str | Sequence[str] | None) -> list[str]:
    if label is None:
        return []
    return [label] if isinstance(label, str) else list(label)


def _format_of(format: str | None, path: str | Path | None) -> str | None:
    if path is None:
        if format is not None:
            raise InvalidInput(f"format {format!r} needs a path to write to")
        return None
    if format is not None:
        return format
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInput(f"cannot tell the format of {str(path)!r}: give format= ({', '.join(sorted(set(FORMATS.values())))})")
    return FORMATS[suffix]


def create_training_dataset(
    fs: "FeatureStore",
    name: str,
    spine: Spine,
    features: str | Sequence[str],
    *,
    label: str | Sequence[str] | None = None,
    split: Mapping[str, Any] | None = None,
    seed: int = 0,
    format: str | None = None,
    path: str | Path | None = None,
    event_time_column: str = "event_time",
    ttl: dt.timedelta | str | None = None,
    full_feature_names: bool = False,
    keys: Mapping[str, str] | None = None,
    description: str = "",
    progress: Any = None,
) -> TrainingDataset:
    """Build, store and record a training dataset; optionally write it to a file.

    ``split`` is by fraction with ``seed`` (``{"train": 0.8, "test": 0.2}``) or by
    time ranges on the spine's event time (``{"train": ["2024-01-01", "2024-06-01"],
    "test": ["2024-06-01", None]}``, start inclusive, end exclusive; rows outside
    every range are left out). The split is a column ``split`` of the dataset.
    ``label`` names the spine column(s) holding the label. With ``path`` the
    dataset is also exported (format from ``format=`` or the file suffix).

    Example::

        ds = fs.create_training_dataset("fraud_train", "select * from labels", ["activity:*"],
                                        label="is_fraud", split={"train": 0.8, "test": 0.2})
        print(ds.version, ds.rows, ds.commits)
    """
    out_format = _format_of(format, path)
    if split is not None and not isinstance(split, Mapping):
        raise InvalidInput('split must be a mapping like {"train": 0.8, "test": 0.2}')
    arguments = json.dumps({
        "features": feature_list(features), "event_time_column": event_time_column, "ttl": ttl_text(ttl),
        "full_feature_names": bool(full_feature_names), "keys": dict(keys) if keys is not None else None,
        "label": _labels(label), "split": dict(split) if split is not None else None, "seed": int(seed),
        "description": description,
    }, default=str)
    conn = fs.adbc()
    try:
        with adbc_translated():
            cursor = conn.cursor()
            relation = load_spine(conn, cursor, spine)
            session_settings(cursor)
            cursor.execute(CREATE_QUERY, parameters=(name, relation, arguments))
            dataset = TrainingDataset.from_record(json.loads(cursor.fetchone()[0]))
            conn.commit()
            if out_format is not None:
                rows = _export(_read_batches(cursor, dataset), Path(path), out_format,  # type: ignore[arg-type]
                               label=dataset.label, split_column=SPLIT_COLUMN if dataset.split else None,
                               progress=progress)
                cursor.execute("select fstore.record_training_export($1::bigint, $2, $3, $4::bigint)",
                               parameters=(str(dataset.id), out_format, str(Path(path).resolve()), str(rows)))
                cursor.fetchall()
                conn.commit()
                dataset = _find(cursor, dataset.name, dataset.version)
            cursor.close()
        return dataset
    finally:
        conn.close()


def _find(cursor: Any, name: str, version: int | None) -> TrainingDataset:
    cursor.execute(FIND_QUERY, parameters=(name, json.dumps({"version": version})))
    return TrainingDataset.from_record(json.loads(cursor.fetchone()[0]))


def _read_batches(cursor: Any, dataset: TrainingDataset) -> pa.RecordBatchReader:
    """The stored rows in spine order, streamed, without the row-number column."""
    query = sql.SQL("select * from {} order by {}").format(
        sql.Identifier(dataset.project, dataset.table_name), sql.Identifier(ROW_COLUMN))
    cursor.execute(query.as_string(None))
    reader = cursor.fetch_record_batch()
    keep = [i for i, n in enumerate(reader.schema.names) if n != ROW_COLUMN]
    schema = pa.schema([reader.schema.field(i) for i in keep])

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            yield pa.RecordBatch.from_arrays([batch.column(i) for i in keep], schema=schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _export(reader: pa.RecordBatchReader, path: Path, out_format: str, *, label: list[str],
            split_column: str | None, progress: Any) -> int:
    """Write the batches with :func:`fstore.export.write_batches`; returns the rows written."""
    from fstore.export import write_batches

    result = write_batches(reader, path, out_format, label=label or None, split_column=split_column,
                           progress=progress)
    return result.rows


def training_dataset(fs: "FeatureStore", name: str, version: int | None = None) -> TrainingDataset:
    """The catalog record of a training dataset (the latest version unless ``version``)."""
    conn = fs.adbc()
    try:
        with adbc_translated():
            cursor = conn.cursor()
            dataset = _find(cursor, name, version)
            cursor.close()
            conn.rollback()
        return dataset
    finally:
        conn.close()


def get_training_dataset(fs: "FeatureStore", name: str, version: int | None = None) -> pa.Table:
    """The rows of a training dataset as stored, in spine order (the same rows every time).

    Example::

        table = fs.get_training_dataset("fraud_train")          # latest version
        train = table.filter(pc.equal(table["split"], "train"))
    """
    conn = fs.adbc()
    try:
        with adbc_translated():
            cursor = conn.cursor()
            dataset = _find(cursor, name, version)
            table = _read_batches(cursor, dataset).read_all()
            cursor.close()
            conn.rollback()
        return table
    finally:
        conn.close()


def rebuild_training_dataset(fs: "FeatureStore", name: str, version: int | None = None) -> pa.Table:
    """Recompute a training dataset from its stored spine, reading every feature group as of
    the commits it saw then (``fstore.training_dataset_sql``); without the split column.

    It equals the stored rows however many commits landed since: a check of provenance.
    """
    conn = fs.adbc()
    try:
        with adbc_translated():
            cursor = conn.cursor()
            cursor.execute("select fstore.training_dataset_sql($1, (a->>'version')::integer) from (select $2::jsonb as a) args",
                           parameters=(name, json.dumps({"version": version})))
            query = cursor.fetchone()[0]
            session_settings(cursor)
            cursor.execute(query)
            table = cursor.fetch_arrow_table()
            cursor.close()
            conn.rollback()
        return table
    finally:
        conn.close()


def list_training_datasets(fs: "FeatureStore", name: str | None = None) -> list[TrainingDataset]:
    """Training datasets the caller can see (its project's and shared ones), newest first."""
    with translated():
        rows = fs.conn.execute(
            "select fstore.training_dataset_json(t) from fstore.training_datasets t "
            "where %(name)s::text is null or name = %(name)s "
            "order by project, name, version desc", {"name": name}).fetchall()
    return [TrainingDataset.from_record(r[0]) for r in rows]
