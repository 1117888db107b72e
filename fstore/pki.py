"""fstore's certificate authority: a root and an intermediate CA, held by the operator.

Kinds of certificates: ``user`` (one per project-user), ``application`` (per
job, short-lived, records an app id) and ``service`` (the server). Every issued
certificate is recorded in ``ca/issued.json``; the CRL file always holds a
current CRL from every CA in the chain, because PostgreSQL checks the whole
chain and a missing or expired CRL locks everyone out.

Example::

    home = FstoreHome.resolve()
    init_ca(home)
    cert = issue_certificate(home, "fraud__alice")
    revoke_certificates(home, role="fraud__alice")
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fstore.errors import InvalidInput, NotFound
from fstore.home import FstoreHome
from fstore.roles import check_app_id, check_login_role

ROOT_VALIDITY = dt.timedelta(days=3650)
INTERMEDIATE_VALIDITY = dt.timedelta(days=1825)
SERVER_VALIDITY = dt.timedelta(days=825)
USER_VALIDITY = dt.timedelta(days=365)
CRL_VALIDITY = dt.timedelta(days=7)
ORGANIZATION = "fstore"


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
    key_file: str | None = None

    @property
    def expires(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.not_after)

    @property
    def is_valid(self) -> bool:
        return self.revoked_at is None and self.expires > _now()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


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
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + validity)
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


def _load_ca(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not cert_path.exists():
        raise NotFound(f"no CA at {cert_path.parent}: run `fstore init` first")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


# --- registry -------------------------------------------------------------------


@contextmanager
def _registry(home: FstoreHome, write: bool = False) -> Iterator[list[CertificateRecord]]:
    """Load the registry under a file lock; write it back at exit when ``write``."""
    home.ca_dir.mkdir(parents=True, exist_ok=True)
    lock_path = home.ca_dir / ".registry.lock"
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
        records: list[CertificateRecord] = []
        if home.registry_file.exists():
            records = [CertificateRecord(**r) for r in json.loads(home.registry_file.read_text())]
        yield records
        if write:
            _write_private(
                home.registry_file,
                json.dumps([asdict(r) for r in records], indent=1).encode(),
            )


def list_certificates(home: FstoreHome) -> list[CertificateRecord]:
    """Every certificate this CA has issued, oldest first."""
    with _registry(home) as records:
        return list(records)


# --- CA lifecycle ----------------------------------------------------------------


def init_ca(home: FstoreHome, hostnames: list[str] | None = None) -> bool:
    """Create the root and intermediate CA, their CRLs and the server certificate.

    Returns False (and changes nothing) when the home already has a CA.
    """
    if home.exists():
        return False
    home.root.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root, 0o755)
    home.ca_dir.mkdir(exist_ok=True)
    os.chmod(home.ca_dir, 0o755)
    home.certs_dir.mkdir(exist_ok=True)
    os.chmod(home.certs_dir, 0o700)

    root_key = _new_key()
    root_name = _name("fstore root CA")
    root_cert = _ca_certificate(root_name, root_key, root_name, root_key, ROOT_VALIDITY, 1)
    inter_key = _new_key()
    inter_name = _name("fstore intermediate CA")
    inter_cert = _ca_certificate(inter_name, inter_key, root_name, root_key, INTERMEDIATE_VALIDITY, 0)

    _write_private(home.root_ca_key, _key_pem(root_key))
    _write_private(home.intermediate_ca_key, _key_pem(inter_key))
    _write_public(home.root_ca_cert, _cert_pem(root_cert))
    _write_public(home.intermediate_ca_cert, _cert_pem(inter_cert))
    _write_public(home.ca_bundle, _cert_pem(root_cert) + _cert_pem(inter_cert))
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
    inter_cert, inter_key = _load_ca(home.intermediate_ca_cert, home.intermediate_ca_key)
    key = _new_key()
    cert = _leaf(
        _name("localhost", "service"), key, inter_cert, inter_key, SERVER_VALIDITY,
        ExtendedKeyUsageOID.SERVER_AUTH, sans,
    )
    home.server_tls_dir.mkdir(parents=True, exist_ok=True)
    cert_path = home.server_tls_dir / "server.crt"
    key_path = home.server_tls_dir / "server.key"
    _write_public(cert_path, _cert_pem(cert) + _cert_pem(inter_cert))
    _write_private(key_path, _key_pem(key))
    return _record(home, cert, "localhost", "service", None, cert_path, key_path)


def _leaf(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    validity: dt.timedelta,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    start = not_before or (_now() - dt.timedelta(minutes=5))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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
    key_path: Path,
) -> CertificateRecord:
    record = CertificateRecord(
        serial=str(cert.serial_number),
        subject=cert.subject.rfc4514_string(),
        role=role,
        kind=kind,
        app_id=app_id,
        not_before=cert.not_valid_before_utc.isoformat(),
        not_after=cert.not_valid_after_utc.isoformat(),
        cert_file=str(cert_path),
        key_file=str(key_path),
    )
    with _registry(home, write=True) as records:
        records.append(record)
    return record


def issue_certificate(
    home: FstoreHome,
    role: str,
    *,
    app_id: str | None = None,
    ttl: dt.timedelta | None = None,
    not_before: dt.datetime | None = None,
) -> CertificateRecord:
    """Issue a client certificate whose CN is ``role``.

    Without ``app_id`` it is the role's user certificate (``certs/ROLE.crt``),
    replacing any earlier file; with one it is an application certificate
    (``certs/ROLE@APP.crt``), short-lived by default (1 hour).
    """
    check_login_role(role)
    if app_id is not None:
        check_app_id(app_id)
    if ttl is not None and ttl <= dt.timedelta(0) and not_before is None:
        raise InvalidInput(f"certificate lifetime must be positive, got {ttl}")
    validity = ttl or (dt.timedelta(hours=1) if app_id else USER_VALIDITY)
    inter_cert, inter_key = _load_ca(home.intermediate_ca_cert, home.intermediate_ca_key)
    key = _new_key()
    kind = "application" if app_id else "user"
    cert = _leaf(
        _name(role, kind), key, inter_cert, inter_key, validity,
        ExtendedKeyUsageOID.CLIENT_AUTH, not_before=not_before,
    )
    file_name = f"{role}@{app_id}" if app_id else role
    cert_path, key_path = home.client_cert(file_name), home.client_key(file_name)
    _write_private(key_path, _key_pem(key))
    _write_public(cert_path, _cert_pem(cert) + _cert_pem(inter_cert))
    return _record(home, cert, role, kind, app_id, cert_path, key_path)


def revoke_certificates(
    home: FstoreHome, *, role: str | None = None, serial: str | int | None = None
) -> list[CertificateRecord]:
    """Mark certificates revoked (all of a role's, or one serial) and re-sign the CRLs.

    Returns the records newly revoked; raises :class:`NotFound` when none match.
    Reloading the server and ending open sessions is :func:`fstore.server.apply_revocation`.
    """
    if (role is None) == (serial is None):
        raise InvalidInput("give exactly one of a role or a serial to revoke")
    now = _now().isoformat()
    revoked: list[CertificateRecord] = []
    with _registry(home, write=True) as records:
        for record in records:
            if record.kind == "service" or record.revoked_at:
                continue
            if (role is not None and record.role == role) or (
                serial is not None and record.serial == str(serial)
            ):
                record.revoked_at = now
                revoked.append(record)
    if not revoked:
        what = f"role {role!r}" if role is not None else f"serial {serial}"
        raise NotFound(f"no unrevoked certificate for {what}")
    resign_crls(home)
    return revoked


def resign_crls(home: FstoreHome, validity: dt.timedelta = CRL_VALIDITY) -> dt.datetime:
    """Write a fresh CRL from the root and from the intermediate into ``ca/crl.pem``.

    Returns when the new CRLs expire. Run it (``fstore cert crl``) before then.
    """
    root_cert, root_key = _load_ca(home.root_ca_cert, home.root_ca_key)
    inter_cert, inter_key = _load_ca(home.intermediate_ca_cert, home.intermediate_ca_key)
    with _registry(home) as records:
        revoked = [r for r in records if r.revoked_at]
    now = _now()
    next_update = now + validity
    pems = b""
    for ca_cert, ca_key, entries in (
        (root_cert, root_key, []),
        (inter_cert, inter_key, revoked),
    ):
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(next_update)
        )
        for record in entries:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(record.serial))
                .revocation_date(dt.datetime.fromisoformat(record.revoked_at or now.isoformat()))
                .build()
            )
        pems += builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    _write_public(home.crl_file, pems)
    return next_update


def crl_expiry(home: FstoreHome) -> dt.datetime | None:
    """The earliest ``next_update`` of the CRLs in the CRL file, or None if there is none."""
    if not home.crl_file.exists():
        return None
    text = home.crl_file.read_bytes()
    marker = b"-----END X509 CRL-----"
    expiries = []
    for chunk in text.split(marker):
        if b"BEGIN X509 CRL" in chunk:
            crl = x509.load_pem_x509_crl(chunk + marker)
            if crl.next_update_utc is not None:
                expiries.append(crl.next_update_utc)
    return min(expiries) if expiries else None


def ensure_user_certificate(home: FstoreHome, role: str) -> CertificateRecord:
    """Return the role's valid user certificate, issuing one if there is none."""
    for record in reversed(list_certificates(home)):
        if record.role == role and record.kind == "user" and record.is_valid:
            if record.cert_file and Path(record.cert_file).exists():
                return record
    return issue_certificate(home, role)


def parse_duration(text: str) -> dt.timedelta:
    """Parse ``90s``, ``15m``, ``1h``, ``7d`` or ``2w`` into a timedelta."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise InvalidInput(f"invalid duration {text!r}: use e.g. 90s, 15m, 1h, 7d or 2w")
    value = int(text[:-1])
    if value <= 0:
        raise InvalidInput(f"duration must be positive, got {text!r}")
    return dt.timedelta(**{units[text[-1]]: value})


__all__ = [
    "CertificateRecord", "crl_expiry", "ensure_user_certificate", "init_ca",
    "issue_certificate", "issue_server_certificate", "list_certificates", "parse_duration",
    "resign_crls", "revoke_certificates",
]
