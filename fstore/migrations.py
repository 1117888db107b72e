"""Apply the ordered SQL migrations in ``sql/`` (``NNN_name.sql``), each once, in order.

The ledger (``public.fstore_migrations``) records each applied file with its SHA-256:
a file changed after it was applied is refused by name (the database still holds the
old definitions), never silently skipped.

Example::

    with connect_operator(home, autocommit=True) as conn:
        apply_migrations(conn)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fstore.errors import Conflict

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
LEDGER = "fstore_migrations"


def migration_files(directory: Path = SQL_DIR) -> list[Path]:
    """The migration files, in the order they apply."""
    return sorted(p for p in directory.glob("[0-9][0-9][0-9]_*.sql"))


def apply_migrations(conn: psycopg.Connection[Any], directory: Path = SQL_DIR, ledger: str = LEDGER) -> list[str]:
    """Apply every migration not yet recorded; each in its own transaction. Returns their names.

    Raises :class:`Conflict` naming the file when an applied migration has changed since.
    """
    table = sql.Identifier("public", ledger)
    conn.execute(sql.SQL("create table if not exists {} "
                         "(name text primary key, applied_at timestamptz not null default now())").format(table))
    conn.execute(sql.SQL("alter table {} add column if not exists sha256 text").format(table))
    conn.execute(sql.SQL("revoke all on {} from public").format(table))
    done = dict(conn.execute(sql.SQL("select name, sha256 from {}").format(table)).fetchall())
    applied = []
    for path in migration_files(directory):
        text = path.read_text()
        digest = hashlib.sha256(text.encode()).hexdigest()
        if path.name in done:
            if done[path.name] is not None and done[path.name] != digest:
                raise Conflict(
                    f"migration {path.name} has changed since it was applied to this database, which still "
                    "holds its old definitions: put the change in a new migration file, or (before a release) "
                    "start a new fstore home")
            continue
        with conn.transaction():
            conn.execute(text)
            conn.execute(sql.SQL("insert into {} (name, sha256) values (%s, %s)").format(table), (path.name, digest))
        applied.append(path.name)
    return applied
