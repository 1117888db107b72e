"""``fstore cluster``: the Citus cluster of ``fstore server start --workers N``."""

from __future__ import annotations

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
            nodes.add_row(node["name"], f"{node['host']}:{node['port']}", str(node.get("running", "")),
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
