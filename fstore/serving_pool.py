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

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from fstore import online, vectors
from fstore.connection import open_pool
from fstore.session import Session


class OnlineStore:
    """Online lookups and vector search over a connection pool (thread-safe).

    ``fs.online_store(min_size=2, max_size=8)`` builds one; close it (or use it as a
    context manager) when the serving process ends.
    """

    def __init__(self, fs: Session, min_size: int = 1, max_size: int = 4, **pool_kwargs: Any) -> None:
        self.project = fs.project
        self.role = fs.role
        self.pool = open_pool(fs.material, min_size, max_size, **pool_kwargs)
        self._plans: dict[tuple[Any, ...], online.LookupPlan] = {}

    def _plan(self, conn: Any, features: Sequence[str], full_feature_names: bool) -> online.LookupPlan:
        return online.plan_for(conn, self.role, features, full_feature_names, cache=self._plans)

    def get_online_features(self, features: Sequence[str], entity_rows: Any, *,
                            full_feature_names: bool = False) -> pa.Table | dict[str, Any]:
        """As :func:`fstore.online.get_online_features`, on a pooled connection.

        Example::

            store.get_online_features(["activity:*"], [{"account_id": 1}, {"account_id": 2}])
        """
        with self.pool.connection() as conn:
            return online.lookup_fresh(conn, lambda: self._plan(conn, features, full_feature_names), self.refresh,
                                       entity_rows)

    def nearest(self, group: str, vector_feature: str, query_vector: Sequence[float], k: int = 10,
                where: str | None = None, *, metric: str | None = None,
                features: Sequence[str] | None = None) -> pa.Table:
        """As :func:`fstore.vectors.nearest`, on a pooled connection.

        Example::

            store.nearest("merchants", "embedding", [0.1, 0.2, 0.3], k=5, where="country = 'DE'")
        """
        with self.pool.connection() as conn:
            return vectors.nearest(conn, group, vector_feature, query_vector, k, where, metric=metric,
                                   features=features)

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

    def __repr__(self) -> str:
        return f"OnlineStore(project={self.project!r}, role={self.role!r})"
