"""Remote nodes: a Citus node on another machine joins an fstore coordinator, with no
password anywhere (``docs/cluster.md``, "Remote nodes").

1. On the coordinator, :func:`write_node_bundle` (``fstore cluster node-bundle HOST``)
   writes what the node needs: a TLS server certificate for HOST (its SAN, which the
   coordinator's ``verify-full`` checks), the node certificate and key (the cluster's
   client certificate), the cluster CA (the only CA the node trusts for clients), fstore's
   CA bundle (to verify the other nodes) and the settings and ``pg_hba.conf`` to use.
2. On the node's machine, :func:`init_node` (``fstore node init --bundle FILE``) creates,
   configures and starts the node's server as a local worker's, and its extensions.
3. On the coordinator, :func:`add_node` (``fstore cluster add-node HOST:PORT``) checks
   the node (:func:`check_node`), creates every role on it and adds it
   (:func:`fstore.cluster.join`); ``fstore cluster rebalance`` then moves shards there.

Example::

    write_node_bundle(home, "db2.internal", Path("db2.bundle"))    # coordinator
    init_node(FstoreHome(Path("/srv/fstore-node")), Path("db2.bundle"), port=5432, listen="*")  # node
    add_node(home, "db2.internal", 5432)                          # coordinator
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from fstore import server
from fstore.cakeys import write_private
from fstore.citus import Node, all_nodes, cluster_ca_cert, is_cluster, node_cert, node_key
from fstore.cluster import join, save_nodes
from fstore.cluster_nodes import (
    NODE_HBA,
    WORKER_EXTENSIONS,
    connect_node,
    install_node_tls,
    issue_node_certificate,
    node_server_certificate,
    node_settings,
    render_settings,
    start_node_server,
    stop_node_server,
)
from fstore.connection import connect_operator
from fstore.errors import Conflict, InvalidInput, PermissionDenied, ServerError
from fstore.home import FstoreHome

BUNDLE_FORMAT = "fstore-node-bundle/1"
TLS_DIR_PLACEHOLDER = "TLS_DIR"
BUNDLE_FILES = ("server.crt", "server.key", "node-client.crt", "node-client.key", "cluster-ca.crt", "ca-bundle.crt")
_ACCEPTS_PASSWORD = ("password", "md5", "scram-sha-256", "ldap", "radius", "pam", "bsd")


def _remote_conninfo(nhome: FstoreHome) -> str:
    """``citus.node_conninfo`` of a remote node: its own copies of the CA bundle and the
    node certificate."""
    tls = nhome.server_tls_dir
    return (f"sslmode=verify-full sslrootcert={tls / 'ca-bundle.crt'} sslcert={node_cert(nhome)} "
            f"sslkey={node_key(nhome)}")


def write_node_bundle(home: FstoreHome, host: str, out: Path, alt_names: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write the bundle a node on ``host`` needs (0600: it holds the node certificate's
    key, a superuser key to every node, and the node's server key); returns what it holds.

    Example::

        write_node_bundle(home, "10.0.0.7", Path("node.bundle"))
    """
    if not is_cluster(home):
        raise InvalidInput(f"{home.root} is not a cluster: start it with `fstore server start --workers N`")
    if not host or any(c.isspace() for c in host) or ":" in host and not _is_ipv6(host):
        raise InvalidInput(f"node host {host!r} is not a host name or IP address")
    issue_node_certificate(home, [home])
    cert, key = node_server_certificate(home, host, (host, *[a for a in alt_names if a != host]))
    # the settings of `fstore node init`, for a server set up by hand: the files in TLS_DIR,
    # its own port and socket directory
    tls = Path(TLS_DIR_PLACEHOLDER)
    settings = {k: v for k, v in node_settings(FstoreHome(Path("/")), 0, "", "*").items()
                if k not in ("port", "unix_socket_directories", "unix_socket_permissions")}
    settings |= {"ssl_cert_file": str(tls / "server.crt"), "ssl_key_file": str(tls / "server.key"),
                 "ssl_ca_file": str(tls / "cluster-ca.crt"),
                 "citus.node_conninfo": f"sslmode=verify-full sslrootcert={tls / 'ca-bundle.crt'} "
                                        f"sslcert={tls / 'node-client.crt'} sslkey={tls / 'node-client.key'}"}
    bundle = {
        "format": BUNDLE_FORMAT,
        "host": host,
        "names": [host, *alt_names],
        "warning": "holds private keys (node-client.key is a superuser key to every node of the cluster): "
                   "keep it 0600, copy it over a secure channel, delete it once the node is set up",
        "files": {
            "server.crt": cert.decode(), "server.key": key.decode(),
            "node-client.crt": node_cert(home).read_text(), "node-client.key": node_key(home).read_text(),
            "cluster-ca.crt": cluster_ca_cert(home).read_text(), "ca-bundle.crt": home.ca_bundle.read_text(),
        },
        "postgresql_conf": f"# {TLS_DIR_PLACEHOLDER}: where the files above are (server's OS user, keys 0600)\n"
                           + render_settings(settings),
        "pg_hba_conf": NODE_HBA.replace("peer map=fstore_operator", "peer"),
    }
    write_private(out, json.dumps(bundle, indent=2).encode())
    return {"bundle": str(out), "host": host, "names": bundle["names"], "files": list(BUNDLE_FILES),
            "warning": bundle["warning"]}


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def read_bundle(path: Path) -> dict[str, Any]:
    """A node bundle, checked: its format and every file.

    Example::

        read_bundle(Path("node.bundle"))["host"]
    """
    try:
        bundle = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read node bundle {path}: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise InvalidInput(f"{path} is not an fstore node bundle ({BUNDLE_FORMAT})")
    missing = [name for name in BUNDLE_FILES if not isinstance(bundle.get("files", {}).get(name), str)]
    if missing:
        raise InvalidInput(f"node bundle {path} lacks {', '.join(missing)}")
    return bundle


