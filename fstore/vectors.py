"""Embedding search on the online store: the k nearest entities to a query vector.

The search is one statement on the feature group's online table,
``order by <vector> <-> $1 limit k``, which PostgreSQL answers from the table's
HNSW index (pgvector) when there is one. It runs with the caller's identity, so
grants and row-level security filter the candidates; a user's ``where=`` filter
is parsed with pglast, checked against a whitelist (plain columns of that table,
constants, comparisons, boolean logic, NULL tests, IN, BETWEEN, LIKE, a few safe
functions) and deparsed — user text is never pasted into SQL. pgvector's
iterative index scan is switched on so that filters still return k rows when
there are k matching rows.

Example::

    nearest(fs.conn, "merchant_embeddings", "embedding", [0.1, 0.2, 0.3], k=5,
            where="country = 'DE' and risk < 0.5")
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from fstore.errors import InvalidInput, NotFound, translated
from fstore.expressions import safe_predicate
from fstore.resolve import resolve_features

METRICS: dict[str, str] = {"l2": "<->", "cosine": "<=>", "inner_product": "<#>", "l1": "<+>"}
OPERATOR_CLASSES: dict[str, str] = {"vector_l2_ops": "l2", "vector_cosine_ops": "cosine",
                                    "vector_ip_ops": "inner_product", "vector_l1_ops": "l1"}
MAX_K = 1000
_CONFIGURED: "weakref.WeakSet[psycopg.Connection[Any]]" = weakref.WeakSet()


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Per session: let filtered HNSW scans keep going until k rows qualify (pgvector >= 0.8)."""
    if conn in _CONFIGURED:
        return
    conn.execute("select set_config('hnsw.iterative_scan', 'strict_order', false)")
    _CONFIGURED.add(conn)


def _query_vector(values: Sequence[float], name: str, dimension: int | None) -> list[float]:
    try:
        vector = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the query vector for {name} must be a sequence of numbers") from exc
    if not vector or not all(math.isfinite(v) for v in vector):
        raise InvalidInput(f"the query vector for {name} must be non-empty and finite")
    if dimension is not None and len(vector) != dimension:
        raise InvalidInput(f"{name} has {dimension} dimensions; the query vector has {len(vector)}")
    return vector


@dataclass
class NearestStatement:
    """A vector search statement, its parameters and the Arrow schema of its rows."""

    query: sql.Composed
    params: dict[str, Any]
    schema: pa.Schema


def index_metric(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> str | None:
    """The metric of an HNSW index on ``schema.table (column)``, from its operator class."""
    row = conn.execute(
        """select opc.opcname from pg_index i
             join pg_class t on t.oid = i.indrelid join pg_namespace n on n.oid = t.relnamespace
             join pg_class ix on ix.oid = i.indexrelid join pg_am am on am.oid = ix.relam
             join pg_attribute a on a.attrelid = t.oid and a.attnum = i.indkey[0]
             join pg_opclass opc on opc.oid = i.indclass[0]
            where n.nspname = %s and t.relname = %s and a.attname = %s and am.amname = 'hnsw'
            order by ix.relname limit 1""", (schema, table, column)).fetchone()
    return OPERATOR_CLASSES.get(row[0]) if row else None


def nearest_statement(conn: psycopg.Connection[Any], group: str, vector_feature: str,
                      query_vector: Sequence[float], k: int = 10, where: str | None = None, *,
                      metric: str | None = None, features: Sequence[str] | None = None) -> NearestStatement:
    """Build (not run) the statement of :func:`nearest`; every name is checked against the catalog."""
    if metric is not None and metric not in METRICS:
        raise InvalidInput(f"unknown metric {metric!r}: use {', '.join(METRICS)}")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be an integer from 1 to {MAX_K}")
    if not isinstance(group, str) or ":" in group:
        raise InvalidInput(f"give the feature group as group, group@2 or project.group, not {group!r}")
    resolved = resolve_features(conn, [f"{group}:*"])[0]
    column = resolved.columns.get(vector_feature)
    if column is None or vector_feature not in resolved.available:
        raise NotFound(f"feature {vector_feature} does not exist in feature group {resolved.label}")
    if column.base != "vector":
        raise InvalidInput(f"feature {vector_feature} of {resolved.label} is {column.pg_type}, not a vector")
    vector = _query_vector(query_vector, f"{resolved.label}:{vector_feature}", column.dimension)
    if metric is None:  # the index's metric, so that the index answers
        metric = index_metric(conn, resolved.project, resolved.table, vector_feature) or "l2"
    names = list(features) if features is not None else resolved.available
    for name in names:
        if name not in resolved.available:
            raise NotFound(f"feature {name} does not exist in feature group {resolved.label}")
    allowed = [c for c in resolved.columns if not c.startswith("_commit")]
    conditions: list[sql.Composable] = []
    if where is not None:
        predicate = safe_predicate(where, columns=allowed)  # deparsed from a checked syntax tree
        conditions.append(sql.SQL("({})").format(sql.SQL(predicate.replace("%", "%%"))))  # not placeholders
    if resolved.ttl is not None:
        conditions.append(sql.SQL("{} >= now() - {}").format(sql.Identifier(resolved.event_time),
                                                             sql.Literal(resolved.ttl)))
    output = [resolved.columns[c] for c in [*resolved.keys, *names, resolved.event_time]]
    distance = sql.SQL("{} {} %(q)s::float4[]::vector").format(sql.Identifier(vector_feature),
                                                               sql.SQL(METRICS[metric]))
    query = sql.SQL("select {}, {} as _distance from {}{} order by {} limit %(k)s").format(
        sql.SQL(", ").join(c.selected() for c in output), distance,
        sql.Identifier(resolved.project, resolved.table),
        sql.SQL(" where ") + sql.SQL(" and ").join(conditions) if conditions else sql.SQL(""),
        distance)
    fields = [pa.field(c.name, c.arrow_type) for c in output] + [pa.field("_distance", pa.float64())]
    return NearestStatement(query, {"q": vector, "k": k}, pa.schema(fields))


def nearest(conn: psycopg.Connection[Any], group: str, vector_feature: str,
            query_vector: Sequence[float], k: int = 10, where: str | None = None, *,
            metric: str | None = None, features: Sequence[str] | None = None) -> pa.Table:
    """The ``k`` entities of a feature group nearest to ``query_vector``, closest first.

    ``group`` is ``group``, ``group@2`` or ``project.group``; ``vector_feature`` a
    ``vector`` column of it; ``metric`` ``l2`` (``<->``), ``cosine`` (``<=>``),
    ``inner_product`` (``<#>``, negative inner product) or ``l1`` (``<+>``); by default
    the metric of the column's HNSW index (``options.hnsw`` of the feature group), else
    l2; ``where`` a filter on the group's columns. Returns keys, the
    features (all, or ``features``), event time and ``_distance``. The group's TTL
    applies: expired rows are not candidates.

    Example::

        nearest(fs.conn, "merchants", "embedding", [0.1, 0.2, 0.3], k=5,
                where="country in ('DE', 'FR') and risk < 0.5")
    """
    statement = nearest_statement(conn, group, vector_feature, query_vector, k, where,
                                  metric=metric, features=features)
    with translated():
        _configure(conn)
        rows = conn.execute(statement.query, statement.params).fetchall()
    batch = pa.RecordBatch.from_struct_array(pa.array(rows, type=pa.struct(list(statement.schema))))
    return pa.Table.from_batches([batch], schema=statement.schema)
