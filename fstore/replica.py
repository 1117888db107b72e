"""Read replicas: streaming hot standbys of the home's server (single node or Citus
coordinator) for online serving.

``fstore server start --replica`` makes replica *n* under ``$FSTORE_HOME/replicas/<n>/``
(``server/{pgdata,run,tls,postgresql.log}`` and ``settings.json`` with its own port), from
``pg_basebackup`` of the running primary, with ``standby.signal``, ``primary_conninfo`` and
a physical replication slot (``fstore_replica_<n>``) so that the primary keeps the WAL a
stopped replica still needs.

"No password logins, TLS with certificates only" holds for replication too: the standby
logs in to the primary as :data:`REPLICATOR_ROLE` (``LOGIN REPLICATION``, no password)
with a service certificate from fstore's intermediate CA (CN ``fstore_replicator``, one per
replica, key 0600 owned by the server's OS user), ``sslmode=verify-full``. The primary's
``pg_hba.conf`` gains ``hostssl replication fstore_replicator all cert`` and refuses that
role every other database (:func:`replication_hba`).

A replica has the primary's certificate rules: its ``pg_hba.conf`` and ``pg_ident.conf`` are
copied from the primary at every start, its ``fstore.conf`` is the primary's with its own
port, socket and server certificate, and its ``ssl_crl_file`` is the home's own
``ca/crl.pem``, the file the CRL keeper re-signs. Every reload of the primary's
configuration (:func:`fstore.server.reload`: a revocation published, the CRL renewed,
``fstore cert crl``) reloads the running replicas too and ends their sessions of
certificates the CRL lists (:func:`reload_replicas`). Roles, memberships, grants and row
policies are catalog rows: the standby replays them from the WAL.

Example::

    replica = start_replica(home)               # replica 1, on a free port
    replica_status(home)                         # [{"name": "1", "port": ..., "lag_bytes": 0, ...}]
    stop_replicas(home)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import shutil
import socket
import time
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fstore import server
from fstore.cakeys import key_pem, load_intermediate, write_private, write_public
from fstore.connection import connect_operator
from fstore.errors import InvalidInput, ServerError
from fstore.home import FstoreHome
from fstore.replica_nodes import (REPLICATOR_ROLE, Replica, reload_replicas, replica, replica_status, replicas,
                                  replicas_dir, replication_hba)
from fstore.signing import cert_pem, leaf, new_key, record_issued, subject_name

MAX_REPLICAS = 8
CERT_VALIDITY_DAYS = 825
_STANDBY_SETTINGS = {"hot_standby": "on", "hot_standby_feedback": "on"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _plan(home: FstoreHome, port: int | None) -> Replica:
    existing = replicas(home)
    if len(existing) >= MAX_REPLICAS:
        raise InvalidInput(f"this home has {len(existing)} replicas already (at most {MAX_REPLICAS})")
    name = str(max((int(r.name) for r in existing), default=0) + 1)
    port = server.check_port(port) if port else _free_port()
    if port == home.port or port in [r.port for r in existing]:
        raise InvalidInput(f"port {port} is taken by this home's server or one of its replicas")
    entry = Replica(name, port, FstoreHome(replicas_dir(home) / name))
    home.save_settings(replicas=[*home.settings().get("replicas", []), {"name": name, "port": port}])
    entry.home.root.mkdir(parents=True, exist_ok=True)
    entry.home.save_settings(port=port, primary=str(home.root))
    return entry


# --- certificates ------------------------------------------------------------------


def _issue(home: FstoreHome, rep: Replica) -> None:
    """The replica's server certificate and its replication client certificate (service
    certificates from fstore's intermediate, recorded in the registry)."""
    from fstore.pki import default_hostnames

    tls = rep.home.server_tls_dir
    tls.mkdir(parents=True, exist_ok=True)
    inter_cert, inter_key = load_intermediate(home)
    validity = dt.timedelta(days=CERT_VALIDITY_DAYS)
    if not (tls / "server.crt").exists():
        sans: list[x509.GeneralName] = []
        for name in default_hostnames():
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        key = new_key()
        cert = leaf(subject_name(f"localhost replica{rep.name}", "service"), key.public_key(), inter_cert,
                    inter_key, validity, ExtendedKeyUsageOID.SERVER_AUTH, sans)
        write_public(tls / "server.crt", cert_pem(cert) + cert_pem(inter_cert))
        write_private(tls / "server.key", key_pem(key))
        record_issued(home, cert, "localhost", "service", None, tls / "server.crt", tls / "server.key")
    if not (tls / "replicator.crt").exists():
        key = new_key()
        cert = leaf(subject_name(REPLICATOR_ROLE, "service"), key.public_key(), inter_cert, inter_key, validity,
                    ExtendedKeyUsageOID.CLIENT_AUTH)
        write_public(tls / "replicator.crt", cert_pem(cert) + cert_pem(inter_cert))
        write_private(tls / "replicator.key", key_pem(key))
        record_issued(home, cert, REPLICATOR_ROLE, "service", None, tls / "replicator.crt", tls / "replicator.key")


