"""A local Citus cluster: the coordinator (the home's own server) and N workers.

``fstore server start --workers N`` starts N worker nodes under
``$FSTORE_HOME/cluster/workerI`` (each a data directory, port, socket, log and TLS
server certificate of its own), then the coordinator with ``citus`` preloaded, registers
the coordinator and the workers, and applies fstore's migrations on the coordinator,
which Citus propagates (schemas, roles, grants, distributed tables, their policies).

Node authentication (``docs/cluster.md``): clients connect to the coordinator only. A
worker trusts one certificate authority, the *cluster CA* (``ca/cluster-ca.crt``), which
is not the CA of fstore's users and signs exactly one certificate: the node certificate
(CN ``fstore_node``) that the coordinator's Citus presents (``citus.node_conninfo``:
``sslcert``, ``sslkey``, ``sslmode=verify-full``). A worker's ``pg_hba.conf`` accepts TLS
logins whose client certificate chains to the cluster CA, as any role (Citus logs in as
the session's role, and as the superuser for its metadata); a project-user's own
certificate fails the TLS handshake there. PostgreSQL 15's ``pg_ident.conf`` cannot map
one CN to every role (``all`` arrived in 16), hence this scheme; no password anywhere.

Citus opens its connections to a worker as the session's *current* role, so the roles
fstore creates NOLOGIN on the coordinator (project group roles, fstore's own roles) may
log in on the workers (:func:`sync_workers`); only the node certificate reaches them.

Example::

    start_cluster(home, workers=2)
    print(cluster_status(home))
    stop_cluster(home)
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fstore import server
from fstore.connection import DATABASE, connect_operator
from fstore.errors import InvalidInput, ServerError
from fstore.home import FstoreHome
from fstore.citus import (
    Node,
    all_nodes,
    cluster_ca_cert,
    cluster_dir,
    is_cluster,
    node_conninfo,
    add_workers,
    register_nodes,
    remote_nodes,
    workers,
)
from fstore.cluster_nodes import (
    LOOPBACK,
    connect_node,
    create_roles_on_node,
    install_node_tls,
    issue_node_certificate,
    node_server_certificate,
    node_settings,
    start_node_server,
    stop_node_server,
)

MAX_WORKERS = 16
# group and service roles: NOLOGIN on the coordinator, LOGIN on the workers (Citus's connections)
_WORKER_LOGIN_ROLES = r"^([a-z][a-z0-9_]{0,29}[a-z0-9]__(owner|data_owner|data_scientist)|fstore_[a-z_]+)$"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def citus_installed() -> bool:
    """True when PostgreSQL 15 has the citus extension (``citus.so`` and its control file)."""
    lib = server.pg_bin().parent / "lib" / "citus.so"
    control = Path(f"/usr/share/postgresql/{server.PG_MAJOR}/extension/citus.control")
    return lib.exists() and control.exists()


def _plan_workers(home: FstoreHome, count: int) -> list[Node]:
    """The first ``count`` workers: those already configured, then new ones on free ports."""
    if not 1 <= count <= MAX_WORKERS:
        raise InvalidInput(f"--workers must be between 1 and {MAX_WORKERS}, got {count}")
    nodes = workers(home)
    if len(nodes) > count:
        raise InvalidInput(f"this home has {len(nodes)} workers; --workers {count} would drop some "
                           "(removing workers is not supported)")
    for index in range(len(nodes) + 1, count + 1):
        name = f"worker{index}"
        nodes.append(Node(name, _free_port(), FstoreHome(cluster_dir(home) / name)))
    save_nodes(home, [*nodes, *remote_nodes(home)])
    for node in nodes:
        node.local_home.root.mkdir(parents=True, exist_ok=True)
        node.local_home.save_settings(port=node.port)
    return nodes


def save_nodes(home: FstoreHome, nodes: list[Node]) -> None:
    """Record the cluster's nodes (local and remote) in the coordinator's settings."""
    home.save_settings(cluster={"workers": [node.entry() for node in nodes]})


# --- workers -------------------------------------------------------------------


def _start_worker(home: FstoreHome, node: Node) -> None:
    """Certificates (once), configuration and start of a local worker (as ``fstore node
    init`` does for a remote node: :func:`fstore.cluster_nodes.start_node_server`)."""
    nhome = node.local_home
    files = {"cluster-ca.crt": cluster_ca_cert(home).read_bytes()}
    if not (nhome.server_tls_dir / "server.crt").exists():
        cert, key = node_server_certificate(home, node.name, LOOPBACK)
        files |= {"server.crt": cert, "server.key": key}
    install_node_tls(nhome, files)
    start_node_server(nhome, node_settings(nhome, node.port, node_conninfo(home, nhome)),
                      "a Citus worker of the coordinator in " + str(home.root))


def sync_workers(home: FstoreHome) -> int:
    """Bring the workers' role logins and database privileges in line with the coordinator;
    returns how many changes were made.

    Citus connects to a worker as the session's *current* role, so fstore's group and
    service roles (NOLOGIN on the coordinator) may log in on the workers; only the node
    certificate reaches them there. Project-users keep the coordinator's LOGIN/NOLOGIN
    (Citus propagates it), so that removing a member reaches the workers. Citus does not
    propagate privileges on a database it did not create: the coordinator's grants on
    ``fstore`` (CREATE for ``fstore_control``, TEMPORARY for owners...) are copied.
    Call it after creating a project (:func:`fstore.projects.create_project` does).
    """
    if not is_cluster(home):
        return 0
    with connect_operator(home) as conn:
        grants = conn.execute(
            "select a.grantee::regrole::text, a.privilege_type, a.is_grantable"
            "  from pg_database d, aclexplode(d.datacl) a"
            " where d.datname = current_database() and a.grantee <> 0 and a.grantee <> d.datdba").fetchall()
    changed = 0
    for node in all_nodes(home):
        try:
            conn = connect_node(home, node, autocommit=True)
        except psycopg.OperationalError:
            if node.remote:  # a remote node that is down: `cluster status` shows it; synced next time
                continue
            raise
        with conn:
            conn.execute("set citus.enable_ddl_propagation = off")  # a local change: Citus does the same
            names = [r[0] for r in conn.execute(
                "select rolname from pg_roles where not rolcanlogin and rolname ~ %s", (_WORKER_LOGIN_ROLES,))]
            for name in names:
                conn.execute(sql.SQL("alter role {} login").format(sql.Identifier(name)))
            changed += len(names)
            have = set(conn.execute(
                "select a.grantee::regrole::text, a.privilege_type, a.is_grantable"
                "  from pg_database d, aclexplode(d.datacl) a where d.datname = current_database()").fetchall())
            existing = {r[0] for r in conn.execute("select rolname from pg_roles")}
            public = conn.execute(
                "select exists (select 1 from pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
                " where d.datname = current_database() and a.grantee = 0 and a.privilege_type = 'CONNECT')").fetchone()
            if not (public and public[0]):
                # a fresh node's default, which a resync (citus_activate_node) replaces with the
                # coordinator's ACL: Citus logs in as roles without CONNECT on the coordinator
                # (fstore_roles...); pg_hba and the cluster CA are the gate here
                conn.execute(sql.SQL("grant connect, temporary on database {} to public").format(sql.Identifier(DATABASE)))
                changed += 1
            for grantee, privilege, grantable in grants:
                if (grantee, privilege, grantable) in have or grantee.strip('"') not in existing:
                    continue
                conn.execute(sql.SQL("grant {} on database {} to {}{}").format(
                    sql.SQL(privilege), sql.Identifier(DATABASE), sql.Identifier(grantee.strip('"')),
                    sql.SQL(" with grant option" if grantable else "")))
                changed += 1
    return changed


def precreate_worker_roles(home: FstoreHome, roles: list[str],
                           memberships: list[tuple[str, str]] = ()) -> list[str]:
    """Create ``roles`` (LOGIN) on every worker where they are missing, committed, before a
    control-plane call creates them on the coordinator; returns those created.

    ``fstore.create_project`` creates roles as ``fstore_roles`` and then uses them as
    ``fstore_control``; Citus sends each role's statements over its own connection, in one
    distributed transaction, so the second connection would not see the roles the first
    created (``role ... does not exist`` on the worker). Citus's propagated CREATE ROLE
    becomes an ALTER of a role that exists; :func:`sync_workers` sets LOGIN back after.
    ``memberships`` (group, member) are granted too, for the same reason (``GRANT
    p__owner TO fstore_control`` runs as ``fstore_roles``, ``CREATE SCHEMA ... AUTHORIZATION
    p__owner`` as ``fstore_control``).
    """
    created: list[str] = []
    for node in all_nodes(home):
        with connect_node(home, node, autocommit=True) as conn:
            conn.execute("set citus.enable_ddl_propagation = off")
            existing = {r[0] for r in conn.execute("select rolname from pg_roles where rolname = any(%s)", (roles,))}
            for role in roles:
                if role not in existing:
                    conn.execute(sql.SQL("create role {} login").format(sql.Identifier(role)))
                    created.append(role)
            for group, member in memberships:
                conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(group), sql.Identifier(member)))
    return created


def drop_owned_on_workers(home: FstoreHome, roles: list[str]) -> None:
    """``REASSIGN OWNED BY`` each role to ``fstore_control`` and ``DROP OWNED BY`` it (its
    privileges) on every worker, committed, before ``fstore.delete_project``
    drops them: its DROP OWNED runs as ``fstore_control`` and its DROP ROLE as
    ``fstore_roles`` over two connections, and the second cannot see what the first dropped
    (``role ... cannot be dropped because some objects depend on it``). Deleting is final:
    if the coordinator's call fails afterwards, the admin runs it again."""
    for node in all_nodes(home):
        with connect_node(home, node, autocommit=True) as conn:
            conn.execute("set citus.enable_ddl_propagation = off")
            existing = [r[0] for r in conn.execute("select rolname from pg_roles where rolname = any(%s)", (roles,))]
            for role in existing:  # the schema stays (fstore_control's): the coordinator's DROP SCHEMA drops it
                conn.execute(sql.SQL("reassign owned by {} to fstore_control").format(sql.Identifier(role)))
                conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
                _revoke_database_privileges(conn, role)


