"""fstore: a feature store for machine learning that lives inside PostgreSQL.

Example::

    import fstore
    fs = fstore.connect("fraud", "alice")
"""

from fstore.errors import Conflict, FstoreError, InvalidInput, NotFound, PermissionDenied
from fstore.store import FeatureStore, connect

__all__ = [
    "Conflict", "FeatureStore", "FstoreError", "InvalidInput", "NotFound", "PermissionDenied",
    "application", "connect",
]


def __getattr__(name: str):  # lazy: fstore.application pulls in the CA and server modules
    if name == "application":
        from fstore.certificates import application

        return application
    raise AttributeError(name)
