"""The Python API explains itself: every method of the feature store handle has its real
signature, a return type and a docstring with an example (``help(fs.get_historical_features)``
says what to pass), as psycopg's Connection does."""

from __future__ import annotations

import inspect
from pathlib import Path

import fstore
from fstore.connection import ConnectionMaterial
from fstore.session import Session
from fstore.store import FeatureStore

OPEN_ENDED = {("online_store", "pool_kwargs"), ("new_connection", "kwargs")}  # passed on to psycopg


def _public_methods() -> dict[str, object]:
    return {name: member for name, member in inspect.getmembers(FeatureStore)
            if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))}


def test_every_method_has_its_real_signature_a_return_type_and_an_example() -> None:
    methods = _public_methods()
    assert {"get_historical_features", "create_training_dataset", "export", "torch_dataset", "online_store",
            "drift", "nearest"} <= set(methods)
    for name, member in methods.items():
        function = member.fget if isinstance(member, property) else member
        signature = inspect.signature(function)
        for parameter in signature.parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                assert (name, parameter.name) in OPEN_ENDED, f"FeatureStore.{name} takes *{parameter.name}"
        assert signature.return_annotation is not inspect.Signature.empty, f"FeatureStore.{name} has no return type"
        doc = inspect.getdoc(function) or ""
        assert doc and ("Example::" in doc or name == "close"), f"FeatureStore.{name} has no example"


def test_the_handle_is_a_session_and_the_package_says_what_it_offers() -> None:
    material = ConnectionMaterial(role="fraud__alice", port=1, sslcert=Path(), sslkey=Path(), sslrootcert=Path())
    fs = FeatureStore(material)  # connects on first use only
    for name in Session.__annotations__:  # what the data modules take of it
        assert name in vars(fs), name
    assert isinstance(FeatureStore.conn, property) and callable(FeatureStore.adbc)
    assert (fs.project, fs.user, fs.role) == ("fraud", "alice", "fraud__alice")
    assert {"connect", "application", "FeatureStore", "FstoreError", "PermissionDenied", "NotFound",
            "InvalidInput", "Conflict", "ServerError"} <= set(fstore.__all__)
    assert "fs.create_training_dataset" in inspect.getdoc(FeatureStore.create_training_dataset)
