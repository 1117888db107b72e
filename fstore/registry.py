"""The registry of every certificate fstore's CA has issued (``ca/issued.json``) and the
locks that keep it, the CRL and the server's catalog consistent.

Two file locks: the registry lock (short, around one read or write of the file) and
the publication lock (around a whole revocation: registry, CRL, reload, proof,
catalog), which the CLI, the Python API and the CRL keeper all take.

Example::

    with registry(home, write=True) as records:
        records[-1].revoked_at = now().isoformat()
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
from typing import IO, Any

from fstore.cakeys import write_private
from fstore.home import FstoreHome


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


__all__ = ["CertificateRecord", "list_certificates", "now", "publication_lock", "registry"]
