"""The attack table's vocabulary: a case is (actor, steps, expected outcome).

A case's steps run in order on the actor's own connection (its real certificate);
every step but the last must succeed, the last is the attempt. The outcome is one of

* :class:`Denied`  -- the attempt fails with this SQLSTATE and a message matching a pattern;
* :class:`Hidden`  -- the attempt runs but returns exactly these rows (RLS hides the rest,
  or a bypass attempt still sees only what the actor may see): a refusal by omission;
* :class:`Allowed` -- the attempt works (and returns these rows, when given).

Names in ``{braces}`` are filled in from the world (``{a}`` is project A's name,
``{bob}`` his login role, ``{fg}`` A's feature group id, ...); other braces, such
as array literals ``'{id}'``, are left alone.

Example::

    deny("scientist_writes", "bob", "insert into {a}.t values (1000, 'x', true)",
         state="42501", match="permission denied for table t")
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

Step = str | tuple[str, tuple[Any, ...]]

ROWS = 20  # rows of A's table t in the shared world (tests/security/conftest.py)
CONSENTED = 15  # rows with consent (id % 4 <> 0): all that A's Data Scientists may see
Rows = list[tuple[Any, ...]]


@dataclass(frozen=True)
class Denied:
    """The attempt must fail with ``state`` and a message that matches ``match``."""

    state: str
    match: str


@dataclass(frozen=True)
class Hidden:
    """The attempt runs but must return exactly ``rows``."""

    rows: Rows


@dataclass(frozen=True)
class Allowed:
    """The attempt must succeed; when ``rows`` is given it must return exactly those."""

    rows: Rows | None = None


Outcome = Denied | Hidden | Allowed


@dataclass(frozen=True)
class Case:
    """One attack (or one permitted action) by one actor."""

    id: str
    actor: str
    steps: tuple[Step, ...]
    expect: Outcome = field(compare=False)

    @property
    def kind(self) -> str:
        """``denied`` for refusals (errors and hidden rows), ``allowed`` otherwise."""
        return "allowed" if isinstance(self.expect, Allowed) else "denied"


def deny(id: str, actor: str, *steps: Step, state: str = "42501", match: str = "permission denied") -> Case:
    """A case whose last step must be refused with ``state`` and a message matching ``match``."""
    return Case(id, actor, steps, Denied(state, match))


def hide(id: str, actor: str, *steps: Step, rows: Rows) -> Case:
    """A case whose last step must return only ``rows``."""
    return Case(id, actor, steps, Hidden(rows))


def allow(id: str, actor: str, *steps: Step, rows: Rows | None = None) -> Case:
    """A case whose steps must all succeed (the last returning ``rows`` when given)."""
    return Case(id, actor, steps, Allowed(rows))


_NAME = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def fill(text: str, names: dict[str, Any]) -> str:
    """Replace ``{key}`` by ``names[key]`` for known keys only (array literals survive)."""
    return _NAME.sub(lambda m: str(names[m.group(1)]) if m.group(1) in names else m.group(0), text)


def _fill_param(value: Any, names: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return fill(value, names)
    if isinstance(value, list):
        return [_fill_param(v, names) for v in value]
    if isinstance(value, tuple):
        return tuple(_fill_param(v, names) for v in value)
    return value


def _run_step(conn: psycopg.Connection[Any], step: Step, names: dict[str, Any]) -> Rows | None:
    query, params = (step, None) if isinstance(step, str) else step
    query = fill(query, names)
    if params is not None:
        params = tuple(_fill_param(p, names) for p in params)
    with conn.cursor() as cur:
        if re.match(r"(?is)^\s*copy\b.*\bfrom\s+stdin\b", query):
            with cur.copy(query) as copy:  # COPY FROM STDIN needs the copy protocol
                copy.write_row((1001, "copied", True))
            return None
        cur.execute(query, params)
        return cur.fetchall() if cur.description is not None else None


def run_case(conn: psycopg.Connection[Any], case: Case, names: dict[str, Any]) -> None:
    """Run one case on ``conn`` and assert its outcome; the session is reset afterwards."""
    try:
        for step in case.steps[:-1]:
            _run_step(conn, step, names)
        expect = case.expect
        if isinstance(expect, Denied):
            try:
                _run_step(conn, case.steps[-1], names)
            except psycopg.Error as exc:
                message = exc.diag.message_primary or str(exc)
                assert exc.sqlstate == expect.state, (
                    f"{case.id}: expected SQLSTATE {expect.state}, got {exc.sqlstate}: {message}")
                assert re.search(fill(expect.match, names), message, re.IGNORECASE), (
                    f"{case.id}: message {message!r} does not match {expect.match!r}")
            else:
                raise AssertionError(f"{case.id}: {case.actor} was allowed to run {case.steps[-1]!r}")
        else:
            rows = _run_step(conn, case.steps[-1], names)
            wanted = _fill_param(expect.rows, names)
            if wanted is not None:
                assert rows == wanted, f"{case.id}: expected {wanted!r}, got {rows!r}"
    finally:
        reset_session(conn)


def reset_session(conn: psycopg.Connection[Any]) -> None:
    """Leave the connection as a fresh login would: no transaction, own role."""
    if conn.closed or conn.broken:
        return
    if conn.info.transaction_status != TransactionStatus.IDLE:
        conn.execute("rollback")
    conn.execute("reset role")


def login_with(material: Any, **overrides: Any) -> psycopg.Connection[Any]:
    """Log in with ``ConnectionMaterial`` whose fields are overridden (another certificate,
    another user name...): how an attacker holding some files would try."""
    changed = dataclasses.replace(material, **overrides)
    return psycopg.connect(changed.conninfo(), autocommit=True, connect_timeout=5)
