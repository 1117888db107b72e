"""Training data: point-in-time retrieval and training datasets with provenance.

A training dataset is the point-in-time join of a spine with features, built by
the database (``fstore.create_training_table`` in ``sql/``, the same procedure a
psql user calls), stored as ``<project>.<name>__td<version>`` and recorded with
what it was made from: feature groups, versions, the commits each one had, a hash
of the spine, who built it and with which application. Reading it later returns
exactly the same rows, whatever was committed since (:mod:`fstore.datasets` reads
them). A name is reused only on purpose: ``new_version=True`` (or the next
``version=``) builds the next version; without either, an existing name is refused.

Example::

    fs = fstore.connect("fraud", "bob")
    ds = fs.create_training_dataset("fraud_train", labels_df, ["activity:*"], label="is_fraud",
                                    split={"train": 0.8, "test": 0.2}, seed=7,
                                    format="parquet", path="/data/fraud_train.parquet")
    same = fs.get_training_dataset("fraud_train", ds.version)
    again = fs.create_training_dataset("fraud_train", labels_df, ["activity:*"], new_version=True)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from fstore.connection import adbc_session
from fstore.datasets import (
    TrainingDataset,
    find_training_dataset,
    list_training_datasets,
    rows_query,
)
from fstore.errors import InvalidInput
from fstore.export import Progress, export, format_of, labels_of
from fstore.pointintime import (
    Spine,
    feature_list,
    get_historical_features,
    load_spine,
    session_settings,
    ttl_text,
)
from fstore.sensitive import require_readable_columns
from fstore.session import Session

__all__ = [
    "TrainingDataset", "create_training_dataset", "get_historical_features", "get_training_dataset",
    "list_training_datasets", "rebuild_training_dataset", "training_dataset",
]

CREATE_QUERY = """
select fstore.training_dataset_json(t)
  from (select $3::jsonb as a) args,
       lateral fstore.create_training_table(
         $1, $2::regclass, array(select jsonb_array_elements_text(a->'features')), a->>'event_time_column',
         (a->>'ttl')::interval, (a->>'full_feature_names')::boolean, nullif(a->'keys', 'null'::jsonb),
         array(select jsonb_array_elements_text(a->'label')), nullif(a->'split', 'null'::jsonb),
         (a->>'seed')::bigint, a->>'description', (a->>'version')::integer, (a->>'new_version')::boolean) t
"""


def create_training_dataset(
    fs: Session,
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
    version: int | None = None,
    new_version: bool = False,
    progress: Progress | None = None,
) -> TrainingDataset:
    """Build, store and record a training dataset; optionally write it to a file.

    ``split`` is by fraction with ``seed`` (``{"train": 0.8, "test": 0.2}``) or by
    time ranges on the spine's event time (``{"train": ["2024-01-01", "2024-06-01"],
    "test": ["2024-06-01", None]}``, start inclusive, end exclusive; rows outside
    every range are left out). The split is a column ``split`` of the dataset.
    ``label`` names the spine column(s) holding the label. With ``path`` the
    dataset is also exported (format from ``format=`` or the file suffix).
    A name that exists already is refused (:class:`~fstore.errors.Conflict`) unless
    ``new_version=True`` or ``version=`` names the next version.

    Example::

        ds = fs.create_training_dataset("fraud_train", "select * from labels", ["activity:*"],
                                        label="is_fraud", split={"train": 0.8, "test": 0.2})
        print(ds.version, ds.rows, ds.commits)
    """
    out_format = format_of(format, path)
    if split is not None and not isinstance(split, Mapping):
        raise InvalidInput('split must be a mapping like {"train": 0.8, "test": 0.2}')
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
        raise InvalidInput(f"version must be a positive integer, not {version!r}")
    arguments = json.dumps({
        "features": feature_list(features), "event_time_column": event_time_column, "ttl": ttl_text(ttl),
        "full_feature_names": bool(full_feature_names), "keys": dict(keys) if keys is not None else None,
        "label": labels_of(label), "split": dict(split) if split is not None else None, "seed": int(seed),
        "description": description, "version": version, "new_version": bool(new_version),
    }, default=str)
    with adbc_session(fs.material) as (conn, cursor):
        relation = load_spine(conn, cursor, spine)
        session_settings(cursor)
        cursor.execute(CREATE_QUERY, parameters=(name, relation, arguments))
        built = json.loads(cursor.fetchone()[0])["version"]  # the reused-name rule is the database's
        conn.commit()
        # on a cluster, co-located with its distributed groups (a transaction of its own: docs/cluster.md)
        cursor.execute("select fstore.distribute_training_table($1, (a->>'version')::integer)"
                       " from (select $2::jsonb as a) args", parameters=(name, json.dumps({"version": built})))
        cursor.fetchall()
        conn.commit()
    dataset = find_training_dataset(fs, name, built)
    if out_format is not None:
        export(fs, dataset, Path(path), out_format, progress=progress)  # type: ignore[arg-type]
        dataset = find_training_dataset(fs, name, built)
    return dataset


def training_dataset(fs: Session, name: str, version: int | None = None) -> TrainingDataset:
    """The catalog record of a training dataset (the latest version unless ``version``)."""
    return find_training_dataset(fs, name, version)


def get_training_dataset(fs: Session, name: str, version: int | None = None) -> pa.Table:
    """The rows of a training dataset as stored, in spine order (the same rows every time).

    Example::

        table = fs.get_training_dataset("fraud_train")          # latest version
        train = table.filter(pc.equal(table["split"], "train"))
    """
    dataset = find_training_dataset(fs, name, version)
    require_readable_columns(fs, dataset.project, dataset.table_name, dataset.columns)  # a sensitive column: by name
    with adbc_session(fs.material) as (_, cursor):
        cursor.execute(rows_query(dataset).as_string(None))
        return cursor.fetch_arrow_table()


def rebuild_training_dataset(fs: Session, name: str, version: int | None = None) -> pa.Table:
    """Recompute a training dataset from its stored spine, reading every feature group as of
    the commits it saw then (``fstore.training_dataset_sql``); without the split column.

    It equals the stored rows however many commits landed since: a check of provenance.
    """
    with adbc_session(fs.material) as (_, cursor):
        cursor.execute("select fstore.training_dataset_sql($1, (a->>'version')::integer) from (select $2::jsonb as a) args",
                       parameters=(name, json.dumps({"version": version})))
        query = cursor.fetchone()[0]
        session_settings(cursor)
        cursor.execute(query)
        return cursor.fetch_arrow_table()
