"""The CRL file (``ca/crl.pem``): one current CRL from the root and one from the
intermediate, because PostgreSQL checks the whole chain and a missing or expired CRL
from either CA refuses every TLS login ("certificate verify failed" / "expired").

CRLs last :data:`CRL_VALIDITY` (7 days); the CRL keeper renews them about daily.

Example::

    next_update = resign_crls(home)
    assert crl_expiry(home) == next_update
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fstore.cakeys import load_intermediate, load_root, write_public
from fstore.home import FstoreHome
from fstore.registry import list_certificates, now

CRL_VALIDITY = dt.timedelta(days=7)
CLOCK_SKEW = dt.timedelta(minutes=5)
CRL_EXPIRED_GRACE = dt.timedelta(days=1)  # revoked certificates expired longer ago leave the CRL


def resign_crls(home: FstoreHome, validity: dt.timedelta = CRL_VALIDITY) -> dt.datetime:
    """Write a fresh CRL from the root and from the intermediate into ``ca/crl.pem``.

    The intermediate's CRL lists every revoked certificate not expired for more than
    a day. Returns when the new CRLs expire; the CRL keeper renews them daily, and
    ``fstore cert crl`` does it by hand.
    """
    root_cert, root_key = load_root(home)
    inter_cert, inter_key = load_intermediate(home)
    at = now()
    revoked = [r for r in list_certificates(home) if r.revoked_at and r.expires > at - CRL_EXPIRED_GRACE]
    next_update = at + validity
    pems = b""
    for ca_cert, ca_key, entries in ((root_cert, root_key, []), (inter_cert, inter_key, revoked)):
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(at - CLOCK_SKEW)
            .next_update(next_update)
        )
        for record in entries:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(record.serial))
                .revocation_date(dt.datetime.fromisoformat(record.revoked_at or at.isoformat()))
                .build()
            )
        pems += builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    write_public(home.crl_file, pems)
    export_crl(home)
    return next_update


def export_target() -> Path | None:
    """``$FSTORE_CRL_EXPORT_DIR``: where a server that cannot see the CA directory reads
    the CRL and the CA bundle (the database container in Docker)."""
    value = os.environ.get("FSTORE_CRL_EXPORT_DIR")
    return Path(value) if value else None


def export_crl(home: FstoreHome) -> bool:
    """Copy ``crl.pem`` and ``ca-bundle.crt`` to :func:`export_target` when they differ
    there; returns whether anything was copied (the server must then reload)."""
    target = export_target()
    if target is None:
        return False
    copied = False
    for source in (home.ca_bundle, home.crl_file):
        destination = target / source.name
        data = source.read_bytes()
        if not destination.exists() or destination.read_bytes() != data:
            write_public(destination, data)
            copied = True
    return copied


def _crls(home: FstoreHome) -> list[x509.CertificateRevocationList]:
    if not home.crl_file.exists():
        return []
    marker = b"-----END X509 CRL-----"
    return [
        x509.load_pem_x509_crl(chunk + marker)
        for chunk in home.crl_file.read_bytes().split(marker) if b"BEGIN X509 CRL" in chunk
    ]


def crl_expiry(home: FstoreHome) -> dt.datetime | None:
    """The earliest ``next_update`` of the CRLs in the CRL file, or None if there is none."""
    expiries = [crl.next_update_utc for crl in _crls(home) if crl.next_update_utc is not None]
    return min(expiries) if expiries else None


def crl_serials(home: FstoreHome) -> set[str]:
    """Serials (decimal) the CRL file lists as revoked."""
    return {str(entry.serial_number) for crl in _crls(home) for entry in crl}


def crl_is_current(home: FstoreHome, margin: dt.timedelta) -> bool:
    """True when both CRLs last at least ``margin`` more and list every revoked,
    unexpired certificate of the registry."""
    expiry = crl_expiry(home)
    if expiry is None or expiry - now() < margin or len(_crls(home)) < 2:
        return False
    at = now()
    wanted = {r.serial for r in list_certificates(home) if r.revoked_at and r.expires > at}
    return wanted <= crl_serials(home)


def crl_health(home: FstoreHome, warn_within: dt.timedelta = dt.timedelta(days=2)) -> tuple[str, str | None]:
    """``("ok" | "warning" | "error", message)`` for the CRL file's remaining lifetime."""
    expiry = crl_expiry(home)
    if expiry is None:
        return "error", (f"no CRL in {home.crl_file}: every TLS login fails with \"certificate verify "
                         "failed\"; run `fstore cert crl`")
    left = expiry - now()
    if left <= dt.timedelta(0):
        return "error", (f"the CRL expired at {expiry.isoformat()}: every TLS login now fails with "
                         "\"certificate expired\" / \"certificate verify failed\" because the CRL "
                         "expired; run `fstore cert crl` (and check the CRL keeper: `fstore server status`)")
    if left < warn_within:
        hours = left.total_seconds() / 3600
        return "warning", (f"the CRL expires in {hours:.1f} h (at {expiry.isoformat()}); after that every "
                           "TLS login fails: is the CRL keeper running? run `fstore cert crl` to renew now")
    return "ok", None


__all__ = ["CRL_VALIDITY", "crl_expiry", "export_crl", "export_target", "crl_health", "crl_is_current", "crl_serials", "resign_crls"]
