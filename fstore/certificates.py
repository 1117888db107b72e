"""Certificates as the platform sees them: the CA's registry plus the server's view.

Issuing is :mod:`fstore.pki`; this module ties issuance and revocation to the
running server (catalog record, CRL reload, ending sessions) and provides
short-lived application identities.

Example::

    revoked, ended = revoke(home, role="fraud__bob")
    with fstore.application("fraud", "alice", "nightly-train", ttl="1h") as fs:
        fs.get_historical_features(...)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from fstore import pki, server
from fstore.connection import connect_operator, material_for
from fstore.errors import NotFound
from fstore.home import FstoreHome
from fstore.roles import check_app_id, project_user_role

if TYPE_CHECKING:
    from fstore.store import FeatureStore

_UPSERT = (
    "insert into fstore.certificates (serial, role_name, kind, app_id, not_before, not_after, revoked_at) "
    "values (%s, %s, %s, %s, %s, %s, %s) "
    "on conflict (serial) do update set revoked_at = excluded.revoked_at"
)


def _has_catalog(conn: psycopg.Connection[Any]) -> bool:
    return conn.execute("select to_regclass('fstore.certificates') is not null").fetchone()[0]


def _upsert(conn: psycopg.Connection[Any], records: Sequence[pki.CertificateRecord]) -> None:
    with conn.cursor() as cur:
        cur.executemany(_UPSERT, [
            (r.serial, r.role, r.kind, r.app_id, r.not_before, r.not_after, r.revoked_at) for r in records
        ])


def record_in_catalog(home: FstoreHome, record: pki.CertificateRecord) -> None:
    """Record an issued certificate in ``fstore.certificates`` (if the server is up)."""
    if not server.is_running(home):
        return
    with connect_operator(home, autocommit=True) as conn:
        if _has_catalog(conn):
            _upsert(conn, [record])


def sync_catalog(home: FstoreHome, conn: psycopg.Connection[Any]) -> int:
    """Copy the whole CA registry into the catalog (run at server start)."""
    records = pki.list_certificates(home)
    if records and _has_catalog(conn):
        _upsert(conn, records)
    return len(records)


def revoke(
    home: FstoreHome, *, role: str | None = None, serial: str | None = None
) -> tuple[list[pki.CertificateRecord], int]:
    """Revoke, re-sign the CRLs, reload and verify, end open sessions.

    Returns the revoked records and the number of sessions terminated.
    """
    revoked = pki.revoke_certificates(home, role=role, serial=serial)
    terminated = server.apply_revocation(home, revoked)
    if server.is_running(home):
        with connect_operator(home, autocommit=True) as conn:
            if _has_catalog(conn):
                _upsert(conn, revoked)
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
