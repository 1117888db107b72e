"""Certificates as the platform sees them: the CA's registry plus the server's view.

Issuing is :mod:`fstore.pki`; this module ties issuance and revocation to the
running server: the catalog's copy of the registry (``fstore.certificates``), and
:func:`publish`, which makes a revocation bite (CRL re-signed, server reloaded, the
revoked certificate proven refused, its sessions ended, ``crl_published_at`` set so
the role name may be given out again). It also provides short-lived application
identities.

Example::

    revoked, ended = revoke(home, role="fraud__bob")
    with fstore.application("fraud", "alice", "nightly-train", ttl="1h") as fs:
        fs.get_historical_features(...)
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from fstore import pki, server
from fstore.connection import connect_operator, material_for
from fstore.errors import NotFound
from fstore.home import FstoreHome
from fstore.registry import CertificateRecord, now, publication_lock
from fstore.roles import check_app_id, project_user_role

if TYPE_CHECKING:
    from fstore.store import FeatureStore

# The catalog never forgets a revocation (a registry copy without it cannot undo one
# made by SQL), and crl_published_at only moves forward.
_UPSERT = (
    "insert into fstore.certificates as c "
    "(serial, role_name, kind, app_id, not_before, not_after, revoked_at, crl_published_at) "
    "values (%s, %s, %s, %s, %s, %s, %s, %s) "
    "on conflict (serial) do update set "
    "revoked_at = coalesce(c.revoked_at, excluded.revoked_at), "
    "crl_published_at = coalesce(excluded.crl_published_at, c.crl_published_at)"
)

Probes = Mapping[str, tuple[Path, Path]]


def has_catalog(conn: psycopg.Connection[Any]) -> bool:
    """True when the database has ``fstore.certificates`` (migrations applied)."""
    return conn.execute("select to_regclass('fstore.certificates') is not null").fetchone()[0]


def upsert(
    conn: psycopg.Connection[Any], records: Sequence[CertificateRecord], *, published: bool = False
) -> None:
    """Copy records into ``fstore.certificates``; ``published`` marks the revoked ones as
    being in the CRL the server has loaded."""
    at = now() if published else None
    with conn.cursor() as cur:
        cur.executemany(_UPSERT, [
            (r.serial, r.role, r.kind, r.app_id, r.not_before, r.not_after, r.revoked_at,
             at if r.revoked_at else None)
            for r in records
        ])


def record_in_catalog(home: FstoreHome, record: CertificateRecord) -> None:
    """Record an issued certificate in ``fstore.certificates`` (if the server is up)."""
    if not server.operator_reachable(home):
        return
    with connect_operator(home, autocommit=True) as conn:
        if has_catalog(conn):
            upsert(conn, [record])


def sync_catalog(home: FstoreHome, conn: psycopg.Connection[Any], *, published: bool = False) -> int:
    """Copy the whole CA registry into the catalog (server start, CRL keeper start).

    Revocations already in the catalog stay. ``published`` says the server has just
    loaded a CRL that lists every revocation of the registry.
    """
    records = pki.list_certificates(home)
    if records and has_catalog(conn):
        upsert(conn, records, published=published)
    return len(records)


def publish(home: FstoreHome, revoked: Sequence[CertificateRecord], *, probes: Probes | None = None) -> int:
    """Make revocations already in the registry bite; returns the sessions terminated.

    Re-signs both CRLs; when the server is reachable, reloads it, proves each revoked
    certificate is refused (with ``probes``, copies of replaced files, or the files
    in the home; a revoked-from-birth canary when none of them can be tried), ends
    their sessions and sets ``revoked_at``/``crl_published_at`` in the catalog.
    """
    probes = dict(probes or {})
    with publication_lock(home):
        reachable = server.operator_reachable(home)
        batch = list(revoked)
        directory = None
        try:
            if reachable and batch and not any(server.can_probe(home, r, probes) for r in batch):
                directory = Path(tempfile.mkdtemp(prefix="fstore-canary-"))
                canary, cert_path, key_path = pki.issue_canary(home, directory)
                probes[canary.serial] = (cert_path, key_path)
                batch.append(canary)
            pki.resign_crls(home)
            if not reachable:
                return 0
            terminated = server.apply_revocation(home, batch, probes=probes)
            with connect_operator(home, autocommit=True) as conn:
                if has_catalog(conn):
                    upsert(conn, batch, published=True)
            return terminated
        finally:
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)


def revoke(
    home: FstoreHome, *, role: str | None = None, serial: str | None = None
) -> tuple[list[CertificateRecord], int]:
    """Revoke, re-sign the CRLs, reload and verify, end open sessions, record in the catalog.

    Returns the revoked records and the number of sessions terminated; raises
    :class:`NotFound` when nothing unrevoked matches (the CRL in force then already
    lists everything revoked: revocations are serialised).
    """
    with publication_lock(home):
        revoked = pki.revoke_certificates(home, role=role, serial=serial, resign=False)
        terminated = publish(home, revoked)
    return revoked, terminated


@contextmanager
def application(
    project: str,
    user: str,
    app_id: str,
    ttl: str | dt.timedelta = "1h",
    home: str | FstoreHome | None = None,
) -> Iterator["FeatureStore"]:
    """Issue a short-lived application certificate for the block; revoke it at exit.

    The database knows the session's application from the certificate serial, so
    commits and audit records name ``app_id``.
    """
    from fstore.store import FeatureStore

    fhome = home if isinstance(home, FstoreHome) else FstoreHome.resolve(home)
    role = project_user_role(project, user)
    lifetime = pki.parse_duration(ttl) if isinstance(ttl, str) else ttl
    record = pki.issue_certificate(fhome, role, app_id=check_app_id(app_id), ttl=lifetime)
    record_in_catalog(fhome, record)
    store = FeatureStore(material_for(fhome, role, app_id), fhome)
    try:
        yield store
    finally:
        store.close()
        try:
            revoke(fhome, serial=record.serial)
        except NotFound:
            pass  # already revoked (e.g. the member was removed inside the block)


__all__ = ["application", "has_catalog", "publish", "record_in_catalog", "revoke", "sync_catalog", "upsert"]
