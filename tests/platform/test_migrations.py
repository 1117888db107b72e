"""The migration ledger: schema migrations apply once, in order, and one changed after it
was applied is refused by name; function files are applied again, all of them in order,
whenever one is new or changed; a database of the pre-release layout is refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from fstore.errors import Conflict
from fstore.migrations import LEDGER, apply_migrations, ledger_name, migration_files
from tests.conftest import unique


def test_the_servers_ledger_holds_every_file_with_its_digest(operator: psycopg.Connection) -> None:
    recorded = dict(operator.execute(sql.SQL("select name, sha256 from {}").format(
        sql.Identifier("public", LEDGER))).fetchall())
    files = migration_files()
    assert [ledger_name(p) for p in files][:2] == ["schema/001_platform.sql", "schema/002_feature_store.sql"]
    assert recorded == {ledger_name(p): hashlib.sha256(p.read_text().encode()).hexdigest() for p in files}


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_schema_applies_once_functions_again_when_changed(operator: psycopg.Connection, tmp_path: Path) -> None:
    ledger, table, function = unique("ledger_"), unique("migrated_"), unique("f_")
    root = _tree(tmp_path, {
        "schema/001_create.sql": f"create table public.{table} (step int);\ninsert into public.{table} values (1);\n",
        "functions/10_f.sql": f"create or replace function public.{function}() returns int language sql as 'select 1';\n",
        "functions/20_g.sql": f"insert into public.{table} values (10);\n",  # counts how often it runs
    })
    try:
        assert apply_migrations(operator, root, ledger=ledger) == [
            "schema/001_create.sql", "functions/10_f.sql", "functions/20_g.sql"]
        assert apply_migrations(operator, root, ledger=ledger) == []
        (root / "schema/002_more.sql").write_text(f"insert into public.{table} values (2);\n")
        assert apply_migrations(operator, root, ledger=ledger) == ["schema/002_more.sql"]  # functions again too
        (root / "functions/10_f.sql").write_text(
            f"create or replace function public.{function}() returns int language sql as 'select 2';\n")
        assert apply_migrations(operator, root, ledger=ledger) == ["functions/10_f.sql"]
        assert operator.execute(f"select public.{function}()").fetchone()[0] == 2
        steps = operator.execute(f"select array_agg(step order by step) from public.{table}").fetchone()[0]
        assert steps == [1, 2, 10, 10, 10]  # the function files ran three times, in one piece each time

        first = root / "schema/001_create.sql"
        first.write_text(first.read_text() + f"insert into public.{table} values (3);\n")
        with pytest.raises(Conflict, match="schema migration schema/001_create.sql has changed since it was applied"):
            apply_migrations(operator, root, ledger=ledger)
        assert operator.execute(f"select count(*) from public.{table}").fetchone()[0] == 5  # nothing re-run
    finally:
        operator.execute(sql.SQL("drop table if exists {}, {}").format(
            sql.Identifier("public", ledger), sql.Identifier("public", table)))
        operator.execute(sql.SQL("drop function if exists {}()").format(sql.Identifier("public", function)))


def test_a_failing_function_file_leaves_the_old_functions(operator: psycopg.Connection, tmp_path: Path) -> None:
    ledger, function = unique("ledger_"), unique("f_")
    root = _tree(tmp_path, {
        "functions/10_f.sql": f"create or replace function public.{function}() returns int language sql as 'select 1';\n",
    })
    try:
        apply_migrations(operator, root, ledger=ledger)
        (root / "functions/10_f.sql").write_text(
            f"create or replace function public.{function}() returns int language sql as 'select 2';\n")
        (root / "functions/20_broken.sql").write_text("select no_such_function();\n")
        with pytest.raises(psycopg.errors.UndefinedFunction):
            apply_migrations(operator, root, ledger=ledger)
        assert operator.execute(f"select public.{function}()").fetchone()[0] == 1  # all or nothing
    finally:
        operator.execute(sql.SQL("drop table if exists {}").format(sql.Identifier("public", ledger)))
        operator.execute(sql.SQL("drop function if exists {}()").format(sql.Identifier("public", function)))


def test_the_pre_release_layout_is_refused(operator: psycopg.Connection, tmp_path: Path) -> None:
    ledger = unique("ledger_")
    operator.execute(sql.SQL("create table public.{} (name text primary key, applied_at timestamptz not null "
                             "default now(), sha256 text)").format(sql.Identifier(ledger)))
    try:
        operator.execute(sql.SQL("insert into public.{} (name) values ('001_catalog.sql')").format(
            sql.Identifier(ledger)))
        with pytest.raises(Conflict, match="pre-release SQL layout .*start a new fstore home"):
            apply_migrations(operator, _tree(tmp_path, {"schema/001_x.sql": "select 1;\n"}), ledger=ledger)
    finally:
        operator.execute(sql.SQL("drop table if exists {}").format(sql.Identifier("public", ledger)))
