"""Before a command touches a home or its server: is the home there, is its server up?

A home made by ``fstore init`` has its CA; once ``fstore server start`` has run, its
own server (a data directory) and the port it listens on. A command that connects
checks that this server runs before connecting, so that a stopped home never
reaches whatever else listens on its port (another home's server on the default
port). A home whose server runs elsewhere (the Docker stack) has no data directory:
it names the server's port with ``$FSTORE_SERVER_PORT``.

Example::

    require_server(home)   # ServerError: the server of /root/.fstore is not running: ...
"""

from __future__ import annotations

import os

from fstore import server
from fstore.errors import NotFound, ServerError
from fstore.home import FstoreHome


def _command(home: FstoreHome, command: str) -> str:
    default = FstoreHome.resolve(None).root
    return f"fstore {command}" if home.root == default else f"fstore --home {home.root} {command}"


def require_home(home: FstoreHome) -> FstoreHome:
    """``home`` if ``fstore init`` made it (its root CA certificate is there)."""
    if not home.root_ca_cert.exists():
        raise NotFound(f"no fstore home at {home.root}: run `{_command(home, 'init')}` "
                       "(or choose another home: `fstore --home DIR ...` or $FSTORE_HOME)")
    return home


def has_own_server(home: FstoreHome) -> bool:
    """True when ``fstore server start`` made a data directory in this home."""
    return (home.data_dir / "PG_VERSION").exists()


def require_server(home: FstoreHome) -> FstoreHome:
    """``home`` if its server can be asked: its own server runs, or it names one elsewhere."""
    require_home(home)
    if os.environ.get("FSTORE_SERVER_PORT"):
        return home  # a server elsewhere, on the port given (Docker)
    start = _command(home, "server start")
    if has_own_server(home):
        if not server.is_running(home):
            raise ServerError(f"the server of {home.root} is not running: {start}")
        return home
    raise ServerError(f"the server of {home.root} has never been started: {start} "
                      "(for a server elsewhere, such as the Docker stack, set $FSTORE_SERVER_PORT to its port)")
