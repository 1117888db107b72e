"""Declarative row-level policies: ``policies/<project>.yml``, checked with pglast,
sent to the database as a structured predicate tree that it renders itself, and
applied by fstore to every table they cover (``fstore.set_row_policies``).

File format::

    policies:
      - name: hide_pep_accounts        # [a-z][a-z0-9_]*
        table: accounts                # a table, or a feature group name (all its versions, offline and online)
        roles: [data_scientist]        # data_scientist: every reader but the project's Data Owners
                                       # (its Data Scientists and the members of projects it is
                                       # shared with); data_owner; everyone
        using: "not is_pep"            # a boolean expression over the table's columns
        entity: account_id             # optional: the rows hidden in `table` are hidden entities,
                                       # hidden in every table of the project with this column

Each policy is a RESTRICTIVE policy: rows the predicate rejects are invisible to
those roles. With ``entity``, a reader it binds sees a row of any other table of the
project (feature groups offline and online, training datasets, plain tables) only if
they can see its key in ``table``. Training datasets also carry the row policies of
the feature groups they read. Every table created later in the project gets them too.

Example::

    apply_policies(conn_as_data_owner, "fraud", load_policies(Path("policies/fraud.yml")))
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg
import yaml

from fstore.errors import InvalidInput, translated
from fstore.expressions import predicate_tree
from fstore.roles import check_project_name

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
    entity: str | None = None

    def payload(self) -> dict[str, Any]:
        """The policy as the database takes it: the predicate as a structured tree."""
        return {"name": self.name, "table": self.table, "roles": list(self.roles), "command": self.command,
                "predicate": predicate_tree(self.using), "entity": self.entity}


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
        if not NAME.fullmatch(name):
            raise InvalidInput(f"{where}: invalid name {name!r} (use a-z, 0-9, _)")
        table = str(entry.get("table", ""))
        if not TABLE.fullmatch(table):
            raise InvalidInput(f"{where} ({name}): invalid table {table!r}")
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
            raise InvalidInput(f"{where} ({name}): roles must be a non-empty list of {', '.join(ROLES)}")
        command = str(entry.get("command", "select"))
        if command not in ("select", "all"):
            raise InvalidInput(f"{where} ({name}): command must be select or all")
        entity = entry.get("entity")
        if entity is not None and (not isinstance(entity, str) or not TABLE.fullmatch(entity)):
            raise InvalidInput(f"{where} ({name}): entity must name the key column, got {entity!r}")
        using = str(entry.get("using", ""))
        try:
            predicate_tree(using)
        except InvalidInput as exc:
            raise InvalidInput(f"{where} ({name}): {exc}") from exc
        policies.append(RowPolicy(name, table, tuple(roles), using, command, entity))
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path.name}: policy names must be unique")
    return policies


def apply_policies(conn: psycopg.Connection[Any], project: str, policies: list[RowPolicy]) -> int:
    """Set the project's row policies (replacing the earlier ones) and apply them to every
    table of the project, in one transaction. ``conn`` is a Data Owner's connection (the
    database checks). Returns the number of policies.
    """
    check_project_name(project)
    payload = [p.payload() for p in policies]
    with translated(), conn.transaction():
        return conn.execute("select fstore.set_row_policies(%s, %s::jsonb)", (project, json.dumps(payload))).fetchone()[0]


def describe(policies: list[RowPolicy]) -> list[dict[str, Any]]:
    """Policies as plain dictionaries (for printing)."""
    return [asdict(p) for p in policies]