def init_node(nhome: FstoreHome, bundle_path: Path, port: int, listen: str = "*") -> dict[str, Any]:
    """On the node's machine: place the bundle's certificates in ``nhome``'s TLS dir,
    create (once), configure and start the node's server on ``port`` (TLS only, the
    cluster CA only, the ``pg_hba.conf`` of a local worker), and create its extensions.

    Example::

        init_node(FstoreHome(Path("/srv/fstore-node")), Path("node.bundle"), port=5432)
    """
    bundle = read_bundle(bundle_path)
    if not 1 <= port <= 65535:
        raise InvalidInput(f"--port must be between 1 and 65535, got {port}")
    if not (server.pg_bin() / "postgres").exists():
        raise ServerError(f"PostgreSQL {server.PG_MAJOR} not found in {server.pg_bin()}")
    nhome.root.mkdir(parents=True, exist_ok=True)
    nhome.save_settings(port=port, node={"host": bundle["host"], "listen": listen})
    install_node_tls(nhome, {name: bundle["files"][name].encode() for name in BUNDLE_FILES})
    start_node(nhome)
    return {"home": str(nhome.root), "host": bundle["host"], "port": port, "listen": listen,
            "data_dir": str(nhome.data_dir)}


def start_node(nhome: FstoreHome) -> None:
    """Start a node that :func:`init_node` set up (its settings are in ``nhome``).

    Example::

        start_node(FstoreHome(Path("/srv/fstore-node")))
    """
    node = nhome.settings().get("node")
    if not node:
        raise InvalidInput(f"{nhome.root} is not a node home: run `fstore node init --bundle FILE --port P`")
    start_node_server(nhome, node_settings(nhome, nhome.port, _remote_conninfo(nhome), node["listen"]),
                      f"a Citus node of an fstore cluster (host {node['host']})")


def stop_node(nhome: FstoreHome, mode: str = "fast") -> bool:
    """Stop a node's server on this machine; False when it was not running.

    Example::

        stop_node(FstoreHome(Path("/srv/fstore-node")))
    """
    return stop_node_server(nhome, mode)


def _refusal(host: str, port: int, exc: psycopg.OperationalError) -> Exception:
    """The problem a failed TLS login to a node names."""
    text = str(exc).strip()
    where = f"node {host}:{port}"
    if "does not match host name" in text:
        return InvalidInput(f"{where}: its server certificate is not for host {host!r} (verify-full); "
                            f"make its bundle with `fstore cluster node-bundle {host}` ({text})")
    if "certificate verify failed" in text:
        return InvalidInput(f"{where}: its server certificate is not signed by this fstore's CA (verify-full "
                            f"against ca/ca-bundle.crt): use a bundle of this coordinator ({text})")
    if "unknown ca" in text or "certificate unknown" in text or "bad certificate" in text:
        return InvalidInput(f"{where} does not accept the node certificate: its ssl_ca_file must be the "
                            f"cluster CA of this coordinator ({text})")
    if "pg_hba.conf" in text:
        return PermissionDenied(f"{where}: its pg_hba.conf refuses the node certificate ({text})")
    if "SSL" in text and ("off" in text or "not support" in text):
        return InvalidInput(f"{where} does not speak TLS (ssl = on is required) ({text})")
    return ServerError(f"{where} is not reachable from the coordinator: {text}")


def _fingerprints(pem: str) -> set[bytes]:
    return {c.fingerprint(hashes.SHA256()) for c in x509.load_pem_x509_certificates(pem.encode())}


def _hba_problems(conn: psycopg.Connection[Any]) -> list[str]:
    """The node's pg_hba.conf rules that accept anything but the operator's socket and
    the node certificate (a password, trust without a certificate...)."""
    problems = []
    for line, kind, method, options, error in conn.execute(
            "select line_number, type, auth_method, coalesce(options, '{}'), error from pg_hba_file_rules"):
        with_cert = any(o in ("clientcert=verify-ca", "clientcert=verify-full") for o in options)
        if error:
            problems.append(f"line {line}: {error}")
        elif method == "reject" or (kind == "local" and method == "peer"):
            continue
        elif kind in ("hostssl", "host") and (method == "cert" or (method == "trust" and with_cert)):
            continue
        elif method in _ACCEPTS_PASSWORD:
            problems.append(f"line {line} ({kind} ... {method}) accepts a password")
        else:
            problems.append(f"line {line} ({kind} ... {method}) admits logins without the node certificate")
    return problems


