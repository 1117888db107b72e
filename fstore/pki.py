"""fstore's certificate authority: a root and an intermediate CA, held by the operator.

Kinds of certificates: ``user`` (one per project-user), ``application`` (per
job, short-lived, records an app id) and ``service`` (the server). Every issued
certificate is recorded in ``ca/issued.json``; the CRL file always holds a
current CRL from every CA in the chain, because PostgreSQL checks the whole
chain and a missing or expired CRL locks everyone out.

This module is the CA's lifecycle and issuance; the X.509 building blocks are
:mod:`fstore.signing`, and revocation (a new user certificate retires the role's
earlier ones: revoked, published in the CRL, their sessions ended) lives in
:mod:`fstore.certificates`. CA keys may be encrypted with a passphrase
(:mod:`fstore.cakeys`).

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
import socket
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from fstore.cakeys import check_passphrase, key_pem, load_intermediate, write_private, write_public
from fstore.certificates import CANARY_APP, issue_canary, probe_copies, record_replacing, revoke_certificates
from fstore.crl import CRL_VALIDITY, crl_expiry, crl_is_current, crl_serials, resign_crls
from fstore.errors import InvalidInput
from fstore.home import FstoreHome
from fstore.registry import CertificateRecord, list_certificates, publication_lock, registry
from fstore.signing import (
    ORGANIZATION,
    USER_VALIDITY,
    ca_certificate,
    cert_pem,
    client_subject,
    leaf,
    new_key,
    new_record,
    record_issued,
    sign_client,
    subject_name,
)

ROOT_VALIDITY = dt.timedelta(days=3650)
INTERMEDIATE_VALIDITY = dt.timedelta(days=1825)
SERVER_VALIDITY = dt.timedelta(days=825)


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

    root_key = new_key()
    root_name = subject_name("fstore root CA")
    root_cert = ca_certificate(root_name, root_key, root_name, root_key, ROOT_VALIDITY, 1)
    inter_key = new_key()
    inter_name = subject_name("fstore intermediate CA")
    inter_cert = ca_certificate(inter_name, inter_key, root_name, root_key, INTERMEDIATE_VALIDITY, 0)

    if passphrase_env:
        home.save_settings(ca_passphrase_env=passphrase_env)
    write_private(home.root_ca_key, key_pem(root_key, passphrase))
    write_private(home.intermediate_ca_key, key_pem(inter_key, passphrase))
    write_public(home.root_ca_cert, cert_pem(root_cert))
    write_public(home.intermediate_ca_cert, cert_pem(inter_cert))
    write_public(home.ca_bundle, cert_pem(root_cert) + cert_pem(inter_cert))
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
    key = new_key()
    cert = leaf(
        subject_name("localhost", "service"), key.public_key(), inter_cert, inter_key, SERVER_VALIDITY,
        ExtendedKeyUsageOID.SERVER_AUTH, sans,
    )
    home.server_tls_dir.mkdir(parents=True, exist_ok=True)
    cert_path = home.server_tls_dir / "server.crt"
    key_path = home.server_tls_dir / "server.key"
    write_public(cert_path, cert_pem(cert) + cert_pem(inter_cert))
    write_private(key_path, key_pem(key))
    return record_issued(home, cert, "localhost", "service", None, cert_path, key_path)


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
    key = new_key()
    cert, inter_cert = sign_client(home, role, key.public_key(), app_id=app_id, ttl=ttl, not_before=not_before)
    kind = "application" if app_id else "user"
    file_name = f"{role}@{app_id}" if app_id else role
    cert_path, key_path = home.client_cert(file_name), home.client_key(file_name)
    record = new_record(cert, role, kind, app_id, cert_path, key_path)
    if app_id:
        write_private(key_path, key_pem(key))
        write_public(cert_path, cert_pem(cert) + cert_pem(inter_cert))
        with registry(home, write=True) as records:
            records.append(record)
        return record
    with publication_lock(home), probe_copies(home, role) as probes:
        write_private(key_path, key_pem(key))
        write_public(cert_path, cert_pem(cert) + cert_pem(inter_cert))
        record_replacing(home, record, probes)
    return record


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
    "CANARY_APP", "CRL_VALIDITY", "CertificateRecord", "ORGANIZATION", "USER_VALIDITY", "client_subject",
    "crl_expiry", "crl_is_current", "crl_serials", "default_hostnames", "ensure_user_certificate", "init_ca",
    "issue_canary", "issue_certificate", "issue_server_certificate", "list_certificates", "load_intermediate",
    "new_record", "parse_duration", "probe_copies", "publication_lock", "record_replacing", "registry",
    "resign_crls", "revoke_certificates", "sign_client",
]
