"""A worker node's server, local or remote: its certificates, its configuration (TLS
only, the cluster CA only, no password), starting it, and the coordinator's superuser
connection to it.

One way to do each thing for both kinds of node: ``fstore cluster add-worker`` (a local
worker under ``$FSTORE_HOME/cluster``) and ``fstore node init`` (a node on another
machine, from a bundle: :mod:`fstore.remote_nodes`) write the same settings and
``pg_hba.conf`` (:func:`start_node_server`); the coordinator reaches a local worker over
its socket and a remote node over TLS with the node certificate (:func:`connect_node`),
and creates every role on a new node the same way (:func:`create_roles_on_node`).

Example::

    with connect_node(home, node) as conn:
        print(conn.execute("select citus_version()").fetchone())
"""

from __future__ import annotations

import datetime as dt
import getpass
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID
import psycopg
from psycopg import sql

from fstore import server
from fstore.cakeys import key_pem, load_intermediate, write_private, write_public
from fstore.citus import NODE_CN, Node, cluster_ca_cert, cluster_ca_key, node_cert, node_key
from fstore.connection import DATABASE, connect_operator, connect_remote_superuser
from fstore.home import FstoreHome
from fstore.roles import SUPERUSER_ROLE
from fstore.signing import ca_certificate, cert_pem, leaf, new_key, subject_name

CLUSTER_CA_VALIDITY = dt.timedelta(days=1825)
NODE_CERT_VALIDITY = dt.timedelta(days=825)
WORKER_EXTENSIONS = ("citus", "vector", "sslinfo")
LOOPBACK = ("localhost", "127.0.0.1", "::1")

NODE_HBA = (
    "# written by fstore: a worker accepts the operator's socket and the node certificate only.\n"
    "# ssl_ca_file is the cluster CA, which signs nothing but the node certificate (CN fstore_node),\n"
    "# so verify-ca admits only it; it logs in as the session's role, as Citus requires.\n"
    "# TYPE    DATABASE USER       ADDRESS METHOD\n"
    f"local     all      {SUPERUSER_ROLE}            peer map=fstore_operator\n"
    "local     all      all                 reject\n"
    "hostnossl all      all        all      reject\n"
    "hostssl   all      all        all      trust clientcert=verify-ca\n"
)


# --- certificates --------------------------------------------------------------


def ensure_cluster_ca(home: FstoreHome) -> tuple[x509.Certificate, Any]:
    """The cluster CA (a self-signed root, separate from fstore's user CA), made once."""
    if cluster_ca_cert(home).exists() and cluster_ca_key(home).exists():
        cert = x509.load_pem_x509_certificate(cluster_ca_cert(home).read_bytes())
        return cert, load_pem_private_key(cluster_ca_key(home).read_bytes(), None)
    key = new_key()
    name = subject_name("fstore cluster CA")
    cert = ca_certificate(name, key, name, key, CLUSTER_CA_VALIDITY, 0)
    write_private(cluster_ca_key(home), key_pem(key))
    write_public(cluster_ca_cert(home), cert_pem(cert))
    return cert, key


