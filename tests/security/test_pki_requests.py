"""A member's key never has to leave them: ``fstore cert request`` makes the key and a
CSR where the member is, ``fstore cert sign`` (the operator) signs what fstore would
issue itself, whatever the request asks for. The operator's home then holds no key
of that member, and the retired operator-held certificate is refused.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fstore import pki
from fstore.connection import ConnectionMaterial, material_for
from fstore.home import FstoreHome
from tests.conftest import unique
from tests.security.attack import login_with

FSTORE = [sys.executable, "-m", "fstore"]


def _member_login(home: FstoreHome, role: str, cert: Path, key: Path) -> psycopg.Connection:
    """Log in the way the member does: their files, the platform's root certificate."""
    material = ConnectionMaterial(role=role, port=home.port, sslcert=cert, sslkey=key, sslrootcert=home.root_ca_cert)
    return psycopg.connect(material.conninfo(), autocommit=True, connect_timeout=5)


def _sign(csr: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FSTORE, "cert", "sign", str(csr), *args], capture_output=True, text=True)


def _request(directory: Path, subject: x509.Name, key: ec.EllipticCurvePrivateKey | None = None,
             extensions: list[tuple[x509.ExtensionType, bool]] = ()) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    """A CSR written by hand (what an attacker could send)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "request.csr"
    path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path, key


def test_member_signs_in_with_a_key_that_never_left_them(
    home: FstoreHome, make_project, tmp_path: Path, tally
) -> None:
    a = make_project(owner="alice")
    user = unique("cleo")
    role = a.add(user)
    held = tmp_path / "held"
    held.mkdir()
    held_cert, held_key = held / "old.crt", held / "old.key"
    held_cert.write_bytes(home.client_cert(role).read_bytes())
    held_key.write_bytes(home.client_key(role).read_bytes())
    held_key.chmod(0o600)

    laptop = tmp_path / "laptop"
    made = subprocess.run([*FSTORE, "cert", "request", role, "--out", str(laptop)], capture_output=True, text=True,
                          env=os.environ | {"FSTORE_HOME": str(tmp_path / "no-home-here")})
    assert made.returncode == 0, made.stderr
    key, csr = laptop / f"{role}.key", laptop / f"{role}.csr"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and "PRIVATE KEY" not in csr.read_text()
    again = subprocess.run([*FSTORE, "cert", "request", role, "--out", str(laptop)], capture_output=True, text=True)
    assert again.returncode == 1 and "exists" in again.stderr  # an existing key is never overwritten

    signed = _sign(csr)
    assert signed.returncode == 0, signed.stderr
    cert = laptop / f"{role}.crt"
    record = next(r for r in reversed(pki.list_certificates(home)) if r.role == role)
    assert record.key_file is None and record.cert_file == str(cert) and record.kind == "user"
    assert not home.client_key(role).exists() and not home.client_cert(role).exists()
    operator_files = [p for d in (home.ca_dir, home.certs_dir) for p in d.rglob("*") if p.is_file()]
    assert key.read_bytes() not in b"".join(p.read_bytes() for p in operator_files)

    with _member_login(home, role, cert, key) as member:
        assert member.execute("select session_user, client_serial::text from pg_stat_ssl "
                              "where pid = pg_backend_pid()").fetchone() == (role, record.serial)
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        login_with(_material(home, role), sslcert=held_cert, sslkey=held_key)  # the operator-held one is retired

    revoked = subprocess.run([*FSTORE, "cert", "revoke", "--serial", record.serial], capture_output=True, text=True)
    assert revoked.returncode == 0, revoked.stderr  # proven with a canary: fstore has no key to try
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        _member_login(home, role, cert, key)
    assert any(r.app_id == pki.CANARY_APP and r.revoked_at for r in pki.list_certificates(home))
    tally.allow("member_own_key_login")
    tally.deny("operator_held_certificate_after_csr", "csr_certificate_after_revoke")


def _material(home: FstoreHome, role: str) -> ConnectionMaterial:
    return ConnectionMaterial(role=role, port=home.port, sslcert=Path("/nonexistent"),
                              sslkey=Path("/nonexistent"), sslrootcert=home.root_ca_cert)


def test_requests_get_fstores_subject_and_usage_only(home: FstoreHome, make_project, tmp_path: Path, tally) -> None:
    a = make_project(owner="alice", scientists=["mal"])
    role = a.role("mal")
    greedy = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "evil"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "service"),
        x509.NameAttribute(NameOID.COMMON_NAME, role),
    ])
    csr, mal_key = _request(tmp_path / "mal", greedy, extensions=[
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                       encipher_only=False, decipher_only=False), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (x509.SubjectAlternativeName([x509.DNSName("localhost")]), False),
    ])
    signed = _sign(csr, "--app", "batch", "--ttl", "1h")
    assert signed.returncode == 0, signed.stderr
    cert_path = tmp_path / "mal" / f"{role}@batch.crt"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={role},OU=application,O=fstore"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is False
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert dt.timedelta(minutes=59) < cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(hours=1)
    key_path = tmp_path / "mal" / "mal.key"
    key_path.write_bytes(mal_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    key_path.chmod(0o600)
    with _member_login(home, role, cert_path, key_path) as own:  # what mal may do: be mal
        assert own.execute("select session_user").fetchone()[0] == role

    # mal's certificate is no CA: a certificate mal signs for alice leads nowhere
    forged_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    forged = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, a.role("alice"))]))
        .issuer_name(cert.subject).public_key(forged_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(mal_key, hashes.SHA256())
    )
    chain, forged_key_path = tmp_path / "forged.crt", tmp_path / "forged.key"
    chain.write_bytes(forged.public_bytes(serialization.Encoding.PEM) + cert_path.read_bytes())
    forged_key_path.write_bytes(forged_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    forged_key_path.chmod(0o600)
    with pytest.raises(psycopg.OperationalError, match="SSL error|certificate"):
        login_with(material_for(home, a.role("alice")), sslcert=chain, sslkey=forged_key_path)
    tally.deny("csr_requested_ca_used_to_forge_login")
    tally.allow("csr_application_certificate_login")


def test_requests_fstore_would_not_issue_are_refused(home: FstoreHome, tmp_path: Path, tally) -> None:
    cases = {
        "superuser": (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "postgres")]), "superuser"),
        "control_role": (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fstore_control")]), "not a project-user role"),
        "owner_role": (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fraud__owner")]), "invalid user name"),
        "two_cns": (x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fraud__a"),
                               x509.NameAttribute(NameOID.COMMON_NAME, "fraud__b")]), "exactly one CN"),
        "no_cn": (x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fstore")]), "exactly one CN"),
    }
    before = len(pki.list_certificates(home))
    for case, (subject, message) in cases.items():
        csr, _ = _request(tmp_path / case, subject)
        result = _sign(csr)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, (case, result.stderr)
        tally.deny(f"csr_{case}")
    tampered, _ = _request(tmp_path / "tampered", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fstore_admin")]))
    der = bytearray(x509.load_pem_x509_csr(tampered.read_bytes()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the signature
    tampered.write_bytes(bytes(der))
    result = _sign(tampered)
    assert result.returncode == 1 and "does not verify" in result.stderr, result.stderr
    weak = tmp_path / "weak"
    weak_csr, _ = _request(weak, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fstore_admin")]),
                           key=ec.generate_private_key(ec.SECP256K1()))
    result = _sign(weak_csr)
    assert result.returncode == 1 and "P-256 or P-384" in result.stderr, result.stderr
    assert len(pki.list_certificates(home)) == before  # nothing was signed
    tally.deny("csr_bad_signature", "csr_unaccepted_curve")
