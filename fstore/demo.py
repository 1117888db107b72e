"""The end-to-end demo, one step after another, each printed as it happens."""

from __future__ import annotations

from rich.console import Console

from fstore import pki, server
from fstore.connection import connect
from fstore.home import FstoreHome

console = Console()


def step(title: str) -> None:
    """Print a demo step heading."""
    console.rule(f"[bold cyan]{title}")


def run_demo(home: FstoreHome, port: int | None = None, transactions: int = 1_000_000) -> None:
    """Run every demo step against the embedded server of ``home``."""
    step("1. the fstore CA and the embedded PostgreSQL")
    if pki.init_ca(home):
        pki.issue_certificate(home, "fstore_admin")
        console.print(f"created CA, server and admin certificates in {home.root}")
    result = server.start(home, port)
    console.print(f"server {'already running' if result.already_running else 'started'} on port {result.port}")
    with connect(home, "fstore_admin") as conn:
        who, ssl, version, serial = conn.execute(
            "select current_user, ssl, version, client_serial from pg_stat_ssl where pid = pg_backend_pid()"
        ).fetchone()
    console.print(f"certificate login: current_user={who} ssl={ssl} {version} serial={serial}")
