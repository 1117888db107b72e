"""The X.509 building blocks of fstore's CA: keys, names, CA and leaf certificates,
client certificates signed for a public key, and their registry records.

Nothing here writes key or certificate files or publishes anything: the CA's
lifecycle and issuance are :mod:`fstore.pki`, revocation :mod:`fstore.certificates`.

Example::

    cert, intermediate = sign_client(home, "fraud__alice", new_key().public_key())
    record = new_record(cert, "fraud__alice", "user", None, None, None)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fstore.cakeys import load_intermediate
from fstore.crl import CLOCK_SKEW
from fstore.errors import InvalidInput
from fstore.home import FstoreHome
from fstore.registry import CertificateRecord, now, registry
from fstore.roles import check_app_id, check_login_role

USER_VALIDITY = dt.timedelta(days=365)
ORGANIZATION = "fstore"


def new_key() -> ec.EllipticCurvePrivateKey:
    """A new P-256 key (every key fstore makes)."""
    return ec.generate_private_key(ec.SECP256R1())


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate in PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def subject_name(common_name: str, unit: str | None = None) -> x509.Name:
    """O=fstore[, OU=unit], CN=common_name."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def ca_certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    validity: dt.timedelta,
    path_length: int,
) -> x509.Certificate:
    """A CA certificate (root: issuer is itself) valid from now for ``validity``."""
    at = now()
    return (
        _builder(subject, issuer, key.public_key(), at - CLOCK_SKEW, at + validity, ca=True, path_length=path_length)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: Any, start: dt.datetime, end: dt.datetime, *,
             ca: bool, path_length: int | None = None) -> x509.CertificateBuilder:
    """A certificate of ``subject`` signed by ``issuer`` for [start, end]: a CA's (signs
    certificates and CRLs) or an end entity's (signs nothing)."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                crl_sign=ca, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )


def leaf(
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
        _builder(subject, issuer_cert.subject, public_key, start, end, ca=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def record_issued(
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
    """Record a freshly signed certificate in the registry (``revoked``: revoked from birth)."""
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
    return subject_name(role, kind)


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
    cert = leaf(
        client_subject(role, kind), public_key, inter_cert, inter_key, validity,
        ExtendedKeyUsageOID.CLIENT_AUTH, not_before=not_before,
    )
    return cert, inter_cert


__all__ = ["ORGANIZATION", "USER_VALIDITY", "ca_certificate", "cert_pem", "client_subject", "leaf", "new_key",
           "new_record", "record_issued", "sign_client", "subject_name"]