def _revoke_database_privileges(conn: psycopg.Connection[Any], role: str) -> None:
    """Revoke what ``role`` holds on the database, as each grantor: DROP OWNED revokes only
    what the database's owner granted, and Citus's propagated grants on ``fstore`` are
    ``fstore_control``'s (``privileges for database fstore`` then blocks DROP ROLE)."""
    grantors = [r[0] for r in conn.execute(
        "select distinct a.grantor::regrole::text from pg_database d, aclexplode(d.datacl) a"
        " where d.datname = current_database() and a.grantee = %s::regrole", (role,))]
    for grantor in grantors:
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(grantor.strip('"'))))
        conn.execute(sql.SQL("revoke all on database {} from {} cascade").format(
            sql.Identifier(DATABASE), sql.Identifier(role)))
        conn.execute("reset role")


def drop_worker_roles(home: FstoreHome, roles: list[str]) -> None:
    """Drop ``roles`` from the workers where they own nothing (undo :func:`precreate_worker_roles`)."""
    for node in all_nodes(home):
        with connect_node(home, node, autocommit=True) as conn:
            conn.execute("set citus.enable_ddl_propagation = off")
            for role in roles:
                conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


def start_cluster(home: FstoreHome, workers_count: int, port: int | None = None,
                  listen: str = "localhost") -> server.StartResult:
    """Start (initialising once) ``workers_count`` workers, then the coordinator."""
    if not home.exists():
        raise ServerError(f"no fstore home at {home.root}: run `fstore init` first")
    if not citus_installed():
        raise ServerError("Citus is not installed for PostgreSQL 15: run scripts/setup.sh "
                          "(or install Citus 13.2 from its packages)")
    nodes = _plan_workers(home, workers_count)
    issue_node_certificate(home, [home, *(n.local_home for n in nodes)])
    for node in nodes:
        _start_worker(home, node)
    for name in ("node-client.key", "node-client.crt"):
        server._chown_to_server(home.server_tls_dir / name)
    result = server.start(home, port=port, listen=listen)
    if result.already_running:
        with connect_operator(home, autocommit=True) as conn:
            add_workers(home, conn)
    sync_workers(home)
    return result


