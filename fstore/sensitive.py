"""Sensitive features: marked by a Data Owner, hidden from everyone else by column privileges.

A feature marked sensitive (``fg.set_sensitive(["is_pep"])``, ``fstore fg set-sensitive``,
dbt column ``meta: {sensitive: true}``, or ``select fstore.set_sensitive(...)``) is read
only by the project's Data Owners and by the people a grant in ``policies/<project>.yml``
names. Data Scientists and the members of projects it is shared with are refused the
column wherever it is: offline and online tables of every version of the group, the
training datasets built from it, statistics, slices, drift, exports and feature views.
The SQL is ``sql/functions/42_sensitive.sql``; this module only calls it.

Grants, in the policy file next to the row policies::

    sensitive_grants:
      - name: compliance_reads_pep
        features: [account_profile:is_pep]   # group:feature
        roles: [carol, data_scientist]        # users of the project, or its data_scientist group

Example::

    fs.get_feature_group("account_profile").set_sensitive(["is_pep"])
    readable_features(bob_group, None)        # every feature bob may read
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import yaml

from fstore.errors import InvalidInput, translated
from fstore.roles import check_project_name
from fstore.session import Session



class _Group(Protocol):
    """What :func:`readable_features` needs of a feature group (a
    :class:`fstore.featuregroups.FeatureGroup`, which imports this module: no import back)."""

    id: int
    store: Any

NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
REFERENCE = re.compile(r"^[a-z][a-z0-9_]*:[a-z_][a-z0-9_]*$")


def _names(features: str | Sequence[str]) -> list[str]:
    names = [features] if isinstance(features, str) else list(features)
    if not names or not all(isinstance(f, str) and f for f in names):
        raise InvalidInput("give the features by name, e.g. ['is_pep']")
    return names


def set_sensitive(fs: Session, group: str, features: str | Sequence[str], sensitive: bool = True, *,
                  project: str | None = None) -> list[str]:
    """Mark ``features`` of feature group ``group`` (every version) sensitive, or unmark them
    with ``sensitive=False``; returns the group's sensitive features. Data Owners only; audited.

    Example::

        set_sensitive(fs, "account_profile", ["is_pep"])          # ['is_pep']
        set_sensitive(fs, "account_profile", ["is_pep"], False)   # []
    """
    with translated():
        row = fs.conn.execute("select fstore.set_sensitive(%s, %s::text[], %s, %s)",
                              (group, _names(features), bool(sensitive), project or fs.project)).fetchone()
    return list(row[0])


def sensitive_features(fs: Session, group: str, project: str | None = None) -> list[str]:
    """The sensitive features of a feature group the caller can see (of any version).

    Example::

        sensitive_features(fs, "account_profile")   # ['is_pep']
    """
    with translated():
        rows = fs.conn.execute("select feature from fstore.sensitive_features where project = %s "
                               "and feature_group = %s order by feature", (project or fs.project, group)).fetchall()
    return [r[0] for r in rows]


def readable_features(group: _Group, features: Sequence[str] | None) -> list[str] | None:
    """``features`` if the caller may read each one (else :class:`~fstore.errors.PermissionDenied`
    naming the first it may not: a sensitive feature); for ``None``, every feature it may read.
    Drift, statistics and reads ask it before touching rows.

    Example::

        readable_features(fg, ["amount"])   # ['amount']
        readable_features(fg, None)         # every readable feature, sensitive ones left out
    """
    if isinstance(features, str):
        features = [features]
    with translated():
        row = group.store.conn.execute("select fstore.check_readable_features(%s, %s::text[])",
                                       (group.id, list(features) if features is not None else None)).fetchone()
    return list(row[0]) if row[0] is not None else None


def require_readable_columns(fs: Session, schema: str, table: str, columns: Sequence[str] | None = None) -> None:
    """Raise :class:`~fstore.errors.PermissionDenied` naming the first column of ``schema.table``
    (of ``columns``, default all) the caller may not read, and the sensitive feature it holds.

    Example::

        require_readable_columns(fs, "fraud", "fraud_train__v1")
    """
    with translated():
        fs.conn.execute("select fstore.check_readable_columns(format('%%I.%%I', %s::text, %s::text)::regclass, "
                        "%s::text[])", (schema, table, list(columns) if columns is not None else None))


# --- grants in policies/<project>.yml -----------------------------------------------------------
@dataclass(frozen=True)
class SensitiveGrant:
    """Who may read sensitive features besides the project's Data Owners."""

    name: str
    features: tuple[str, ...]   # group:feature
    roles: tuple[str, ...]      # user names of the project, or data_scientist

    def payload(self) -> dict[str, Any]:
        """The grant as ``fstore.set_sensitive_grants`` takes it."""
        return {"name": self.name, "features": list(self.features), "roles": list(self.roles)}


def load_sensitive_grants(path: Path) -> list[SensitiveGrant]:
    """The ``sensitive_grants`` of a policy file (none when it has no such section); errors name
    the grant and the field. The database checks again that the features and users exist."""
    if not path.exists():
        raise InvalidInput(f"no policy file at {path}")
    document = yaml.safe_load(path.read_text()) or {}
    entries = document.get("sensitive_grants", []) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise InvalidInput(f"{path}: sensitive_grants must be a list")
    grants = []
    for index, entry in enumerate(entries):
        where = f"{path.name}: sensitive grant #{index + 1}"
        if not isinstance(entry, dict) or not NAME.fullmatch(str(entry.get("name", ""))):
            raise InvalidInput(f"{where}: give a name (a-z, 0-9, _)")
        features, roles = entry.get("features"), entry.get("roles")
        if not isinstance(features, list) or not features or not all(
                isinstance(f, str) and REFERENCE.fullmatch(f) for f in features):
            raise InvalidInput(f"{where} ({entry['name']}): features must be a non-empty list of group:feature")
        if not isinstance(roles, list) or not roles or not all(isinstance(r, str) and NAME.fullmatch(r) for r in roles):
            raise InvalidInput(f"{where} ({entry['name']}): roles must be a non-empty list of user names "
                               "or data_scientist")
        grants.append(SensitiveGrant(str(entry["name"]), tuple(features), tuple(roles)))
    names = [g.name for g in grants]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path.name}: sensitive grant names must be unique")
    return grants


def apply_sensitive_grants(conn: psycopg.Connection[Any], project: str, grants: list[SensitiveGrant]) -> int:
    """Set the project's sensitive grants (replacing the earlier ones) and apply them to every
    table holding those features, in one transaction. ``conn`` is a Data Owner's connection.

    Example::

        apply_sensitive_grants(conn, "fraud", load_sensitive_grants(Path("policies/fraud.yml")))
    """
    check_project_name(project)
    with translated(), conn.transaction():
        return conn.execute("select fstore.set_sensitive_grants(%s, %s::jsonb)",
                            (project, json.dumps([g.payload() for g in grants]))).fetchone()[0]


def describe(grants: list[SensitiveGrant]) -> list[dict[str, Any]]:
    """Grants as plain dictionaries (for printing)."""
    return [asdict(g) for g in grants]
