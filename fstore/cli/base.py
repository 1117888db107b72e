"""What every ``fstore`` command shares: the ``main`` group, the consoles, the home, the
identity options and the way a command connects.

``--home DIR`` is a global option, given before the command (``fstore --home DIR
server start``); without it the home is ``$FSTORE_HOME``, else ``~/.fstore``. Every
command prints one clear line on failure (the database's refusal in plain words, with
its SQLSTATE), never a traceback; exit codes and the ``--json`` error object are
described in :mod:`fstore.cli.report`, JSON conventions in :mod:`fstore.cli.output`.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import psycopg
from rich.console import Console

import fstore
from fstore.cli.homes import require_home, require_server
from fstore.cli.report import err_console, reported
from fstore.home import FstoreHome
from fstore.roles import split_project_user

__all__ = ["FstoreCommand", "FstoreGroup", "as_option", "connect_as", "console", "err_console", "home_of", "main",
           "project_user_option", "store_as"]

console = Console(width=None if sys.stdout.isatty() else 200)

_HOME_HELP = ("The fstore home (default $FSTORE_HOME, else ~/.fstore). A global option: "
              "give it before the command, as in `fstore --home DIR server start`.")


class FstoreCommand(click.Command):
    """A command whose errors are reported as one line (and as JSON with ``--json``)."""

    def invoke(self, ctx: click.Context) -> Any:
        with reported(ctx.params):
            return super().invoke(ctx)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        formatter.write_paragraph()
        formatter.write_text(f"Global option, before the command: `fstore --home DIR {_subcommand_path(ctx)} ...` "
                             "(default $FSTORE_HOME, else ~/.fstore).")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_json = any(p.name == "as_json" for p in self.params)
        with reported({"as_json": takes_json and "--json" in args}):
            try:
                return super().parse_args(ctx, args)
            except click.NoSuchOption as exc:
                if exc.option_name != "--home":
                    raise
                raise click.UsageError("--home is a global option: give it before the command, as in "
                                       f"`fstore --home DIR {_subcommand_path(ctx)} ...`", ctx) from None


def _subcommand_path(ctx: click.Context) -> str:
    """``fg list`` for the context of ``fstore fg list``."""
    names = []
    while ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names))


class FstoreGroup(click.Group):
    """A group whose commands and subgroups report errors the same way."""

    command_class = FstoreCommand
    group_class = type  # subgroups are FstoreGroups too

    def invoke(self, ctx: click.Context) -> Any:
        with reported({}):
            return super().invoke(ctx)


def home_of(ctx: click.Context, *, must_exist: bool = True) -> FstoreHome:
    """The ``FstoreHome`` chosen by ``fstore --home`` / ``$FSTORE_HOME`` / ``~/.fstore``.

    Unless ``must_exist`` is false, a home ``fstore init`` has not made is refused:
    "no fstore home at X: run `fstore init`".
    """
    home = ctx.find_root().obj["home"]
    return require_home(home) if must_exist else home


def connect_as(ctx: click.Context, role: str) -> psycopg.Connection[Any]:
    """A psycopg connection (autocommit) as ``role`` with its own certificate, once the
    home's server is known to run."""
    from fstore.connection import connect

    home = require_server(home_of(ctx))
    return connect(home, role, autocommit=True)


def store_as(ctx: click.Context, role: str) -> fstore.FeatureStore:
    """A :class:`fstore.FeatureStore` as the project-user ``role``, once the server is known to run."""
    project, user = split_project_user(role)
    return fstore.connect(project, user, home=require_server(home_of(ctx)))


as_option = click.option(
    "--as", "as_role", default="fstore_admin", show_default=True, metavar="ROLE",
    help="Act as this identity (its certificate); the database decides what it may do.",
)

project_user_option = click.option(
    "--as", "as_role", required=True, envvar="FSTORE_AS", metavar="ROLE",
    help="Project-user to act as (its certificate), e.g. fraud__alice; default $FSTORE_AS.",
)


@click.group(cls=FstoreGroup, epilog="Exit codes: 0 done; 1 refused or failed (the message says what to do); "
             "2 wrong command line; 3 `server status`: not running. With --json, errors are also printed "
             "on stdout as {\"error\": {...}}.")
@click.option("--home", envvar="FSTORE_HOME", type=click.Path(file_okay=False), default=None,
              metavar="DIR", help=_HOME_HELP)
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """fstore: a feature store that lives inside PostgreSQL."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = FstoreHome.resolve(home)