def issue_node_certificate(home: FstoreHome, targets: list[FstoreHome]) -> None:
    """Sign the node certificate with the cluster CA (once) and copy it into every
    target's TLS dir where it is missing (the running nodes' copies stay untouched:
    rewriting a key a node is using breaks its connections)."""
    if all(node_cert(t).exists() and node_key(t).exists() for t in targets):
        return
    if node_cert(home).exists() and node_key(home).exists():
        cert, key = node_cert(home).read_bytes(), node_key(home).read_bytes()
    else:
        ca_cert, ca_key = ensure_cluster_ca(home)
        private = new_key()
        cert = cert_pem(leaf(subject_name(NODE_CN, "service"), private.public_key(), ca_cert, ca_key,
                             NODE_CERT_VALIDITY, ExtendedKeyUsageOID.CLIENT_AUTH))
        key = key_pem(private)
    for target in targets:
        if not (node_cert(target).exists() and node_key(target).exists()):
            target.server_tls_dir.mkdir(parents=True, exist_ok=True)
            write_public(node_cert(target), cert)
            write_private(node_key(target), key)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def node_server_certificate(home: FstoreHome, name: str, hosts: tuple[str, ...]) -> tuple[bytes, bytes]:
    """A TLS server certificate for a node from fstore's intermediate CA, with ``hosts``
    as its subject alternative names (what the coordinator's ``verify-full`` checks):
    the certificate then the intermediate (PEM), and the key (PEM).

    Example::

        cert, key = node_server_certificate(home, "db2", ("db2.internal", "10.0.0.7"))
    """
    inter_cert, inter_key = load_intermediate(home)
    key = new_key()
    cert = leaf(subject_name(f"{hosts[0]} {name}", "service"), key.public_key(), inter_cert, inter_key,
                NODE_CERT_VALIDITY, ExtendedKeyUsageOID.SERVER_AUTH, [_san(h) for h in hosts])
    return cert_pem(cert) + cert_pem(inter_cert), key_pem(key)


def install_node_tls(nhome: FstoreHome, files: dict[str, bytes]) -> None:
    """Write a node's TLS files (name -> PEM; ``*.key`` 0600) into its TLS dir, owned by
    the server's OS user."""
    nhome.server_tls_dir.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (write_private if name.endswith(".key") else write_public)(nhome.server_tls_dir / name, data)
        server._chown_to_server(nhome.server_tls_dir / name)


# --- a node's server -----------------------------------------------------------


def node_settings(nhome: FstoreHome, port: int, conninfo: str, listen: str = "localhost") -> dict[str, Any]:
    """The settings of a worker node (``fstore.conf``, included by ``postgresql.conf``)."""
    tls = nhome.server_tls_dir
    return {
        "port": port,
        "listen_addresses": listen,
        "unix_socket_directories": str(nhome.socket_dir),
        "unix_socket_permissions": "0700",
        "ssl": "on",
        "ssl_cert_file": str(tls / "server.crt"),
        "ssl_key_file": str(tls / "server.key"),
        "ssl_ca_file": str(tls / "cluster-ca.crt"),  # only the cluster CA: users' certificates fail here
        "ssl_min_protocol_version": "TLSv1.2",
        # CREATE EXTENSION pgaudit (and pg_cron, which must be preloaded to be created) propagate here;
        # a worker's pg_cron schedules nothing (monitors run on the coordinator)
        "shared_preload_libraries": "citus,pgaudit,pg_cron",
        "cron.database_name": DATABASE,
        "citus.node_conninfo": conninfo,
        "max_prepared_transactions": 100,
        "wal_level": "logical",
        "citus.enable_unsafe_triggers": "on",
        "log_connections": "on",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "timezone": "UTC",
    }


def render_settings(settings: dict[str, Any]) -> str:
    """``postgresql.conf`` lines of ``settings``."""
    lines = []
    for key, value in settings.items():
        rendered = value if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def _write_node_config(nhome: FstoreHome, settings: dict[str, Any], origin: str) -> bool:
    """Write the node's settings, pg_hba and pg_ident; True when any of them changed."""
    conf = nhome.data_dir / "fstore.conf"
    files = [conf, nhome.data_dir / "pg_ident.conf", nhome.data_dir / "pg_hba.conf"]
    before = [path.read_text() if path.exists() else None for path in files]
    conf.write_text(f"# written by fstore: {origin}\n" + render_settings(settings))
    main_conf = nhome.data_dir / "postgresql.conf"
    include = "include_if_exists = 'fstore.conf'"
    if include not in main_conf.read_text():
        with main_conf.open("a") as fh:
            fh.write(f"\n{include}\n")
    operators = sorted({getpass.getuser(), server.server_os_user()})
    files[1].write_text("".join(f"fstore_operator {user} {SUPERUSER_ROLE}\n" for user in operators))
    files[2].write_text(NODE_HBA)
    for path in files:
        server._chown_to_server(path)
    return before != [path.read_text() for path in files]


