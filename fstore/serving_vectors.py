"""Serving a feature view's model-ready vectors: the prepared query, its parameters, the
forms a vector comes back in, and the sampled log of what was served.

The query is the database's (``fstore.feature_vector_sql``, ``sql/functions/85_feature_views.sql``):
the same SQL expressions that transform the view's training data, with the parameters
fitted on one training dataset's training split. This module fetches it once
(:func:`prepare`), runs it prepared and binary for one entity (scalar parameters: the
serving keys, then the passed features, as text) or for many in one round trip (one
JSON array), and converts the result. It computes nothing itself: no skew by construction.

Example::

    plan = prepare(fs.conn, "fraud_detection", version=1, training_dataset_version=None)
    server = VectorServer(plan, connection=fs.conn)
    server.one({"account_id": 42}, {"amount": 120.5})          # [0.13, -1.2, ...]
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

from fstore.errors import FstoreError, InvalidInput, NotFound, translated

RETURN_TYPES = ("list", "numpy", "dict", "pandas")
LOG_BATCH = 100          # served vectors sent to the log in one call
LOG_MAX_AGE_S = 5.0      # ... or once the oldest waiting one is this old (checked on each call)

_PREPARE = """
select v.id, v.version, t.id, t.version, fstore.feature_view_columns(v, f.params), v.serving_keys, v.passed_features,
       coalesce((v.options->>'log_rate')::float8, 0),
       fstore.feature_vector_sql(v, f.params, false), fstore.feature_vector_sql(v, f.params, true)
  from fstore.find_feature_view(%s, %s) v, fstore.feature_view_fit(v, %s) f
  join fstore.training_datasets t on t.id = f.training_dataset_id
"""


@dataclass(frozen=True)
class ServingPlan:
    """What serving a view with one fitted training dataset needs, fetched once."""

    view: str
    view_version: int
    view_id: int
    training_dataset_id: int
    training_dataset_version: int
    columns: list[str]           # the model-ready columns, in the view's order
    serving_keys: list[str]
    passed: list[str]            # passed (request-time) features, in the query's parameter order
    log_rate: float
    query_one: bytes             # $1..: serving keys, then passed features, as text
    query_many: bytes            # $1: a JSON array of {key..., passed...}; rows in request order


def prepare(conn: psycopg.Connection[Any], view: str, version: int | None,
            training_dataset_version: int | None) -> ServingPlan:
    """The serving plan of view ``view`` (its latest version unless ``version``) with the
    parameters of one of its fitted training datasets (the latest unless given)."""
    with translated():
        row = conn.execute(_PREPARE, (view, version, training_dataset_version)).fetchone()
    view_id, view_version, td_id, td_version, columns, keys, passed, log_rate, one, many = row
    return ServingPlan(view=view, view_version=view_version, view_id=view_id, training_dataset_id=td_id,
                       training_dataset_version=td_version, columns=list(columns), serving_keys=list(keys),
                       passed=[p["name"] for p in passed], log_rate=float(log_rate),
                       query_one=one.encode(), query_many=many.encode())


def as_text(value: Any) -> str | None:
    """A request value as the text PostgreSQL parses back to the same value (floats exactly)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, np.generic):
        return as_text(value.item())
    if isinstance(value, float):
        return repr(value)  # shortest round-trip text: float8in reads back the same double
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


