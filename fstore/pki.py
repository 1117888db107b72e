"""fstore's certificate authority: a root and an intermediate CA, held by the operator.

Kinds of certificates: ``user`` (one per project-user), ``application`` (per
job, short-lived, records an app id) and ``service`` (the server). Every issued
certificate is recorded in ``ca/issued.json``; the CRL file always holds a
current CRL from every CA in the chain, because PostgreSQL checks the whole
chain and a missing or expired CRL locks everyone out.

A new user certificate retires the role's earlier user certificates (revoked,
published in the CRL, their sessions ended); application certificates stay. CA keys
may be encrypted with a passphrase (:mod:`fstore.cakeys`).

Example::

    home = FstoreHome.resolve()
    init_ca(home)
    cert = issue_certificate(home, "fraud__alice")
    revoke_certificates(home, role="fraud__alice")
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fstore.cakeys import check_passphrase, key_pem, load_intermediate, write_private, write_public
from fstore.crl import CLOCK_SKEW, CRL_VALIDITY, crl_expiry, crl_is_current, crl_serials, resign_crls
from fstore.errors import InvalidInput, NotFound
from fstore.home import FstoreHome
from fstore.registry import CertificateRecord, list_certificates, now, publication_lock, registry
from fstore.roles import ADMIN_ROLE, check_app_id, check_login_role

ROOT_VALIDITY = dt.timedelta(days=3650)
INTERMEDIATE_VALIDITY = dt.timedelta(days=1825)
SERVER_VALIDITY = dt.timedelta(days=825)
USER_VALIDITY = dt.timedelta(days=365)
CANARY_APP = "crl-probe"
ORGANIZATION = "fstore"


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, unit: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    validity: dt.timedelta,
    path_length: int,
) -> x509.Certificate:
    at = now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - CLOCK_SKEW)
        .not_valid_after(at + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


# --- CA lifecycle ----------------------------------------------------------------


def init_ca(
    home: FstoreHome,
    hostnames: list[str] | None = None,
    *,
    passphrase_env: str | None = None,
) -> bool:
    """Create the root and intermediate CA, their CRLs and the server certificate.

    With ``passphrase_env`` both CA keys are encrypted (best available PKCS#8
    encryption) with the passphrase in that environment variable; its name is kept in
    ``settings.json`` so that every later command reads the passphrase from it.
    Returns False (and changes nothing) when the home already has a CA.
    """
    if home.exists():
        return False
    passphrase = None
    if passphrase_env:
        passphrase = check_passphrase(os.environ.get(passphrase_env), passphrase_env)
    home.root.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root, 0o755)
    home.ca_dir.mkdir(exist_ok=True)
    os.chmod(home.ca_dir, 0o755)
    home.certs_dir.mkdir(exist_ok=True)
    os.chmod(home.certs_dir, 0o700)
    home.export_dir.mkdir(exist_ok=True)  # for Docker: what the database container may mount

    root_key = _new_key()
    root_name = _name("fstore root CA")
    root_cert = _ca_certificate(root_name, root_key, root_name, root_key, ROOT_VALIDITY, 1)
    inter_key = _new_key()
    inter_name = _name("fstore intermediate CA")
    inter_cert = _ca_certificate(inter_name, inter_key, root_name, root_key, INTERMEDIATE_VALIDITY, 0)

    if passphrase_env:
        home.save_settings(ca_passphrase_env=passphrase_env)
    write_private(home.root_ca_key, key_pem(root_key, passphrase))
    write_private(home.intermediate_ca_key, key_pem(inter_key, passphrase))
    write_public(home.root_ca_cert, _cert_pem(root_cert))
    write_public(home.intermediate_ca_cert, _cert_pem(inter_cert))
    write_public(home.ca_bundle, _cert_pem(root_cert) + _cert_pem(inter_cert))
    resign_crls(home)
    issue_server_certificate(home, hostnames)
    return True


def default_hostnames() -> list[str]:
    """SANs of the server certificate: localhost, loopback addresses and this host."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    fqdn = socket.getfqdn()
    if fqdn not in names:
        names.append(fqdn)
    return names


