"""Declarative row-level policies: ``policies/<project>.yml``, checked with pglast,
recorded in the catalog and applied by the project's Data Owner as the owner role.

File format::

    policies:
      - name: consented_only          # [a-z][a-z0-9_]*
        table: accounts                # a table, or a feature group name (all its versions, offline and online)
        roles: [data_scientist]        # data_scientist: every reader but the project's Data Owners
                                       # (its Data Scientists and the members of projects it is
                                       # shared with); data_owner; everyone
        using: "consent"               # a boolean expression over the table's columns

Each policy is a RESTRICTIVE policy: rows the predicate rejects are invisible to
those roles. Every table created later in the project gets them too (the DDL
guard in ``sql/004_guards.sql`` re-applies them).

Example::

    apply_policies(conn_as_data_owner, "fraud", Path("policies/fraud.yml"))
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from fstore.errors import InvalidInput, translated
from fstore.expressions import safe_predicate
from fstore.roles import check_project_name, group_role

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ROLES = ("data_owner", "data_scientist", "everyone")


@dataclass(frozen=True)
class RowPolicy:
    """One declared policy, validated."""

    name: str
    table: str
    roles: tuple[str, ...]
    using: str
    command: str = "select"


def policy_file(project: str) -> Path:
    """The default policy file of a project: ``policies/<project>.yml``."""
    return POLICY_DIR / f"{check_project_name(project)}.yml"


def load_policies(path: Path) -> list[RowPolicy]:
    """Read and validate a policy file; errors name the policy and the field."""
    if not path.exists():
        raise InvalidInput(f"no policy file at {path}")
    document = yaml.safe_load(path.read_text()) or {}
    entries = document.get("policies", []) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(f"{path}: expected a mapping with a 'policies' list")
    policies: list[RowPolicy] = []
    for index, entry in enumerate(entries):
        where = f"{path.name}: policy #{index + 1}"
        if not isinstance(entry, dict):
            raise InvalidInput(f"{where}: expected a mapping")
        name = str(entry.get("name", ""))
        if not NAME.match(name):
            raise InvalidInput(f"{where}: invalid name {name!r} (use a-z, 0-9, _)")
        table = str(entry.get("table", ""))
        if not TABLE.match(table):
            raise InvalidInput(f"{where} ({name}): invalid table {table!r}")
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise InvalidInput(f"{where} ({name}): roles must be a non-empty list of {', '.join(ROLES)}")
        command = str(entry.get("command", "select"))
        if command not in ("select", "all"):
            raise InvalidInput(f"{where} ({name}): command must be select or all")
        try:
            predicate = safe_predicate(str(entry.get("using", "")))
        except InvalidInput as exc:
            raise InvalidInput(f"{where} ({name}): {exc}") from exc
        policies.append(RowPolicy(name, table, tuple(roles), predicate, command))
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path.name}: policy names must be unique")
    return policies


def apply_policies(conn: psycopg.Connection[Any], project: str, policies: list[RowPolicy]) -> list[str]:
    """Record the policies and (re)apply them to every table of the project, in one transaction.

    ``conn`` is a Data Owner's connection: the catalog function checks that, and the
    policies are created as the project's owner role. Returns the tables touched.
    """
    check_project_name(project)
    payload = [
        {"name": p.name, "table": p.table, "roles": list(p.roles), "command": p.command, "using": p.using}
        for p in policies
    ]
    with translated(), conn.transaction():
        conn.execute("select fstore.record_row_policies(%s, %s::jsonb)", (project, json.dumps(payload)))
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(group_role(project, "owner"))))
        tables = [
            name for (name,) in conn.execute(
                "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "where n.nspname = %s and c.relkind in ('r', 'p') order by 1", (project,)
            )
        ]
        for table in tables:
            conn.execute("select fstore.apply_table_policies(%s, %s)", (project, table))
        conn.execute("reset role")
    return tables


def describe(policies: list[RowPolicy]) -> list[dict[str, Any]]:
    """Policies as plain dictionaries (for printing)."""
    return [asdict(p) for p in policies]