def primary_conninfo(home: FstoreHome, rep: Replica) -> str:
    """How the standby reaches its primary: the replicator's certificate, verify-full."""
    tls = rep.home.server_tls_dir
    return make_conninfo(host="localhost", port=home.port, user=REPLICATOR_ROLE, sslmode="verify-full",
                         sslrootcert=str(home.root_ca_cert), sslcert=str(tls / "replicator.crt"),
                         sslkey=str(tls / "replicator.key"), application_name=rep.slot)


# --- the primary's side --------------------------------------------------------------


def _prepare_primary(home: FstoreHome) -> None:
    """The replicator role (LOGIN REPLICATION, no password) and the primary's pg_hba lines."""
    from fstore.citus import is_cluster

    with connect_operator(home, autocommit=True) as conn:
        if is_cluster(home):  # a role of the coordinator only: the workers never see replication
            conn.execute("set citus.enable_create_role_propagation = off")
        if not conn.execute("select 1 from pg_roles where rolname = %s", (REPLICATOR_ROLE,)).fetchone():
            conn.execute(sql.SQL("create role {} login replication").format(sql.Identifier(REPLICATOR_ROLE)))
    hba = home.data_dir / "pg_hba.conf"
    lines = replication_hba(home)
    text = hba.read_text()
    if lines and lines not in text:  # before the catch-all certificate line, which would match first
        catch_all = "hostssl   all      all        all      cert\n"
        hba.write_text(text.replace(catch_all, lines + catch_all) if catch_all in text else text + lines)
        server.reload(home)


def _drop_slot(home: FstoreHome, slot: str) -> None:
    if not server.operator_reachable(home):
        return
    with connect_operator(home, autocommit=True) as conn:
        conn.execute("select pg_drop_replication_slot(slot_name) from pg_replication_slots"
                     " where slot_name = %s and not active", (slot,))


# --- the replica's side --------------------------------------------------------------

_SETTING = re.compile(r"^\s*([a-z_.]+)\s*=\s*(.*)$")


