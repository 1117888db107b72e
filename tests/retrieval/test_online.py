"""Online serving: an app asks for the latest features of a few entities and gets them,
in the order it asked, in one round trip, under the caller's rights.

Feature groups are created and committed through SQL (``tests/retrieval/conftest.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import threading
from typing import Any

import pandas as pd
import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

import fstore
from fstore import online, projects, vectors
from fstore.errors import InvalidInput, NotFound, PermissionDenied
from fstore.serving_pool import OnlineStore
from tests.retrieval.conftest import SqlFeatureGroup, commit_rows, create_group

UTC = dt.timezone.utc
ACTIVITY = {"account_id": "bigint", "event_time": "timestamptz", "amount": "double precision",
            "n": "integer", "note": "text"}
RISK = {"account_id": "bigint", "event_time": "timestamptz", "score": "double precision"}
PAIR = {"account_id": "bigint", "merchant": "text", "event_time": "timestamptz", "spend": "double precision"}


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


@pytest.fixture
def served(fraud: Any, home: Any) -> Any:
    """Project fraud with three online groups: activity, risk (TTL 1 hour), pair (composite key)."""
    with fraud.connect("alice") as alice:
        activity = create_group(alice, fraud.name, "activity", ACTIVITY, ["account_id"], online=True)
        risk = create_group(alice, fraud.name, "risk", RISK, ["account_id"], online=True, ttl="1 hour")
        pair = create_group(alice, fraud.name, "pair", PAIR, ["account_id", "merchant"], online=True)
        t = now() - dt.timedelta(minutes=5)
        commit_rows(alice, activity, [(i, t - dt.timedelta(days=1), -1.0, -1, "old") for i in range(1, 6)])
        commit_rows(alice, activity, [(i, t, i * 1.5, i, f"note {i}") for i in range(1, 6)])
        commit_rows(alice, risk, [(1, now() - dt.timedelta(minutes=10), 0.1),
                                  (2, now() - dt.timedelta(hours=2), 0.2),  # older than the TTL
                                  (4, now() - dt.timedelta(minutes=59), 0.4)])
        commit_rows(alice, pair, [(1, "shop", t, 10.0), (1, "bar", t, 20.0), (2, "shop", t, 30.0)])
    return fraud


def bob(project: Any) -> fstore.FeatureStore:
    return fstore.connect(project.name, "bob", home=project.home)


def test_rows_follow_the_request_with_nulls_and_flags_for_missing_entities(served: Any) -> None:
    with bob(served) as fs:
        table = fs.get_online_features(["activity:*"], [{"account_id": 5}, {"account_id": 999},
                                                        {"account_id": 1}, {"account_id": 5}])
    assert table.column_names == ["account_id", "amount", "n", "note", "activity__found"]
    assert table.to_pylist() == [
        {"account_id": 5, "amount": 7.5, "n": 5, "note": "note 5", "activity__found": True},
        {"account_id": 999, "amount": None, "n": None, "note": None, "activity__found": False},
        {"account_id": 1, "amount": 1.5, "n": 1, "note": "note 1", "activity__found": True},
        {"account_id": 5, "amount": 7.5, "n": 5, "note": "note 5", "activity__found": True},
    ]
    assert table.schema.field("n").type == pa.int32()


def test_many_entities_keep_request_order(served: Any) -> None:
    keys = list(range(1, 6)) * 20 + [0, 6]
    random.Random(7).shuffle(keys)
    with bob(served) as fs:
        table = fs.get_online_features(["activity:amount"], pd.DataFrame({"account_id": keys}))
    assert table.column("account_id").to_pylist() == keys
    assert table.column("amount").to_pylist() == [k * 1.5 if 1 <= k <= 5 else None for k in keys]


def test_ttl_applies_on_read(served: Any) -> None:
    with bob(served) as fs:
        table = fs.get_online_features(["risk:score"], [{"account_id": k} for k in (1, 2, 3, 4)])
    assert table.column("score").to_pylist() == [0.1, None, None, 0.4]
    assert table.column("risk__found").to_pylist() == [True, False, False, True]


def test_several_groups_and_composite_keys_in_one_statement(served: Any) -> None:
    entities = pa.table({"account_id": [1, 1, 2, 3], "merchant": ["bar", "shop", "bar", "shop"]})
    with bob(served) as fs:
        table = fs.get_online_features(["activity:amount", "risk:score", "pair:spend"], entities)
        plan = online.plan_for(fs.conn, fs.role, ["activity:amount", "risk:score", "pair:spend"],
                               False)
    assert table.column_names == ["account_id", "merchant", "amount", "score", "spend",
                                  "activity__found", "risk__found", "pair__found"]
    assert table.to_pylist() == [
        {"account_id": 1, "merchant": "bar", "amount": 1.5, "score": 0.1, "spend": 20.0,
         "activity__found": True, "risk__found": True, "pair__found": True},
        {"account_id": 1, "merchant": "shop", "amount": 1.5, "score": 0.1, "spend": 10.0,
         "activity__found": True, "risk__found": True, "pair__found": True},
        {"account_id": 2, "merchant": "bar", "amount": 3.0, "score": None, "spend": None,
         "activity__found": True, "risk__found": False, "pair__found": False},
        {"account_id": 3, "merchant": "shop", "amount": 4.5, "score": None, "spend": None,
         "activity__found": True, "risk__found": False, "pair__found": False},
    ]
    for query in (plan.query_one, plan.query_many):  # one statement: one snapshot for all groups
        assert b";" not in query
        assert all(f"{g}__v1__online".encode() in query for g in ("activity", "risk", "pair"))


def test_dict_form_for_one_entity(served: Any) -> None:
    with bob(served) as fs:
        assert fs.get_online_features(["activity:amount", "pair:spend"], {"account_id": 2, "merchant": "shop"}) == {
            "account_id": 2, "merchant": "shop", "amount": 3.0, "spend": 30.0,
            "activity__found": True, "pair__found": True}
        missing = fs.get_online_features(["activity:amount"], {"account_id": 42})
    assert missing == {"account_id": 42, "amount": None, "activity__found": False}


def test_full_feature_names_and_clashes(served: Any) -> None:
    with served.connect("alice") as alice:
        create_group(alice, served.name, "other", {"account_id": "bigint", "event_time": "timestamptz",
                                                   "amount": "double precision"}, ["account_id"], online=True)
    with bob(served) as fs:
        with pytest.raises(InvalidInput, match="amount is ambiguous"):
            fs.get_online_features(["activity:amount", "other:amount"], [{"account_id": 1}])
        table = fs.get_online_features(["activity:amount", "other:amount"], [{"account_id": 1}],
                                       full_feature_names=True)
    assert table.column_names == ["account_id", "activity__amount", "other__amount",
                                  "activity__found", "other__found"]
    assert table.to_pylist()[0]["activity__amount"] == 1.5 and table.to_pylist()[0]["other__found"] is False


def test_versions_latest_by_default_or_pinned(served: Any) -> None:
    with served.connect("alice") as alice:
        v2 = create_group(alice, served.name, "activity", {**ACTIVITY, "extra": "integer"}, ["account_id"],
                          version=2, online=True)
        commit_rows(alice, v2, [(1, now(), 100.0, 100, "v2", 7)])
    with bob(served) as fs:
        online.clear_plans()
        assert fs.get_online_features(["activity:amount"], {"account_id": 1})["amount"] == 100.0
        assert fs.get_online_features(["activity@1:amount"], {"account_id": 1})["amount"] == 1.5
        assert fs.get_online_features([f"{served.name}.activity@2:extra"], {"account_id": 1})["extra"] == 7


def test_bad_requests_name_what_is_wrong(served: Any) -> None:
    with served.connect("alice") as alice:
        create_group(alice, served.name, "offline_only", RISK, ["account_id"])
    with bob(served) as fs:
        with pytest.raises(NotFound, match="feature nope does not exist in feature group .*activity@1"):
            fs.get_online_features(["activity:nope"], [{"account_id": 1}])
        with pytest.raises(NotFound, match="feature group .*missing does not exist"):
            fs.get_online_features(["missing:x"], [{"account_id": 1}])
        with pytest.raises(InvalidInput, match="invalid feature reference 'activity'"):
            fs.get_online_features(["activity"], [{"account_id": 1}])
        with pytest.raises(InvalidInput, match="not online"):
            fs.get_online_features(["offline_only:score"], [{"account_id": 1}])
        with pytest.raises(InvalidInput, match="no value for key column.*merchant"):
            fs.get_online_features(["pair:spend"], [{"account_id": 1}])
        with pytest.raises(InvalidInput, match="no key column.*account_id"):
            fs.get_online_features(["activity:amount"], pd.DataFrame({"id": [1]}))
        with pytest.raises(InvalidInput, match="entity key of feature group"):
            fs.get_online_features(["activity:account_id"], [{"account_id": 1}])


def test_a_scientist_of_another_project_gets_nothing_without_a_share(served: Any, make_project: Any) -> None:
    other = make_project(owner="olga", scientists=["dave"], prefix="mkt")
    reference = [f"{served.name}.activity:amount"]
    with fstore.connect(other.name, "dave", home=other.home) as dave:
        with pytest.raises(PermissionDenied, match="not shared"):
            dave.get_online_features(reference, [{"account_id": 1}])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor by plain SQL
            dave.conn.execute(sql.SQL("select * from {}").format(
                sql.Identifier(served.name, "activity__v1__online"))).fetchall()
    with served.connect("alice") as alice:
        projects.share_project(alice, served.name, other.name)
    online.clear_plans()
    with fstore.connect(other.name, "dave", home=other.home) as dave:
        assert dave.get_online_features(reference, {"account_id": 1})["amount"] == 1.5


def test_pooled_store_serves_threads(served: Any) -> None:
    errors: list[BaseException] = []
    with bob(served) as fs, OnlineStore(fs, min_size=2, max_size=3) as store:
        def worker(seed: int) -> None:
            try:
                rng = random.Random(seed)
                for _ in range(30):
                    keys = [rng.randint(0, 6) for _ in range(rng.randint(1, 5))]
                    table = store.get_online_features(["activity:amount"], [{"account_id": k} for k in keys])
                    assert table.column("amount").to_pylist() == [k * 1.5 if 1 <= k <= 5 else None for k in keys]
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.pool.get_stats()["pool_max"] == 3
        assert store.get_online_features(["risk:score"], {"account_id": 4})["score"] == 0.4
    assert errors == []


def test_the_handle_gives_the_documented_online_store(served: Any) -> None:
    """fs.online_store() is the OnlineStore the README shows, not a bare pool."""
    with bob(served) as fs, fs.online_store(min_size=1, max_size=2) as store:
        assert isinstance(store, OnlineStore) and (store.project, store.role) == (fs.project, fs.role)
        assert store.get_online_features(["risk:score"], {"account_id": 4})["score"] == 0.4
        assert store.pool.get_stats()["pool_max"] == 2
    assert store.pool.closed


def test_lookups_during_commits_never_see_half_a_commit(fraud: Any) -> None:
    """A writer commits, in one transaction, a new value for every entity in two groups;
    a reader looking up all entities of both groups must see one value everywhere."""
    entities = list(range(1, 41))
    with fraud.connect("alice") as alice:
        left = create_group(alice, fraud.name, "left_side", RISK, ["account_id"], online=True)
        right = create_group(alice, fraud.name, "right_side", RISK, ["account_id"], online=True)
        base = now() - dt.timedelta(minutes=30)
        with alice.transaction():
            commit_rows(alice, left, [(e, base, 0.0) for e in entities])
            commit_rows(alice, right, [(e, base, 0.0) for e in entities])
    commits = 25
    done = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            with fraud.connect("alice") as conn:
                for c in range(1, commits + 1):
                    at = base + dt.timedelta(seconds=c)
                    with conn.transaction():
                        commit_rows(conn, left, [(e, at, float(c)) for e in entities])
                        commit_rows(conn, right, [(e, at, float(c)) for e in entities])
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()

    seen: list[float] = []
    thread = threading.Thread(target=writer)
    with bob(fraud) as fs:
        thread.start()
        while not done.is_set() or not seen:
            table = fs.get_online_features(["left_side:score", "right_side:score"],
                                           [{"account_id": e} for e in entities], full_feature_names=True)
            values = set(table.column("left_side__score").to_pylist()) | \
                set(table.column("right_side__score").to_pylist())
            assert len(values) == 1, f"a half-applied commit was visible: {sorted(values)}"
            seen.append(values.pop())
        thread.join()
        final = fs.get_online_features(["left_side:score", "right_side:score"], [{"account_id": 1}],
                                       full_feature_names=True).to_pylist()[0]
    assert failures == []
    assert seen == sorted(seen), "values went back in time"
    assert len(set(seen)) > 1, "the reader never overlapped a commit"
    assert final["left_side__score"] == final["right_side__score"] == float(commits)


# --- vector search ------------------------------------------------------------------------------
EMBEDDED = {"merchant_id": "bigint", "event_time": "timestamptz", "country": "text", "risk": "double precision",
            "embedding": "vector(3)"}


@pytest.fixture
def merchants(fraud: Any) -> Any:
    """An online group of 60 merchants with 3-d embeddings and an HNSW index."""
    rng = random.Random(3)
    rows = [(i, now() - dt.timedelta(minutes=1), rng.choice(["DE", "FR", "IT"]), round(rng.random(), 3),
             [round(rng.uniform(-1, 1), 3) for _ in range(3)]) for i in range(1, 61)]
    spec = [{"name": n, "type": t} for n, t in EMBEDDED.items()]
    with fraud.connect("alice") as alice:
        with alice.transaction():
            alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{fraud.name}__owner")))
            group_id = alice.execute(
                "select fstore.create_feature_group(%s, 'merchants', 1, array['merchant_id'], 'event_time',"
                " %s::jsonb, true, p_options => '{\"hnsw\": [\"embedding\"]}')", (fraud.name, json.dumps(spec))
            ).fetchone()[0]
        group = SqlFeatureGroup(group_id, fraud.name, "merchants", 1, ("merchant_id",), tuple(EMBEDDED))
        commit_rows(alice, group, [(*r[:4], str(r[4])) for r in rows])
        with alice.transaction():  # a second group, its embeddings indexed for cosine distance
            alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{fraud.name}__owner")))
            cosine_id = alice.execute(
                "select fstore.create_feature_group(%s, 'shops', 1, array['merchant_id'], 'event_time',"
                " %s::jsonb, true, p_options => '{\"hnsw\": {\"embedding\": \"vector_cosine_ops\"}}')",
                (fraud.name, json.dumps(spec))).fetchone()[0]
        shops = SqlFeatureGroup(cosine_id, fraud.name, "shops", 1, ("merchant_id",), tuple(EMBEDDED))
        commit_rows(alice, shops, [(*r[:4], str(r[4])) for r in rows])
    return fraud, rows


def test_nearest_with_a_filter_matches_brute_force(merchants: Any) -> None:
    project, rows = merchants
    query = [0.2, -0.1, 0.5]
    expected = sorted((r for r in rows if r[2] in ("DE", "FR") and r[3] < 0.7),
                      key=lambda r: math.dist(r[4], query))[:5]
    with bob(project) as fs:
        table = fs.nearest("merchants", "embedding", query, k=5, where="country in ('DE', 'FR') and risk < 0.7")
        unfiltered = fs.nearest("merchants", "embedding", query, k=3, features=["country"])
    assert table.column("merchant_id").to_pylist() == [r[0] for r in expected]
    assert table.column("_distance").to_pylist() == pytest.approx([math.dist(r[4], query) for r in expected],
                                                                  rel=1e-5)
    assert table.column("embedding").to_pylist()[0] == pytest.approx(expected[0][4], rel=1e-6)
    assert unfiltered.column_names == ["merchant_id", "country", "event_time", "_distance"]
    assert unfiltered.column("merchant_id").to_pylist() == \
        [r[0] for r in sorted(rows, key=lambda r: math.dist(r[4], query))[:3]]


def cosine(a: list[float], b: list[float]) -> float:
    return 1 - sum(x * y for x, y in zip(a, b)) / (math.hypot(*a) * math.hypot(*b))


def test_nearest_takes_the_metric_of_the_index(merchants: Any) -> None:
    project, rows = merchants
    query = [0.9, -0.2, 0.1]
    with bob(project) as fs:
        shops = fs.nearest("shops", "embedding", query, k=5)
        l2 = fs.nearest("shops", "embedding", query, k=5, metric="l2")
        statement = vectors.nearest_statement(fs.conn, "shops", "embedding", query, k=5)
        with fs.conn.transaction():
            fs.conn.execute("set local enable_seqscan = off")
            plan = "\n".join(r[0] for r in fs.conn.execute(sql.SQL("explain ") + statement.query,
                                                            statement.params).fetchall())
    by_cosine = sorted(rows, key=lambda r: cosine(r[4], query))[:5]
    assert shops.column("merchant_id").to_pylist() == [r[0] for r in by_cosine]
    assert shops.column("_distance").to_pylist() == pytest.approx([cosine(r[4], query) for r in by_cosine], rel=1e-4)
    by_l2 = sorted(rows, key=lambda r: math.dist(r[4], query))[:5]
    assert l2.column("merchant_id").to_pylist() == [r[0] for r in by_l2]
    assert "<=>" in statement.query.as_string(None) and "Index Scan using shops__v1__online_embedding_idx" in plan


def test_nearest_uses_the_hnsw_index(merchants: Any) -> None:
    project, _ = merchants
    with bob(project) as fs:
        statement = vectors.nearest_statement(fs.conn, "merchants", "embedding", [0, 0, 1], k=4,
                                              where="risk > 0.1")
        with fs.conn.transaction():
            fs.conn.execute("set local enable_seqscan = off")  # a 60-row table: ask the planner to show its index
            plan = "\n".join(r[0] for r in fs.conn.execute(sql.SQL("explain ") + statement.query,
                                                            statement.params).fetchall())
    assert "merchants__v1__online_embedding_idx" in plan and "Index Scan" in plan


@pytest.mark.parametrize("hostile", [
    "1=1; drop table x",
    "risk > 0) or (1=1",
    "merchant_id in (select merchant_id from pg_class)",
    "pg_sleep(1) is null",
    "exists (select 1)",
    "risk > 0 union select 1",
    "current_setting('x') = 'y'",
    "secret_column = 1",
    "country = $1",
    "risk operator(pg_catalog.>) 0",
    "embedding <-> '[1,2,3]' < 1 and (select true)",
])
def test_nearest_rejects_hostile_filters(merchants: Any, hostile: str) -> None:
    project, _ = merchants
    with bob(project) as fs:
        with pytest.raises(InvalidInput, match="filter expression"):
            fs.nearest("merchants", "embedding", [0, 0, 1], k=3, where=hostile)
        assert len(fs.nearest("merchants", "embedding", [0, 0, 1], k=3)) == 3


def test_nearest_bad_arguments(merchants: Any) -> None:
    project, _ = merchants
    with bob(project) as fs:
        with pytest.raises(InvalidInput, match="3 dimensions; the query vector has 2"):
            fs.nearest("merchants", "embedding", [0, 1], k=3)
        with pytest.raises(InvalidInput, match="not a vector"):
            fs.nearest("merchants", "risk", [0, 0, 1], k=3)
        with pytest.raises(InvalidInput, match="k must be"):
            fs.nearest("merchants", "embedding", [0, 0, 1], k=0)
        with pytest.raises(InvalidInput, match="unknown metric"):
            fs.nearest("merchants", "embedding", [0, 0, 1], k=3, metric="manhattan")


def test_no_entities_and_numpy_keys(served: Any) -> None:
    import numpy as np

    with bob(served) as fs:
        empty = fs.get_online_features(["activity:amount"], [])
        rows = fs.get_online_features(["activity:amount"], [{"account_id": k} for k in np.array([2, 3])])
        one = fs.get_online_features(["activity:amount"], {"account_id": np.int64(4)})
    assert empty.num_rows == 0 and empty.column_names == ["account_id", "amount", "activity__found"]
    assert rows.column("amount").to_pylist() == [3.0, 4.5]
    assert one["amount"] == 6.0


def test_serving_applies_the_callers_row_policies(merchants: Any) -> None:
    from fstore.policies import RowPolicy, apply_policies

    project, rows = merchants
    with project.connect("alice") as alice:
        apply_policies(alice, project.name, [RowPolicy(name="de_only", table="merchants", roles=("data_scientist",),
                                                       using="country = 'DE'")])
    query = [0.1, 0.1, 0.1]
    german = sorted((r for r in rows if r[2] == "DE"), key=lambda r: math.dist(r[4], query))
    other = next(r for r in rows if r[2] != "DE")
    online.clear_plans()
    with bob(project) as fs:
        assert fs.nearest("merchants", "embedding", query, k=4).column("merchant_id").to_pylist() == \
            [r[0] for r in german[:4]]
        assert fs.get_online_features(["merchants:country"], {"merchant_id": other[0]})["merchants__found"] is False
    with fstore.connect(project.name, "alice", home=project.home) as owner:  # Data Owners see every row
        assert owner.get_online_features(["merchants:country"], {"merchant_id": other[0]})["country"] == other[2]
        assert owner.nearest("merchants", "embedding", query, k=4).column("merchant_id").to_pylist() == \
            [r[0] for r in sorted(rows, key=lambda r: math.dist(r[4], query))[:4]]
