"""What the primary needs to know of its read replicas, without starting anything: where
they live, their ports, the primary's ``pg_hba`` lines for them, reloading their CRL, and
their status (:mod:`fstore.server` calls these; :mod:`fstore.replica` makes and starts
replicas). The split keeps :mod:`fstore.server` free of an import of :mod:`fstore.replica`,
which imports it.

Example::

    [r.port for r in replicas(home)]
    reload_replicas(home)          # after the primary's CRL changed
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from fstore.connection import connect_operator
from fstore.crl import crl_serials
from fstore.errors import NotFound, ServerError
from fstore.home import FstoreHome
from fstore.roles import REPLICATOR_ROLE



@dataclass(frozen=True)
class Replica:
    """One read replica: its name (``"1"``, ``"2"``...), port and node home
    (``replicas/<name>/server/{pgdata,run,tls,postgresql.log}``)."""

    name: str
    port: int
    home: FstoreHome

    @property
    def slot(self) -> str:
        """Its physical replication slot on the primary (also its ``application_name``)."""
        return f"fstore_replica_{self.name}"

    @property
    def host(self) -> str:
        return "localhost"


def replicas_dir(home: FstoreHome) -> Path:
    """Where the replicas of ``home`` live."""
    return home.root / "replicas"


def replicas(home: FstoreHome) -> list[Replica]:
    """The home's replicas, as saved in its settings (running or not)."""
    return [Replica(str(e["name"]), int(e["port"]), FstoreHome(replicas_dir(home) / str(e["name"])))
            for e in home.settings().get("replicas", [])]


def replica(home: FstoreHome, name: str | int) -> Replica:
    """The replica called ``name``; :class:`NotFound` names the ones there are."""
    for candidate in replicas(home):
        if candidate.name == str(name):
            return candidate
    names = ", ".join(r.name for r in replicas(home)) or "none"
    raise NotFound(f"no replica {name} in {home.root} (replicas: {names}); `fstore server start --replica` makes one")


def replication_hba(home: FstoreHome) -> str:
    """The primary's ``pg_hba.conf`` lines for its replicas (empty without replicas): the
    replicator logs in to replication only, with its certificate (CN = role)."""
    if not home.settings().get("replicas"):
        return ""
    return (f"hostssl   replication {REPLICATOR_ROLE} all cert\n"
            f"hostssl   all      {REPLICATOR_ROLE} all  reject\n")


def _running(node: FstoreHome) -> bool:
    return node.server_state() == "running"


def _reload(node: FstoreHome, timeout: float) -> None:
    """Reload one replica's configuration and TLS files; wait until a new backend sees it."""
    with connect_operator(node, autocommit=True, connect_timeout=5) as conn:
        before = conn.execute("select pg_conf_load_time()").fetchone()[0]
        conn.execute("select pg_reload_conf()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect_operator(node, connect_timeout=5) as conn:
            if conn.execute("select pg_conf_load_time()").fetchone()[0] > before:
                return
        time.sleep(0.02)
    raise ServerError(f"the replica in {node.root} did not reload its configuration within {timeout:.0f}s")


def _end_revoked_sessions(node: FstoreHome, serials: list[int], timeout: float = 5.0) -> int:
    """End the replica's sessions that logged in with a certificate the CRL lists."""
    if not serials:
        return 0
    with connect_operator(node, autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute(
            "select pid from pg_stat_ssl where client_serial = any(%s::numeric[]) and pid <> pg_backend_pid()",
            (serials,))]
        for pid in pids:
            conn.execute("select pg_terminate_backend(%s::integer, %s::bigint)", (pid, int(timeout * 1000)))
    return len(pids)


def reload_replicas(home: FstoreHome, timeout: float = 10.0) -> list[str]:
    """Reload every running replica's configuration and TLS files (the CRL: the replicas
    read the home's own ``ca/crl.pem``) and end their sessions of certificates the CRL
    lists; returns the names reloaded.

    :func:`fstore.server.reload` calls it after the primary's reload (a revocation
    published, the CRL renewed, ``fstore cert crl``), so that a revocation bites on the
    replicas as it does on the primary.

    Example::

        reload_replicas(home)   # ["1"]
    """
    running = [rep for rep in replicas(home) if _running(rep.home)]
    serials = sorted(int(s) for s in crl_serials(home)) if running else []
    done = []
    for rep in running:
        _reload(rep.home, timeout)
        _end_revoked_sessions(rep.home, serials)
        done.append(rep.name)
    return done


def replica_status(home: FstoreHome) -> list[dict[str, Any]]:
    """Each replica: name, port, running, in recovery, and its lag as the primary sees it
    (``state``, ``lag_bytes`` of WAL not yet replayed, ``replay_lag_s``).

    Example::

        [r["lag_bytes"] for r in replica_status(home)]
    """
    streams: dict[str, tuple[Any, ...]] = {}
    if replicas(home) and _running(home):
        with connect_operator(home, connect_timeout=5) as conn:
            for row in conn.execute(
                    "select application_name, state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
                    "       extract(epoch from replay_lag)::float8 from pg_stat_replication"):
                streams[row[0]] = row[1:]
    out = []
    for rep in replicas(home):
        entry: dict[str, Any] = {"name": rep.name, "port": rep.port, "data_dir": str(rep.home.data_dir),
                                 "running": _running(rep.home)}
        if entry["running"]:
            try:
                with connect_operator(rep.home, connect_timeout=3) as conn:
                    entry["in_recovery"] = conn.execute("select pg_is_in_recovery()").fetchone()[0]
            except psycopg.OperationalError:
                entry["in_recovery"] = None
        state, lag_bytes, replay_lag = streams.get(rep.slot, (None, None, None))
        entry.update(state=state, lag_bytes=lag_bytes, replay_lag_s=replay_lag)
        out.append(entry)
    return out


__all__ = ["REPLICATOR_ROLE", "Replica", "reload_replicas", "replica", "replica_status", "replicas",
           "replicas_dir", "replication_hba"]