def check_node(home: FstoreHome, host: str, port: int) -> dict[str, Any]:
    """Check a node before it joins; its versions when it may, else the refusal naming
    the problem: not reachable, a server certificate not for ``host`` or not from
    fstore's CA, not trusting the cluster CA (only), a pg_hba.conf line that accepts
    anything but the node certificate, another PostgreSQL major or Citus version, an
    extension missing, already a member (of this or another cluster).

    Example::

        check_node(home, "10.0.0.7", 5432)   # {'postgresql': 15, 'citus': '13.2-1', ...}
    """
    name = f"{host}:{port}"
    if any((n.host, n.port) == (host, port) for n in all_nodes(home)):
        raise Conflict(f"node {name} is already a member of this cluster")
    with connect_operator(home) as conn:
        if conn.execute("select 1 from pg_dist_node where nodename = %s and nodeport = %s", (host, port)).fetchone():
            raise Conflict(f"node {name} is already a member of this cluster (pg_dist_node)")
        mine = conn.execute(
            "select current_setting('server_version_num')::int / 10000,"
            "       (select extversion from pg_extension where extname = 'citus'),"
            "       current_setting('shared_preload_libraries'), (select system_identifier from pg_control_system())"
        ).fetchone()
        extensions = [r[0] for r in conn.execute("select extname from pg_extension order by 1")]
        members = {int(r[0]) for r in conn.execute(
            "select result from run_command_on_workers('select system_identifier from pg_control_system()')"
            " where success")}
    try:
        conn = connect_node(home, Node(name, port, None, host))
    except psycopg.OperationalError as exc:
        raise _refusal(host, port, exc) from None
    with conn:
        major, citus, preload, system_id, dist_nodes, ca_pem = conn.execute(
            "select current_setting('server_version_num')::int / 10000,"
            "       (select extversion from pg_extension where extname = 'citus'),"
            "       current_setting('shared_preload_libraries'), (select system_identifier from pg_control_system()),"
            "       (select count(*) from pg_dist_node), pg_read_file(current_setting('ssl_ca_file'))").fetchone()
        created = {r[0] for r in conn.execute("select extname from pg_extension")}
        available = {r[0] for r in conn.execute("select name from pg_available_extensions")}
        hba = _hba_problems(conn)
    if system_id == mine[3] or system_id in members:
        raise Conflict(f"node {name} is already a member of this cluster (under another name)")
    if dist_nodes:
        raise Conflict(f"node {name} belongs to a Citus cluster already ({dist_nodes} rows in its pg_dist_node)")
    if major != mine[0]:
        raise InvalidInput(f"node {name} runs PostgreSQL {major}; the coordinator runs PostgreSQL {mine[0]}")
    if citus != mine[1]:
        raise InvalidInput(f"node {name} has Citus {citus or 'not created'}; the coordinator has Citus {mine[1]}")
    missing = sorted(set(WORKER_EXTENSIONS) - created) + sorted(set(extensions) - set(WORKER_EXTENSIONS) - available)
    if missing:
        raise InvalidInput(f"node {name} lacks the extension(s) {', '.join(missing)} "
                           f"(created: {', '.join(WORKER_EXTENSIONS)}; installed: every other of the coordinator's)")
    libraries = [lib.strip() for lib in preload.split(",")]
    absent = [lib.strip() for lib in mine[2].split(",") if lib.strip() not in libraries]
    if absent:
        raise InvalidInput(f"node {name}: shared_preload_libraries lacks {', '.join(absent)} (the coordinator's: {mine[2]})")
    if _fingerprints(ca_pem) != _fingerprints(cluster_ca_cert(home).read_text()):
        raise InvalidInput(f"node {name}: its ssl_ca_file must hold the cluster CA and nothing else "
                           "(any other CA's certificates could log in to it)")
    if hba:
        raise InvalidInput(f"node {name}: its pg_hba.conf must accept only the node certificate: " + "; ".join(hba))
    return {"node": name, "postgresql": major, "citus": citus, "extensions": sorted(created)}


def add_node(home: FstoreHome, host: str, port: int) -> Node:
    """Add the remote node ``host:port`` (set up by ``fstore node init``) to the running
    coordinator once :func:`check_node` passes: every role, ``citus_add_node``, the logins;
    recorded in the settings as remote (``server start/stop`` leave it alone).

    Example::

        add_node(home, "10.0.0.7", 5432)
        rebalance(home)
    """
    if not server.is_running(home):
        raise ServerError("the coordinator is not running: `fstore server start` first")
    check_node(home, host, port)
    node = Node(f"{host}:{port}", port, None, host)
    before = all_nodes(home)
    save_nodes(home, [*before, node])
    try:
        join(home, node)
    except Exception:
        with connect_operator(home) as conn:
            registered = conn.execute("select 1 from pg_dist_node where nodename = %s and nodeport = %s",
                                      (host, port)).fetchone()
        if not registered:
            save_nodes(home, before)
        raise
    return node
