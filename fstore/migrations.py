"""Apply the ordered SQL migrations in ``sql/`` (``NNN_name.sql``), each once, in order.

Example::

    with connect_operator(home, autocommit=True) as conn:
        apply_migrations(conn)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
LEDGER = "fstore_migrations"


def migration_files(directory: Path = SQL_DIR) -> list[Path]:
    """The migration files, in the order they apply."""
    return sorted(p for p in directory.glob("[0-9][0-9][0-9]_*.sql"))


def apply_migrations(conn: psycopg.Connection[Any], directory: Path = SQL_DIR) -> list[str]:
    """Apply every migration not yet recorded; each in its own transaction. Returns their names."""
    conn.execute(
        f"create table if not exists public.{LEDGER} "
        "(name text primary key, applied_at timestamptz not null default now())"
    )
    conn.execute(f"revoke all on public.{LEDGER} from public")
    done = {name for (name,) in conn.execute(f"select name from public.{LEDGER}")}
    applied = []
    for path in migration_files(directory):
        if path.name in done:
            continue
        with conn.transaction():
            conn.execute(path.read_text())
            conn.execute(f"insert into public.{LEDGER} (name) values (%s)", (path.name,))
        applied.append(path.name)
    return applied
