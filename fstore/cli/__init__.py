"""The ``fstore`` command line: a thin shell over the library.

Every command prints one clear line on failure (the database's refusal in
plain words, with its SQLSTATE), never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console

from fstore.errors import FstoreError, from_database
from fstore.home import FstoreHome

console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


class FstoreGroup(click.Group):
    """A click group that turns fstore and database errors into one readable line."""

    def invoke(self, ctx: click.Context) -> Any:
        import psycopg

        try:
            return super().invoke(ctx)
        except FstoreError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(1)
        except psycopg.Error as exc:
            err_console.print(f"[bold red]error:[/] {from_database(exc)}", highlight=False)
            sys.exit(1)


def home_of(ctx: click.Context) -> FstoreHome:
    """The ``FstoreHome`` chosen by ``--home`` / ``$FSTORE_HOME``."""
    return ctx.find_root().obj["home"]


def connect_as(ctx: click.Context, role: str) -> Any:
    """A psycopg connection (autocommit) as ``role`` with its own certificate."""
    from fstore.connection import connect

    return connect(home_of(ctx), role, autocommit=True)


as_option = click.option(
    "--as", "as_role", default="fstore_admin", show_default=True, metavar="ROLE",
    help="Act as this identity (its certificate); the database decides what it may do.",
)


@click.group(cls=FstoreGroup)
@click.option(
    "--home", envvar="FSTORE_HOME", type=click.Path(file_okay=False), default=None,
    help="fstore home directory (default $FSTORE_HOME or ~/.fstore).",
)
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """fstore: a feature store that lives inside PostgreSQL."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = FstoreHome.resolve(home)


def _register() -> None:
    from fstore.cli import platform  # noqa: F401  (commands register themselves)

    for module in ("projects", "featuregroups", "dbt", "training", "export", "drift", "demo"):
        try:
            __import__(f"fstore.cli.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fstore.cli.{module}":
                raise


_register()
