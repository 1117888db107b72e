"""The one connection factory: every psycopg, ADBC, SQLAlchemy, psql and dbt
connection is built here from the same certificate material.

Example::

    home = FstoreHome.resolve()
    with connect(home, "fraud__alice") as conn:
        conn.execute("select current_user").fetchone()
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import make_conninfo

from fstore.errors import NotFound
from fstore.home import FstoreHome
from fstore.roles import SUPERUSER_ROLE, check_app_id, check_login_role

DATABASE = "fstore"
HOST = "localhost"


@dataclass(frozen=True)
class ConnectionMaterial:
    """Everything a client needs to log in as one role with its certificate."""

    role: str
    port: int
    sslcert: Path
    sslkey: Path
    sslrootcert: Path
    host: str = HOST
    dbname: str = DATABASE
    app_id: str | None = None
    dsn: str | None = None  # a user-given libpq string; takes precedence when set

    @property
    def service_name(self) -> str:
        """``ROLE`` for a user certificate, ``ROLE@APP`` for an application certificate."""
        return f"{self.role}@{self.app_id}" if self.app_id else self.role

    def params(self) -> dict[str, Any]:
        """libpq keyword parameters (``sslmode=verify-full``)."""
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.role,
            "sslmode": "verify-full",
            "sslcert": str(self.sslcert),
            "sslkey": str(self.sslkey),
            "sslrootcert": str(self.sslrootcert),
        }
        if self.app_id:
            params["application_name"] = self.app_id
        return params

    def conninfo(self) -> str:
        """A libpq connection string."""
        return self.dsn or make_conninfo(**self.params())

    def uri(self, scheme: str = "postgresql") -> str:
        """A ``postgresql://`` URI (ADBC, SQLAlchemy with another scheme)."""
        if self.dsn and scheme == "postgresql":
            return self.dsn  # libpq (and so ADBC) accepts keyword/value strings too
        query = {k: v for k, v in self.params().items() if k not in ("host", "port", "dbname", "user")}
        return (
            f"{scheme}://{quote(self.role)}@{self.host}:{self.port}/{quote(self.dbname)}"
            f"?{urlencode(query)}"
        )

    def sqlalchemy_url(self) -> str:
        """A SQLAlchemy engine URL using the psycopg 3 dialect."""
        return self.uri("postgresql+psycopg")

    def service_entry(self, name: str | None = None) -> str:
        """A ``pg_service.conf`` section so that ``psql "service=ROLE"`` connects."""
        lines = [f"[{name or self.service_name}]"]
        lines += [f"{k}={v}" for k, v in self.params().items()]
        return "\n".join(lines) + "\n"

    def dbt_profile(self, profile: str = "fstore", schema: str | None = None) -> dict[str, Any]:
        """A dbt-postgres profile block (``password: ""`` is required by the adapter)."""
        project = self.role.split("__", 1)[0]
        return {
            profile: {
                "target": "dev",
                "outputs": {
                    "dev": {
                        "type": "postgres",
                        "host": self.host,
                        "port": self.port,
                        "user": self.role,
                        "password": "",
                        "dbname": self.dbname,
                        "schema": schema or project,
                        "threads": 1,
                        "sslmode": "verify-full",
                        "sslcert": str(self.sslcert),
                        "sslkey": str(self.sslkey),
                        "sslrootcert": str(self.sslrootcert),
                    }
                },
            }
        }


def material_for(home: FstoreHome, role: str, app_id: str | None = None) -> ConnectionMaterial:
    """Connection material for ``role`` (or its application certificate ``role@app_id``)."""
    check_login_role(role)
    if app_id is not None:
        check_app_id(app_id)  # it names a file
    name = f"{role}@{app_id}" if app_id else role
    cert, key = home.client_cert(name), home.client_key(name)
    if not cert.exists() or not key.exists():
        hint = f"fstore cert issue {role}" + (f" --app {app_id}" if app_id else "")
        raise NotFound(f"no certificate for {name} in {home.certs_dir}: run `{hint}`")
    return ConnectionMaterial(
        role=role, port=home.port, sslcert=cert, sslkey=key,
        sslrootcert=home.root_ca_cert, app_id=app_id,
    )


def connect(
    home: FstoreHome, role: str, *, app_id: str | None = None, **kwargs: Any
) -> psycopg.Connection[Any]:
    """Open a psycopg connection as ``role`` with its certificate, over verified TLS.

    A handshake refused because the home's CRL expired says so (and how to fix it).
    """
    try:
        return psycopg.connect(material_for(home, role, app_id).conninfo(), **kwargs)
    except psycopg.OperationalError as exc:
        hint = expired_crl_hint(home, str(exc))
        if hint is None:
            raise
        raise psycopg.OperationalError(f"{str(exc).strip()}\nHINT: {hint}") from exc


def expired_crl_hint(home: FstoreHome, message: str) -> str | None:
    """Why a TLS login failed when the cause is the home's expired (or missing) CRL."""
    if "certificate" not in message or not ("expired" in message or "verify failed" in message):
        return None
    if not home.crl_file.exists():
        return None  # a client's home: the server's CRL is not here to judge
    from fstore.crl import crl_health

    state, text = crl_health(home)
    return text if state == "error" else None


def connect_adbc(home: FstoreHome, role: str, *, app_id: str | None = None) -> Any:
    """Open an ADBC (Arrow-native) connection as ``role``; used for bulk reads."""
    import adbc_driver_postgresql.dbapi as adbc

    return adbc.connect(material_for(home, role, app_id).uri())


def connect_operator(home: FstoreHome, dbname: str = DATABASE, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a superuser connection over the server's local socket (the operator's path).

    ``$FSTORE_SOCKET_DIR`` names another socket directory (the CRL keeper's container
    in Docker shares the database container's).
    """
    socket_dir = os.environ.get("FSTORE_SOCKET_DIR") or str(home.socket_dir)
    return psycopg.connect(host=socket_dir, port=home.port, user=SUPERUSER_ROLE, dbname=dbname, **kwargs)


def service_file() -> Path:
    """The per-user service file libpq reads: ``$PGSERVICEFILE`` or ``~/.pg_service.conf``."""
    return Path(os.environ.get("PGSERVICEFILE") or Path.home() / ".pg_service.conf")


def write_service_entry(material: ConnectionMaterial, path: Path | None = None) -> Path:
    """Add or replace the material's section (``[ROLE]``, or ``[ROLE@APP]`` for an
    application certificate) in the service file; other sections are kept."""
    path = path or service_file()
    text = path.read_text() if path.exists() else ""
    section = re.compile(rf"^\[{re.escape(material.service_name)}\]\n(?:(?!\[).*\n?)*", re.MULTILINE)
    entry = material.service_entry()
    if section.search(text):
        text = section.sub(lambda _: entry, text, count=1)
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + entry
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    tmp.replace(path)
    return path
