"""Revocation, in one room: certificates as the platform sees them, made to bite.

Issuing is :mod:`fstore.pki` (and :mod:`fstore.signing`); this module ties issuance
and revocation to the running server:

* :func:`revoke_certificates` marks certificates revoked in the registry;
  :func:`record_replacing` stores a new user certificate and retires the role's
  earlier ones;
* :func:`publish` makes a revocation bite: CRLs re-signed, server reloaded, the
  revoked certificate proven refused (:func:`apply_revocation`; a revoked-from-birth
  canary, :func:`issue_canary`, when none of them can be tried), its sessions ended
  (:func:`terminate_sessions`), ``crl_published_at`` set so that the role name may be
  given out again; :func:`revoke` does all of it;
* :func:`record_in_catalog` copies an issued certificate into ``fstore.certificates``
  (through ``fstore.record_certificates``).

Example::

    revoked, ended = revoke(home, role="fraud__bob")
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
from cryptography import x509

from fstore import server
from fstore.cakeys import key_pem, write_private, write_public
from fstore.connection import ConnectionMaterial, connect_operator, open_psycopg
from fstore.crl import resign_crls
from fstore.errors import InvalidInput, NotFound, ServerError
from fstore.home import FstoreHome
from fstore.registry import CertificateRecord, now, publication_lock, registry, sync_catalog, write_catalog
from fstore.roles import ADMIN_ROLE
from fstore.signing import cert_pem, new_key, record_issued, sign_client

CANARY_APP = "crl-probe"

Probes = Mapping[str, tuple[Path, Path]]


def record_in_catalog(home: FstoreHome, record: CertificateRecord) -> None:
    """Record an issued certificate in ``fstore.certificates`` (if the server is up)."""
    if not server.operator_reachable(home):
        return
    with connect_operator(home, autocommit=True) as conn:
        write_catalog(conn, [record])


@contextmanager
def probe_copies(home: FstoreHome, role: str) -> Iterator[dict[str, tuple[Path, Path]]]:
    """Copies of the role's current user certificate and key, by serial, in a private
    temporary directory: what proves the certificate dead after its files are replaced."""
    directory = Path(tempfile.mkdtemp(prefix="fstore-probe-"))
    copies: dict[str, tuple[Path, Path]] = {}
    try:
        cert_path, key_path = home.client_cert(role), home.client_key(role)
        if cert_path.exists() and key_path.exists():
            serial = str(x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number)
            kept_cert, kept_key = directory / "old.crt", directory / "old.key"
            shutil.copyfile(cert_path, kept_cert)
            write_private(kept_key, key_path.read_bytes())
            copies[serial] = (kept_cert, kept_key)
        yield copies
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def record_replacing(
    home: FstoreHome, record: CertificateRecord, probes: dict[str, tuple[Path, Path]]
) -> list[CertificateRecord]:
    """Store ``record``; a user certificate retires the role's earlier user certificates.

    The retired ones are revoked, signed into the CRL and, when the server runs,
    proven dead and their sessions ended (:func:`publish`).
    Call it under :func:`publication_lock`. Returns the retired records.
    """
    retired: list[CertificateRecord] = []
    with registry(home, write=True) as records:
        if record.kind == "user":
            for earlier in records:
                if earlier.role == record.role and earlier.kind == "user" and not earlier.revoked_at:
                    earlier.revoked_at = record.issued_at
                    retired.append(earlier)
        records.append(record)
    if retired:
        publish(home, retired, probes=probes)
    return retired


def issue_canary(home: FstoreHome, directory: Path) -> tuple[CertificateRecord, Path, Path]:
    """A short-lived admin application certificate, revoked from birth, in ``directory``.

    Logging in with it after a CRL reload proves the new CRL is in force when no
    revoked certificate of the batch can be tried (its key is with its owner).
    """
    key = new_key()
    cert, inter_cert = sign_client(home, ADMIN_ROLE, key.public_key(), app_id=CANARY_APP,
                                   ttl=dt.timedelta(minutes=15))
    cert_path, key_path = directory / "canary.crt", directory / "canary.key"
    write_private(key_path, key_pem(key))
    write_public(cert_path, cert_pem(cert) + cert_pem(inter_cert))
    record = record_issued(home, cert, ADMIN_ROLE, "application", CANARY_APP, cert_path, key_path, revoked=True)
    return record, cert_path, key_path


def revoke_certificates(
    home: FstoreHome, *, role: str | None = None, serial: str | int | None = None, resign: bool = True
) -> list[CertificateRecord]:
    """Mark certificates revoked (all of a role's, or one serial) and re-sign the CRLs.

    Returns the records newly revoked; raises :class:`NotFound` when none match.
    Reloading the server and ending open sessions is :func:`publish` (:func:`revoke`
    does all of it).
    """
    if (role is None) == (serial is None):
        raise InvalidInput("give exactly one of a role or a serial to revoke")
    at = now().isoformat()
    revoked: list[CertificateRecord] = []
    with registry(home, write=True) as records:
        for record in records:
            if record.kind == "service" or record.revoked_at:
                continue
            if (role is not None and record.role == role) or (
                serial is not None and record.serial == str(serial)
            ):
                record.revoked_at = at
                revoked.append(record)
    if not revoked:
        what = f"role {role!r}" if role is not None else f"serial {serial}"
        raise NotFound(f"no unrevoked certificate for {what}")
    if resign:
        resign_crls(home)
    return revoked


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
            if reachable and batch and not any(can_probe(home, r, probes) for r in batch):
                directory = Path(tempfile.mkdtemp(prefix="fstore-canary-"))
                canary, cert_path, key_path = issue_canary(home, directory)
                probes[canary.serial] = (cert_path, key_path)
                batch.append(canary)
            resign_crls(home)
            if not reachable:
                return 0
            terminated = apply_revocation(home, batch, probes=probes)
            with connect_operator(home, autocommit=True) as conn:
                write_catalog(conn, batch, published=True)
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
        revoked = revoke_certificates(home, role=role, serial=serial, resign=False)
        terminated = publish(home, revoked)
    return revoked, terminated


def terminate_sessions(home: FstoreHome, serials: Iterable[str], timeout: float = 5.0) -> int:
    """End every open session that logged in with one of these certificate serials."""
    serial_list = [int(s) for s in serials]
    if not serial_list:
        return 0
    query = (
        "select s.pid from pg_stat_ssl s where s.client_serial = any(%s::numeric[]) "
        "and s.pid <> pg_backend_pid()"
    )
    with connect_operator(home, autocommit=True) as conn:
        pids = [pid for (pid,) in conn.execute(query, (serial_list,))]
        for pid in pids:
            conn.execute("select pg_catalog.pg_terminate_backend(%s::integer, %s::bigint)", (pid, int(timeout * 1000)))
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            alive = conn.execute(
                "select count(*) from pg_stat_activity where pid = any(%s)", (pids,)
            ).fetchone()[0]
            if not alive:
                break
            time.sleep(0.02)
    return len(pids)


def apply_revocation(
    home: FstoreHome, revoked: Sequence[CertificateRecord],
    probes: Probes | None = None,
) -> int:
    """Make revocations bite: reload the CRL, prove it is in force, end open sessions.

    Each revoked certificate whose files are at hand (``probes``: serial -> (cert,
    key), else the files in the home if they still hold that serial) must now fail
    the TLS handshake with "certificate revoked" (or "expired"). Returns how many
    sessions were terminated.
    """
    if not server.operator_reachable(home):
        return 0
    server.reload(home)
    for record in revoked:
        _probe_login(home, record, probes or {})
    return terminate_sessions(home, [r.serial for r in revoked])


def _probe_material(
    home: FstoreHome, record: CertificateRecord, probes: Probes
) -> tuple[Path, Path] | None:
    if record.kind == "service":
        return None
    if record.serial in probes:
        return probes[record.serial]
    if not record.cert_file or not record.key_file:
        return None
    cert, key = Path(record.cert_file), Path(record.key_file)
    if not cert.exists() or not key.exists():
        return None
    try:
        if str(x509.load_pem_x509_certificate(cert.read_bytes()).serial_number) != record.serial:
            return None  # the file now holds a newer certificate
    except ValueError:
        return None
    return cert, key


def can_probe(
    home: FstoreHome, record: CertificateRecord, probes: Probes | None = None
) -> bool:
    """True when the certificate's files are at hand to prove it refused."""
    return _probe_material(home, record, probes or {}) is not None


def _probe_login(
    home: FstoreHome, record: CertificateRecord, probes: Probes
) -> bool:
    """Try to log in with a revoked certificate; the TLS handshake must refuse it."""
    material = _probe_material(home, record, probes)
    if material is None:
        return False
    cert, key = material
    login = ConnectionMaterial(
        role=record.role, port=home.port, sslcert=cert, sslkey=key, sslrootcert=home.root_ca_cert,
        app_id=record.app_id if record.kind == "application" else None,
    )
    try:
        with open_psycopg(login, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        if "certificate revoked" in str(exc) or "certificate expired" in str(exc):
            return True
        raise ServerError(
            f"certificate {record.serial} of {record.role} passed the TLS handshake after the CRL "
            f"reload (the server has not loaded the new CRL): {str(exc).strip()}"
        ) from exc
    raise ServerError(f"certificate {record.serial} of {record.role} still logs in after the CRL reload")


__all__ = [
    "CANARY_APP", "apply_revocation", "can_probe", "issue_canary", "probe_copies", "publish", "record_in_catalog",
    "record_replacing", "revoke", "revoke_certificates", "sync_catalog", "terminate_sessions",
]
