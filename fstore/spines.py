"""Spines: what a point-in-time join reads its entities and times from.

Two halves. Reading a spine as Arrow (:func:`spine_reader`, :func:`select_statement`), used
by :mod:`fstore.pointintime` to load any spine into a temporary table. And, on a Citus
cluster, the **distributed spine** (docs/cluster.md, "Spines and training tables on a
cluster"): when every feature group of a join is distributed and co-located
(``fstore.spine_placement``), the spine goes into a table of schema ``fstore_spines``
made by ``fstore.create_spine_table`` (a fresh random name, co-located with the groups,
granted to the caller only), so that the join runs per shard on the workers; it is
dropped after the join (:func:`distributed_spine`).

Example::

    with adbc_session(fs.material) as (conn, cursor):
        placement = spine_placement(cursor, ["activity:*"], None)
        if placement["distributed"]:
            with distributed_spine(conn, cursor, "pg_temp._fstore_spine", placement) as (relation, nulls):
                cursor.execute(f"select count(*) from {relation}")
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
from psycopg import sql

from fstore.errors import InvalidInput

INGEST_BATCH_ROWS = 65_536
NULL_KEYS = "_fstore_spine_null_keys"  # spine rows whose distribution key is NULL (a temporary table)
PLACEMENT_QUERY = ("select fstore.spine_placement(array(select jsonb_array_elements_text(a->'features')),"
                   " nullif(a->'keys', 'null'::jsonb), (a->>'full_feature_names')::boolean)"
                   " from (select $1::jsonb as a) args")


def spine_reader(spine: Any) -> pa.RecordBatchReader:
    """The spine as a stream of Arrow record batches with types PostgreSQL can ingest.

    Accepts a pandas or polars DataFrame, a ``pyarrow.Table``, ``RecordBatch`` or
    ``RecordBatchReader``. Categorical (dictionary) columns become their values;
    string and binary views become plain strings and binaries.

    >>> spine_reader(pa.table({"k": [1]})).schema
    k: int64
    """
    if isinstance(spine, pa.RecordBatchReader):
        reader = spine
    else:
        if isinstance(spine, pa.RecordBatch):
            table = pa.Table.from_batches([spine])
        elif isinstance(spine, pa.Table):
            table = spine
        elif type(spine).__module__.startswith("polars"):
            table = spine.to_arrow()
        elif type(spine).__module__.startswith("pandas"):
            try:
                table = pa.Table.from_pandas(spine, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise InvalidInput(f"the spine cannot be converted to Arrow: {exc}") from exc
        else:
            raise InvalidInput(
                "the spine must be a pandas or polars DataFrame, an Arrow table, "
                f"a table name or a SQL query, not {type(spine).__name__}"
            )
        reader = table.to_reader(max_chunksize=INGEST_BATCH_ROWS)
    schema = _ingestible_schema(reader.schema)
    if schema.equals(reader.schema):
        return reader
    return pa.RecordBatchReader.from_batches(
        schema, (batch.cast(schema) for batch in reader)
    )


def _ingestible_type(field: pa.Field) -> pa.DataType:
    kind = field.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if kind == pa.string_view():
        return pa.large_string()
    if kind == pa.binary_view():
        return pa.large_binary()
    if kind == pa.null():  # an all-NULL column: text, cast by the join where a key needs another type
        return pa.large_string()
    return kind


def _ingestible_schema(schema: pa.Schema) -> pa.Schema:
    names = schema.names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"the spine has duplicate column names: {', '.join(duplicates)}")
    return pa.schema([pa.field(f.name, _ingestible_type(f), f.nullable) for f in schema])


def select_statement(query: str) -> str:
    """The text of ``query`` if it is one SELECT (or VALUES/TABLE) statement without INTO,
    without a trailing semicolon or comment; else :class:`InvalidInput`.

    >>> select_statement("select 1 as k; -- the spine")
    'select 1 as k'
    """
    import pglast

    try:
        statements = pglast.parse_sql(query)
    except pglast.parser.ParseError as exc:
        raise InvalidInput(f"the spine query does not parse: {exc}") from exc
    if len(statements) != 1 or type(statements[0].stmt).__name__ != "SelectStmt":
        raise InvalidInput("the spine query must be a single SELECT statement")
    if statements[0].stmt.intoClause is not None:
        raise InvalidInput("the spine query must not be SELECT ... INTO")
    raw = query.encode()  # locations are byte offsets
    start, length = statements[0].stmt_location, statements[0].stmt_len
    return (raw[start:start + length] if length else raw[start:]).decode().strip()



def spine_placement(cursor: Any, features: Sequence[str], keys: Mapping[str, str] | None,
                    full_feature_names: bool = False) -> dict[str, Any]:
    """Where the database puts the spine of a join of ``features``: ``{"distributed": True,
    "column", "colocate_with", "reason"}`` or ``{"distributed": False, "reason"}``."""
    cursor.execute(PLACEMENT_QUERY, parameters=(json.dumps({
        "features": list(features), "keys": dict(keys) if keys is not None else None,
        "full_feature_names": bool(full_feature_names)}),))
    return json.loads(cursor.fetchone()[0])


@contextmanager
def distributed_spine(conn: Any, cursor: Any, source: str,
                      placement: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    """The rows of ``source`` (a temporary table of this connection) in a new distributed spine
    table co-located as ``placement`` says; yields its name and that of a temporary table of the
    rows whose distribution key is NULL (None when there are none); drops it at the end (also on
    errors).

    The table is made and committed before the rows go in, and the rows are committed before
    the join: Citus refuses to let one role read shards another role wrote or made in the same
    transaction (the table is made by fstore_control, loaded and read by the caller).
    """
    # CREATE TABLE ... (LIKE source) in the definer needs to see the template's columns
    cursor.execute(sql.SQL("grant select on {} to fstore_control").format(sql.SQL(source)).as_string(None))
    cursor.execute("select fstore.create_spine_table($1::regclass, $2, $3::regclass)",
                   parameters=(source, placement["column"], placement["colocate_with"]))
    relation = cursor.fetchone()[0]
    conn.commit()
    try:
        # a distribution column cannot be NULL: those rows (which match nothing) stay in a
        # temporary table of their own, for the caller to join on the coordinator
        key = sql.Identifier(placement["column"])
        cursor.execute(sql.SQL("insert into {} select * from {} where {} is not null").format(
            sql.SQL(relation), sql.SQL(source), key).as_string(None))
        cursor.execute(sql.SQL("drop table if exists {}").format(sql.Identifier("pg_temp", NULL_KEYS)).as_string(None))
        cursor.execute(sql.SQL("create temp table {} as select * from {} where {} is null").format(
            sql.Identifier(NULL_KEYS), sql.SQL(source), key).as_string(None))
        nulls = cursor.rowcount
        conn.commit()
        yield relation, (sql.Identifier("pg_temp", NULL_KEYS).as_string(None) if nulls else None)
    finally:
        try:
            conn.rollback()
            cursor.execute("select fstore.drop_spine_table($1)", parameters=(relation,))
            conn.commit()
        except Exception:  # noqa: BLE001 -- a dead connection: the creator's next spine drops it
            pass


__all__ = ["distributed_spine", "select_statement", "spine_placement", "spine_reader"]
