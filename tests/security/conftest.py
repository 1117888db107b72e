"""The attack suite's world: four projects with real members logging in with their
own certificates, a table under a restrictive row policy, a feature group, and
project A shared read-only with B, read-write with C and not at all with D; A has a
stored training dataset ``{td}`` (one row).

| actor   | role        | who                                        |
|---------|-------------|--------------------------------------------|
| admin   | fstore_admin| the platform admin                         |
| alice   | A__alice    | Data Owner of A                            |
| bob     | A__bob      | Data Scientist of A (row policy: consent)  |
| carol   | B__carol    | Data Owner of B (A shared read-only)       |
| dave    | B__dave     | Data Scientist of B                        |
| frank   | C__frank    | Data Owner of C (A shared read-write)      |
| gina    | C__gina     | Data Scientist of C                        |
| hank    | D__hank     | Data Owner of D (A not shared)             |

The world is built once per session (projects cost ~0.2 s each) and every case
resets its session afterwards; tests that change memberships or shares build
their own projects. The terminal summary prints how many distinct denied and
allowed cases ran.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from fstore import policies, projects
from fstore.connection import connect
from fstore.home import FstoreHome
from tests.conftest import unique
from tests.security.attack import CONSENTED, ROWS

ACTORS = {
    "admin": (None, "admin"), "alice": ("a", "alice"), "bob": ("a", "bob"), "carol": ("b", "carol"),
    "dave": ("b", "dave"), "frank": ("c", "frank"), "gina": ("c", "gina"), "hank": ("d", "hank"),
}


class Tally:
    """Distinct security cases that passed, by kind."""

    def __init__(self) -> None:
        self.denied: set[str] = set()
        self.allowed: set[str] = set()

    def add(self, kind: str, case_id: str) -> None:
        """Count one passed case (``denied`` or ``allowed``) once, however often it ran."""
        (self.denied if kind == "denied" else self.allowed).add(case_id)

    def deny(self, *case_ids: str) -> None:
        """Count refusals asserted by a hand-written test."""
        for case_id in case_ids:
            self.add("denied", case_id)

    def allow(self, *case_ids: str) -> None:
        """Count permitted actions asserted by a hand-written test."""
        for case_id in case_ids:
            self.add("allowed", case_id)


TALLY = pytest.StashKey[Tally]()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print ``security cases: N denied, M allowed`` when security cases ran."""
    tally = config.stash.get(TALLY, None)
    if tally is not None:
        terminalreporter.write_sep("-", "tenancy attack suite")
        terminalreporter.write_line(
            f"security cases: {len(tally.denied)} denied, {len(tally.allowed)} allowed")


@pytest.fixture(scope="session")
def tally(request: pytest.FixtureRequest) -> Tally:
    """The session's counter of passed security cases."""
    config = request.config
    if TALLY not in config.stash:
        config.stash[TALLY] = Tally()
    return config.stash[TALLY]


@dataclass
class World:
    """The shared projects, their members' connections and the names cases refer to."""

    home: FstoreHome
    projects: dict[str, str]  # "a" -> real project name
    names: dict[str, Any] = field(default_factory=dict)
    _conns: dict[str, psycopg.Connection[Any]] = field(default_factory=dict)

    def role(self, actor: str) -> str:
        """The login role of an actor (``fstore_admin`` for the admin)."""
        key, user = ACTORS[actor]
        return "fstore_admin" if key is None else f"{self.projects[key]}__{user}"

    def conn(self, actor: str) -> psycopg.Connection[Any]:
        """The actor's own autocommit connection, opened with its certificate and kept."""
        conn = self._conns.get(actor)
        if conn is None or conn.closed or conn.broken:
            conn = connect(self.home, self.role(actor), autocommit=True)
            self._conns[actor] = conn
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def _build(home: FstoreHome) -> World:
    world = World(home, {key: unique(f"s{key}") for key in "abcd"})
    a, b, c, d = (world.projects[k] for k in "abcd")
    owners = {"a": "alice", "b": "carol", "c": "frank", "d": "hank"}
    with connect(home, "fstore_admin", autocommit=True) as admin:
        for key, owner in owners.items():
            projects.create_project(home, admin, world.projects[key], owner)
    for key, owner, scientist in (("a", "alice", "bob"), ("b", "carol", "dave"), ("c", "frank", "gina")):
        with connect(home, f"{world.projects[key]}__{owner}", autocommit=True) as conn:
            projects.add_member(home, conn, world.projects[key], scientist, "data-scientist")
    with connect(home, f"{a}__alice", autocommit=True) as alice:
        alice.execute(f"set role {a}__owner")
        alice.execute(f"create table {a}.t (id int primary key, v text, consent boolean not null)")
        alice.execute(f"create view {a}.v_inv with (security_invoker = true) as select * from {a}.t")
        columns = [{"name": "id", "type": "bigint"}, {"name": "amount", "type": "float8"}]
        fg = alice.execute(
            "select fstore.create_feature_group(%s, 'fg', 1, array['id'], 'event_time', %s::jsonb)",
            (a, json.dumps(columns)),
        ).fetchone()[0]
        alice.execute("reset role")
        # A's Data Scientists (and every project A is shared with) see consented rows only
        policies.apply_policies(alice, a, [policies.RowPolicy("consent_only", "t", ("data_scientist",), "consent")])
        alice.execute(f"insert into {a}.t select g, 'v' || g, g % 4 <> 0 from generate_series(1, {ROWS}) g")
        alice.execute(f"set role {a}__owner")
        alice.execute(f"analyze {a}.t")  # statistics exist: pg_stats must still hide them
        alice.execute("reset role")
        projects.share_project(alice, a, b)
        projects.share_project(alice, a, c, read_write=True)
        # a stored training dataset of A (built by fstore's builder from a one-row spine)
        with alice.transaction():
            alice.execute("create temp table world_spine (id bigint, event_time timestamptz)")
            alice.execute("insert into world_spine values (1, now())")
            td_table = alice.execute("select table_name from fstore.create_training_table("
                                     "'world_td', 'pg_temp.world_spine'::regclass, array['fg:amount'])").fetchone()[0]
            alice.execute("drop table world_spine")
    world.names = {
        "a": a, "b": b, "c": c, "d": d, "fg": fg, "td": td_table, "rows": ROWS, "consented": CONSENTED,
        **{actor: world.role(actor) for actor in ACTORS},
    }
    return world


@pytest.fixture(scope="session")
def world(home: FstoreHome) -> Iterator[World]:
    """Projects A-D with members, data, a row policy and shares (see the module docstring)."""
    built = _build(home)
    try:
        yield built
    finally:
        built.close()
        with connect(home, "fstore_admin", autocommit=True) as admin:
            for name in built.projects.values():
                try:
                    projects.delete_project(home, admin, name)
                except Exception:  # noqa: BLE001 -- best effort: a failed test may have deleted it
                    pass
