"""Shared fixtures: a real fstore home with its CA, and a running TLS server.

The server is started once per test session on a free port, in a short
temporary directory (Unix socket paths are limited to 107 bytes).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from fstore import sandbox
from fstore.connection import connect, connect_operator, material_for, write_service_entry
from fstore.home import FstoreHome
from fstore.sandbox import free_port  # noqa: F401  (tests import it from here)

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# FSTORE_TEST_CLUSTER=N: the session's server is a Citus coordinator with N workers (docs/cluster.md)
TEST_CLUSTER_WORKERS = int(os.environ.get("FSTORE_TEST_CLUSTER") or 0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skipped test is a failure: every test must really run."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"


def unique(prefix: str) -> str:
    """A name unique to this test run (roles are cluster-wide)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def home() -> Iterator[FstoreHome]:
    """An initialised fstore home with a running server, stopped and removed at the end."""
    fhome, cleanup = sandbox.start_home(None, prefix="fst-", workers=TEST_CLUSTER_WORKERS)
    os.environ["FSTORE_HOME"] = str(fhome.root)
    write_service_entry(material_for(fhome, "fstore_admin"))
    try:
        yield fhome
    finally:
        cleanup()


@pytest.fixture
def operator(home: FstoreHome) -> Iterator[psycopg.Connection]:
    """A superuser connection over the local socket, autocommit."""
    with connect_operator(home, autocommit=True) as conn:
        yield conn


@pytest.fixture
def admin(home: FstoreHome) -> Iterator[psycopg.Connection]:
    """The platform admin, logged in with its certificate."""
    with connect(home, "fstore_admin", autocommit=True) as conn:
        yield conn


class ProjectFixture:
    """A project created through the control plane, with members and their certificates."""

    def __init__(self, home: FstoreHome, name: str, owner: str) -> None:
        self.home = home
        self.name = name
        self.owner = owner
        self.users: dict[str, str] = {}

    def role(self, user: str) -> str:
        return f"{self.name}__{user}"

    def connect(self, user: str, **kwargs: object) -> psycopg.Connection:
        """Connect as ``project__user`` with that user's own certificate."""
        kwargs.setdefault("autocommit", True)
        return connect(self.home, self.role(user), **kwargs)

    def add(self, user: str, role: str = "data-scientist") -> str:
        from fstore import projects

        with self.connect(self.owner) as owner:
            projects.add_member(self.home, owner, self.name, user, role)
        self.users[user] = role
        return self.role(user)


@pytest.fixture
def make_project(home: FstoreHome) -> Iterator[object]:
    """Factory: ``make_project(owner="alice", scientists=["bob"])`` -> ProjectFixture.

    Project names are unique per call; every project is deleted afterwards.
    """
    from fstore import projects

    created: list[ProjectFixture] = []

    def factory(owner: str = "alice", scientists: tuple[str, ...] | list[str] = (),
                owners: tuple[str, ...] | list[str] = (), prefix: str = "p") -> ProjectFixture:
        name = unique(prefix)
        with connect(home, "fstore_admin", autocommit=True) as admin:
            projects.create_project(home, admin, name, owner)
        project = ProjectFixture(home, name, owner)
        project.users[owner] = "data-owner"
        created.append(project)
        for user in owners:
            project.add(user, "data-owner")
        for user in scientists:
            project.add(user, "data-scientist")
        return project

    yield factory
    with connect(home, "fstore_admin", autocommit=True) as admin:
        for project in created:
            try:
                projects.delete_project(home, admin, project.name)
            except Exception:  # already deleted by the test
                pass
