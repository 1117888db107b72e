"""Bring a database up to the SQL in ``sql/``: versioned schema migrations, then the
repeatable function files.

* ``sql/schema/NNN_name.sql`` -- tables, roles, grants: applied once each, in order. The
  ledger (``public.fstore_migrations``) records each with its SHA-256; a file changed
  after it was applied is refused by name (the database holds its old version), so a
  schema change is always a new file.
* ``sql/functions/NN_name.sql`` -- functions, views, triggers, event triggers and the
  catalog's policies, written to be applied again (``create or replace``, ``drop ... if
  exists``). When any of them is new or changed, all of them are applied again, in order,
  in one transaction: a function has one home, and fixing it is an edit of that file.

``$FSTORE_SQL_DIR`` points at another ``sql/`` tree (the upgrade test builds a home from
a release's files). A database made by the pre-release layout (``sql/NNN_name.sql``) is
refused: start a new fstore home.

Example::

    with connect_operator(home, autocommit=True) as conn:
        apply_migrations(conn)
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from fstore.errors import Conflict

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
LEDGER = "fstore_migrations"
_PRE_RELEASE = re.compile(r"^[0-9]{3}_[a-z_]+\.sql$")


def sql_dir() -> Path:
    """The ``sql/`` tree migrations come from: ``$FSTORE_SQL_DIR`` or the package's own."""
    return Path(os.environ.get("FSTORE_SQL_DIR") or SQL_DIR)


def schema_files(directory: Path | None = None) -> list[Path]:
    """The versioned schema migrations, in the order they apply."""
    return sorted((directory or sql_dir()).glob("schema/[0-9][0-9][0-9]_*.sql"))


def function_files(directory: Path | None = None) -> list[Path]:
    """The repeatable function files, in the order they apply."""
    return sorted((directory or sql_dir()).glob("functions/[0-9][0-9]_*.sql"))


def migration_files(directory: Path | None = None) -> list[Path]:
    """Every file, schema migrations first."""
    return schema_files(directory) + function_files(directory)


def ledger_name(path: Path) -> str:
    """A file's name in the ledger: ``schema/001_platform.sql``, ``functions/10_identity.sql``."""
    return f"{path.parent.name}/{path.name}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def apply_migrations(conn: psycopg.Connection[Any], directory: Path | None = None, ledger: str = LEDGER) -> list[str]:
    """Apply every schema migration not yet recorded, each in its own transaction, then,
    if anything is new or changed, every function file in one transaction. Returns the
    names applied.

    Raises :class:`Conflict` naming the file when an applied schema migration has changed
    since, and when the database was made by the pre-release layout.
    """
    root = directory or sql_dir()
    table = sql.Identifier("public", ledger)
    conn.execute(sql.SQL("create table if not exists {} "
                         "(name text primary key, applied_at timestamptz not null default now())").format(table))
    conn.execute(sql.SQL("alter table {} add column if not exists sha256 text").format(table))
    conn.execute(sql.SQL("revoke all on {} from public").format(table))
    done = dict(conn.execute(sql.SQL("select name, sha256 from {}").format(table)).fetchall())
    old = sorted(name for name in done if _PRE_RELEASE.match(name))
    if old:
        raise Conflict(
            f"this database was made by fstore's pre-release SQL layout ({', '.join(old[:3])}...), which has no "
            "upgrade path: start a new fstore home (`fstore init` in a new $FSTORE_HOME)")
    record = sql.SQL("insert into {} (name, sha256) values (%s, %s) "
                     "on conflict (name) do update set sha256 = excluded.sha256, applied_at = now()").format(table)
    applied = []
    for path in schema_files(root):
        name, text = ledger_name(path), path.read_text()
        digest = _digest(text)
        if name in done:
            if done[name] is not None and done[name] != digest:
                raise Conflict(
                    f"schema migration {name} has changed since it was applied to this database, which holds "
                    "its old version: put the change in a new file under sql/schema/")
            continue
        with conn.transaction():
            conn.execute(text)
            conn.execute(record, (name, digest))
        applied.append(name)
    functions = [(ledger_name(p), p.read_text()) for p in function_files(root)]
    if applied or any(done.get(name) != _digest(text) for name, text in functions):
        with conn.transaction():
            for name, text in functions:
                conn.execute(text)
                conn.execute(record, (name, _digest(text)))
        applied += [name for name, text in functions if done.get(name) != _digest(text)]
    return applied
