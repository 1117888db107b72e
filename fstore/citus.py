"""What a Citus coordinator needs to know of its cluster, without starting anything: where
the workers live, their ports, the settings a coordinator adds and the registration of its
nodes (:mod:`fstore.server` calls these; :mod:`fstore.cluster` starts and stops nodes).

Example::

    if is_cluster(home):
        print([node.port for node in workers(home)])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fstore.home import FstoreHome

NODE_CN = "fstore_node"


@dataclass(frozen=True)
class Node:
    """One worker node: its name, port and host; a local worker also has the directories
    of its own server (``home``), a remote node (``fstore cluster add-node``) has none."""

    name: str
    port: int
    home: FstoreHome | None  # a local node's home: server/pgdata, server/run, server/tls, server/postgresql.log
    host: str = "localhost"

    @property
    def remote(self) -> bool:
        """True for a node on another machine, which fstore neither starts nor stops."""
        return self.home is None

    def entry(self) -> dict[str, Any]:
        """Its entry in the coordinator's ``settings.json`` (``cluster.workers``)."""
        if self.remote:
            return {"name": self.name, "host": self.host, "port": self.port, "remote": True}
        return {"name": self.name, "port": self.port}

    @property
    def local_home(self) -> FstoreHome:
        """The home of a local worker (refused for a remote node: fstore has no files of it)."""
        if self.home is None:
            raise ValueError(f"{self.name} is a remote node: fstore has no files of it")
        return self.home


def cluster_dir(home: FstoreHome) -> Path:
    """Where the workers of ``home`` live."""
    return home.root / "cluster"


def cluster_ca_cert(home: FstoreHome) -> Path:
    """The cluster CA's certificate: the only CA a worker trusts for client certificates."""
    return home.ca_dir / "cluster-ca.crt"


def cluster_ca_key(home: FstoreHome) -> Path:
    return home.ca_dir / "cluster-ca.key"


def node_cert(node_home: FstoreHome) -> Path:
    """The node certificate (CN ``fstore_node``) a node presents to the workers."""
    return node_home.server_tls_dir / "node-client.crt"


def node_key(node_home: FstoreHome) -> Path:
    return node_home.server_tls_dir / "node-client.key"


def is_cluster(home: FstoreHome) -> bool:
    """True when ``home``'s server is a Citus coordinator (``server start --workers N`` ran)."""
    return bool(home.settings().get("cluster"))


def all_nodes(home: FstoreHome) -> list[Node]:
    """Every worker node of the cluster, as saved in its settings: the local workers and
    the remote nodes (``fstore cluster add-node``), in the order they were added."""
    entries = home.settings().get("cluster", {}).get("workers", [])
    return [Node(e["name"], int(e["port"]), None, e["host"]) if e.get("remote")
            else Node(e["name"], int(e["port"]), FstoreHome(cluster_dir(home) / e["name"])) for e in entries]


def workers(home: FstoreHome) -> list[Node]:
    """The home's local workers (under ``$FSTORE_HOME/cluster``, started and stopped with
    the coordinator); :func:`all_nodes` adds the remote ones."""
    return [node for node in all_nodes(home) if not node.remote]


def remote_nodes(home: FstoreHome) -> list[Node]:
    """The remote nodes of the cluster (``fstore cluster add-node``)."""
    return [node for node in all_nodes(home) if node.remote]


def node_conninfo(home: FstoreHome, node_home: FstoreHome) -> str:
    """``citus.node_conninfo`` of a node: verify the worker's server certificate against
    fstore's CA bundle, present the node certificate."""
    return " ".join([
        "sslmode=verify-full",
        f"sslrootcert={home.ca_bundle}",
        f"sslcert={node_cert(node_home)}",
        f"sslkey={node_key(node_home)}",
    ])


def coordinator_settings(home: FstoreHome) -> dict[str, Any]:
    """Settings :func:`fstore.server.start` adds on a coordinator."""
    return {
        "shared_preload_libraries": "citus,pgaudit,pg_cron",  # citus must come first; pg_cron runs monitors
        "citus.node_conninfo": node_conninfo(home, home),
        "citus.enable_create_role_propagation": "on",
        # fstore's append-only and erasure triggers go with the tables to every shard
        "citus.enable_unsafe_triggers": "on",
        "max_prepared_transactions": 100,  # two-phase commit of multi-node transactions
        "wal_level": "logical",  # shard moves (rebalance)
        # Citus's connections from the coordinator to itself (the cleanup records of shard
        # moves) go over its Unix socket (peer, as the operator; no TLS there): over TCP they
        # would present the node certificate, which the coordinator does not trust
        "citus.local_hostname": str(home.socket_dir),
    }


def prepare_coordinator(home: FstoreHome, conn: psycopg.Connection[Any]) -> None:
    """On the coordinator (operator connection), before the migrations: create the citus
    extension and register the coordinator itself (group 0)."""
    conn.execute("create extension if not exists citus")
    conn.execute("select citus_set_coordinator_host('localhost', %s)", (home.port,))
    revoke_tenant_citus_functions(conn)


