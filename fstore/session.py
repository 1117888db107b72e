"""What a module needs of a feature store handle: the ground floor of the data modules.

Feature groups, ingestion, retrieval, training data, exports, drift and online
serving take a :class:`Session` (one identity in one project, its connection
material, a psycopg connection and fresh ADBC connections), never the
:class:`fstore.store.FeatureStore` class itself: the handle delegates to them, and
they do not import it back. Any object with these attributes serves, a
``FeatureStore`` first of all.

Example::

    def row_count(session: Session, table: str) -> int:
        return session.conn.execute(f"select count(*) from {table}").fetchone()[0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg

    from fstore.connection import ConnectionMaterial


class Session(Protocol):
    """One project-user's (or application's) view of one project."""

    project: str  #: the project (schema) the identity belongs to
    user: str  #: the user name in that project
    role: str  #: the login role, ``project__user``
    material: "ConnectionMaterial"  #: certificate, key, CA, host, port: how to log in again

    @property
    def conn(self) -> "psycopg.Connection[Any]":
        """A psycopg connection (autocommit) with this identity, kept open by the handle."""
        ...

    def adbc(self) -> Any:
        """A fresh ADBC connection with this identity (the caller closes it)."""
        ...


__all__ = ["Session"]
