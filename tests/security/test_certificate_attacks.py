"""Logging in without the right certificate: expired or not-yet-valid application
certificates, a forged CA, a CA-signed certificate for the superuser, someone
else's certificate, no certificate, no TLS, a password. Only a valid certificate
whose CN is the role logs in, and the database knows its application.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fstore import certificates, pki
from fstore.connection import material_for
from fstore.home import FstoreHome
from tests.security.attack import login_with

NOW = dt.datetime.now(dt.timezone.utc)



def forge(directory: Path, common_name: str, issuer_cert: x509.Certificate | None = None,
          issuer_key: ec.EllipticCurvePrivateKey | None = None) -> tuple[Path, Path]:
    """A client certificate for ``common_name``, signed by the issuer given or by a new rogue CA."""
    if issuer_cert is None or issuer_key is None:
        issuer_key = ec.generate_private_key(ec.SECP256R1())
        rogue = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fstore intermediate CA")])
        issuer_cert = (
            x509.CertificateBuilder().subject_name(rogue).issuer_name(rogue)
            .public_key(issuer_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(hours=1)).not_valid_after(NOW + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(issuer_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5)).not_valid_after(NOW + dt.timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{common_name}.crt", directory / f"{common_name}.key"
    pem = serialization.Encoding.PEM
    cert_path.write_bytes(cert.public_bytes(pem) + issuer_cert.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def test_expired_and_future_application_certificates(home: FstoreHome, make_project, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    role = a.role("bob")
    pki.issue_certificate(home, role, app_id="expired-job", ttl=dt.timedelta(minutes=1),
                          not_before=NOW - dt.timedelta(hours=2))
    with pytest.raises(psycopg.OperationalError, match="certificate expired"):
        a.connect("bob", app_id="expired-job")
    pki.issue_certificate(home, role, app_id="future-job", ttl=dt.timedelta(hours=1),
                          not_before=NOW + dt.timedelta(hours=1))
    with pytest.raises(psycopg.OperationalError, match="SSL error"):
        a.connect("bob", app_id="future-job")
    record = pki.issue_certificate(home, role, app_id="nightly-train", ttl=dt.timedelta(minutes=30))
    certificates.record_in_catalog(home, record)
    session = a.connect("bob", app_id="nightly-train")
    assert session.execute("select session_user, fstore.session_app_id()").fetchone() == (role, "nightly-train")
    certificates.revoke(home, serial=record.serial)  # the job is over: its session ends with it
    with pytest.raises(psycopg.OperationalError):
        session.execute("select 1")
    session.close()
    with pytest.raises(psycopg.OperationalError, match="certificate revoked"):
        a.connect("bob", app_id="nightly-train")
    with a.connect("bob") as user_cert:  # the person's own certificate is unaffected
        assert user_cert.execute("select fstore.session_app_id()").fetchone()[0] is None
    tally.deny("expired_application_certificate", "future_application_certificate",
               "revoked_application_session_ended", "revoked_application_login")
    tally.allow("application_certificate_names_app", "user_certificate_after_app_revoked")


def test_forged_and_borrowed_certificates(home: FstoreHome, make_project, tmp_path: Path, tally) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    alice = material_for(home, a.role("alice"))
    rogue_cert, rogue_key = forge(tmp_path, a.role("alice"))
    with pytest.raises(psycopg.OperationalError, match="SSL error|certificate"):
        login_with(alice, sslcert=rogue_cert, sslkey=rogue_key)
    inter_cert = x509.load_pem_x509_certificate(home.intermediate_ca_cert.read_bytes())
    inter_key = serialization.load_pem_private_key(home.intermediate_ca_key.read_bytes(), password=None)
    su_cert, su_key = forge(tmp_path, "postgres", inter_cert, inter_key)  # type: ignore[arg-type]
    with pytest.raises(psycopg.OperationalError, match='pg_hba.conf rejects connection .*user "postgres"'):
        login_with(alice, role="postgres", sslcert=su_cert, sslkey=su_key)
    ctl_cert, ctl_key = forge(tmp_path, "fstore_control", inter_cert, inter_key)  # type: ignore[arg-type]
    with pytest.raises(psycopg.OperationalError, match='"fstore_control" is not permitted to log in'):
        login_with(alice, role="fstore_control", sslcert=ctl_cert, sslkey=ctl_key)
    with pytest.raises(psycopg.OperationalError, match=f'certificate authentication failed for user "{a.role("bob")}"'):
        login_with(alice, role=a.role("bob"))  # alice's certificate, bob's name
    with pytest.raises(psycopg.OperationalError, match="certificate authentication failed"):
        login_with(alice, role="fstore_admin")
    no_cert = tmp_path / "missing.crt"
    with pytest.raises(psycopg.OperationalError, match="requires a valid client certificate"):
        login_with(alice, sslcert=no_cert, sslkey=tmp_path / "missing.key")
    with a.connect("bob") as bob:
        bob.execute("alter role current_user password 'guessable'")  # allowed, and useless:
    plain = f"host={alice.host} port={alice.port} dbname={alice.dbname} user={a.role('bob')} password=guessable"
    with pytest.raises(psycopg.OperationalError, match="requires a valid client certificate"):
        psycopg.connect(plain + f" sslmode=verify-full sslrootcert={alice.sslrootcert} sslcert={no_cert}",
                        connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="no encryption"):
        psycopg.connect(plain + " sslmode=disable", connect_timeout=5)
    tally.deny("rogue_ca_certificate", "ca_signed_superuser_certificate", "ca_signed_control_role_certificate",
               "certificate_of_another_member", "member_certificate_as_admin", "no_client_certificate",
               "password_without_certificate", "login_without_tls")
    tally.allow("member_sets_own_password")
