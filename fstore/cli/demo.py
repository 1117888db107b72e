"""``fstore demo``: the end-to-end walkthrough on the embedded local server."""

from __future__ import annotations

import click

from fstore.cli.base import home_of, main


@main.command()
@click.option("--port", type=int, default=None, help="Port for the embedded server.")
@click.option("--transactions", type=int, default=1_000_000, show_default=True,
              help="Size of the synthetic transaction data set.")
@click.pass_context
def demo(ctx: click.Context, port: int | None, transactions: int) -> None:
    """Run the end-to-end demo: server, CA, projects, feature groups, training, serving."""
    from fstore.demo import run_demo

    run_demo(home_of(ctx, must_exist=False), port=port, transactions=transactions)
