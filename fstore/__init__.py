"""fstore: a feature store for machine learning that lives inside PostgreSQL.

Example::

    import fstore
    fs = fstore.connect("fraud", "alice")
    with fstore.application("fraud", "alice", "nightly", ttl="1h") as job:
        job.get_feature_group("activity").insert(df)
"""

from fstore.errors import Conflict, FstoreError, InvalidInput, NotFound, PermissionDenied, ServerError
from fstore.login import application, connect
from fstore.store import FeatureStore

__all__ = [
    "Conflict", "FeatureStore", "FstoreError", "InvalidInput", "NotFound", "PermissionDenied", "ServerError",
    "application", "connect",
]
