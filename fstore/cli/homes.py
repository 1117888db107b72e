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

from fstore.connection import server_port
from fstore.errors import NotFound
from fstore.home import FstoreHome


def require_home(home: FstoreHome) -> FstoreHome:
    """``home`` if ``fstore init`` made it (its root CA certificate is there)."""
    if not home.root_ca_cert.exists():
        raise NotFound(f"no fstore home at {home.root}: run `{home.command('init')}` "
                       "(or choose another home: `fstore --home DIR ...` or $FSTORE_HOME)")
    return home


def require_server(home: FstoreHome) -> FstoreHome:
    """``home`` if its server can be asked: its own server runs, or it names one elsewhere
    (the check every connection makes, :func:`fstore.connection.server_port`)."""
    server_port(require_home(home))
    return home