def start_node_server(nhome: FstoreHome, settings: dict[str, Any], origin: str) -> None:
    """Initialise (once), configure and start (or restart, if its configuration changed) a
    worker node's server, then create the database and the extensions a worker needs.
    Its TLS files must be in place (``server.{crt,key}``, ``node-client.{crt,key}``,
    ``cluster-ca.crt``).

    Example::

        start_node_server(nhome, node_settings(nhome, 5432, conninfo), "a Citus node")
    """
    server._prepare_server_dir(nhome)
    for name in ("node-client.key", "node-client.crt", "cluster-ca.crt"):
        server._chown_to_server(nhome.server_tls_dir / name)
    if not (nhome.data_dir / "PG_VERSION").exists():
        server._initdb(nhome)
    changed = _write_node_config(nhome, settings, origin)
    if not server.is_running(nhome) or changed:
        action = "restart" if server.is_running(nhome) else "start"
        server._run([str(server.pg_bin() / "pg_ctl"), action, "-D", str(nhome.data_dir), "-l",
                     str(nhome.log_file), "-w", "-t", "60"])
    with connect_operator(nhome, dbname="postgres", autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone():
            conn.execute(sql.SQL("create database {} template template0").format(sql.Identifier(DATABASE)))
    with connect_operator(nhome, autocommit=True) as conn:
        # CONNECT stays granted to PUBLIC here (unlike the coordinator): the gate of a worker
        # is its pg_hba and the cluster CA, and Citus logs in as roles that hold no CONNECT
        # on the coordinator (fstore_roles, p__owner)
        present = {r[0] for r in conn.execute("select extname from pg_extension")}
        for extension in WORKER_EXTENSIONS:  # once: a worker in a cluster refuses DDL of its own
            if extension not in present:
                conn.execute(sql.SQL("create extension {}").format(sql.Identifier(extension)))


def stop_node_server(nhome: FstoreHome, mode: str = "fast") -> bool:
    """Stop a node's server on this machine; False when it was not running."""
    if not server.is_running(nhome):
        return False
    server._run([str(server.pg_bin() / "pg_ctl"), "stop", "-D", str(nhome.data_dir), "-m", mode, "-w", "-t", "60"])
    return True


# --- the coordinator's connection to a node ------------------------------------


def connect_node(home: FstoreHome, node: Node, dbname: str = DATABASE, **kwargs: Any) -> psycopg.Connection[Any]:
    """A superuser connection from the coordinator's machine to ``node``: a local worker's
    socket (peer, the operator), or a remote node over TLS as Citus connects (``verify-full``
    of its server certificate against fstore's CA bundle, the node certificate as client).

    Example::

        with connect_node(home, node, autocommit=True) as conn:
            conn.execute("select 1")
    """
    if node.home is not None:
        return connect_operator(node.home, dbname=dbname, **kwargs)
    return connect_remote_superuser(node.host, node.port, ca_bundle=home.ca_bundle, cert=node_cert(home),
                                    key=node_key(home), dbname=dbname, **kwargs)


def create_roles_on_node(home: FstoreHome, node: Node) -> list[str]:
    """Create every role of the coordinator (LOGIN) on a node that is about to join;
    returns those created.

    ``citus_add_node``'s metadata sync otherwise meets memberships granted by roles it has
    not created yet (``role "fstore_roles" does not exist`` once a project exists);
    :func:`fstore.cluster.sync_workers` sets the logins afterwards.

    Example::

        create_roles_on_node(home, node)   # then citus_add_node
    """
    with connect_operator(home) as conn:
        roles = [r[0] for r in conn.execute(
            "select rolname from pg_roles where rolname !~ '^pg_' and not rolsuper order by oid")]
    created = []
    with connect_node(home, node, autocommit=True) as conn:
        conn.execute("set citus.enable_ddl_propagation = off")
        existing = {r[0] for r in conn.execute("select rolname from pg_roles")}
        for role in roles:
            if role not in existing:
                conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
                created.append(role)
    return created
