"""Training datasets as the catalog records them, read one way.

A training dataset version is a row of ``fstore.training_datasets`` (described by
``fstore.training_dataset_json``) and a table ``<project>.<name>__td<version>``
whose internal ``_row`` column keeps spine order. Everything that reads one (the
Python API, exports, drift, the CLI) finds it with :func:`find_training_dataset`
and reads its rows with :func:`rows_query`, which leaves ``_row`` out and orders by
it. Building one is :mod:`fstore.training`.

Example::

    dataset = find_training_dataset(fs, "fraud_train")          # the latest version
    fs.conn.execute(rows_query(dataset)).fetchall()             # its rows, in spine order
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
import warnings
from pathlib import Path
from typing import Any

from psycopg import sql

from fstore.errors import InvalidInput, translated
from fstore.session import Session

ROW_COLUMN = "_row"  # spine order of a stored training table; never exported
SPLIT_COLUMN = "split"

# the catalog record and the stored table's columns (without _row), for any source of rows t
_RECORD = """
select fstore.training_dataset_json(t),
       array(select a.attname::text from pg_catalog.pg_attribute a
              where a.attrelid = to_regclass(format('%%I.%%I', t.project, t.table_name))
                and a.attnum > 0 and not a.attisdropped and a.attname <> '_row' order by a.attnum),
       (select coalesce(sum(e.rows), 0) from fstore.erased_rows e where e.training_dataset_id = t.id)
  from {} t
 order by t.project, t.name, t.version desc
"""


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
    columns: list[str] = field(default_factory=list)  # of the stored table, in order, without _row
    erased_rows: int = 0  # rows removed since it was built, by erasures of entities (fstore.forget)

    @classmethod
    def from_record(cls, record: Mapping[str, Any], columns: list[str] | None = None) -> "TrainingDataset":
        """Build from ``fstore.training_dataset_json`` of a catalog row (and the table's columns)."""
        names = set(cls.__dataclass_fields__)
        values = {k: v for k, v in record.items() if k in names}
        if columns is not None:
            values["columns"] = list(columns)
        return cls(**values)

    @property
    def commits(self) -> dict[str, int | None]:
        """The newest commit of each feature group the dataset saw, by ``project.group@version``."""
        return {f"{g['project']}.{g['name']}@{g['version']}": g.get("max_commit") for g in self.feature_groups}

    @property
    def split_column(self) -> str | None:
        """``split`` when the dataset was split, else None."""
        return SPLIT_COLUMN if self.split is not None and SPLIT_COLUMN in (self.columns or [SPLIT_COLUMN]) else None


def parse_name(name: str) -> tuple[str, int | None]:
    """``name`` or ``name@version`` -> (name, version or None).

    >>> parse_name("fraud_train@2")
    ('fraud_train', 2)
    """
    if not isinstance(name, str) or not name:
        raise InvalidInput("give a training dataset name (name or name@version)")
    base, at, version = name.partition("@")
    if at and not version.isdigit():
        raise InvalidInput(f"invalid version in {name!r}: use name@<number>")
    return base, int(version) if at else None


def _read(fs: Session, source: sql.Composable, params: Any) -> list[TrainingDataset]:
    with translated():
        rows = fs.conn.execute(sql.SQL(_RECORD).format(source), params).fetchall()
    return [TrainingDataset.from_record({**record, "erased_rows": int(erased)}, columns)
            for record, columns, erased in rows]


def _warn_erased(dataset: TrainingDataset) -> None:
    """Say that ``dataset`` holds fewer rows than it was built with: entities were erased from it."""
    from fstore.erasure import ErasedRowsWarning

    warnings.warn(ErasedRowsWarning(
        f"training dataset {dataset.project}.{dataset.name}@{dataset.version}: {dataset.erased_rows} of its "
        f"{dataset.rows} rows were erased (fstore forget), so it holds {dataset.rows - dataset.erased_rows}; "
        "it cannot be reproduced as built"), stacklevel=4)


def find_training_dataset(fs: Session, name: str, version: int | None = None) -> TrainingDataset:
    """The catalog record of a training dataset of the caller's project (the latest version
    unless ``version``); :class:`~fstore.errors.NotFound` when there is none it may see. When
    entities were erased from it, :class:`~fstore.erasure.ErasedRowsWarning` says how many rows
    went (and ``erased_rows`` holds the count): its reads return fewer rows than it was built with."""
    dataset = _read(fs, sql.SQL("fstore.find_training_dataset(%s, %s)"), (name, version))[0]
    if dataset.erased_rows:
        _warn_erased(dataset)
    return dataset


def list_training_datasets(fs: Session, name: str | None = None) -> list[TrainingDataset]:
    """Training datasets the caller can see (its project's and shared ones), newest first."""
    where = sql.SQL("(select * from fstore.training_datasets where %(name)s::text is null or name = %(name)s)")
    return _read(fs, where, {"name": name})


def dataset_of_table(fs: Session, relation: str) -> TrainingDataset | None:
    """The training dataset stored in ``relation`` (``table`` of the project, or ``schema.table``), if any."""
    schema, _, table = relation.rpartition(".")
    found = _read(fs, sql.SQL("(select * from fstore.training_datasets where project = %s and table_name = %s)"),
                  (schema or fs.project, table))
    return found[0] if found else None


def rows_query(dataset: TrainingDataset) -> sql.Composed:
    """The stored rows of ``dataset`` in spine order, every column but ``_row``."""
    columns = sql.SQL(", ").join(map(sql.Identifier, dataset.columns)) if dataset.columns else sql.SQL("*")
    return sql.SQL("select {} from {} order by {}").format(
        columns, sql.Identifier(dataset.project, dataset.table_name), sql.Identifier(ROW_COLUMN))


def record_export(fs: Session, dataset: TrainingDataset, format: str, path: Path, rows: int) -> None:
    """Record in the catalog that ``rows`` rows of ``dataset`` were exported to ``path``."""
    with translated():
        fs.conn.execute("select fstore.record_training_export(%s, %s, %s, %s)",
                        (dataset.id, format, str(Path(path).resolve()), rows))


__all__ = ["ROW_COLUMN", "SPLIT_COLUMN", "TrainingDataset", "dataset_of_table", "find_training_dataset",
           "list_training_datasets", "parse_name", "record_export", "rows_query"]
