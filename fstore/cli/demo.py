"""``fstore demo``: the end-to-end walkthrough on the embedded local server."""

from __future__ import annotations

import click

from fstore.cli.base import home_of, main


@main.command()
@click.option("--port", type=int, default=None, help="Port for the embedded server.")
@click.option("--transactions", type=int, default=1_000_000, show_default=True,
              help="Size of the synthetic transaction data set.")
@click.option("--workers", type=int, default=None,
              help="Run it on a Citus cluster: the server as coordinator and N workers (docs/cluster.md).")
@click.pass_context
def demo(ctx: click.Context, port: int | None, transactions: int, workers: int | None) -> None:
    """Run the end-to-end demo: server, CA, projects, feature groups, training, serving."""
    from fstore.demo import run_demo

    run_demo(home_of(ctx, must_exist=False), port=port, transactions=transactions, workers=workers)
