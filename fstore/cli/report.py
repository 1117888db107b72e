"""How a command fails: one line on stderr, a JSON error with ``--json``, one exit code.

Exit codes, the same with and without ``--json``:

====  ==================================================================================
0     done
1     fstore or the database refused or failed (permission, not found, invalid input,
      conflict, no home, server not running, ...): the message says what to do
2     the command line is wrong (unknown option, missing argument; click's usage error)
3     ``fstore server status`` only: the server is not running
====  ==================================================================================

With ``--json`` an error is also printed on stdout as one JSON object, so that stdout
always holds one JSON document::

    {"error": {"kind": "permission_denied", "message": "only Data Owners of fraud may add
     members; ...", "sqlstate": "42501", "exit_code": 1}}

``kind`` is the error class in snake case (``permission_denied``, ``not_found``,
``invalid_input``, ``conflict``, ``server_error``, ``error``, ``usage``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from fstore.cli.output import echo_json
from fstore.cli.refusals import explain
from fstore.errors import FstoreError, from_database, is_database_error

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3

err_console = Console(stderr=True, soft_wrap=True)


def kind_of(exc: BaseException) -> str:
    """``PermissionDenied`` -> ``permission_denied``; click's errors are ``usage``."""
    if isinstance(exc, click.ClickException):
        return "usage"
    name = type(exc).__name__
    return "error" if name == "FstoreError" else re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_document(exc: BaseException, exit_code: int) -> dict[str, Any]:
    """The ``{"error": ...}`` object printed with ``--json``."""
    if isinstance(exc, click.ClickException):
        message = exc.format_message()
    else:  # the words without the " (SQLSTATE ...)" that str() adds: the SQLSTATE has its own key
        message = Exception.__str__(exc)
    return {"error": {"kind": kind_of(exc), "message": message,
                      "sqlstate": getattr(exc, "sqlstate", None), "exit_code": exit_code}}


def fail(exc: FstoreError, as_json: bool) -> NoReturn:
    """Print ``exc`` as one line on stderr (and as JSON on stdout) and exit 1."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    if as_json:
        echo_json(error_document(exc, EXIT_ERROR))
    sys.exit(EXIT_ERROR)


@contextmanager
def reported(params: Mapping[str, Any]) -> Iterator[None]:
    """Run a command body; turn its fstore, database and click errors into the forms above.

    ``params`` are the command's parameters (``as_json`` chooses JSON; ``project`` and
    ``as_role`` word a refusal).
    """
    as_json = bool(params.get("as_json"))
    try:
        yield
    except FstoreError as exc:
        fail(explain(exc, params), as_json)
    except click.ClickException as exc:
        if as_json:
            echo_json(error_document(exc, exc.exit_code))
        raise
    except Exception as exc:
        if not is_database_error(exc):  # psycopg's and ADBC's; anything else is a bug to show
            raise
        fail(explain(from_database(exc), params), as_json)
