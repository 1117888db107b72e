"""Online serving for long-lived processes: a connection pool with the caller's certificate
identity, and lookup plans resolved once per feature list.

Each pooled connection is a TLS session of the same project-user (or application)
certificate as the feature store handle it was built from; statements are
prepared on each connection the first time it runs them.

With ``replicas`` (read replicas of the server, :mod:`fstore.replica`) reads go round
robin across the replicas, each with a pool of its own of the same identity; a replica
that fails (down, restarting, a connection lost, a query cancelled by recovery) is left
out for a back-off period and the read is run on the next replica, then on the primary,
so a replica's death fails no request. OnlineStore only reads: nothing is ever written
through a replica (a replica refuses writes anyway: it is a hot standby).

Example::

    with OnlineStore(fs, min_size=2, max_size=8) as store:       # e.g. at web-app start-up
        store.get_online_features(["activity:*"], [{"account_id": 1}])
        store.nearest("merchants", "embedding", vector, k=5, where="country = 'DE'")
    with OnlineStore(fs, replicas="all") as store:               # the home's replicas, then the primary
        store.get_online_features(["activity:*"], [{"account_id": 1}])
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
import pyarrow as pa
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from fstore import online, vectors
from fstore.connection import ConnectionMaterial, open_pool
from fstore.errors import InvalidInput
from fstore.replica_nodes import replica, replicas as home_replicas
from fstore.session import Session

T = TypeVar("T")
ReplicaSpec = int | str
BACKOFF_FIRST = 1.0   # seconds a failed replica is left out, doubled on each failure in a row
BACKOFF_MAX = 30.0


def replica_material(material: ConnectionMaterial, spec: ReplicaSpec) -> tuple[str, ConnectionMaterial]:
    """A name and the connection material of a replica, with ``material``'s identity.

    ``spec`` is a replica of the material's home by name (``1`` or ``"1"``) or a libpq
    string (``"host=db2 port=5433"``) whose settings override the material's (its
    certificate stays unless the string names another).

    Example::

        replica_material(fs.material, 1)   # ("replica 1", material on the replica's port)
    """
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        if material.home is None:
            raise InvalidInput(f"replica {spec}: this identity has no fstore home; give the replica's DSN")
        rep = replica(material.home, spec)
        return f"replica {rep.name}", dataclasses.replace(material, host=rep.host, port=rep.port, home=None)
    if not isinstance(spec, str) or "=" not in spec and "://" not in spec:
        raise InvalidInput(f"a replica is a name of this home's replicas (1, 2...) or a libpq DSN, got {spec!r}")
    try:
        given = conninfo_to_dict(spec)
    except psycopg.ProgrammingError as exc:
        raise InvalidInput(f"replica DSN {spec!r} is not a libpq connection string: {exc}") from None
    params = material.params() | given
    name = f"replica {params.get('host')}:{params.get('port')}"
    return name, dataclasses.replace(material, dsn=make_conninfo(**params), home=None)


class _Target:
    """One server reads may go to: its pool, and when it may be tried again after failing."""

    def __init__(self, name: str, pool: Any) -> None:
        self.name = name
        self.pool = pool
        self.down_until = 0.0
        self.backoff = BACKOFF_FIRST
        self.served = 0
        self.failures = 0

    def failed(self) -> None:
        self.failures += 1
        self.down_until = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)

    def succeeded(self) -> None:
        self.served += 1
        self.backoff = BACKOFF_FIRST


def _replica_failure(exc: BaseException) -> bool:
    """A failure of the server rather than of the request: the connection is gone or
    refused, the server shuts down, recovery cancelled the query (psycopg's
    OperationalError family, raw or under fstore's translation)."""
    return isinstance(exc, psycopg.OperationalError) or isinstance(exc.__cause__, psycopg.OperationalError)


class OnlineStore:
    """Online lookups and vector search over a connection pool (thread-safe).

    ``fs.online_store(min_size=2, max_size=8)`` builds one; close it (or use it as a
    context manager) when the serving process ends.
    """

    def __init__(self, fs: Session, min_size: int = 1, max_size: int = 4, *,
                 replicas: Sequence[ReplicaSpec] | str | None = None, replica_timeout: float = 1.0,
                 **pool_kwargs: Any) -> None:
        self.project = fs.project
        self.role = fs.role
        self.pool = open_pool(fs.material, min_size, max_size, **pool_kwargs)
        self._plans: dict[tuple[Any, ...], online.LookupPlan] = {}
        self._primary = _Target("primary", self.pool)
        self._replicas: list[_Target] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self.replica_timeout = replica_timeout
        if replicas == "all":
            replicas = [r.name for r in home_replicas(fs.material.home)] if fs.material.home else []
        elif isinstance(replicas, (str, int)):
            replicas = [replicas]
        try:
            for spec in replicas or []:
                name, material = replica_material(fs.material, spec)
                kwargs = {**pool_kwargs, "name": f"fstore-{material.service_name}-{name.replace(' ', '-')}"}
                self._replicas.append(_Target(name, open_pool(material, min_size, max_size, **kwargs)))
        except Exception:
            self.close()
            raise

    def _order(self) -> list[_Target]:
        """The servers to try for one read: the replicas from the next in turn (those not
        backing off), then the primary."""
        if not self._replicas:
            return [self._primary]
        with self._lock:
            start = next(self._turn) % len(self._replicas)
        now = time.monotonic()
        turn = self._replicas[start:] + self._replicas[:start]
        return [t for t in turn if t.down_until <= now] + [self._primary]

    def _read(self, work: Callable[[Any], T]) -> T:
        """Run ``work(conn)`` on the first server of :meth:`_order` that answers."""
        for target in self._order():
            if target is self._primary:
                with self.pool.connection() as conn:
                    result = work(conn)
                target.succeeded()
                return result
            try:
                with target.pool.connection(timeout=self.replica_timeout) as conn:
                    result = work(conn)
            except Exception as exc:  # noqa: BLE001 -- only a server failure moves on; others are the request's
                if not _replica_failure(exc):
                    raise
                with self._lock:
                    target.failed()
                continue
            with self._lock:
                target.succeeded()
            return result
        raise AssertionError("unreachable: the primary is always tried last")  # pragma: no cover

    def served(self) -> dict[str, int]:
        """Reads answered by each server (``primary``, ``replica 1``...) and replica failures.

        Example::

            store.served()   # {"primary": 0, "replica 1": 10, "replica failures": 0}
        """
        counts = {t.name: t.served for t in [self._primary, *self._replicas]}
        counts["replica failures"] = sum(t.failures for t in self._replicas)
        return counts

    def _plan(self, conn: Any, features: Sequence[str], full_feature_names: bool) -> online.LookupPlan:
        return online.plan_for(conn, self.role, features, full_feature_names, cache=self._plans)

    def get_online_features(self, features: Sequence[str], entity_rows: Any, *,
                            full_feature_names: bool = False) -> pa.Table | dict[str, Any]:
        """As :func:`fstore.online.get_online_features`, on a pooled connection.

        Example::

            store.get_online_features(["activity:*"], [{"account_id": 1}, {"account_id": 2}])
        """
        return self._read(lambda conn: online.lookup_fresh(
            conn, lambda: self._plan(conn, features, full_feature_names), self.refresh, entity_rows))

    def nearest(self, group: str, vector_feature: str, query_vector: Sequence[float], k: int = 10,
                where: str | None = None, *, metric: str | None = None,
                features: Sequence[str] | None = None) -> pa.Table:
        """As :func:`fstore.vectors.nearest`, on a pooled connection.

        Example::

            store.nearest("merchants", "embedding", [0.1, 0.2, 0.3], k=5, where="country = 'DE'")
        """
        return self._read(lambda conn: vectors.nearest(conn, group, vector_feature, query_vector, k, where,
                                                       metric=metric, features=features))

    def refresh(self) -> None:
        """Forget resolved plans: the next lookups see new feature-group versions."""
        self._plans.clear()

    def close(self) -> None:
        """Close the pools (primary and replicas) and their connections."""
        for target in self._replicas:
            target.pool.close()
        self.pool.close()

    def __enter__(self) -> "OnlineStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        names = ", ".join(t.name for t in self._replicas)
        tail = f", replicas=[{names}])" if names else ")"
        return f"OnlineStore(project={self.project!r}, role={self.role!r}" + tail
