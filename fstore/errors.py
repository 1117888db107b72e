"""Errors users see: a small hierarchy that maps the database's refusals to plain words.

Every error keeps the original SQLSTATE and server message when it came from
PostgreSQL, so nothing is lost for the person debugging.

Example::

    try:
        fs.create_project("fraud", owner="alice")
    except PermissionDenied as exc:
        print(exc)            # permission denied: ... (SQLSTATE 42501)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


class FstoreError(Exception):
    """Base class of every error fstore raises on purpose."""

    def __init__(self, message: str, *, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate

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


_BY_SQLSTATE_CLASS: dict[str, type[FstoreError]] = {
    "42501": PermissionDenied,  # insufficient_privilege
    "28000": PermissionDenied,  # invalid_authorization_specification
    "28P01": PermissionDenied,
    "42P01": NotFound,  # undefined_table
    "42883": NotFound,  # undefined_function
    "42704": NotFound,  # undefined_object
    "3F000": NotFound,  # invalid_schema_name
    "P0002": NotFound,  # no_data_found (raised by control functions)
    "42710": Conflict,  # duplicate_object
    "42P06": Conflict,  # duplicate_schema
    "42P07": Conflict,  # duplicate_table
    "42701": Conflict,  # duplicate_column
    "23505": Conflict,  # unique_violation
    "22023": InvalidInput,  # invalid_parameter_value
    "22P02": InvalidInput,  # invalid_text_representation
    "23502": InvalidInput,  # not_null_violation
    "23514": InvalidInput,  # check_violation
    "22007": InvalidInput,
    "22008": InvalidInput,
    "42703": InvalidInput,  # undefined_column
    "42702": InvalidInput,  # ambiguous_column (e.g. a feature name in two groups)
}


def from_database(exc: psycopg.Error) -> FstoreError:
    """Translate a psycopg error into the fstore error a user understands."""
    sqlstate = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
    if diag and diag.message_hint:
        message = f"{message}. Hint: {diag.message_hint}"
    cls = _BY_SQLSTATE_CLASS.get(sqlstate or "", FstoreError)
    return cls(message, sqlstate=sqlstate)


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise database errors inside the block as :class:`FstoreError` subclasses."""
    try:
        yield
    except psycopg.Error as exc:
        raise from_database(exc) from exc
