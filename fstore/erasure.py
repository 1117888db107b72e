"""Erasure of an entity (GDPR article 17): remove its rows everywhere in a project.

:func:`forget` calls ``fstore.forget(project, keys)`` (``sql/functions/87_erasure.sql``),
which in one transaction deletes the entity's rows from every feature-group version
(offline and online), every stored training dataset, the served-vector logs and the
project's temporary tables, recomputes the statistics of the commits that held them,
audits the erasure and returns a report: rows removed per table, and what fstore
cannot reach (files already exported, fits, copies in other projects), which
:attr:`ErasureReport.needs_action` lists. Only Data Owners may erase. The database
decides everything; this module only shapes its answer.

Keys match by column name: a table is erased from when it has a column for every key
given, and loses the rows where all of them are equal (so ``{"account_id": 42}`` also
erases account 42's rows from a group keyed on ``(account_id, merchant_id)``, or one
keyed on ``tx_id`` with an ``account_id`` column).

Example::

    report = forget(fs, {"account_id": 42})
    report.rows                      # rows removed, all tables together
    report.needs_action["exports"]   # [{"path": "/data/fraud_train.parquet", ...}]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fstore.errors import InvalidInput, translated
from fstore.session import Session


class ErasedRowsWarning(UserWarning):
    """A training dataset read after an erasure holds fewer rows than it was built with."""


@dataclass(frozen=True)
class ErasureReport:
    """What one erasure removed and what it could not reach (``fstore.finish_erasure``'s report)."""

    erasure: int
    project: str
    keys: dict[str, str]
    rows: int
    tables: list[dict[str, Any]]
    statistics: list[dict[str, Any]]
    served_vectors: int
    temp_tables: list[dict[str, Any]]
    sessions_ended: int
    needs_action: dict[str, list[dict[str, Any]]]
    own_temp_tables: list[dict[str, Any]] = field(default_factory=list)
    keys_sha256: str = ""
    at: str = ""

    @classmethod
    def from_report(cls, report: Mapping[str, Any]) -> "ErasureReport":
        """Build from the JSON report ``fstore.forget`` returns."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in report.items() if k in names})

    def rows_in(self, table: str) -> int:
        """Rows removed from ``table`` (``schema.table``, or the table name alone); 0 if it was not a target."""
        return sum(t["rows"] for t in self.tables if table in (t["table"], t["table"].rpartition(".")[2]))

    @property
    def action_needed(self) -> bool:
        """True when something outside fstore's reach still holds the entity (see :attr:`needs_action`)."""
        return any(self.needs_action.get(k) for k in self.needs_action)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able values."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def entity_keys(keys: Mapping[str, Any]) -> dict[str, Any]:
    """Check the keys of one entity: a non-empty mapping of column name to a plain value.

    >>> entity_keys({"account_id": 42})
    {'account_id': 42}
    """
    if not isinstance(keys, Mapping) or not keys:
        raise InvalidInput("give the entity's keys, e.g. {'account_id': 42}")
    for name, value in keys.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"invalid key name {name!r}: give column names")
        if value is None or isinstance(value, (dict, list, tuple, set)):
            raise InvalidInput(f"key {name}: give a plain value (text, number or boolean), not {value!r}")
    return {name: (value if isinstance(value, (str, int, float, bool)) else str(value)) for name, value in keys.items()}


def forget(fs: Session, keys: Mapping[str, Any]) -> ErasureReport:
    """Erase the entity with ``keys`` everywhere in the session's project, in one transaction.

    Raises :class:`~fstore.errors.PermissionDenied` unless the caller is a Data Owner whom
    no row policy binds, :class:`~fstore.errors.InvalidInput` naming a key no feature group
    has or a value its column cannot hold. Nothing is removed when it fails.

    Example::

        report = forget(fs, {"account_id": 42})
        print(report.rows, [t["table"] for t in report.tables if t["rows"]])
    """
    checked = entity_keys(keys)
    with translated():
        with fs.conn.transaction():
            report = fs.conn.execute("select fstore.forget(%s, %s::jsonb)",
                                     (fs.project, json.dumps(checked))).fetchone()[0]
    return ErasureReport.from_report(report)


def erasures(fs: Session) -> list[dict[str, Any]]:
    """The erasures of the session's project, newest first (key names and reports, never values).

    Example::

        [(e["id"], e["report"]["rows"]) for e in erasures(fs)]
    """
    with translated():
        rows = fs.conn.execute(
            "select id, key_names, keys_sha256, session_role, requested_at, report from fstore.erasures"
            " where project = %s and state = 'done' order by id desc", (fs.project,)).fetchall()
    return [dict(zip(("id", "key_names", "keys_sha256", "session_role", "requested_at", "report"), r)) for r in rows]


__all__ = ["ErasedRowsWarning", "ErasureReport", "entity_keys", "erasures", "forget"]
