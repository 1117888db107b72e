"""Online serving for long-lived processes: a connection pool with the caller's certificate
identity, and lookup plans resolved once per feature list.

Each pooled connection is a TLS session of the same project-user (or application)
certificate as the feature store handle it was built from; statements are
prepared on each connection the first time it runs them.

Example::

    with OnlineStore(fs, min_size=2, max_size=8) as store:       # e.g. at web-app start-up
        store.get_online_features(["activity:*"], [{"account_id": 1}])
        store.nearest("merchants", "embedding", vector, k=5, where="country = 'DE'")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from psycopg_pool import ConnectionPool

from fstore import online, vectors
from fstore.errors import InvalidInput, NotFound


def serving_pool(fs: Any, min_size: int = 1, max_size: int = 4, **kwargs: Any) -> ConnectionPool:
    """A ``psycopg_pool.ConnectionPool`` of autocommit connections with ``fs``'s identity
    (the same connection material: certificate, key, CA, application id). Caller closes it."""
    if min_size < 0 or max_size < max(1, min_size):
        raise InvalidInput("pool sizes must satisfy 0 <= min_size <= max_size and max_size >= 1")
    kwargs.setdefault("name", f"fstore-online-{fs.role}")
    return ConnectionPool(fs.material.conninfo(), min_size=min_size, max_size=max_size,
                          kwargs={"autocommit": True}, open=True, **kwargs)


class OnlineStore:
    """Online lookups and vector search over a connection pool (thread-safe)."""

    def __init__(self, fs: Any, min_size: int = 1, max_size: int = 4, **pool_kwargs: Any) -> None:
        self.project = fs.project
        self.role = fs.role
        self.pool = serving_pool(fs, min_size, max_size, **pool_kwargs)
        self._plans: dict[tuple[Any, ...], online.LookupPlan] = {}

    def _plan(self, conn: Any, features: Sequence[str], full_feature_names: bool) -> online.LookupPlan:
        return online.plan_for(conn, self.project, self.role, features, full_feature_names, cache=self._plans)

    def get_online_features(self, features: Sequence[str], entity_rows: Any, *,
                            full_feature_names: bool = False) -> pa.Table | dict[str, Any]:
        """As :func:`fstore.online.get_online_features`, on a pooled connection."""
        with self.pool.connection() as conn:
            plan = self._plan(conn, features, full_feature_names)
            try:
                return self._run(conn, plan, entity_rows)
            except (NotFound, InvalidInput) as exc:
                if exc.sqlstate not in ("42P01", "42703"):  # a feature group changed: resolve again
                    raise
                self.refresh()
                return self._run(conn, self._plan(conn, features, full_feature_names), entity_rows)

    @staticmethod
    def _run(conn: Any, plan: online.LookupPlan, entity_rows: Any) -> pa.Table | dict[str, Any]:
        if isinstance(entity_rows, Mapping):
            return online.lookup_one(conn, plan, entity_rows)
        return online.lookup(conn, plan, entity_rows)

    def nearest(self, group: str, vector_feature: str, query_vector: Sequence[float], k: int = 10,
                where: str | None = None, **kwargs: Any) -> pa.Table:
        """As :func:`fstore.vectors.nearest`, on a pooled connection."""
        with self.pool.connection() as conn:
            return vectors.nearest(conn, self.project, group, vector_feature, query_vector, k, where, **kwargs)

    def refresh(self) -> None:
        """Forget resolved plans: the next lookups see new feature-group versions."""
        self._plans.clear()

    def close(self) -> None:
        """Close the pool and its connections."""
        self.pool.close()

    def __enter__(self) -> "OnlineStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