# Citus functions that run statements on the workers (where fstore's event triggers, the DDL
# guards, do not run), distribute, move or change tables, or create objects: PUBLIC may
# execute them by default; on an fstore coordinator only the superuser may. Querying and
# the internals Citus's plans call as the user (read_intermediate_result, the partial
# aggregates) stay available.
TENANT_REFUSED_CITUS_FUNCTIONS = (
    r"^(run_command_on_(workers|all_nodes|coordinator|shards|placements|colocated_placements)|master_run_on_worker|"
    r"create_distributed_(table|table_concurrently|function)|create_reference_table|undistribute_table|"
    r"alter_distributed_table|alter_table_set_access_method|alter_old_partitions_set_access_method|"
    r"citus_add_local_table_to_metadata|truncate_local_data_after_distributing_table|"
    r"citus_schema_(distribute|undistribute)|isolate_tenant_to_new_shard|citus_split_shard_by_split_points|"
    r"(citus|master)_(move|copy)_shard_placement|rebalance_table_shards|citus_rebalance_start|"
    r"citus_create_restore_point|create_time_partitions|drop_old_time_partitions|"
    r"update_distributed_table_colocation|mark_tables_colocated|replicate_reference_tables|"
    r"replicate_table_shards|create_intermediate_result)$"
)
# (Citus's own event triggers call other functions of it as the user, master_unmark_object_distributed
# among them: those stay.)


def revoke_tenant_citus_functions(conn: psycopg.Connection[Any]) -> int:
    """Revoke EXECUTE from PUBLIC on the Citus functions of :data:`TENANT_REFUSED_CITUS_FUNCTIONS`
    (operator connection, on the coordinator); returns how many were revoked."""
    names = [r[0] for r in conn.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        "  join pg_depend d on d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'"
        "  join pg_extension e on e.oid = d.refobjid and e.extname = 'citus'"
        " where p.proname ~ %s and p.prokind = 'f' and has_function_privilege('public', p.oid, 'execute')",
        (TENANT_REFUSED_CITUS_FUNCTIONS,))]
    for name in names:  # regprocedure text: rendered by the catalog, quoted where needed
        conn.execute(sql.SQL("revoke execute on function {} from public").format(sql.SQL(name)))
    return len(names)


def add_workers(home: FstoreHome, conn: psycopg.Connection[Any]) -> list[str]:
    """On the coordinator, after the migrations: add the workers not registered yet.

    ``citus_add_node`` copies every role, membership and distributed object to the new
    node. Adding the workers after the migrations (not before) matters: a migration that
    creates a NOLOGIN role and then acts as it (``fstore_control``) would make Citus log
    in to the workers as that role before :func:`fstore.cluster.sync_workers` can
    let it. Remote nodes are added by ``fstore cluster add-node`` (:mod:`fstore.remote_nodes`),
    which creates the roles on them first. Returns the ``host:port`` of the nodes added.
    """
    return register_nodes(conn, workers(home))


def register_nodes(conn: psycopg.Connection[Any], nodes: list[Node]) -> list[str]:
    """``citus_add_node`` for each of ``nodes`` not in ``pg_dist_node`` yet (operator
    connection, on the coordinator); the ``host:port`` of those added."""
    added = []
    for node in nodes:
        known = conn.execute("select 1 from pg_dist_node where nodename = %s and nodeport = %s",
                             (node.host, node.port)).fetchone()
        if not known:
            conn.execute("select citus_add_node(%s, %s)", (node.host, node.port))
            added.append(f"{node.host}:{node.port}")
    return added


# --- migrations on a running cluster -----------------------------------------------------------
# Re-applying sql/ with the workers attached would send each statement to the workers over a
# connection of the role that runs it (the files switch between the superuser and
# fstore_control), and two such connections touching one catalog row in one transaction end in
# a distributed deadlock (seen: ALTER FUNCTION ... OWNER as postgres, then GRANT EXECUTE as
# fstore_control). So the coordinator applies them alone, and the workers are then brought in
# line by Citus's own resync, over one superuser connection per node.

def workers_attached(conn: psycopg.Connection[Any]) -> bool:
    """True when worker nodes are registered already: a restart of a cluster's coordinator."""
    row = conn.execute("select exists (select 1 from pg_dist_node where groupid <> 0 and noderole = 'primary')"
                       ).fetchone()
    return bool(row and row[0])


def resync_pending_file(home: FstoreHome) -> Path:
    """Present while the coordinator's SQL is newer than the workers' (removed once resynced)."""
    return home.server_dir / "workers-resync-pending"


def resync_workers(home: FstoreHome, conn: psycopg.Connection[Any]) -> list[str]:
    """After migrations applied on the coordinator alone (operator connection, autocommit):
    mark fstore's new functions distributed where Citus would have (those depending only on
    what the workers have), then ``citus_activate_node`` each worker, which recreates every
    distributed object there (functions with their owners and grants, roles, shell tables,
    metadata) in one superuser transaction per node. Returns the functions newly distributed.

    Until it succeeds :func:`resync_pending_file` stays, so the next start retries.
    """
    marker = resync_pending_file(home)
    marker.touch()
    new = [r[0] for r in conn.execute(
        "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'fstore' and not exists (select 1 from pg_dist_object o"
        "   where o.classid = 'pg_proc'::regclass and o.objid = p.oid) order by 1")]
    distributed = []
    for function in new:
        try:
            with conn.transaction():
                conn.execute("select create_distributed_function(%s::regprocedure)", (function,))
            distributed.append(function)
        except psycopg.errors.Error:
            pass  # depends on a coordinator-only object (a catalog table's row type): stays local, as on creation
    for name, port in conn.execute("select nodename, nodeport from pg_dist_node"
                                   " where groupid <> 0 and noderole = 'primary' and isactive order by nodeid").fetchall():
        conn.execute("select citus_activate_node(%s, %s)", (name, port))
    marker.unlink()
    return distributed
