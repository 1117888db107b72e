"""Certificates as the platform sees them: the CA's registry plus the server's view.

Issuing is :mod:`fstore.pki`; this module ties issuance and revocation to the
running server (catalog record, CRL reload, ending sessions).

Example::

    revoked, ended = revoke(home, role="fraud__bob")
"""

from __future__ import annotations

from fstore import pki, server
from fstore.home import FstoreHome


def record_in_catalog(home: FstoreHome, record: pki.CertificateRecord) -> None:
    """Record an issued certificate in the catalog (``fstore.certificates``) if it exists."""
    if not server.is_running(home):
        return
    from fstore.connection import connect_operator

    with connect_operator(home, autocommit=True) as conn:
        has_catalog = conn.execute("select to_regclass('fstore.certificates') is not null").fetchone()[0]
        if has_catalog:
            conn.execute(
                "insert into fstore.certificates (serial, role_name, kind, app_id, not_before, not_after) "
                "values (%s, %s, %s, %s, %s, %s) on conflict (serial) do nothing",
                (record.serial, record.role, record.kind, record.app_id, record.not_before, record.not_after),
            )


def revoke(
    home: FstoreHome, *, role: str | None = None, serial: str | None = None
) -> tuple[list[pki.CertificateRecord], int]:
    """Revoke, re-sign the CRLs, reload and verify, end open sessions.

    Returns the revoked records and the number of sessions terminated.
    """
    revoked = pki.revoke_certificates(home, role=role, serial=serial)
    terminated = server.apply_revocation(home, revoked)
    if server.is_running(home):
        from fstore.connection import connect_operator

        with connect_operator(home, autocommit=True) as conn:
            has_catalog = conn.execute("select to_regclass('fstore.certificates') is not null").fetchone()[0]
            if has_catalog:
                conn.execute(
                    "update fstore.certificates set revoked_at = now() where serial = any(%s::numeric[])",
                    ([r.serial for r in revoked],),
                )
    return revoked, terminated
