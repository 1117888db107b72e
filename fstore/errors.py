"""Errors users see: a small hierarchy that maps the database's refusals to plain words.

One translator, :func:`from_database`, serves psycopg and ADBC errors alike: it reads
the server's SQLSTATE and its primary message, detail and hint (psycopg's
``diag``, ADBC's ``PG_DIAG_*`` details) and picks the class by SQLSTATE, where a
rule keyed on SQLSTATE and primary message may say it in better words. Every
error keeps the original SQLSTATE and server message, so nothing is lost for the
person debugging.

Example::

    try:
        fs.create_feature_group("risk", keys=["account_id"], features=df)
    except PermissionDenied as exc:
        print(exc)              # only Data Owners of fraud may act as fraud__owner ... (SQLSTATE 42501)
        exc.sqlstate, exc.primary, exc.hint
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any


class FstoreError(Exception):
    """Base class of every error fstore raises on purpose.

    ``sqlstate``, ``primary``, ``detail`` and ``hint`` are the server's when the error
    came from PostgreSQL (else None).
    """

    def __init__(self, message: str, *, sqlstate: str | None = None, primary: str | None = None,
                 detail: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.primary = primary
        self.detail = detail
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base} (SQLSTATE {self.sqlstate})" if self.sqlstate else base


class PermissionDenied(FstoreError):
    """The database (or the CA) refused the caller."""


class NotFound(FstoreError):
    """A project, member, feature group, feature or certificate does not exist."""


class InvalidInput(FstoreError):
    """An argument or a data set is malformed; the message names what and where."""


class Conflict(FstoreError):
    """The thing exists already, or the change conflicts with what exists."""


class ServerError(FstoreError):
    """The embedded server could not be started, stopped or reached."""


_BY_SQLSTATE: dict[str, type[FstoreError]] = {
    "42501": PermissionDenied,  # insufficient_privilege
    "42P01": NotFound,  # undefined_table
    "42883": NotFound,  # undefined_function
    "42704": NotFound,  # undefined_object
    "3F000": NotFound,  # invalid_schema_name
    "3D000": NotFound,  # invalid_catalog_name
    "P0002": NotFound,  # no_data_found (raised by control functions)
    "42710": Conflict,  # duplicate_object
    "42P06": Conflict,  # duplicate_schema
    "42P07": Conflict,  # duplicate_table
    "42701": Conflict,  # duplicate_column
    "42723": Conflict,  # duplicate_function
    "23505": Conflict,  # unique_violation
    "23503": Conflict,  # foreign_key_violation
    "40001": Conflict,  # serialization_failure
    "40P01": Conflict,  # deadlock_detected
    "55000": Conflict,  # object_not_in_prerequisite_state (e.g. earlier certificates not yet in the CRL)
    "55P03": Conflict,  # lock_not_available
    "23502": InvalidInput,  # not_null_violation
    "23514": InvalidInput,  # check_violation
    "42703": InvalidInput,  # undefined_column
    "42702": InvalidInput,  # ambiguous_column (e.g. a feature name in two groups)
    "42601": InvalidInput,  # syntax_error
    "42804": InvalidInput,  # datatype_mismatch
    "42846": InvalidInput,  # cannot_coerce
    "0A000": InvalidInput,  # feature_not_supported
}
# the first two characters of a SQLSTATE: its class
_BY_SQLSTATE_CLASS: dict[str, type[FstoreError]] = {
    "22": InvalidInput,  # data exception (bad value, out of range, division by zero, ...)
    "28": PermissionDenied,  # invalid authorization specification
    "08": ServerError,  # connection exception
    "53": ServerError,  # insufficient resources
    "57": ServerError,  # operator intervention (shutdown, cancel)
}

Rewording = Callable[["re.Match[str]"], str]
#: (SQLSTATE, pattern over the primary message) -> better words; the server's message is kept
#: on the error (``primary``), so these only make the first line clearer.
RULES: list[tuple[str, re.Pattern[str], Rewording]] = [
    ("42501", re.compile(r'permission denied to set role "(?P<project>[a-z0-9_]+?)__owner"'),
     lambda m: f"only Data Owners of {m['project']} may act as {m['project']}__owner (create or change "
               "feature groups and tables)"),
]


def diagnostics(exc: BaseException) -> dict[str, str | None]:
    """The server's SQLSTATE, primary message, detail and hint of a psycopg or ADBC error
    (None where the error does not say)."""
    diag = getattr(exc, "diag", None)
    if diag is not None and getattr(diag, "message_primary", None) is not None:  # psycopg
        return {"sqlstate": getattr(exc, "sqlstate", None) or diag.sqlstate, "primary": diag.message_primary,
                "detail": diag.message_detail, "hint": diag.message_hint}
    details: Mapping[Any, Any] = dict(getattr(exc, "details", None) or [])  # ADBC: PG_DIAG_* fields
    fields = {(k.decode() if isinstance(k, bytes) else str(k)): (v.decode(errors="replace") if isinstance(v, bytes)
                                                                  else str(v)) for k, v in details.items()}
    return {"sqlstate": getattr(exc, "sqlstate", None) or fields.get("PG_DIAG_SQLSTATE"),
            "primary": fields.get("PG_DIAG_MESSAGE_PRIMARY"), "detail": fields.get("PG_DIAG_MESSAGE_DETAIL"),
            "hint": fields.get("PG_DIAG_MESSAGE_HINT")}


def from_database(exc: BaseException) -> FstoreError:
    """Translate a psycopg or ADBC error into the fstore error a user understands.

    The class comes from the SQLSTATE (exact code, else its class, else
    :class:`FstoreError`); the message is the server's primary message (a rule of
    :data:`RULES` may reword it), with its detail in parentheses and its hint.
    Without a server message (a client-side failure) the error's own text is used.
    """
    if isinstance(exc, FstoreError):
        return exc
    d = diagnostics(exc)
    sqlstate, primary = d["sqlstate"], (d["primary"] or "").strip()
    message = primary or str(exc).strip()
    for code, pattern, reword in RULES:
        match = pattern.search(primary) if code == sqlstate else None
        if match:
            message = reword(match)
            break
    if d["detail"]:
        message = f"{message} ({d['detail'].strip()})"
    if d["hint"]:
        message = f"{message}. Hint: {d['hint'].strip()}"
    cls = _BY_SQLSTATE.get(sqlstate or "") or _BY_SQLSTATE_CLASS.get((sqlstate or "")[:2], FstoreError)
    return cls(message, sqlstate=sqlstate, primary=primary or None, detail=d["detail"], hint=d["hint"])


def is_database_error(exc: BaseException) -> bool:
    """True for errors of psycopg and of the ADBC driver manager (the database's or the driver's)."""
    module = type(exc).__module__ or ""
    return module.startswith(("psycopg", "adbc_driver"))


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise psycopg and ADBC errors inside the block as :class:`FstoreError` subclasses."""
    try:
        yield
    except FstoreError:
        raise
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise from_database(exc) from exc


__all__ = ["Conflict", "FstoreError", "InvalidInput", "NotFound", "PermissionDenied", "RULES", "ServerError",
           "diagnostics", "from_database", "is_database_error", "translated"]
