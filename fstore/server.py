"""The embedded PostgreSQL server: initialise, configure TLS, start, stop, reload.

When run as root the server runs as the ``postgres`` OS user (PostgreSQL
refuses root); otherwise as the current user. The operator reaches it only
over the local socket (peer authentication mapped to the superuser); every
TCP login is TLS with a client certificate whose CN is the role name.

``start`` also starts the home's CRL keeper (:mod:`fstore.crlkeeper`), which
publishes revocations made in SQL and renews the CRL; ``stop`` stops it.

Example::

    home = FstoreHome.resolve()
    start(home, port=55433)
    print(status(home))
    stop(home)
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fstore.citus import (add_workers, coordinator_settings, prepare_coordinator, resync_pending_file, resync_workers,
                          workers_attached)
from fstore.cakeys import ca_passphrase, is_encrypted, load_intermediate, passphrase_env
from fstore.connection import DATABASE, connect_operator
from fstore.crl import crl_expiry, crl_health, crl_is_current, resign_crls
from fstore.errors import InvalidInput, ServerError
from fstore.home import DEFAULT_PORT, FstoreHome
from fstore.keeper_process import keeper_status, start_keeper, stop_keeper
from fstore.registry import publication_lock, sync_catalog
from fstore.replica_nodes import reload_replicas, replica_status, replicas, replication_hba
from fstore.roles import SUPERUSER_ROLE

PG_MAJOR = 15
EXTENSIONS = ("vector", "pgaudit", "sslinfo", "pg_cron")  # sslinfo: a session's own certificate serial, for any role
# pg_cron runs monitors (sql/functions/88_monitors.sql) in background workers of the server, logged in as the
# monitor's creator without a password or a TCP login; its worker processes need room beside parallel query
PRELOAD = "pgaudit,pg_cron"
CRL_REFRESH_MARGIN = dt.timedelta(days=1)


def pg_bin() -> Path:
    """Directory of the PostgreSQL 15 binaries (``$FSTORE_PG_BIN`` overrides)."""
    return Path(os.environ.get("FSTORE_PG_BIN", f"/usr/lib/postgresql/{PG_MAJOR}/bin"))


def server_os_user() -> str:
    """The OS user the server runs as: ``postgres`` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else getpass.getuser()


