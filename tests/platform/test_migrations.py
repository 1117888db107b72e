"""The migration ledger: each file applies once, in order, and a file changed after it
was applied is refused by name instead of being skipped with its old definitions live."""

from __future__ import annotations

import hashlib

import pytest
from psycopg import sql

from fstore.errors import Conflict
from fstore.migrations import LEDGER, apply_migrations, migration_files
from tests.conftest import unique


def test_the_servers_ledger_holds_every_file_with_its_digest(operator) -> None:
    recorded = dict(operator.execute(sql.SQL("select name, sha256 from {}").format(
        sql.Identifier("public", LEDGER))).fetchall())
    assert recorded == {p.name: hashlib.sha256(p.read_text().encode()).hexdigest() for p in migration_files()}


def test_each_file_applies_once_in_order_and_a_changed_one_is_refused(operator, tmp_path) -> None:
    ledger, table = unique("ledger_"), unique("migrated_")
    first = tmp_path / "001_create.sql"
    first.write_text(f"create table public.{table} (step int);\ninsert into public.{table} values (1);\n")
    try:
        assert apply_migrations(operator, tmp_path, ledger=ledger) == ["001_create.sql"]
        assert apply_migrations(operator, tmp_path, ledger=ledger) == []
        (tmp_path / "002_more.sql").write_text(f"insert into public.{table} values (2);\n")
        assert apply_migrations(operator, tmp_path, ledger=ledger) == ["002_more.sql"]
        assert operator.execute(f"select array_agg(step order by step) from public.{table}").fetchone()[0] == [1, 2]

        first.write_text(first.read_text() + f"insert into public.{table} values (3);\n")
        with pytest.raises(Conflict, match="migration 001_create.sql has changed since it was applied"):
            apply_migrations(operator, tmp_path, ledger=ledger)
        assert operator.execute(f"select count(*) from public.{table}").fetchone()[0] == 2  # nothing re-run
    finally:
        operator.execute(sql.SQL("drop table if exists {}, {}").format(
            sql.Identifier("public", ledger), sql.Identifier("public", table)))
