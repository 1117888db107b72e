"""The layout of ``$FSTORE_HOME``: one place that knows where every file lives.

Example::

    home = FstoreHome.resolve()          # $FSTORE_HOME or ~/.fstore
    home.ca_dir / "root.crt"
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fstore.files import write_atomic

DEFAULT_PORT = 55433


@dataclass(frozen=True)
class FstoreHome:
    """Paths inside one fstore home directory.

    ``ca/``      root and intermediate CA (keys 0600), CRLs, the issued-certificate registry
    ``certs/``   client certificates and keys, one pair per role (and per application)
    ``server/``  owned by the server's OS user: data directory, TLS files, socket, log;
                 the CRL keeper's pid, lock and log files

    ``$FSTORE_SERVER_PORT`` overrides the port for a process that sees the server
    elsewhere (the CRL keeper's container in Docker).
    """

    root: Path

    @classmethod
    def resolve(cls, home: str | os.PathLike[str] | None = None) -> "FstoreHome":
        """Return the home given, else ``$FSTORE_HOME``, else ``~/.fstore``."""
        raw = home or os.environ.get("FSTORE_HOME") or Path.home() / ".fstore"
        return cls(Path(raw).expanduser().absolute())

    # --- certificate authority -------------------------------------------------
    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def root_ca_cert(self) -> Path:
        return self.ca_dir / "root.crt"

    @property
    def root_ca_key(self) -> Path:
        return self.ca_dir / "root.key"

    @property
    def intermediate_ca_cert(self) -> Path:
        return self.ca_dir / "intermediate.crt"

    @property
    def intermediate_ca_key(self) -> Path:
        return self.ca_dir / "intermediate.key"

    @property
    def ca_bundle(self) -> Path:
        """Root then intermediate: what the server trusts for client certificates."""
        return self.ca_dir / "ca-bundle.crt"

    @property
    def crl_file(self) -> Path:
        """A current CRL from every CA in the chain, concatenated."""
        return self.ca_dir / "crl.pem"

    @property
    def registry_file(self) -> Path:
        return self.ca_dir / "issued.json"

    @property
    def export_dir(self) -> Path:
        """Copies of ``ca-bundle.crt`` and ``crl.pem`` for a server that must not see ``ca/``
        (the database container in Docker), kept current by the CRL keeper."""
        return self.root / "export"

    # --- client material -------------------------------------------------------
    @property
    def certs_dir(self) -> Path:
        return self.root / "certs"

    def client_cert(self, name: str) -> Path:
        """Certificate file (leaf + intermediate) for a role or ``role@app``."""
        return self.certs_dir / f"{name}.crt"

    def client_key(self, name: str) -> Path:
        return self.certs_dir / f"{name}.key"

    # --- server ----------------------------------------------------------------
    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def data_dir(self) -> Path:
        return self.server_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.server_dir / "run"

    @property
    def log_file(self) -> Path:
        return self.server_dir / "postgresql.log"

    @property
    def server_tls_dir(self) -> Path:
        return self.server_dir / "tls"

    def server_state(self) -> str:
        """``running`` or ``stopped`` for the home's own server (a data directory made by
        ``fstore server start``), ``none`` when it has none (never started, or its server is
        elsewhere). Running means: ``postmaster.pid`` names a live process (what
        ``pg_ctl status`` checks), without starting a program for it."""
        try:
            if not (self.data_dir / "PG_VERSION").exists():
                return "none"
            pid_text = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return "stopped"
        except OSError:  # a data directory this user may not look into is not its server
            return "none"
        try:
            os.kill(int(pid_text), 0)
        except PermissionError:
            return "running"  # alive, owned by the server's OS user
        except (ProcessLookupError, ValueError):
            return "stopped"  # a stale pid file (a crash)
        return "running"

    def command(self, command: str) -> str:
        """The fstore command line that runs ``command`` on this home (``--home`` unless it is
        the default home), for messages that say what to run."""
        default = FstoreHome.resolve(None).root
        return f"fstore {command}" if self.root == default else f"fstore --home {self.root} {command}"

    # --- the CRL keeper ----------------------------------------------------------
    @property
    def keeper_pid_file(self) -> Path:
        return self.server_dir / "crlkeeper.pid"

    @property
    def keeper_lock_file(self) -> Path:
        """Held (flock) by the running keeper for its whole life: one keeper per home."""
        return self.server_dir / "crlkeeper.lock"

    @property
    def keeper_log_file(self) -> Path:
        return self.server_dir / "crlkeeper.log"

    @property
    def settings_file(self) -> Path:
        return self.root / "settings.json"

    def settings(self) -> dict[str, Any]:
        """Small persistent settings (port, host name) written by ``fstore server start``."""
        if self.settings_file.exists():
            return json.loads(self.settings_file.read_text())
        return {}

    def save_settings(self, **values: Any) -> None:
        write_atomic(self.settings_file, json.dumps(self.settings() | values, indent=2, sort_keys=True))

    @property
    def port(self) -> int:
        """The server's TCP port: ``$FSTORE_SERVER_PORT``, else the one ``server start`` saved."""
        override = os.environ.get("FSTORE_SERVER_PORT")
        return int(override) if override else int(self.settings().get("port", DEFAULT_PORT))

    def exists(self) -> bool:
        return self.root_ca_cert.exists() and self.intermediate_ca_cert.exists()