@dataclass
class VectorServer:
    """Runs a :class:`ServingPlan` on a connection (or a pool's) and logs what it samples.

    ``connection`` is a callable giving a context manager of a connection: one kept
    connection, or ``pool.connection``. Thread-safe with a pool. Sampled vectors are
    written in batches by a background thread on ``log_connection`` (default
    ``connection``; give another one when ``connection`` is a single kept connection, so
    that a write never holds up a request).
    """

    plan: ServingPlan
    connection: Callable[[], Any]
    on_refused: Callable[[FstoreError], FstoreError] = lambda exc: exc
    log_connection: Callable[[], Any] | None = None
    _writer: threading.Thread | None = field(default=None, repr=False)
    _log: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _log_since: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def last_found(self) -> bool | list[bool] | None:
        """Whether the calling thread's last request found every entity in every feature
        group (a list for a batch); None before the first."""
        return getattr(self._local, "found", None)

    # --- the request ---------------------------------------------------------------------
    def _key_values(self, entity: Mapping[str, Any], i: int | None = None) -> list[Any]:
        keys = self.plan.serving_keys
        try:
            values = [entity[k] for k in keys]
        except (KeyError, TypeError):
            where = f"entity {i}" if i is not None else "the entity"
            if not isinstance(entity, Mapping):
                raise InvalidInput(f"{where} is a {type(entity).__name__}: give a dict of serving key -> value "
                                   f"({', '.join(keys)})") from None
            missing = [k for k in keys if k not in entity]
            raise InvalidInput(f"feature view {self.plan.view}: {where} has no value for serving key(s) "
                               f"{', '.join(missing)} (serving keys: {', '.join(keys)})") from None
        if len(entity) != len(keys):
            extra = [k for k in entity if k not in keys]
            hint = (" (pass request-time features in passed_features)"
                    if any(k in self.plan.passed for k in extra) else "")
            raise InvalidInput(f"feature view {self.plan.view}: {', '.join(map(str, extra))} is not a serving key "
                               f"(serving keys: {', '.join(keys)}){hint}")
        return values

    def _passed_values(self, passed: Mapping[str, Any] | None, strict: bool, i: int | None = None) -> list[Any]:
        names = self.plan.passed
        if not passed:
            if strict and names:
                raise InvalidInput(f"feature view {self.plan.view}: no value for passed feature(s) {', '.join(names)}")
            return [None] * len(names)
        if not isinstance(passed, Mapping):
            raise InvalidInput(f"passed features must be a dict of name -> value, not {type(passed).__name__}")
        unknown = [k for k in passed if k not in names]
        if unknown:
            where = f" (entity {i})" if i is not None else ""
            raise InvalidInput(f"feature view {self.plan.view}: {', '.join(map(str, unknown))} is not a passed "
                               f"feature{where} (passed features: {', '.join(names) or 'none'})")
        if strict and len(passed) != len(names):
            missing = [n for n in names if n not in passed]
            raise InvalidInput(f"feature view {self.plan.view}: no value for passed feature(s) {', '.join(missing)}")
        return [passed.get(n) for n in names]

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self.connection() as conn, translated():
                yield conn
        except FstoreError as exc:
            if exc.sqlstate in ("42501", "42P01"):  # a share ended, a group was dropped: say which
                raise self.on_refused(exc) from exc
            raise

    # --- serving -------------------------------------------------------------------------
    def one(self, entity: Mapping[str, Any], passed: Mapping[str, Any] | None = None,
            strict: bool = False) -> list[float | None]:
        """The vector of one entity (None where a value is missing), in the view's order."""
        keys = self._key_values(entity)
        values = self._passed_values(passed, strict)
        params = [as_text(v) for v in keys] + [as_text(v) for v in values]
        with self._connection() as conn:
            vector, found = psycopg.RawCursor(conn).execute(self.plan.query_one, params, prepare=True,
                                                            binary=True).fetchone()
        self._local.found = found
        if strict and not found:
            raise NotFound(f"feature view {self.plan.view}: no online row for {_entity_text(entity)} in every "
                           "feature group (or older than its TTL)")
        if self.plan.log_rate and random.random() < self.plan.log_rate:
            self._sample([(entity, passed, vector, found)])
        return vector

    def many(self, entities: Sequence[Mapping[str, Any]], passed: Sequence[Mapping[str, Any] | None] | None = None,
             strict: bool = False) -> list[list[float | None]]:
        """The vectors of many entities in one round trip, in request order."""
        if isinstance(entities, Mapping) or not isinstance(entities, Sequence):
            raise InvalidInput("give a list of entities (dicts of serving key -> value)")
        if passed is not None and len(passed) != len(entities):
            raise InvalidInput(f"{len(entities)} entities but {len(passed)} passed-feature dicts: give one per entity")
        keys, names = self.plan.serving_keys, self.plan.passed
        request = []
        for i, entity in enumerate(entities):
            row = dict(zip(keys, self._key_values(entity, i)))
            row.update(zip(names, self._passed_values(passed[i] if passed is not None else None, strict, i)))
            request.append(row)
        try:
            document = json.dumps(request, default=_json_default, allow_nan=False)
        except ValueError as exc:
            raise InvalidInput(f"a request value is not valid JSON: {exc}") from None
        with self._connection() as conn:
            rows = psycopg.RawCursor(conn).execute(self.plan.query_many, (document,), prepare=True,
                                                   binary=True).fetchall()
        vectors = [r[1] for r in rows]
        found = [r[2] for r in rows]
        self._local.found = found
        if strict and not all(found):
            missing = [_entity_text(e) for e, ok in zip(entities, found) if not ok]
            more = " and others" if len(missing) > 5 else ""
            raise NotFound(f"feature view {self.plan.view}: no online row for {', '.join(missing[:5])}{more} "
                           "in every feature group (or older than its TTL)")
        if self.plan.log_rate:
            sampled = [(e, passed[i] if passed is not None else None, v, f)
                       for i, (e, v, f) in enumerate(zip(entities, vectors, found))
                       if random.random() < self.plan.log_rate]
            if sampled:
                self._sample(sampled)
        return vectors

    # --- the served-vector log -----------------------------------------------------------
    def _sample(self, served: list[tuple[Any, Any, Any, bool]]) -> None:
        with self._lock:
            if not self._log:
                self._log_since = time.monotonic()
            self._log.extend({"keys": dict(e), "passed": dict(p or {}), "vector": v, "found": f}
                             for e, p, v, f in served)
            if len(self._log) < LOG_BATCH and time.monotonic() - self._log_since < LOG_MAX_AGE_S:
                return
            if self._writer is not None and self._writer.is_alive():
                return  # the next request hands this batch over
            entries, self._log = self._log, []
            self._writer = threading.Thread(target=self._write_in_background, args=(entries,), daemon=True,
                                            name=f"fstore-log-{self.plan.view}")
            self._writer.start()

    def _write_in_background(self, entries: list[dict[str, Any]]) -> None:
        try:
            self._write(entries)
        except Exception as exc:  # noqa: BLE001 -- the vectors were served; the log must not fail them
            warnings.warn(f"{len(entries)} served vectors of {self.plan.view} not logged: {exc}", RuntimeWarning,
                          stacklevel=1)

    def _write(self, entries: list[dict[str, Any]]) -> int:
        if not entries:
            return 0
        for entry in entries:
            entry["vector"] = [x if x is None or math.isfinite(x) else None for x in entry["vector"]]
        document = json.dumps(entries, default=_json_default)
        with (self.log_connection or self.connection)() as conn, translated():
            return conn.execute("select fstore.log_served_vectors(%s, %s, %s::jsonb)",
                                (self.plan.view_id, self.plan.training_dataset_id, document)).fetchone()[0]

    def pending(self) -> int:
        """Sampled vectors not yet handed to the log's writer."""
        return len(self._log)

    def flush(self) -> int:
        """Wait for the background writer, then write the sampled vectors still waiting to the view's
        log (``fstore.log_served_vectors``) now; returns how many this call wrote."""
        writer = self._writer
        if writer is not None:
            writer.join()
        with self._lock:
            entries, self._log = self._log, []
        return self._write(entries)


def _entity_text(entity: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in entity.items())


def shaped(vectors: list[Any], columns: list[str], return_type: str, single: bool) -> Any:
    """Vectors in the asked form: ``list`` (None for NULL), ``numpy`` (float64, NaN for NULL;
    2-D for many), ``dict`` (column -> value; a list of them for many) or ``pandas``
    (a DataFrame, one row per entity, the view's columns)."""
    if return_type == "list":
        return vectors[0] if single else vectors
    if return_type == "numpy":
        array = np.array(vectors, dtype=np.float64)
        return array[0] if single else array.reshape(len(vectors), len(columns))
    if return_type == "dict":
        dicts = [dict(zip(columns, v)) for v in vectors]
        return dicts[0] if single else dicts
    if return_type == "pandas":
        import pandas as pd

        return pd.DataFrame(np.array(vectors, dtype=np.float64).reshape(len(vectors), len(columns)), columns=columns)
    raise InvalidInput(f"return_type must be one of {', '.join(RETURN_TYPES)}, not {return_type!r}")


__all__ = ["LOG_BATCH", "LOG_MAX_AGE_S", "RETURN_TYPES", "ServingPlan", "VectorServer", "as_text", "prepare",
           "shaped"]
