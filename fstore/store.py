"""The feature store handle: one identity (a project-user's certificate), one project.

Example::

    import fstore
    fs = fstore.connect("fraud", "alice")
    fg = fs.get_feature_group("account_activity")
    training = fs.get_historical_features(spine, ["account_activity:*"])

The handle holds the connection material and a lazily opened psycopg
connection; the work lives in the modules named after what users do
(:mod:`fstore.featuregroups`, :mod:`fstore.training`, :mod:`fstore.online`,
:mod:`fstore.export`). Methods here only delegate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from fstore.connection import ConnectionMaterial, material_for
from fstore.errors import InvalidInput
from fstore.home import FstoreHome
from fstore.roles import project_user_role, split_project_user


class FeatureStore:
    """A connection to one project as one project-user (see :func:`connect`)."""

    def __init__(self, material: ConnectionMaterial, home: FstoreHome | None = None) -> None:
        self.material = material
        self.home = home
        self.role = material.role
        self.project, self.user = split_project_user(material.role)
        self._conn: psycopg.Connection[Any] | None = None

    # --- connections -------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The handle's psycopg connection (opened on first use, autocommit)."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.material.conninfo(), autocommit=True)
        return self._conn

    def new_connection(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A fresh psycopg connection with the same identity (caller closes it)."""
        return psycopg.connect(self.material.conninfo(), **kwargs)

    def adbc(self) -> Any:
        """A fresh ADBC connection with the same identity, for Arrow bulk reads (caller closes it)."""
        import adbc_driver_postgresql.dbapi as adbc

        return adbc.connect(self.material.uri())

    def close(self) -> None:
        """Close the handle's connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore(project={self.project!r}, user={self.user!r})"

    # --- feature groups (fstore.featuregroups) -----------------------------------
    def get_feature_group(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.featuregroups.get_feature_group`."""
        from fstore import featuregroups

        return featuregroups.get_feature_group(self, *args, **kwargs)

    def create_feature_group(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.featuregroups.create_feature_group`."""
        from fstore import featuregroups

        return featuregroups.create_feature_group(self, *args, **kwargs)

    def list_feature_groups(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.featuregroups.list_feature_groups`."""
        from fstore import featuregroups

        return featuregroups.list_feature_groups(self, *args, **kwargs)

    def search(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.featuregroups.search`."""
        from fstore import featuregroups

        return featuregroups.search(self, *args, **kwargs)

    # --- training data (fstore.training) -----------------------------------------
    def get_historical_features(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.training.get_historical_features`."""
        from fstore import training

        return training.get_historical_features(self, *args, **kwargs)

    def create_training_dataset(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.training.create_training_dataset`."""
        from fstore import training

        return training.create_training_dataset(self, *args, **kwargs)

    def get_training_dataset(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.training.get_training_dataset`."""
        from fstore import training

        return training.get_training_dataset(self, *args, **kwargs)

    def training_dataset(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.training.training_dataset` (the catalog record, not the rows)."""
        from fstore import training

        return training.training_dataset(self, *args, **kwargs)

    # --- drift (fstore.drift) ----------------------------------------------------
    def drift(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.drift.drift`."""
        from fstore import drift

        return drift.drift(self, *args, **kwargs)

    # --- online serving (fstore.online) ------------------------------------------
    def get_online_features(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.online.get_online_features`."""
        from fstore import online

        return online.get_online_features(self, *args, **kwargs)

    def nearest(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.online.nearest`."""
        from fstore import online

        return online.nearest(self, *args, **kwargs)

    def online_store(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.serving_pool.serving_pool` (a pooled store for serving processes)."""
        from fstore import serving_pool

        return serving_pool.serving_pool(self, *args, **kwargs)

    # --- exports (fstore.export) -------------------------------------------------
    def export(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.export.export_query`."""
        from fstore import export

        return export.export_query(self, *args, **kwargs)

    def tf_dataset(self, *args: Any, **kwargs: Any) -> Any:
        """See :func:`fstore.export.tf_dataset`."""
        from fstore import export

        return export.tf_dataset(self, *args, **kwargs)


def connect(
    project: str | None = None,
    user: str | None = None,
    home: str | FstoreHome | None = None,
    *,
    app_id: str | None = None,
    dsn: str | None = None,
) -> FeatureStore:
    """Open a feature store handle as ``project__user`` with that role's certificate.

    ``fstore.connect(dsn="service=fraud__alice")`` takes any libpq connection
    string instead (the role must still be a project-user).
    """
    if dsn is not None:
        with psycopg.connect(dsn) as probe:
            role = probe.execute("select session_user").fetchone()[0]
            port = probe.info.port
        split_project_user(role)
        return FeatureStore(
            ConnectionMaterial(role=role, port=port, sslcert=Path(), sslkey=Path(),
                               sslrootcert=Path(), dsn=dsn)
        )
    if project is None or user is None:
        raise InvalidInput("give a project and a user, or a dsn")
    fhome = home if isinstance(home, FstoreHome) else FstoreHome.resolve(home)
    return FeatureStore(material_for(fhome, project_user_role(project, user), app_id), fhome)
