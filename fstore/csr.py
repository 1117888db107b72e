"""Certificates whose private key never leaves its owner: the member makes a key and a
certificate signing request where they are (``fstore cert request``), the operator
signs it (``fstore cert sign``).

fstore signs only what it would issue itself: the CN must be a login role
(:func:`fstore.roles.check_login_role`), the subject is rewritten to fstore's
(``O=fstore, OU=user|application, CN=role``), the usage is client authentication only,
and every extension the request asks for is ignored. A signed user certificate
retires the role's earlier user certificates, like :func:`fstore.pki.issue_certificate`,
and the operator's copy of the retired key is deleted.

Example::

    key, request = make_request("fraud__alice", Path("~/.fstore-me").expanduser())   # the member
    record = sign_request(home, request.read_bytes(), out_dir=Path("/tmp/for-alice"))  # the operator
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from fstore import pki
from fstore.cakeys import key_pem, write_private, write_public
from fstore.errors import Conflict, InvalidInput
from fstore.home import FstoreHome
from fstore.registry import CertificateRecord, publication_lock, registry
from fstore.roles import check_login_role

ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)
MIN_RSA_BITS = 2048


def make_request(role: str, out_dir: Path) -> tuple[Path, Path]:
    """Write a new private key (``ROLE.key``, 0600) and a CSR (``ROLE.csr``) for ``role``.

    Refuses to overwrite an existing key. Returns the key's and the request's paths.
    """
    check_login_role(role)
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, csr_path = out_dir / f"{role}.key", out_dir / f"{role}.csr"
    if key_path.exists():
        raise Conflict(f"{key_path} exists: remove it first, or write the request elsewhere with --out DIR")
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, pki.ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, role),
        ]))
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, key_pem(key))
    write_public(csr_path, request.public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


def load_request(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a CSR (PEM or DER) and check that it is signed by the key it carries."""
    try:
        request = (x509.load_pem_x509_csr(data) if b"-----BEGIN" in data else x509.load_der_x509_csr(data))
    except ValueError as exc:
        raise InvalidInput(f"not a certificate signing request (PEM or DER): {exc}") from exc
    if not request.is_signature_valid:
        raise InvalidInput("the request's signature does not verify: it was not made with the key it carries")
    key = request.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ACCEPTED_CURVES):
            raise InvalidInput(f"the request's key is on curve {key.curve.name}: use P-256 or P-384")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidInput(f"the request's RSA key has {key.key_size} bits: use at least {MIN_RSA_BITS}")
    else:
        raise InvalidInput("the request's key is neither elliptic-curve (P-256, P-384) nor RSA")
    return request


def requested_role(request: x509.CertificateSigningRequest) -> str:
    """The login role a request names in its one CN (validated)."""
    names = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise InvalidInput(f"the request must name exactly one CN (the role), it names {len(names)}")
    value = names[0].value
    role = value if isinstance(value, str) else value.decode()
    return check_login_role(role)


def sign_request(
    home: FstoreHome,
    data: bytes,
    *,
    out_dir: Path,
    app_id: str | None = None,
    ttl: dt.timedelta | None = None,
) -> CertificateRecord:
    """Sign a member's CSR; writes ``ROLE.crt`` (or ``ROLE@APP.crt``: leaf + intermediate)
    into ``out_dir`` and records it (without a key file) in the registry.

    The catalog record is :func:`fstore.certificates.record_in_catalog`'s job.
    """
    request = load_request(data)
    role = requested_role(request)
    cert, inter_cert = pki.sign_client(home, role, request.public_key(), app_id=app_id, ttl=ttl)
    name = f"{role}@{app_id}" if app_id else role
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path = out_dir / f"{name}.crt"
    pem = serialization.Encoding.PEM
    kind = "application" if app_id else "user"
    record = pki.new_record(cert, role, kind, app_id, cert_path, None)
    if app_id:
        write_public(cert_path, cert.public_bytes(pem) + inter_cert.public_bytes(pem))
        with registry(home, write=True) as records:
            records.append(record)
        return record
    with publication_lock(home), pki.probe_copies(home, role) as probes:
        for stale in (home.client_cert(role), home.client_key(role)):  # the retired pair
            stale.unlink(missing_ok=True)
        write_public(cert_path, cert.public_bytes(pem) + inter_cert.public_bytes(pem))
        pki.record_replacing(home, record, probes)
    return record


__all__ = ["load_request", "make_request", "requested_role", "sign_request"]
