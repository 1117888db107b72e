"""The ``fstore`` command line: a thin shell over the library.

The ``main`` group and what commands share live in :mod:`fstore.cli.base`; each module
below adds its commands to it. ``--home DIR`` is a global option, given before the
command (``fstore --home DIR server start``). Exit codes and the ``--json`` error
object: :mod:`fstore.cli.report`; JSON conventions: :mod:`fstore.cli.output`.
"""

from __future__ import annotations

from fstore.cli.base import (
    FstoreCommand,
    FstoreGroup,
    as_option,
    connect_as,
    console,
    err_console,
    home_of,
    main,
    project_user_option,
    store_as,
)

# the commands, each module adding its own to ``main`` (after the names above: fstore.cli.dbt imports them
# from here)
from fstore.cli import demo, drift, export, featuregroups, featureviews, platform, projects, training  # noqa: E402, F401
from fstore.cli import dbt  # noqa: E402, F401
from fstore.cli import erasure  # noqa: E402, F401
from fstore.cli import cluster  # noqa: E402, F401
from fstore.cli import node  # noqa: E402, F401
from fstore.cli import monitors  # noqa: E402, F401

__all__ = ["FstoreCommand", "FstoreGroup", "as_option", "connect_as", "console", "err_console", "home_of", "main",
           "project_user_option", "store_as"]