def _write_config(home: FstoreHome, rep: Replica) -> None:
    """The replica's fstore.conf (the primary's, with its own port, socket, server
    certificate and standby settings), the primary's pg_hba/pg_ident, standby.signal."""
    settings: dict[str, str] = {}
    for line in (home.data_dir / "fstore.conf").read_text().splitlines():
        match = _SETTING.match(line)
        if match:
            settings[match[1]] = match[2]
    tls = rep.home.server_tls_dir

    def quoted(value: str) -> str:
        return "'" + value.replace("'", "''") + "'"

    settings.update({
        "port": str(rep.port),
        "listen_addresses": quoted("localhost"),
        "unix_socket_directories": quoted(str(rep.home.socket_dir)),
        "ssl_cert_file": quoted(str(tls / "server.crt")),
        "ssl_key_file": quoted(str(tls / "server.key")),
        "ssl_crl_file": quoted(str(home.crl_file)),  # the file the CRL keeper re-signs
        "primary_conninfo": quoted(primary_conninfo(home, rep)),
        "primary_slot_name": quoted(rep.slot),
        **{k: quoted(v) for k, v in _STANDBY_SETTINGS.items()},
    })
    data = rep.home.data_dir
    lines = [f"# written by fstore: read replica {rep.name} of {home.root}"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    (data / "fstore.conf").write_text("\n".join(lines) + "\n")
    for name in ("pg_hba.conf", "pg_ident.conf"):  # the primary's certificate rules, as they are now
        shutil.copyfile(home.data_dir / name, data / name)
    (data / "standby.signal").touch()
    for name in ("fstore.conf", "pg_hba.conf", "pg_ident.conf", "standby.signal"):
        server._chown_to_server(data / name)


def _base_backup(home: FstoreHome, rep: Replica) -> None:
    _drop_slot(home, rep.slot)
    shutil.rmtree(rep.home.data_dir, ignore_errors=True)
    server._run([str(server.pg_bin() / "pg_basebackup"), "-D", str(rep.home.data_dir), "-d",
                 primary_conninfo(home, rep), "-X", "stream", "-c", "fast", "-C", "-S", rep.slot,
                 "--no-password"])


def _start(home: FstoreHome, rep: Replica, timeout: int = 120) -> None:
    _issue(home, rep)
    server._prepare_server_dir(rep.home)
    for name in ("replicator.crt", "replicator.key"):
        server._chown_to_server(rep.home.server_tls_dir / name)
    if not (rep.home.data_dir / "PG_VERSION").exists():
        _base_backup(home, rep)
    _write_config(home, rep)
    if server.is_running(rep.home):
        server.reload(rep.home)
        return
    server._run([str(server.pg_bin() / "pg_ctl"), "start", "-D", str(rep.home.data_dir), "-l",
                 str(rep.home.log_file), "-w", "-t", str(timeout)])
    with connect_operator(rep.home, autocommit=True) as conn:
        if not conn.execute("select pg_is_in_recovery()").fetchone()[0]:
            raise ServerError(f"replica {rep.name} is not in recovery: it is not a standby of {home.root}")
        deadline = time.monotonic() + timeout
        while conn.execute("select status from pg_stat_wal_receiver").fetchone() != ("streaming",):
            if time.monotonic() > deadline:
                raise ServerError(f"replica {rep.name} does not stream from {home.root} after {timeout}s: "
                                  f"see {rep.home.log_file}")
            time.sleep(0.02)


def start_replica(home: FstoreHome, port: int | None = None) -> Replica:
    """Make a new replica of the running primary and start it; returns it.

    Example::

        rep = start_replica(home)
        connect_operator(rep.home).execute("select pg_is_in_recovery()")   # true
    """
    if not server.is_running(home):
        raise ServerError(f"the server of {home.root} is not running: {home.command('server start')} first")
    rep = _plan(home, port)
    try:
        _prepare_primary(home)
        _start(home, rep)
    except Exception:
        remove_replica(home, rep.name)
        raise
    return rep


def start_replicas(home: FstoreHome, count: int = 0) -> list[Replica]:
    """Start every configured replica, making new ones until there are ``count``; the
    primary must run.

    Example::

        start_replicas(home, count=2)   # replicas 1 and 2 running
    """
    if not server.is_running(home):
        raise ServerError(f"the server of {home.root} is not running: {home.command('server start')} first")
    if replicas(home):
        _prepare_primary(home)
    for rep in replicas(home):
        _start(home, rep)
    while len(replicas(home)) < count:
        start_replica(home)
    return replicas(home)


def stop_replica(home: FstoreHome, name: str | int, mode: str = "fast") -> bool:
    """Stop one replica (``mode``: fast or immediate); False when it was not running."""
    rep = replica(home, name)
    if not server.is_running(rep.home):
        return False
    server._run([str(server.pg_bin() / "pg_ctl"), "stop", "-D", str(rep.home.data_dir), "-m", mode,
                 "-w", "-t", "60"])
    return True


def stop_replicas(home: FstoreHome, mode: str = "fast") -> list[str]:
    """Stop every running replica; returns the names stopped."""
    return [rep.name for rep in replicas(home) if stop_replica(home, rep.name, mode)]


def remove_replica(home: FstoreHome, name: str | int) -> None:
    """Stop a replica, drop its slot on the primary and delete its directory.

    Example::

        remove_replica(home, "1")
    """
    rep = replica(home, name)
    stop_replica(home, rep.name, "immediate")
    _drop_slot(home, rep.slot)
    shutil.rmtree(rep.home.root, ignore_errors=True)
    home.save_settings(replicas=[e for e in home.settings().get("replicas", []) if str(e["name"]) != rep.name])


def wait_replayed(home: FstoreHome, timeout: float = 60.0) -> float:
    """Wait until every running replica has replayed the primary's current WAL position;
    returns the seconds it took (:class:`ServerError` after ``timeout``).

    Example::

        lag = wait_replayed(home)
    """
    start = time.monotonic()
    with connect_operator(home) as conn:
        target = conn.execute("select pg_current_wal_lsn()").fetchone()[0]
    for rep in replicas(home):
        if not server.is_running(rep.home):
            continue
        with connect_operator(rep.home, autocommit=True) as conn:
            while True:
                done = conn.execute("select pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(target),)).fetchone()[0]
                if done:
                    break
                if time.monotonic() - start > timeout:
                    raise ServerError(f"replica {rep.name} has not replayed {target} within {timeout:.0f}s")
                time.sleep(0.005)
    return time.monotonic() - start


__all__ = ["REPLICATOR_ROLE", "Replica", "primary_conninfo", "reload_replicas", "remove_replica", "replica",
           "replica_status", "replicas", "replication_hba", "start_replica", "start_replicas", "stop_replica",
           "stop_replicas", "wait_replayed"]