def stop_cluster(home: FstoreHome, mode: str = "fast") -> list[str]:
    """Stop the coordinator (and its CRL keeper), then the local workers; the names
    stopped. Remote nodes are left alone (their machines run them)."""
    stopped = ["coordinator"] if server.stop(home) else []
    for node in workers(home):
        if stop_node_server(node.local_home, mode):
            stopped.append(node.name)
    return stopped


def cluster_status(home: FstoreHome) -> dict[str, Any]:
    """The nodes (role, host, port, running, reachable from the coordinator) and their
    shard placements, and the shards of each distributed table with their placement per
    node (``placements``: node name -> shards there)."""
    info: dict[str, Any] = {"coordinator": {"port": home.port, "running": server.is_running(home)},
                            "nodes": [], "tables": []}
    known = {(n.host, n.port): n for n in all_nodes(home)}
    if not info["coordinator"]["running"]:
        info["nodes"] = [{"name": n.name, "host": n.host, "port": n.port, "remote": n.remote}
                         | ({} if n.home is None else {"running": server.is_running(n.home)}) for n in known.values()]
        return info
    with connect_operator(home, autocommit=True) as conn:
        rows = conn.execute(
            "select n.nodename, n.nodeport, n.groupid, n.isactive, n.noderole::text,"
            "       (select count(*) from pg_dist_placement p where p.groupid = n.groupid)"
            "  from pg_dist_node n order by n.groupid").fetchall()
        for host, port, group, active, role, shards in rows:
            node = known.get((host, port))
            entry = {"name": "coordinator" if group == 0 else (node.name if node else f"{host}:{port}"),
                     "host": host, "port": port, "group": group, "active": active, "role": role,
                     "shards": shards}
            if group != 0:
                entry["remote"] = node is None or node.remote
                entry["healthy"] = bool(conn.execute(
                    "select citus_check_connection_to_node(%s, %s)", (host, port)).fetchone()[0])
            if node is not None and node.home is not None:  # a remote node's server is not ours to see
                entry["running"] = server.is_running(node.home)
            info["nodes"].append(entry)
        names = {(e["host"], e["port"]): e["name"] for e in info["nodes"]}
        placements: dict[str, dict[str, int]] = {}
        for table, host, port, count in conn.execute(
                "select table_name::text, nodename, nodeport, count(*) from citus_shards group by 1, 2, 3 order by 1, 2, 3"):
            placements.setdefault(table, {})[names.get((host, port), f"{host}:{port}")] = int(count)
        groups = {table: group for table, group in conn.execute(
            "select format('%I.%I', project, t), format('%s.%s v%s', project, name, version)"
            "  from fstore.feature_groups, unnest(array[offline_table, online_table]) t where t is not null")}
        info["tables"] = [
            {"table": str(table), "type": kind, "distribution_column": column, "shards": shards,
             "colocation_id": colocation, "placements": placements.get(str(table), {}),
             "feature_group": groups.get(str(table))}
            for table, kind, column, shards, colocation in conn.execute(
                "select table_name::text, citus_table_type, distribution_column, shard_count, colocation_id"
                "  from citus_tables order by 1")
        ]
    return info


