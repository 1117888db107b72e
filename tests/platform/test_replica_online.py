"""OnlineStore over read replicas: reads spread round robin over the replicas, a replica's
death (``pg_ctl stop -m immediate`` in the middle of a stream of lookups) fails no request,
reads come back to a replica once it runs again, and a replica answers with the caller's
rights only.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest

import fstore
from fstore import replica, server
from fstore.errors import InvalidInput, NotFound, PermissionDenied
from fstore.home import FstoreHome
from fstore.serving_pool import OnlineStore
from tests.retrieval.conftest import commit_rows, create_group

UTC = dt.timezone.utc
ACTIVITY = {"account_id": "bigint", "event_time": "timestamptz", "amount": "double precision"}
KEYS = range(1, 51)


@pytest.fixture
def served(make_project: Any, home: FstoreHome, rep: replica.Replica) -> Any:
    """A project with one online group of 50 accounts, replayed on the replica."""
    project = make_project(owner="alice", scientists=["bob"])
    with project.connect("alice") as alice:
        group = create_group(alice, project.name, "activity", ACTIVITY, ["account_id"], online=True)
        commit_rows(alice, group, [(k, dt.datetime.now(UTC), k * 1.5) for k in KEYS])
    replica.wait_replayed(home)
    return project


def bob(project: Any) -> fstore.FeatureStore:
    return fstore.connect(project.name, "bob", home=project.home)


def expected(keys: list[int]) -> list[float]:
    return [k * 1.5 for k in keys]


def test_reads_go_round_robin_to_the_replicas(served: Any, rep: replica.Replica) -> None:
    dsn = f"host=localhost port={rep.port}"  # the same replica named by DSN: a second target
    with bob(served) as fs, fs.online_store(replicas=[rep.name, dsn]) as store:
        for k in KEYS:
            assert store.get_online_features(["activity:amount"], {"account_id": k})["amount"] == k * 1.5
        counts = store.served()
    assert counts == {"primary": 0, f"replica {rep.name}": 25, f"replica localhost:{rep.port}": 25,
                      "replica failures": 0}


def test_all_names_every_replica_of_the_home_and_bad_specs_are_named(served: Any, rep: replica.Replica) -> None:
    with bob(served) as fs:
        with OnlineStore(fs, replicas="all") as store:
            assert repr(store).endswith(f"replicas=[replica {rep.name}])")
            assert store.get_online_features(["activity:amount"], [{"account_id": 2}]).to_pylist()[0]["amount"] == 3
            assert store.served()[f"replica {rep.name}"] == 1
        with pytest.raises(NotFound, match="no replica 9"):
            OnlineStore(fs, replicas=[9])
        with pytest.raises(InvalidInput, match="a name of this home's replicas .* or a libpq DSN"):
            OnlineStore(fs, replicas=["replica-one"])


def test_a_replica_killed_mid_stream_fails_no_request(home: FstoreHome, served: Any, rep: replica.Replica) -> None:
    errors: list[BaseException] = []
    done = {"n": 0}
    stop = threading.Event()
    with bob(served) as fs, fs.online_store(min_size=2, max_size=4, replicas=[rep.name]) as store:
        def reader(seed: int) -> None:
            i = seed
            while not stop.is_set():
                keys = [KEYS[(i + j) % len(KEYS)] for j in range(3)]
                i += 7
                try:
                    table = store.get_online_features(["activity:amount"], [{"account_id": k} for k in keys])
                    assert table.column("amount").to_pylist() == expected(keys)
                    done["n"] += 1
                except BaseException as exc:  # reported below
                    errors.append(exc)

        threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while store.served()[f"replica {rep.name}"] < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
        before = dict(store.served())
        replica.stop_replica(home, rep.name, mode="immediate")  # mid-stream: the readers keep going
        after_kill = done["n"]
        while done["n"] < after_kill + 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join()
        counts = store.served()
    assert errors == []
    assert before[f"replica {rep.name}"] >= 30  # the replica did serve before it died
    assert counts["replica failures"] >= 1 and counts["primary"] > before["primary"]  # then the primary
    replica.start_replicas(home)
    assert server.is_running(rep.home)


def test_reads_come_back_to_a_restarted_replica(home: FstoreHome, served: Any, rep: replica.Replica) -> None:
    with bob(served) as fs, fs.online_store(replicas=[rep.name]) as store:
        assert store.get_online_features(["activity:amount"], {"account_id": 3})["amount"] == 4.5
        replica.stop_replica(home, rep.name, mode="immediate")
        assert store.get_online_features(["activity:amount"], {"account_id": 3})["amount"] == 4.5
        assert store.served()["replica failures"] == 1 and store.served()["primary"] == 1
        replica.start_replicas(home)
        deadline = time.monotonic() + 60
        served_by_replica = store.served()[f"replica {rep.name}"]
        while store.served()[f"replica {rep.name}"] == served_by_replica:  # after its back-off
            assert time.monotonic() < deadline, "reads never came back to the restarted replica"
            assert store.get_online_features(["activity:amount"], {"account_id": 4})["amount"] == 6.0
            time.sleep(0.05)


def test_a_replica_answers_with_the_callers_rights_only(served: Any, make_project: Any,
                                                        rep: replica.Replica) -> None:
    other = make_project(owner="mallory")
    reference = [f"{served.name}.activity:amount"]
    with fstore.connect(other.name, "mallory", home=other.home) as fs, fs.online_store(replicas=[rep.name]) as store:
        with pytest.raises(PermissionDenied, match="not shared"):
            store.get_online_features(reference, [{"account_id": 1}])
        assert store.served()["primary"] == 0  # refused by the replica, not retried elsewhere
