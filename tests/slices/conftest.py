"""The feature-group fixtures (project fraud, alice the Data Owner, bob the Data Scientist)."""

from tests.featuregroups.conftest import alice, bob, fraud  # noqa: F401 (fixtures)