def add_worker(home: FstoreHome) -> Node:
    """Start one more local worker (initdb, certificates, extensions) and add it to the
    running coordinator (:func:`join`); its shards come with :func:`rebalance`.

    Example::

        node = add_worker(home)
        rebalance(home)
    """
    if not server.is_running(home):
        raise ServerError("the coordinator is not running: `fstore server start` first")
    nodes = _plan_workers(home, len(workers(home)) + 1)
    node = nodes[-1]
    issue_node_certificate(home, [home, *(n.local_home for n in nodes)])
    _start_worker(home, node)
    join(home, node)
    return node


def join(home: FstoreHome, node: Node) -> None:
    """Add a started node (local or remote) to the running coordinator: every role first,
    then ``citus_add_node`` (roles, memberships and distributed objects are copied to it),
    then the logins and database privileges (:func:`sync_workers`). ``node`` must be in
    the settings already (:func:`save_nodes`)."""
    for name in ("node-client.key", "node-client.crt"):
        server._chown_to_server(home.server_tls_dir / name)
    # every role first (as precreate_worker_roles does for a new project): citus_add_node's
    # metadata sync otherwise meets memberships granted by roles it has not created yet
    create_roles_on_node(home, node)
    with connect_operator(home, autocommit=True) as conn:
        register_nodes(conn, [node])
    sync_workers(home)


def rebalance(home: FstoreHome) -> dict[str, Any]:
    """Move shards so that every worker holds about as many (Citus's
    ``rebalance_table_shards``, co-located shards moving together, writes blocked on a
    shard while it is copied); returns the moves planned and the placements after.

    Example::

        report = rebalance(home)
        print(len(report["moves"]), report["placements"])
    """
    with connect_operator(home, autocommit=True) as conn:
        if conn.execute("show citus.local_hostname").fetchone()[0] != str(home.socket_dir):
            # a cluster started before fstore set it (fstore.citus.coordinator_settings)
            conn.execute(sql.SQL("alter system set citus.local_hostname = {}").format(sql.Literal(str(home.socket_dir))))
            conn.execute("select pg_reload_conf()")
        moves = [{"table": str(t), "shard": int(s), "from": f"{sh}:{sp}", "to": f"{th}:{tp}"}
                 for t, s, _size, sh, sp, th, tp in conn.execute(
                     "select table_name::text, shardid, shard_size, sourcename, sourceport, targetname, targetport"
                     "  from get_rebalance_table_shards_plan()")]
        if moves:
            conn.execute("select rebalance_table_shards(shard_transfer_mode => 'block_writes')")
        placements = {f"{h}:{p}": int(c) for h, p, c in conn.execute(
            "select nodename, nodeport, count(*) from citus_shards group by 1, 2 order by 1, 2")}
    return {"moves": moves, "placements": placements}
