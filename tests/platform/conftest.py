"""Fixtures of the platform tests: a read replica of the session's server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fstore import replica
from fstore.home import FstoreHome


@pytest.fixture(scope="module")
def rep(home: FstoreHome) -> Iterator[replica.Replica]:
    """Replica 1 of the session's server (made for this module, removed after it)."""
    made = replica.start_replicas(home, 1)[0]
    try:
        yield made
    finally:
        replica.remove_replica(home, made.name)
