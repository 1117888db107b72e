"""The registry of every certificate fstore's CA has issued (``ca/issued.json``) and the
locks that keep it, the CRL and the server's catalog consistent.

Two file locks: the registry lock (short, around one read or write of the file) and
the publication lock (around a whole revocation: registry, CRL, reload, proof,
catalog), which the CLI, the Python API and the CRL keeper all take.

The server's copy of the registry, ``fstore.certificates``, is written only through
``fstore.record_certificates`` (:func:`write_catalog`), which never forgets a
recorded revocation.

Example::

    with registry(home, write=True) as records:
        records[-1].revoked_at = now().isoformat()
    write_catalog(operator_conn, records, published=True)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fstore.cakeys import write_private
from fstore.home import FstoreHome

if TYPE_CHECKING:
    import psycopg


def now() -> dt.datetime:
    """The current time, in UTC."""
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class CertificateRecord:
    """One issued certificate, as recorded in the registry."""

    serial: str  # decimal, as pg_stat_ssl.client_serial shows it
    subject: str
    role: str
    kind: str  # user | application | service
    app_id: str | None
    not_before: str
    not_after: str
    revoked_at: str | None = None
    cert_file: str | None = None
    key_file: str | None = None  # None when the key never left its owner (``fstore cert sign``)
    issued_at: str | None = None

    @property
    def expires(self) -> dt.datetime:
        """When the certificate stops being valid."""
        return dt.datetime.fromisoformat(self.not_after)

    @property
    def is_valid(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and self.expires > now()


@contextmanager
def registry(home: FstoreHome, write: bool = False) -> Iterator[list[CertificateRecord]]:
    """The registry's records under its file lock; written back at exit when ``write``.

    Never nest it (a second lock in the same process waits for the first).
    """
    home.ca_dir.mkdir(parents=True, exist_ok=True)
    with open(home.ca_dir / ".registry.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        text = home.registry_file.read_text() if home.registry_file.exists() else ""
        records = [CertificateRecord(**r) for r in json.loads(text)] if text else []
        yield records
        if write:
            new_text = json.dumps([asdict(r) for r in records], indent=1)
            if new_text != text:
                write_private(home.registry_file, new_text.encode())


def list_certificates(home: FstoreHome) -> list[CertificateRecord]:
    """Every certificate this CA has issued, oldest first."""
    with registry(home) as records:
        return list(records)


def write_catalog(conn: "psycopg.Connection[Any]", records: list[CertificateRecord], *,
                  published: bool = False) -> int:
    """Copy records into the catalog (``fstore.record_certificates``, the superuser's only);
    ``published`` says the CRL the server has loaded lists the revoked ones. Returns the rows written."""
    at = now().isoformat() if published else None
    payload = [{"serial": r.serial, "role": r.role, "kind": r.kind, "app_id": r.app_id, "not_before": r.not_before,
                "not_after": r.not_after, "revoked_at": r.revoked_at, "crl_published_at": at if r.revoked_at else None}
               for r in records]
    if not payload:
        return 0
    return conn.execute("select fstore.record_certificates(%s::jsonb)", (json.dumps(payload),)).fetchone()[0]


def sync_catalog(home: FstoreHome, conn: "psycopg.Connection[Any]", *, published: bool = False) -> int:
    """Copy the whole registry into the catalog (server start, CRL keeper start).

    Revocations already in the catalog stay. ``published`` says the server has just
    loaded a CRL that lists every revocation of the registry. Returns how many records
    the registry holds.
    """
    records = list_certificates(home)
    write_catalog(conn, records, published=published)
    return len(records)


_PUBLICATION: dict[Path, list[Any]] = {}
_PUBLICATION_GUARD = threading.Lock()


@contextmanager
def publication_lock(home: FstoreHome) -> Iterator[None]:
    """Serialise revocations end to end (registry, CRL, reload, proof, catalog) across
    processes; re-entrant within a process.

    Whoever finds nothing left to revoke under it knows the CRL in force has it.
    """
    home.ca_dir.mkdir(parents=True, exist_ok=True)
    key = home.ca_dir.resolve()
    with _PUBLICATION_GUARD:
        entry = _PUBLICATION.setdefault(key, [threading.RLock(), 0, None])
    rlock: threading.RLock = entry[0]
    with rlock:
        if entry[1] == 0:
            handle: IO[str] = open(home.ca_dir / ".publish.lock", "a+")
            fcntl.flock(handle, fcntl.LOCK_EX)
            entry[2] = handle
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                entry[2].close()
                entry[2] = None


__all__ = ["CertificateRecord", "list_certificates", "now", "publication_lock", "registry", "sync_catalog",
           "write_catalog"]
