"""``fstore node``: on a node's own machine, set up and run a Citus node of an fstore
cluster from the bundle ``fstore cluster node-bundle`` wrote (docs/cluster.md, "Remote
nodes"). The node's files live in the home given by ``--home`` / ``$FSTORE_HOME``."""

from __future__ import annotations

from pathlib import Path

import click

from fstore import remote_nodes
from fstore.cli.base import console, home_of, main
from fstore.cli.output import echo_json, json_option


@main.group("node")
def node_group() -> None:
    """Run a Citus node of an fstore cluster on this machine (a remote node)."""


@node_group.command("init")
@click.option("--bundle", "bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The file `fstore cluster node-bundle HOST --out FILE` wrote on the coordinator.")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="The node's TCP port.")
@click.option("--listen", default="*", show_default=True, help="listen_addresses (the coordinator must reach it).")
@json_option
@click.pass_context
def node_init(ctx: click.Context, bundle: Path, port: int, listen: str, as_json: bool) -> None:
    """Create (once), configure and start this node's server from BUNDLE: TLS only, the
    cluster CA only, no password; then `fstore cluster add-node HOST:PORT` on the coordinator."""
    home = home_of(ctx, must_exist=False)
    info = remote_nodes.init_node(home, bundle, port, listen)
    if as_json:
        echo_json(info)
    else:
        console.print(f"node running on port {port} ({info['data_dir']}); on the coordinator: "
                      f"fstore cluster add-node {info['host']}:{port}. Delete {bundle} now: it holds private keys.")


@node_group.command("start")
@click.pass_context
def node_start(ctx: click.Context) -> None:
    """Start this node's server (as `node init` configured it)."""
    remote_nodes.start_node(home_of(ctx, must_exist=False))
    console.print("node started")


@node_group.command("stop")
@click.pass_context
def node_stop(ctx: click.Context) -> None:
    """Stop this node's server (the coordinator's `cluster status` shows it unhealthy)."""
    stopped = remote_nodes.stop_node(home_of(ctx, must_exist=False))
    console.print("node stopped" if stopped else "node was not running")
