"""Ingestion: checked, typed and streamed loading of tabular data into one commit.

``fg.insert(data)`` lands here. The data (a pandas DataFrame, a pyarrow Table,
RecordBatch or RecordBatchReader, or anything exposing the Arrow C stream, such
as a polars DataFrame) is

1. checked against the feature group: every key, feature and the event-time
   column present, no unknown columns, no NULL keys or event times, types that
   convert without loss, time zones explicit. Every error names the column and
   how many rows are affected; nothing is written;
2. converted batch by batch to the exact Arrow types of the stored columns and
   streamed by binary COPY (the ADBC PostgreSQL driver) into a temporary table
   (``on commit drop``), so memory stays bounded by one record batch;
3. committed with one call to ``fstore.commit_feature_rows`` in the same
   transaction: validation, offline append, online upsert, statistics and the
   commit record, all or nothing.

Conversion rules (strict on purpose; convert in pandas/Arrow first if needed):

===================  =====================================================
stored type          accepted Arrow input
===================  =====================================================
smallint/int/bigint  any integer (range-checked); floats only when integral
real, double         any integer or float, decimal
numeric(p,s)         any integer, float or decimal
boolean              boolean
text, varchar        string (also dictionary-encoded strings)
timestamptz          timestamp with a time zone; a naive timestamp only with
                     ``assume_utc=True`` (then read as UTC)
timestamp            naive timestamp (an aware one is refused)
date                 date
vector(n)            list / fixed-size list of numbers, n of them, finite
bytea                binary
anything else        string, parsed by PostgreSQL (uuid, jsonb, interval ...)
===================  =====================================================

Strings are never parsed into numbers or times, pandas ``NaN`` in a float
column is a NULL, and timestamps keep microseconds (PostgreSQL's precision).

Example::

    fg = fs.get_feature_group("account_activity")
    commit = fg.insert(df)                 # Commit(id=7, rows=1000, online_rows=250)
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from fstore.connection import adbc_session
from fstore.errors import FstoreError, InvalidInput, from_database, is_database_error
from fstore.pgarrow import ARROW_TYPES, INT_BOUNDS, base_type, dimension, is_array, is_number, pg_type_for, type_sql
from fstore.session import Session

STAGE_TABLE = "_fstore_stage"
DEFAULT_BATCH_ROWS = 65_536
MODES = ("append", "merge", "incremental")
# the kind of input a stored type takes, by the Arrow type of its values (see the table above)
_KIND_OF_ARROW = [(pa.types.is_integer, "int"), (pa.types.is_floating, "float"), (pa.types.is_boolean, "bool"),
                  (pa.types.is_string, "string"), (pa.types.is_binary, "binary"), (pa.types.is_date, "date")]


class StoredColumn(Protocol):
    """A stored column as ingestion needs it (a :class:`fstore.featuregroups.Feature`)."""

    name: str
    pg_type: str
    is_key: bool


class Destination(Protocol):
    """What ingestion needs of a feature group (a :class:`fstore.featuregroups.FeatureGroup`)."""

    id: int
    event_time: str
    store: Session

    @property
    def features(self) -> Sequence[StoredColumn]: ...

    @property
    def full_name(self) -> str: ...


@dataclass(frozen=True)
class Commit:
    """One commit of rows to a feature group: who, when, how many rows offline and online."""

    id: int
    feature_group_id: int
    rows: int
    online_rows: int
    min_event_time: dt.datetime | None = None
    max_event_time: dt.datetime | None = None
    source: str = "python"
    committed_at: dt.datetime | None = None
    session_role: str | None = None
    app_id: str | None = None
    validation: dict[str, Any] = dataclasses.field(default_factory=dict)

    #: the columns of ``fstore.commits`` a Commit is built from, in this order
    COLUMNS = ("id", "feature_group_id", "rows", "online_rows", "min_event_time", "max_event_time", "source",
               "committed_at", "session_role", "app_id", "validation")

    @classmethod
    def from_row(cls, row: Any) -> "Commit":
        """Build from a row of :data:`COLUMNS` (a tuple) or a dict with those keys."""
        values = dict(row) if isinstance(row, Mapping) else dict(zip(cls.COLUMNS, row))
        validation = values.get("validation") or {}
        values["validation"] = json.loads(validation) if isinstance(validation, str) else validation
        return cls(**{k: values.get(k) for k in cls.__dataclass_fields__ if k in values})


def infer_columns(data: Any, descriptions: dict[str, str] | None = None) -> list[dict[str, str]]:
    """``[{"name", "type", "description"}]`` for every column of a DataFrame, Arrow table or schema.

    A ``list<float>`` column becomes ``vector(n)`` with ``n`` taken from its
    first non-NULL value.
    """
    descriptions = descriptions or {}
    if isinstance(data, pa.Schema):
        schema, table = data, None
    else:
        source = as_arrow(data)
        schema = source.schema
        table = source if isinstance(source, pa.Table) else None
    columns = []
    for field in schema:
        pg_type = pg_type_for(field)
        if pg_type == "vector":
            dims = None
            if table is not None:
                lengths = pc.drop_null(pc.list_value_length(table.column(field.name)))
                dims = int(lengths[0].as_py()) if len(lengths) else None
            if not dims:
                raise InvalidInput(f"column {field.name!r} is a list of numbers without a known length: "
                                   "give its type as vector(n) or pass data with a non-NULL value")
            pg_type = f"vector({dims})"
        columns.append({"name": field.name, "type": pg_type,
                        "description": descriptions.get(field.name, "")})
    return columns


# --- turning inputs into Arrow -----------------------------------------------------------

def as_arrow(data: Any) -> pa.Table | pa.RecordBatchReader:
    """A pyarrow Table (in-memory inputs) or RecordBatchReader (streams) for ``data``."""
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(data, pd.DataFrame):
        if any(name is not None and name not in data.columns for name in data.index.names):
            data = data.reset_index()  # a named index (e.g. the entity key) is a column
        if data.columns.duplicated().any():
            dupes = sorted(set(data.columns[data.columns.duplicated()]))
            raise InvalidInput(f"duplicate column names: {', '.join(map(repr, dupes))}")
        return pa.Table.from_pandas(data, preserve_index=False)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(data)
    raise InvalidInput(f"cannot insert a {type(data).__name__}: give a pandas DataFrame or a pyarrow "
                       "Table, RecordBatch or RecordBatchReader")


def _rows(mask: Any, offset: int) -> tuple[int, int]:
    """(how many, first row) where a boolean mask is true."""
    flags = np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)
    hits = np.flatnonzero(flags)
    return int(hits.size), (int(hits[0]) + offset if hits.size else -1)


# --- the plan for one column ---------------------------------------------------------------

@dataclass(frozen=True)
class ColumnPlan:
    """How one stored column is filled: its PostgreSQL type and the Arrow type sent for it."""

    name: str
    pg_type: str          # canonical, as format_type prints it
    role: str             # "key", "feature" or "event_time"
    kind: str             # "int", "float", "numeric", "bool", "string", "binary", "date",
                          # "timestamptz", "timestamp", "vector", "text_input"
    dims: int | None = None

    @classmethod
    def of(cls, name: str, pg_type: str, role: str) -> "ColumnPlan":
        """The plan for a column stored as ``pg_type`` (as format_type prints it)."""
        type_sql(pg_type)  # the catalog's type, checked before it is used in DDL
        base = base_type(pg_type)
        if base == "vector" and not is_array(pg_type):
            return cls(name, pg_type, role, "vector", dimension(pg_type))
        if base == "numeric" and not is_array(pg_type):
            return cls(name, pg_type, role, "numeric")
        stored = ARROW_TYPES.get(base) if not is_array(pg_type) else None
        if stored is not None and pa.types.is_timestamp(stored):
            return cls(name, pg_type, role, "timestamptz" if stored.tz else "timestamp")
        kind = next((k for test, k in _KIND_OF_ARROW if stored is not None and test(stored)), "text_input")
        return cls(name, pg_type, role, kind)

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type streamed to the staging column."""
        if self.kind == "vector":
            return pa.list_(pa.float32())
        if self.kind in ("numeric", "text_input", "string"):
            return pa.string()
        return ARROW_TYPES[base_type(self.pg_type)]

    @property
    def staging_type(self) -> str:
        """The staging column's type; converted to ``pg_type`` after the COPY when different."""
        return {"vector": "real[]", "numeric": "text", "text_input": "text"}.get(self.kind, self.pg_type)

    @property
    def needs_retype(self) -> bool:
        return self.staging_type != self.pg_type

    def describe(self) -> str:
        return f"column {self.name!r} ({self.pg_type})"

    # --- checks -------------------------------------------------------------------------
    def check_type(self, t: pa.DataType, assume_utc: bool) -> None:
        """Refuse an Arrow type that cannot be stored in this column."""
        if pa.types.is_null(t):
            return
        if pa.types.is_dictionary(t):
            t = t.value_type
        ok = {
            "int": pa.types.is_integer(t) or pa.types.is_floating(t),
            "float": is_number(t),
            "numeric": is_number(t),
            "bool": pa.types.is_boolean(t),
            "string": pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t),
            "binary": pa.types.is_binary(t) or pa.types.is_large_binary(t),
            "date": pa.types.is_date(t),
            "timestamptz": pa.types.is_timestamp(t),
            "timestamp": pa.types.is_timestamp(t),
            "vector": (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))
                      and is_number(t.value_type),
            "text_input": pa.types.is_string(t) or pa.types.is_large_string(t),
        }[self.kind]
        if not ok:
            raise InvalidInput(f"{self.describe()} cannot be filled from Arrow type {t}: convert it first")
        if self.kind == "timestamptz" and t.tz is None and not assume_utc:
            raise InvalidInput(
                f"{self.describe()} got timestamps without a time zone: localize them "
                f"(pandas: df[{self.name!r}].dt.tz_localize('UTC')) or pass assume_utc=True to read them as UTC")
        if self.kind == "timestamp" and t.tz is not None:
            raise InvalidInput(f"{self.describe()} is a timestamp without time zone but got {t}: "
                               "convert to UTC and drop the time zone first")

    def check_values(self, column: pa.ChunkedArray, offset: int, where: str) -> None:
        """Refuse NULL keys/event times, lossy conversions and wrong vector lengths."""
        t = column.type
        if self.role in ("key", "event_time") and column.null_count:
            count, first = _rows(pc.is_null(column), offset)
            what = "entity key" if self.role == "key" else "event time"
            raise InvalidInput(f"{what} column {self.name!r} has {count} NULL value(s){where} (first at row {first})")
        if pa.types.is_null(t) or pa.types.is_dictionary(t):
            return
        if self.kind == "int":
            low, high = INT_BOUNDS[base_type(self.pg_type)]
            if pa.types.is_floating(t):
                bad = pc.or_(pc.invert(pc.is_finite(column)), pc.not_equal(column, pc.floor(column)))
                count, first = _rows(bad, offset)
                if count:
                    raise InvalidInput(f"{self.describe()}: {count} value(s){where} are not whole numbers "
                                       f"(first at row {first}: {column[first - offset].as_py()!r})")
            bad = _out_of_range(column, low, high)
            count, first = _rows(bad, offset) if bad is not None else (0, -1)
            if count:
                raise InvalidInput(f"{self.describe()}: {count} value(s){where} are out of range "
                                   f"[{low}, {high}] (first at row {first}: {column[first - offset].as_py()!r})")
        elif self.kind == "vector":
            lengths = pc.list_value_length(column)
            if self.dims is not None:
                count, first = _rows(pc.not_equal(lengths, self.dims), offset)
                if count:
                    raise InvalidInput(f"{self.describe()}: {count} row(s){where} do not have {self.dims} "
                                       f"dimensions (first at row {first}: {lengths[first - offset].as_py()})")
            values = pc.list_flatten(column)
            if values.null_count or (pa.types.is_floating(values.type)
                                     and not pc.all(pc.is_finite(values)).as_py()):
                parents = pc.list_parent_indices(column)
                bad_value = pc.or_(pc.is_null(values), pc.invert(pc.is_finite(pc.cast(values, pa.float64()))))
                bad_rows = np.unique(np.asarray(parents)[np.asarray(pc.fill_null(bad_value, True))])
                raise InvalidInput(f"{self.describe()}: {bad_rows.size} row(s){where} hold NULL, NaN or "
                                   f"infinite elements (first at row {int(bad_rows[0]) + offset})")

    def convert(self, array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """Cast checked values to the Arrow type streamed to the staging column."""
        t = array.type
        if pa.types.is_dictionary(t):
            array = pc.cast(array, t.value_type)
            t = array.type
        target = self.arrow_type
        if t == target:
            return array
        if self.kind in ("timestamptz", "timestamp"):
            return pc.cast(array, target, safe=False)  # ns -> us truncates, as PostgreSQL stores us
        if self.kind == "vector":
            return pc.cast(array, target, safe=False)
        if self.kind == "int" and pa.types.is_floating(t):
            return pc.cast(array, target, safe=False)  # checked: whole numbers in range
        return pc.cast(array, target)


def _out_of_range(column: pa.ChunkedArray, low: int, high: int) -> Any:
    """A mask of values outside [low, high], or None when the source type cannot exceed it."""
    t = column.type
    if pa.types.is_floating(t):  # low and high + 1 are powers of two: exact as floats
        return pc.or_(pc.less(column, float(low)), pc.greater_equal(column, float(high) + 1))
    info = np.iinfo(t.to_pandas_dtype())
    if info.min >= low and info.max <= high:
        return None
    return pc.or_(pc.less(column, pa.scalar(max(low, int(info.min)), t)),
                  pc.greater(column, pa.scalar(min(high, int(info.max)), t)))


# --- the plan for a whole insert ----------------------------------------------------------

class InsertPlan:
    """The columns of a feature group in storage order, and how input maps onto them."""

    def __init__(self, fg: Destination, assume_utc: bool = False) -> None:
        self.fg = fg
        self.assume_utc = assume_utc
        self.columns = [ColumnPlan.of(f.name, f.pg_type, "key" if f.is_key else "feature") for f in fg.features]
        self.columns.append(ColumnPlan.of(fg.event_time, "timestamp with time zone", "event_time"))

    @property
    def staging_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])

    def check_schema(self, schema: pa.Schema) -> None:
        """Missing, unknown and duplicate columns, and types that cannot be stored."""
        names = schema.names
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidInput(f"duplicate column names: {', '.join(map(repr, dupes))}")
        known = {c.name for c in self.columns}
        missing = [c for c in self.columns if c.name not in names]
        if missing:
            parts = [f"{c.name!r} ({'entity key' if c.role == 'key' else c.role.replace('_', ' ')})"
                     for c in missing]
            raise InvalidInput(f"missing column(s) {', '.join(parts)} for feature group {self.fg.full_name}")
        unknown = [n for n in names if n not in known]
        if unknown:
            raise InvalidInput(f"unknown column(s) {', '.join(map(repr, unknown))}: not keys, features or the "
                               f"event time of {self.fg.full_name} (its columns: {', '.join(sorted(known))})")
        for column in self.columns:
            column.check_type(schema.field(column.name).type, self.assume_utc)

    def check_values(self, table: pa.Table, offset: int = 0, where: str = "") -> None:
        for column in self.columns:
            column.check_values(table.column(column.name), offset, where)

    def convert(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        arrays = [c.convert(batch.column(c.name)) for c in self.columns]
        return pa.RecordBatch.from_arrays(arrays, schema=self.staging_schema)

    def stream(self, reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
        """Checked, converted batches of a stream (an in-memory table is checked whole instead)."""
        offset = 0
        for batch in reader:
            if batch.num_rows:
                where = f" in rows {offset}-{offset + batch.num_rows - 1} of the stream"
                self.check_values(pa.Table.from_batches([batch]), offset, where)
                yield self.convert(batch)
            offset += batch.num_rows


# --- the database side ---------------------------------------------------------------------

COMMIT_QUERY = "select fstore.commit_feature_rows($1, $2::regclass, $3, $4)"
COMMIT_ROW = f"select {', '.join(Commit.COLUMNS[:-1])}, validation::text from fstore.commits where id = $1"


def insert(fg: Destination, data: Any, mode: str = "append", *, assume_utc: bool = False,
           batch_rows: int = DEFAULT_BATCH_ROWS, source: str = "python") -> Commit:
    """Check ``data``, stream it into a temporary table and commit it to ``fg`` in one transaction.

    ``mode``: ``append`` (every row), ``merge`` (skip rows whose keys and event
    time are stored already, so a re-run adds nothing) or ``incremental`` (only
    rows newer than the latest event time committed before).

    Example::

        commit = insert(fg, df, mode="merge")
        commit.rows, commit.online_rows
    """
    if mode not in MODES:
        raise InvalidInput(f"invalid mode {mode!r}: use append, merge or incremental")
    if batch_rows < 1:
        raise InvalidInput("batch_rows must be at least 1")
    plan = InsertPlan(fg, assume_utc=assume_utc)
    arrow = as_arrow(data)
    plan.check_schema(arrow.schema)  # fail before connecting when the shape is wrong
    if isinstance(arrow, pa.Table):
        plan.check_values(arrow)

    failures: list[Exception] = []

    def stream() -> Iterator[pa.RecordBatch]:
        try:
            if isinstance(arrow, pa.Table):
                for batch in arrow.to_batches(max_chunksize=batch_rows):
                    yield plan.convert(batch)
            else:
                yield from plan.stream(arrow)
        except Exception as exc:  # re-raised below: ADBC only sees "stream failed"
            failures.append(exc)
            raise

    reader = pa.RecordBatchReader.from_batches(plan.staging_schema, stream())
    try:
        with adbc_session(fg.store.material) as (conn, cur):
            cur.execute(_stage_ddl(plan))
            cur.adbc_ingest(STAGE_TABLE, reader, mode="append", temporary=True)
            retype = _retype_sql(plan)
            if retype:
                try:
                    cur.execute(retype)
                except Exception as exc:
                    if not is_database_error(exc):
                        raise
                    names = ", ".join(repr(c.name) for c in plan.columns if c.needs_retype)
                    raise InvalidInput(f"converting column(s) {names}: {from_database(exc)}") from exc
            cur.execute(COMMIT_QUERY, (fg.id, f"pg_temp.{STAGE_TABLE}", mode, source))
            commit_id = cur.fetchone()[0]
            cur.execute(COMMIT_ROW, (commit_id,))
            row = cur.fetchone()
            conn.commit()
    except Exception as exc:
        if failures:  # the stream failed: its own error says what is wrong with the data
            cause = failures[0]
            raise cause if isinstance(cause, FstoreError) else InvalidInput(str(cause)) from exc
        raise
    return Commit.from_row(row)


def _stage_ddl(plan: InsertPlan) -> str:
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(c.name), type_sql(c.staging_type)) for c in plan.columns
    )
    query = sql.SQL("create temp table {} ({}) on commit drop").format(sql.Identifier(STAGE_TABLE), columns)
    return query.as_string(None)


def _retype_sql(plan: InsertPlan) -> str | None:
    changes = [
        sql.SQL("alter column {0} type {1} using {0}::{1}").format(sql.Identifier(c.name), type_sql(c.pg_type))
        for c in plan.columns if c.needs_retype
    ]
    if not changes:
        return None
    query = sql.SQL("alter table {} {}").format(sql.Identifier(STAGE_TABLE), sql.SQL(", ").join(changes))
    return query.as_string(None)
