"""Throw-away fstore platforms for benchmarks and tests: a temporary home with its
own CA and running server, and a project with a Data Owner and a Data Scientist.

Example::

    home, cleanup = start_home(None)        # or start_home("/path/to/running/home")
    project = create_project(home)          # alice (Data Owner), bob (Data Scientist)
    cleanup()
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from psycopg import sql

from fstore import cluster, pki, projects, server
from fstore.connection import connect, connect_operator
from fstore.home import FstoreHome


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_home(existing: str | Path | None, prefix: str = "fst-bench-",
               settings: Mapping[str, str] | None = None,
               workers: int = 0) -> tuple[FstoreHome, Callable[[], None]]:
    """A running home: ``existing`` as given, or a new temporary one with its own server.

    A new home gets its own CA, admin certificate, free port and service file
    (``PGSERVICEFILE`` points there until cleanup, so ``~/.pg_service.conf`` is never
    touched); ``settings`` are set with ALTER SYSTEM and the server restarted. Returns
    the home and a cleanup function (a no-op for an existing home) that stops the
    server, removes the directory and puts ``PGSERVICEFILE`` back. With ``workers`` the
    server is a Citus coordinator with that many workers (:mod:`fstore.cluster`).
    """
    if existing:
        return FstoreHome(Path(existing)), lambda: None
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    home = FstoreHome(root)
    previous_service_file = os.environ.get("PGSERVICEFILE")
    os.environ["PGSERVICEFILE"] = str(root / "pg_service.conf")
    pki.init_ca(home)
    pki.issue_certificate(home, "fstore_admin")
    if workers:
        cluster.start_cluster(home, workers, port=free_port())
    else:
        server.start(home, port=free_port())
    if settings:
        with connect_operator(home, autocommit=True) as op:
            for name, value in settings.items():
                op.execute(sql.SQL("alter system set {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        server.stop(home)
        server.start(home)

    def cleanup() -> None:
        try:
            if workers:
                cluster.stop_cluster(home, mode="immediate")
            else:
                server.stop(home)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            if previous_service_file is None:
                os.environ.pop("PGSERVICEFILE", None)
            else:
                os.environ["PGSERVICEFILE"] = previous_service_file

    return home, cleanup


def create_project(home: FstoreHome, prefix: str = "bench") -> str:
    """A new project with a Data Owner (alice) and a Data Scientist (bob); returns its name."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, name, "alice")
    with connect(home, f"{name}__alice", autocommit=True) as alice:
        projects.add_member(home, alice, name, "bob", "data-scientist")
    return name


def print_report(report: Mapping[str, Any], output: str | Path | None = None) -> None:
    """Print a benchmark's JSON document, and write it to ``output`` too when given."""
    text = json.dumps(report, indent=2)
    if output:
        Path(output).write_text(text + "\n")
    print(text)
