"""Key and certificate files of fstore's CA: private files (0600, written atomically),
public files (0644), and CA keys that may be encrypted with a passphrase.

The passphrase never lives in the home: it is read from an environment variable,
``$FSTORE_CA_PASSPHRASE`` unless ``fstore init --ca-passphrase-env VAR`` named another
one (the name, not the value, is kept in ``settings.json``).

Example::

    passphrase = ca_passphrase(home)                 # None when the variable is unset
    key = load_private_key(home.intermediate_ca_key, home)
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fstore.errors import InvalidInput, NotFound, PermissionDenied
from fstore.files import PRIVATE, PUBLIC, write_atomic
from fstore.home import FstoreHome

DEFAULT_PASSPHRASE_ENV = "FSTORE_CA_PASSPHRASE"
MIN_PASSPHRASE_LENGTH = 8


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically."""
    write_atomic(path, data, PRIVATE)


def write_public(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0644, atomically."""
    write_atomic(path, data, PUBLIC)


def key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with ``passphrase`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def passphrase_env(home: FstoreHome) -> str:
    """The name of the environment variable that holds this home's CA passphrase."""
    return str(home.settings().get("ca_passphrase_env") or DEFAULT_PASSPHRASE_ENV)


def ca_passphrase(home: FstoreHome) -> bytes | None:
    """The CA passphrase from the home's environment variable, or None when it is unset."""
    value = os.environ.get(passphrase_env(home))
    return value.encode() if value else None


def check_passphrase(value: str | None, variable: str) -> bytes:
    """Validate a new CA passphrase read from ``variable``; returns it as bytes."""
    if not value:
        raise InvalidInput(f"${variable} is not set: put the CA passphrase in it before `fstore init`")
    if len(value) < MIN_PASSPHRASE_LENGTH:
        raise InvalidInput(
            f"the CA passphrase in ${variable} is too short: use at least {MIN_PASSPHRASE_LENGTH} characters"
        )
    return value.encode()


def is_encrypted(path: Path) -> bool:
    """True when the PEM key at ``path`` is passphrase-protected (False when there is none)."""
    return path.exists() and b"ENCRYPTED" in path.read_bytes()


def load_private_key(path: Path, home: FstoreHome) -> ec.EllipticCurvePrivateKey:
    """Load a CA key, decrypting it with the home's passphrase when it is encrypted.

    Raises :class:`PermissionDenied` naming the key and the variable when the
    passphrase is missing or wrong.
    """
    if not path.exists():
        raise PermissionDenied(f"the CA key {path} is not here: only the operator's home holds it")
    data = path.read_bytes()
    password = None
    if b"ENCRYPTED" in data:
        password = ca_passphrase(home)
        if password is None:
            raise PermissionDenied(
                f"the CA key {path} is encrypted: set ${passphrase_env(home)} to its passphrase"
            )
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        if password is not None:
            raise PermissionDenied(
                f"wrong CA passphrase in ${passphrase_env(home)}: it does not decrypt {path}"
            ) from exc
        raise InvalidInput(f"the CA key {path} is not a readable PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput(f"the CA key {path} is not an elliptic-curve key")
    return key


def load_ca(home: FstoreHome, cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA's certificate and key (decrypted with the home's passphrase when needed)."""
    if not cert_path.exists():
        raise NotFound(f"no CA at {cert_path.parent}: run `fstore init` first")
    return x509.load_pem_x509_certificate(cert_path.read_bytes()), load_private_key(key_path, home)


def load_root(home: FstoreHome) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The root CA's certificate and key."""
    return load_ca(home, home.root_ca_cert, home.root_ca_key)


def load_intermediate(home: FstoreHome) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The intermediate CA's certificate and key: it signs every leaf."""
    return load_ca(home, home.intermediate_ca_cert, home.intermediate_ca_key)


__all__ = [
    "DEFAULT_PASSPHRASE_ENV", "ca_passphrase", "check_passphrase", "is_encrypted", "key_pem",
    "load_ca", "load_intermediate", "load_private_key", "load_root", "passphrase_env",
    "write_private", "write_public",
]