def _run(cmd: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a server binary as the server's OS user."""
    full = list(cmd)
    if os.geteuid() == 0:
        full = ["runuser", "-u", server_os_user(), "--", *full]
    result = subprocess.run(full, capture_output=True, text=True, cwd="/")
    if check and result.returncode != 0:
        raise ServerError(f"{Path(cmd[0]).name} failed: {(result.stderr or result.stdout).strip()}")
    return result


def _chown_to_server(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(server_os_user())
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _make_traversable(path: Path) -> None:
    """Let the server's OS user reach ``path``: add o+x (search, not list) to ancestors."""
    if os.geteuid() != 0:
        return
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


def _prepare_server_dir(home: FstoreHome) -> None:
    _make_traversable(home.root)
    for directory in (home.server_dir, home.socket_dir, home.server_tls_dir):
        directory.mkdir(parents=True, exist_ok=True)
        _chown_to_server(directory)
    os.chmod(home.server_dir, 0o700)
    os.chmod(home.socket_dir, 0o700)
    for name in ("server.crt", "server.key"):
        _chown_to_server(home.server_tls_dir / name)
    os.chmod(home.server_tls_dir / "server.key", 0o600)
    if not home.log_file.exists():
        home.log_file.touch()
    _chown_to_server(home.log_file)
    os.chmod(home.log_file, 0o640)


def memory_settings(total_bytes: int | None = None) -> dict[str, str]:
    """Memory and WAL settings sized to the machine (PostgreSQL's defaults fit 1 GB of RAM).

    shared_buffers and maintenance_work_mem get an eighth of RAM each (at most 4 GB): the
    bulk commit path rebuilds the point-in-time index of a large commit from one sort,
    and an index sort that fits in memory is measured 20-35% faster than one that spills
    (10M rows: 5.2 s vs 6.6 s). max_wal_size 4 GB keeps a 10M-row commit (about 3 GB of
    WAL) from forcing checkpoints halfway through it. ALTER SYSTEM still overrides these.
    """
    if total_bytes is None:
        total_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mb = 1024 * 1024
    eighth_mb = total_bytes // 8 // mb
    return {
        "shared_buffers": f"{max(128, min(eighth_mb, 4096))}MB",
        "maintenance_work_mem": f"{max(64, min(eighth_mb, 4096))}MB",
        "max_wal_size": "4GB" if total_bytes >= 8 * 1024 * mb else "1GB",
    }


def _write_config(home: FstoreHome, port: int, listen: str) -> None:
    tls = home.server_tls_dir
    settings: dict[str, Any] = {
        "port": port,
        "listen_addresses": listen,
        "unix_socket_directories": str(home.socket_dir),
        "unix_socket_permissions": "0700",
        "ssl": "on",
        "ssl_cert_file": str(tls / "server.crt"),
        "ssl_key_file": str(tls / "server.key"),
        "ssl_ca_file": str(home.ca_bundle),
        "ssl_crl_file": str(home.crl_file),
        "ssl_min_protocol_version": "TLSv1.2",
        "password_encryption": "scram-sha-256",
        "shared_preload_libraries": PRELOAD,
        "cron.database_name": DATABASE,
        "cron.use_background_workers": "on",
        "cron.max_running_jobs": 8,
        "max_worker_processes": 24,
        "pgaudit.log": "ddl, role",
        "pgaudit.log_catalog": "off",
        "pgaudit.role": "fstore_auditor",
        "log_connections": "on",
        "log_disconnections": "on",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "timezone": "UTC",
        **memory_settings(),
    }
    if home.settings().get("cluster"):  # a Citus coordinator (fstore.cluster)
        settings.update(coordinator_settings(home))
    lines = ["# written by fstore; edit settings with `fstore server start` options"]
    for key, value in settings.items():
        rendered = value if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"
        lines.append(f"{key} = {rendered}")
    conf = home.data_dir / "fstore.conf"
    conf.write_text("\n".join(lines) + "\n")
    _chown_to_server(conf)
    main_conf = home.data_dir / "postgresql.conf"
    include = "include_if_exists = 'fstore.conf'"
    if include not in main_conf.read_text():
        with main_conf.open("a") as fh:
            fh.write(f"\n{include}\n")

    operator_os_users = sorted({getpass.getuser(), server_os_user()})
    ident = "".join(f"fstore_operator {user} {SUPERUSER_ROLE}\n" for user in operator_os_users)
    (home.data_dir / "pg_ident.conf").write_text(ident)
    (home.data_dir / "pg_hba.conf").write_text(
        "# written by fstore: socket for the operator, certificate logins over TLS, nothing else\n"
        "# TYPE    DATABASE USER       ADDRESS METHOD\n"
        f"local     all      {SUPERUSER_ROLE}            peer map=fstore_operator\n"
        "local     all      all                 reject\n"
        "hostnossl all      all        all      reject\n"
        f"hostssl   all      {SUPERUSER_ROLE}   all      reject\n"
        + replication_hba(home)  # read replicas (fstore.replica): the replicator's certificate, replication only
        + "hostssl   all      all        all      cert\n"
    )
    for name in ("pg_ident.conf", "pg_hba.conf"):
        _chown_to_server(home.data_dir / name)


def _initdb(home: FstoreHome) -> None:
    _run([
        str(pg_bin() / "initdb"), "-D", str(home.data_dir), "-U", SUPERUSER_ROLE,
        "-E", "UTF8", "--locale=C.UTF-8", "--auth-local=peer", "--auth-host=reject",
        "--no-instructions",
    ])


def is_running(home: FstoreHome) -> bool:
    """True when the server of this home is up."""
    return home.server_state() == "running"


def operator_reachable(home: FstoreHome, timeout: int = 3) -> bool:
    """True when the operator's socket of this home accepts a connection."""
    try:
        with connect_operator(home, connect_timeout=timeout):
            return True
    except (psycopg.OperationalError, ServerError):
        return False


@dataclass
class StartResult:
    """What :func:`start` did."""

    already_running: bool
    port: int
    initialised: bool
    keeper_pid: int | None = None


def _check_ca_passphrase(home: FstoreHome) -> None:
    """The CRL keeper signs with the CA keys: refuse to start without their passphrase."""
    if is_encrypted(home.intermediate_ca_key) and ca_passphrase(home) is None:
        raise ServerError(
            f"the CA keys are encrypted: set ${passphrase_env(home)} to their passphrase and run "
            "`fstore server start` again (the CRL keeper signs with them: it publishes revocations "
            "and renews the CRL, which expires after 7 days, and then every TLS login fails)"
        )
    load_intermediate(home)  # a wrong passphrase is named here, not in the keeper's log


def start(home: FstoreHome, port: int | None = None, listen: str = "localhost") -> StartResult:
    """Initialise (once) and start the server and its CRL keeper, then bring the database
    up to date.

    Idempotent: on a running server it changes nothing (but starts the keeper if it
    is not running) and says so.
    """
    if not home.exists():
        raise ServerError(f"no fstore home at {home.root}: run `fstore init` first")
    _check_ca_passphrase(home)
    configured = int(home.settings().get("port", DEFAULT_PORT))
    if is_running(home):
        if port is not None and port != configured:
            raise ServerError(f"already running on port {configured}; stop it to change the port")
        keeper = start_keeper(home)
        return StartResult(already_running=True, port=configured, initialised=False, keeper_pid=keeper)
    port = port or configured
    home.save_settings(port=port)
    if not (pg_bin() / "postgres").exists():
        raise ServerError(f"PostgreSQL {PG_MAJOR} not found in {pg_bin()}: run scripts/setup.sh")
    _prepare_server_dir(home)
    initialised = not (home.data_dir / "PG_VERSION").exists()
    if initialised:
        _initdb(home)
    _write_config(home, port, listen)
    with publication_lock(home):  # the CRL loaded at start lists every revocation synced below
        if not crl_is_current(home, CRL_REFRESH_MARGIN):
            resign_crls(home)
        _run([
            str(pg_bin() / "pg_ctl"), "start", "-D", str(home.data_dir), "-l", str(home.log_file),
            "-w", "-t", "60",
        ])
        bootstrap(home)
    keeper = start_keeper(home)
    return StartResult(already_running=False, port=port, initialised=initialised, keeper_pid=keeper)


def stop(home: FstoreHome) -> bool:
    """Stop the CRL keeper and the server (fast shutdown). Returns False when the server
    was not running."""
    stop_keeper(home)
    for rep in replicas(home):  # read replicas (fstore.replica) first: the primary's walsenders wait for them
        if is_running(rep.home):
            _run([str(pg_bin() / "pg_ctl"), "stop", "-D", str(rep.home.data_dir), "-m", "fast", "-w", "-t", "60"])
    if not is_running(home):
        return False
    _run([str(pg_bin() / "pg_ctl"), "stop", "-D", str(home.data_dir), "-m", "fast", "-w", "-t", "60"])
    return True


def migrate(home: FstoreHome, conn: psycopg.Connection[Any]) -> list[str]:
    """Apply the pending SQL migrations (operator connection, autocommit); returns their names.

    On a cluster whose workers are attached (a restart, ``fstore migrate``) they apply on
    the coordinator alone and the workers are resynced after (:func:`fstore.citus.resync_workers`):
    Citus would otherwise send each statement over a connection of the role running it,
    and the files' role switches deadlock across those connections.
    """
    from fstore.migrations import apply_migrations

    attached = bool(home.settings().get("cluster")) and workers_attached(conn)
    if attached:
        conn.execute("set citus.enable_ddl_propagation to off")
    try:
        applied = apply_migrations(conn)
    finally:
        if attached:
            conn.execute("reset citus.enable_ddl_propagation")
    if attached and (applied or resync_pending_file(home).exists()):
        resync_workers(home, conn)  # the caller then runs fstore.cluster.sync_workers (logins, database ACL)
    return applied


def bootstrap(home: FstoreHome) -> None:
    """Create the database and its extensions; apply migrations (``sql/schema/001_platform.sql``
    creates fstore's roles, the admin among them)."""
    with connect_operator(home, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("create database {} template template0").format(sql.Identifier(DATABASE)))
    with connect_operator(home, autocommit=True) as conn:
        cluster = bool(home.settings().get("cluster"))
        if cluster:  # a Citus coordinator: citus first; the workers join after the migrations
            prepare_coordinator(home, conn)
        for extension in EXTENSIONS:
            conn.execute(sql.SQL("create extension if not exists {}").format(sql.Identifier(extension)))
        conn.execute(sql.SQL("revoke all on database {} from public").format(sql.Identifier(DATABASE)))
        migrate(home, conn)
        if cluster:
            add_workers(home, conn)
        sync_catalog(home, conn, published=True)


def status(home: FstoreHome) -> dict[str, Any]:
    """Running?, port, version, extensions, data directory, the CRL's next update and the
    CRL keeper; ``warnings`` and ``errors`` say what needs the operator."""
    info: dict[str, Any] = {
        "running": is_running(home),
        "port": home.port,
        "data_dir": str(home.data_dir),
        "log_file": str(home.log_file),
        "home": str(home.root),
    }
    if info["running"]:
        with connect_operator(home) as conn:
            info["version"] = conn.execute("show server_version").fetchone()[0]
            info["extensions"] = {
                name: version
                for name, version in conn.execute(
                    "select extname, extversion from pg_extension where extname <> 'plpgsql' order by 1"
                )
            }
            info["ssl"] = conn.execute("show ssl").fetchone()[0]
    expiry = crl_expiry(home)
    info["crl_next_update"] = expiry.isoformat() if expiry else None
    state, message = crl_health(home)
    info["crl_state"] = state
    info["keeper"] = keeper_status(home)
    info["warnings"], info["errors"] = [], []
    if home.settings().get("replicas"):
        info["replicas"] = replica_status(home)
        info["warnings"] += [f"replica {r['name']} (port {r['port']}) is " + ("not running" if not r["running"] else
                             "not streaming from this server") for r in info["replicas"]
                             if info["running"] and (not r["running"] or r["state"] != "streaming")]
    if message:
        info["errors" if state == "error" else "warnings"].append(message)
    if info["running"] and not info["keeper"]["running"]:
        info["warnings"].append(
            "the CRL keeper is not running: revocations made in SQL (remove_member, delete_project, "
            "block_user) are not published and the CRL is not renewed; `fstore server start` starts it"
        )
    return info


def log_tail(home: FstoreHome, lines: int = 50) -> list[str]:
    """The last ``lines`` lines of the server log."""
    if not home.log_file.exists():
        return []
    with home.log_file.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 256 * 1024))
        return fh.read().decode(errors="replace").splitlines()[-lines:]


def reload(home: FstoreHome, timeout: float = 10.0) -> None:
    """Reload the configuration (and TLS files, CRL included) and wait until it took effect.

    ``pg_conf_load_time()`` in a new backend advances only once the postmaster
    has re-read its configuration, so we poll it from fresh connections.
    """
    with connect_operator(home, autocommit=True) as conn:
        before = conn.execute("select pg_conf_load_time()").fetchone()[0]
        conn.execute("select pg_reload_conf()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connect_operator(home) as conn:
            if conn.execute("select pg_conf_load_time()").fetchone()[0] > before:
                break
        time.sleep(0.02)
    else:
        raise ServerError(f"the server did not reload its configuration within {timeout:.0f}s")
    reload_replicas(home)  # the same CRL and rules on the read replicas, their revoked sessions ended


def remove(home: FstoreHome) -> None:
    """Stop the server and delete its data directory (the CA is kept)."""
    stop(home)
    if home.server_dir.exists():
        shutil.rmtree(home.data_dir, ignore_errors=True)


def check_port(port: int) -> int:
    """Validate a TCP port number."""
    if not 1024 <= port <= 65535:
        raise InvalidInput(f"port must be between 1024 and 65535, got {port}")
    return port
