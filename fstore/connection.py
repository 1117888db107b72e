"""The one connection factory: every psycopg, ADBC, pooled, SQLAlchemy, psql and dbt
connection is built here from the same certificate material, and this is the only
module that calls ``psycopg.connect``, ``adbc_driver_postgresql.dbapi.connect`` or
``psycopg_pool.ConnectionPool``.

The port always comes from the home: a home whose server is stopped refuses to
connect ("the server of X is not running: fstore server start") rather than reach
whatever listens on that port.

Example::

    home = FstoreHome.resolve()
    with connect(home, "fraud__alice") as conn:
        conn.execute("select current_user").fetchone()
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg.conninfo import make_conninfo

from fstore.errors import InvalidInput, NotFound, ServerError, translated
from fstore.files import PRIVATE, write_atomic
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
    home: FstoreHome | None = field(default=None, compare=False, repr=False)  # whose server this is

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
        sslrootcert=home.root_ca_cert, app_id=app_id, home=home,
    )


def server_port(home: FstoreHome) -> int:
    """The port of the home's server, never another server's.

    ``$FSTORE_SERVER_PORT`` names a server elsewhere (Docker). A home with its own
    server must have it running; a home without one must have recorded a port.

    Raises :class:`ServerError` saying what to run otherwise.
    """
    if os.environ.get("FSTORE_SERVER_PORT"):
        return home.port  # a server elsewhere, on the port given (Docker)
    state = home.server_state()
    start = home.command("server start")
    if state == "stopped":
        raise ServerError(f"the server of {home.root} is not running: {start}")
    if state == "none" and "port" not in home.settings():
        raise ServerError(f"the server of {home.root} has never been started: {start} "
                          "(for a server elsewhere, such as the Docker stack, set $FSTORE_SERVER_PORT to its port)")
    return home.port


def open_psycopg(material: ConnectionMaterial, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a psycopg connection with ``material`` (the one place fstore calls ``psycopg.connect``).

    With the material's home known, its server must be running (:func:`server_port`),
    and a TLS handshake refused because the home's CRL expired says so and how to fix it.
    """
    home = material.home
    if home is not None and material.dsn is None:
        server_port(home)
    try:
        return psycopg.connect(material.conninfo(), **kwargs)
    except psycopg.OperationalError as exc:
        hint = expired_crl_hint(home, str(exc)) if home is not None else None
        if hint is None:
            raise
        raise psycopg.OperationalError(f"{str(exc).strip()}\nHINT: {hint}") from exc


def open_adbc(material: ConnectionMaterial) -> Any:
    """Open an ADBC (Arrow-native) connection with ``material`` (not autocommit: commit or roll back)."""
    import adbc_driver_postgresql.dbapi as adbc

    if material.home is not None and material.dsn is None:
        server_port(material.home)
    with translated():
        return adbc.connect(material.uri())


@contextmanager
def adbc_session(material: ConnectionMaterial) -> Iterator[tuple[Any, Any]]:
    """An ADBC connection and a cursor for one piece of work: database errors inside are
    translated (:func:`fstore.errors.translated`); what was not committed is rolled back;
    both are closed at the end.

    Example::

        with adbc_session(fs.material) as (conn, cursor):
            cursor.execute("select * from fraud.account_activity__v1")
            table = cursor.fetch_arrow_table()
    """
    conn = open_adbc(material)
    try:
        with translated(), closing(conn.cursor()) as cursor:
            yield conn, cursor
    finally:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 -- the connection may be gone; the server rolls back anyway
            pass
        conn.close()


def open_pool(material: ConnectionMaterial, min_size: int = 1, max_size: int = 4, **kwargs: Any) -> Any:
    """A ``psycopg_pool.ConnectionPool`` of autocommit connections with ``material``'s identity
    (opened now; the caller closes it)."""
    from psycopg_pool import ConnectionPool

    if min_size < 0 or max_size < max(1, min_size):
        raise InvalidInput("pool sizes must satisfy 0 <= min_size <= max_size and max_size >= 1")
    if material.home is not None and material.dsn is None:
        server_port(material.home)
    kwargs.setdefault("name", f"fstore-{material.service_name}")
    return ConnectionPool(material.conninfo(), min_size=min_size, max_size=max_size,
                          kwargs={"autocommit": True}, open=True, **kwargs)


def connect(
    home: FstoreHome, role: str, *, app_id: str | None = None, **kwargs: Any
) -> psycopg.Connection[Any]:
    """Open a psycopg connection as ``role`` with its certificate, over verified TLS.

    A handshake refused because the home's CRL expired says so (and how to fix it).
    """
    return open_psycopg(material_for(home, role, app_id), **kwargs)


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
    return open_adbc(material_for(home, role, app_id))


def connect_operator(home: FstoreHome, dbname: str = DATABASE, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a superuser connection over the server's local socket (the operator's path).

    ``$FSTORE_SOCKET_DIR`` names another socket directory (the CRL keeper's container
    in Docker shares the database container's).
    """
    socket_dir = os.environ.get("FSTORE_SOCKET_DIR") or str(home.socket_dir)
    return psycopg.connect(host=socket_dir, port=home.port, user=SUPERUSER_ROLE, dbname=dbname, **kwargs)


def connect_remote_superuser(host: str, port: int, *, ca_bundle: Path, cert: Path, key: Path,
                             dbname: str = DATABASE, **kwargs: Any) -> psycopg.Connection[Any]:
    """Open a superuser connection to another machine's node over TLS, as Citus does:
    ``verify-full`` of its server certificate against ``ca_bundle``, ``cert``/``key`` as client.
    """
    return psycopg.connect(host=host, port=port, user=SUPERUSER_ROLE, dbname=dbname, sslmode="verify-full",
                           sslrootcert=str(ca_bundle), sslcert=str(cert), sslkey=str(key),
                           **({"connect_timeout": 10} | kwargs))


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
    return write_atomic(path, text, PRIVATE)
