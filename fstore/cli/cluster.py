"""``fstore cluster``: the Citus cluster of ``fstore server start --workers N``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from fstore import cluster
from fstore.cli.base import console, home_of, main
from fstore.cli.homes import require_server
from fstore.cli.output import echo_json, json_option
from fstore.cli.report import EXIT_ERROR, EXIT_NOT_RUNNING


@main.group("cluster")
def cluster_group() -> None:
    """Inspect the Citus cluster (coordinator and workers)."""


@cluster_group.command("status")
@json_option
@click.pass_context
def cluster_status(ctx: click.Context, as_json: bool) -> None:
    """Nodes (port, running, reachable from the coordinator, shard placements) and the
    shards of each distributed table (its feature group, shard count, placement per node). Exits 3 when the coordinator is down, 1 when a
    worker is unhealthy."""
    home = home_of(ctx)
    if not cluster.is_cluster(home):
        raise click.UsageError(f"{home.root} is not a cluster: start it with `fstore server start --workers N`")
    info = cluster.cluster_status(home)
    if info["coordinator"]["running"]:
        require_server(home)
    if as_json:
        echo_json(info)
    else:
        nodes = Table("node", "host:port", "running", "healthy", "shard placements", box=None)
        for node in info["nodes"]:
            running = "remote" if node.get("remote") else str(node.get("running", ""))
            nodes.add_row(node["name"], f"{node['host']}:{node['port']}", running,
                          str(node.get("healthy", "")), str(node.get("shards", "")))
        console.print(nodes)
        if info["tables"]:
            tables = Table("table", "feature group", "type", "distribution column", "shards", "placement",
                           "colocation", box=None)
            for table in info["tables"]:
                placement = ", ".join(f"{node}: {count}" for node, count in table["placements"].items())
                tables.add_row(table["table"], table["feature_group"] or "", table["type"],
                               table["distribution_column"], str(table["shards"]), placement,
                               str(table["colocation_id"]))
            console.print(tables)
    if not info["coordinator"]["running"]:
        ctx.exit(EXIT_NOT_RUNNING)
    if any(node.get("healthy") is False or node.get("running") is False for node in info["nodes"]):
        ctx.exit(EXIT_ERROR)


@cluster_group.command("add-worker")
@json_option
@click.pass_context
def cluster_add_worker(ctx: click.Context, as_json: bool) -> None:
    """Start one more local worker and add it to the coordinator (its shards come with
    `fstore cluster rebalance`)."""
    home = home_of(ctx)
    if not cluster.is_cluster(home):
        raise click.UsageError(f"{home.root} is not a cluster: start it with `fstore server start --workers N`")
    require_server(home)
    node = cluster.add_worker(home)
    info = {"name": node.name, "host": node.host, "port": node.port}
    if as_json:
        echo_json(info)
    else:
        console.print(f"added {node.name} ({node.host}:{node.port}); run `fstore cluster rebalance` to move shards to it")


@cluster_group.command("rebalance")
@json_option
@click.pass_context
def cluster_rebalance(ctx: click.Context, as_json: bool) -> None:
    """Move shards so that every worker holds about as many (co-located shards together)."""
    home = home_of(ctx)
    if not cluster.is_cluster(home):
        raise click.UsageError(f"{home.root} is not a cluster: start it with `fstore server start --workers N`")
    require_server(home)
    report = cluster.rebalance(home)
    if as_json:
        echo_json(report)
    else:
        console.print(f"{len(report['moves'])} shard move(s); placements: "
                      + ", ".join(f"{node}: {count}" for node, count in report["placements"].items()))


@cluster_group.command("node-bundle")
@click.argument("host")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The bundle file to write (0600: it holds private keys).")
@click.option("--alt-name", "alt_names", multiple=True, help="Another name or IP of the node for its certificate.")
@json_option
@click.pass_context
def cluster_node_bundle(ctx: click.Context, host: str, out: Path, alt_names: tuple[str, ...], as_json: bool) -> None:
    """Write what a node on HOST needs to join (its server certificate for HOST, the node
    certificate and key, the cluster CA, fstore's CA bundle, the settings and pg_hba.conf);
    on the node's machine: `fstore --home DIR node init --bundle FILE --port P`."""
    from fstore import remote_nodes

    home = home_of(ctx)
    info = remote_nodes.write_node_bundle(home, host, out, alt_names)
    if as_json:
        echo_json(info)
    else:
        console.print(f"wrote {out} for {host}: {info['warning']}")
        console.print(f"next, on {host}: fstore --home DIR node init --bundle {out.name} --port P; "
                      f"then here: fstore cluster add-node {host}:P")


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r} is not HOST:PORT (e.g. 10.0.0.7:5432)", param_hint="HOST:PORT")
    return host, int(port)


@cluster_group.command("add-node")
@click.argument("address", metavar="HOST:PORT")
@json_option
@click.pass_context
def cluster_add_node(ctx: click.Context, address: str, as_json: bool) -> None:
    """Add a node on another machine (set up with `fstore node init`) after checking it:
    TLS verify-full of its certificate, the same PostgreSQL major and Citus version, its
    extensions, its CA and pg_hba.conf; its shards come with `fstore cluster rebalance`."""
    from fstore import remote_nodes

    home = home_of(ctx)
    host, port = _host_port(address)
    if not cluster.is_cluster(home):
        raise click.UsageError(f"{home.root} is not a cluster: start it with `fstore server start --workers N`")
    require_server(home)
    node = remote_nodes.add_node(home, host, port)
    info = {"name": node.name, "host": node.host, "port": node.port, "remote": True}
    if as_json:
        echo_json(info)
    else:
        console.print(f"added {node.name}; run `fstore cluster rebalance` to move shards to it")