def issue_server_certificate(home: FstoreHome, hostnames: list[str] | None = None) -> CertificateRecord:
    """Issue the server's certificate into ``server/tls`` (leaf + intermediate chain)."""
    sans: list[x509.GeneralName] = []
    for name in hostnames or default_hostnames():
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    inter_cert, inter_key = load_intermediate(home)
    key = _new_key()
    cert = _leaf(
        _name("localhost", "service"), key.public_key(), inter_cert, inter_key, SERVER_VALIDITY,
        ExtendedKeyUsageOID.SERVER_AUTH, sans,
    )
    home.server_tls_dir.mkdir(parents=True, exist_ok=True)
    cert_path = home.server_tls_dir / "server.crt"
    key_path = home.server_tls_dir / "server.key"
    write_public(cert_path, _cert_pem(cert) + _cert_pem(inter_cert))
    write_private(key_path, key_pem(key))
    return _record(home, cert, "localhost", "service", None, cert_path, key_path)


def _leaf(
    subject: x509.Name,
    public_key: Any,
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    validity: dt.timedelta,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    """Sign an end-entity certificate valid until now + ``validity``.

    Not-before is backdated by :data:`CLOCK_SKEW` for clients whose clocks run a
    little behind; the lifetime is counted from now, never from the backdated start.
    With an explicit ``not_before`` the window is ``[not_before, not_before + validity]``.
    """
    if not_before is None:
        at = now()
        start, end = at - CLOCK_SKEW, at + validity
    else:
        start, end = not_before, not_before + validity
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _record(
    home: FstoreHome,
    cert: x509.Certificate,
    role: str,
    kind: str,
    app_id: str | None,
    cert_path: Path,
    key_path: Path | None,
    *,
    revoked: bool = False,
) -> CertificateRecord:
    record = new_record(cert, role, kind, app_id, cert_path, key_path)
    if revoked:
        record.revoked_at = record.issued_at
    with registry(home, write=True) as records:
        records.append(record)
    return record


def new_record(
    cert: x509.Certificate, role: str, kind: str, app_id: str | None,
    cert_path: Path | None, key_path: Path | None,
) -> CertificateRecord:
    """The registry record of a freshly signed certificate (not yet stored)."""
    return CertificateRecord(
        serial=str(cert.serial_number),
        subject=cert.subject.rfc4514_string(),
        role=role,
        kind=kind,
        app_id=app_id,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        cert_file=str(cert_path) if cert_path else None,
        key_file=str(key_path) if key_path else None,
        issued_at=now().isoformat(),
    )


def client_subject(role: str, kind: str) -> x509.Name:
    """The subject fstore gives a client certificate: O=fstore, OU=kind, CN=role."""
    return _name(role, kind)


def sign_client(
    home: FstoreHome, role: str, public_key: Any, *, app_id: str | None = None,
    ttl: dt.timedelta | None = None, not_before: dt.datetime | None = None,
) -> tuple[x509.Certificate, x509.Certificate]:
    """Sign a client certificate (CN=role, client-auth only) for ``public_key``.

    Returns the certificate and the intermediate that signed it; nothing is recorded.
    """
    check_login_role(role)
    if app_id is not None:
        check_app_id(app_id)
    if ttl is not None and ttl <= dt.timedelta(0) and not_before is None:
        raise InvalidInput(f"certificate lifetime must be positive, got {ttl}")
    validity = ttl or (dt.timedelta(hours=1) if app_id else USER_VALIDITY)
    inter_cert, inter_key = load_intermediate(home)
    kind = "application" if app_id else "user"
    cert = _leaf(
        client_subject(role, kind), public_key, inter_cert, inter_key, validity,
        ExtendedKeyUsageOID.CLIENT_AUTH, not_before=not_before,
    )
    return cert, inter_cert


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
    proven dead and their sessions ended (:func:`fstore.certificates.publish`).
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
        from fstore.certificates import publish

        publish(home, retired, probes=probes)
    return retired


def issue_certificate(
    home: FstoreHome,
    role: str,
    *,
    app_id: str | None = None,
    ttl: dt.timedelta | None = None,
    not_before: dt.datetime | None = None,
) -> CertificateRecord:
    """Issue a client certificate whose CN is ``role``, valid from now for ``ttl``.

    Without ``app_id`` it is the role's user certificate (``certs/ROLE.crt``); it
    replaces the file and retires the role's earlier user certificates (revoked, in
    the CRL, proven refused and their sessions ended when the server runs). With one
    it is an application certificate (``certs/ROLE@APP.crt``), short-lived by default
    (1 hour), and nothing else changes.
    """
    key = _new_key()
    cert, inter_cert = sign_client(home, role, key.public_key(), app_id=app_id, ttl=ttl, not_before=not_before)
    kind = "application" if app_id else "user"
    file_name = f"{role}@{app_id}" if app_id else role
    cert_path, key_path = home.client_cert(file_name), home.client_key(file_name)
    record = new_record(cert, role, kind, app_id, cert_path, key_path)
    if app_id:
        write_private(key_path, key_pem(key))
        write_public(cert_path, _cert_pem(cert) + _cert_pem(inter_cert))
        with registry(home, write=True) as records:
            records.append(record)
        return record
    with publication_lock(home), probe_copies(home, role) as probes:
        write_private(key_path, key_pem(key))
        write_public(cert_path, _cert_pem(cert) + _cert_pem(inter_cert))
        record_replacing(home, record, probes)
    return record


def issue_canary(home: FstoreHome, directory: Path) -> tuple[CertificateRecord, Path, Path]:
    """A short-lived admin application certificate, revoked from birth, in ``directory``.

    Logging in with it after a CRL reload proves the new CRL is in force when no
    revoked certificate of the batch can be tried (its key is with its owner).
    """
    key = _new_key()
    cert, inter_cert = sign_client(home, ADMIN_ROLE, key.public_key(), app_id=CANARY_APP,
                                   ttl=dt.timedelta(minutes=15))
    cert_path, key_path = directory / "canary.crt", directory / "canary.key"
    write_private(key_path, key_pem(key))
    write_public(cert_path, _cert_pem(cert) + _cert_pem(inter_cert))
    record = _record(home, cert, ADMIN_ROLE, "application", CANARY_APP, cert_path, key_path, revoked=True)
    return record, cert_path, key_path


def revoke_certificates(
    home: FstoreHome, *, role: str | None = None, serial: str | int | None = None, resign: bool = True
) -> list[CertificateRecord]:
    """Mark certificates revoked (all of a role's, or one serial) and re-sign the CRLs.

    Returns the records newly revoked; raises :class:`NotFound` when none match.
    Reloading the server and ending open sessions is :func:`fstore.certificates.publish`
    (``fstore.certificates.revoke`` does all of it).
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


def ensure_user_certificate(home: FstoreHome, role: str) -> CertificateRecord:
    """Return the role's valid user certificate whose files are in the home, issuing one if none."""
    for record in reversed(list_certificates(home)):
        if record.role == role and record.kind == "user" and record.is_valid:
            if record.cert_file and Path(record.cert_file).exists() and record.key_file \
                    and Path(record.key_file).exists():
                return record
    return issue_certificate(home, role)


_DURATION = re.compile(r"([0-9]+)([smhdw])")


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``90s``, ``15m``, ``1h``, ``7d`` or ``2w`` into a timedelta."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    match = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if match is None:
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 90s, 15m, 1h, 7d or 2w")
    value = int(match.group(1))
    if value <= 0:
        raise InvalidInput(f"duration must be positive, got {text!r}")
    return dt.timedelta(**{units[match.group(2)]: value})


__all__ = [
    "CRL_VALIDITY", "CertificateRecord", "client_subject", "crl_expiry", "crl_is_current", "crl_serials",
    "default_hostnames", "ensure_user_certificate", "init_ca", "issue_canary", "issue_certificate",
    "issue_server_certificate", "list_certificates", "load_intermediate", "new_record", "parse_duration",
    "probe_copies", "publication_lock", "record_replacing", "registry", "resign_crls",
    "revoke_certificates", "sign_client",
]
