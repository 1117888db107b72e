"""Feature views from Python, as a data scientist and an online service use them: define
one, build its training data, serve the same vectors, and see the database refuse what a
role may not do. Every actor logs in with their own certificate.

The skew test: random entities, their point-in-time rows at "now" through the training
path (fitted, transformed) against ``get_feature_vector``, every column and every
transformation, to 1e-12.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import re
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

import fstore
from fstore import projects, serving_vectors
from fstore.errors import InvalidInput, NotFound, PermissionDenied
from fstore.featureviews import FeatureView
from tests.conftest import TEST_CLUSTER_WORKERS
from tests.featureviews.conftest import FEATURES, PASSED, TRANSFORMS, build_bank, now, spine
from tests.retrieval.conftest import commit_rows, create_group


def scoring(fs: fstore.FeatureStore, name: str = "scoring", **kwargs: Any) -> FeatureView:
    kwargs.setdefault("transformations", TRANSFORMS)
    return fs.create_feature_view(name, FEATURES, label="is_fraud", passed_features=PASSED, **kwargs)


def close(a: Any, b: Any) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=0,
                                                                                          abs_tol=1e-12))


def test_the_served_vector_is_the_training_row_transformed_alike(bob: fstore.FeatureStore) -> None:
    fv = scoring(bob)
    assert (fv.version, fv.serving_keys, fv.label) == (1, ["account_id"], ["is_fraud"])
    assert fv.features[0] == "activity@1:tx_count" and set(fv.transformations) == set(TRANSFORMS)
    accounts = random.Random(11).sample(range(1, 41), 30)
    frame = spine(accounts)
    td = fv.create_training_dataset(frame, split={"train": 0.7, "test": 0.3}, seed=5)
    assert (td.name, td.version, td.rows) == ("scoring_v1", 1, 30)
    table = fv.get_training_data(with_keys=True)
    columns = fv.columns
    assert table.column_names == ["account_id", "event_time", *columns, "is_fraud", "split"]
    assert columns[:4] == ["tx_count", "amount_7d", "balance", "age"] and columns[-1] == "amount"
    assert {"country=DE", "country=FR", "country=NL"} <= set(columns)
    rows = table.to_pylist()
    assert [r["account_id"] for r in rows] == accounts  # spine order
    fv.init_serving()
    amounts = dict(zip(frame["account_id"], frame["amount"]))
    for row in rows:
        served = fv.get_feature_vector({"account_id": row["account_id"]}, {"amount": amounts[row["account_id"]]})
        assert fv.last_found is True
        for name, value in zip(columns, served):
            assert close(value, row[name]), (row["account_id"], name, value, row[name])
    # every transformation really ran: scaled columns are not the raw values
    raw = bob.get_online_features(["activity:tx_count"], {"account_id": accounts[0]})
    assert not close(fv.get_feature_vector({"account_id": accounts[0]}, {"amount": 1.0})[0], float(raw["tx_count"]))


def test_batch_equals_single_in_every_form(bob: fstore.FeatureStore) -> None:
    fv = scoring(bob)
    fv.create_training_dataset(spine(list(range(1, 41))))
    entities = [{"account_id": a} for a in (3, 999, 7, 3)]
    passed = [{"amount": 5.5}, {"amount": 50.0}, None, {"amount": 2000.0}]
    singles = [fv.get_feature_vector(e, p) for e, p in zip(entities, passed)]
    batch = fv.get_feature_vectors(entities, passed)
    assert batch == singles
    assert fv.last_found == [True, False, True, True]
    assert batch[1][0] is None and batch[1][-1] == 1.0  # nobody's features; the passed amount bucketized
    columns = fv.columns
    array = fv.get_feature_vectors(entities, passed, return_type="numpy")
    assert array.shape == (4, len(columns)) and array.dtype == np.float64 and np.isnan(array[1, 0])
    np.testing.assert_array_equal(array[0], np.array(singles[0], dtype=np.float64))
    one = fv.get_feature_vector(entities[0], passed[0], return_type="numpy")
    assert one.shape == (len(columns),) and list(one) == singles[0]
    assert fv.get_feature_vector(entities[0], passed[0], return_type="dict") == dict(zip(columns, singles[0]))
    assert fv.get_feature_vectors(entities[:2], passed[:2], return_type="dict")[1]["tx_count"] is None
    frame = fv.get_feature_vectors(entities, passed, return_type="pandas")
    assert isinstance(frame, pd.DataFrame) and list(frame.columns) == columns and len(frame) == 4
    np.testing.assert_array_equal(fv.get_feature_vector(entities[2], None, return_type="pandas").iloc[0].to_numpy(),
                                  np.array(singles[2], dtype=np.float64))  # no amount passed: NaN
    with pytest.raises(InvalidInput, match="return_type must be one of"):
        fv.get_feature_vector(entities[0], return_type="tensor")


def test_a_batch_reads_only_the_shards_of_its_keys(bob: fstore.FeatureStore) -> None:
    """On a cluster the batch query prunes each distributed online table to the shards of the
    request's keys (index probes there); before, Citus pulled every shard whole to the
    coordinator for every batch. On a single node the query is the plain join."""
    fv = scoring(bob)
    fv.create_training_dataset(spine(list(range(1, 41))))
    plan = serving_vectors.prepare(bob.conn, "scoring", None, None)
    request = json.dumps([{"account_id": a, "amount": 1.0} for a in (3, 7, 11)])
    explained = "\n".join(r[0] for r in psycopg.RawCursor(bob.conn).execute(b"explain (costs off) " + plan.query_many,
                                                                            (request,)))
    if not TEST_CLUSTER_WORKERS:
        assert b"request_values" not in plan.query_many and "Citus" not in explained
        return
    task_counts = [int(n) for n in re.findall(r"Task Count: (\d+)", explained)]
    assert len(task_counts) == 3 and max(task_counts[:2]) <= 3, explained  # two groups' subplans, then the join
    assert "Seq Scan on activity" not in explained and "ANY ('{3,7,11}'::bigint[])" in explained, explained
    assert fv.get_feature_vectors([{"account_id": a} for a in (3, 7, 11)], [{"amount": 1.0}] * 3) == [
        fv.get_feature_vector({"account_id": a}, {"amount": 1.0}) for a in (3, 7, 11)]


def test_a_missing_entity_gives_nulls_or_a_clear_error(bob: fstore.FeatureStore) -> None:
    fv = scoring(bob)
    fv.create_training_dataset(spine([1, 2, 3]))
    vector = fv.get_feature_vector({"account_id": 999}, {"amount": 5})
    assert vector[0] is None and fv.last_found is False
    with pytest.raises(NotFound, match="scoring: no online row for account_id=999"):
        fv.get_feature_vector({"account_id": 999}, {"amount": 5}, strict=True)
    with pytest.raises(NotFound, match="account_id=998"):
        fv.get_feature_vectors([{"account_id": 1}, {"account_id": 998}], [{"amount": 1.0}] * 2, strict=True)
    with pytest.raises(InvalidInput, match="no value for serving key.* account_id"):
        fv.get_feature_vector({"acct": 1})
    with pytest.raises(InvalidInput, match="entity 1 has no value for serving key"):
        fv.get_feature_vectors([{"account_id": 1}, {"acct": 2}])
    with pytest.raises(InvalidInput, match="amount is not a serving key.*passed_features"):
        fv.get_feature_vector({"account_id": 1, "amount": 3.0})
    with pytest.raises(InvalidInput, match="amout is not a passed feature .*passed features: amount"):
        fv.get_feature_vector({"account_id": 1}, {"amout": 3.0})
    with pytest.raises(InvalidInput, match="no value for passed feature.* amount"):
        fv.get_feature_vector({"account_id": 1}, strict=True)


def test_a_passed_feature_overrides_a_stored_one(bob: fstore.FeatureStore) -> None:
    fv = bob.create_feature_view("override", ["activity:tx_count", "activity:balance"],
                                 passed_features={"balance": "double precision"})
    assert [o["name"] for o in fv.outputs] == ["tx_count", "balance"] and fv.outputs[1].get("passed") is True
    fv.create_training_dataset(spine([1, 2]).drop(columns=["amount"]))
    stored = bob.get_online_features(["activity:balance"], {"account_id": 2})["balance"]
    assert fv.get_feature_vector({"account_id": 2})[1] == stored
    assert fv.get_feature_vector({"account_id": 2}, {"balance": 12.25})[1] == 12.25
    assert fv.get_feature_vectors([{"account_id": 2}] * 2, [{"balance": -1.5}, {}]) == [
        [fv.get_feature_vector({"account_id": 2})[0], -1.5], fv.get_feature_vector({"account_id": 2})]


def test_a_view_keeps_serving_its_pinned_group_version_until_it_is_bumped(bank: Any, alice: fstore.FeatureStore
                                                                         ) -> None:
    fv = alice.create_feature_view("pinned", ["activity:tx_count"])
    fv.create_training_dataset(spine([1, 2, 3]).drop(columns=["amount"]))
    before = fv.get_feature_vector({"account_id": 1})
    with bank.connect("alice") as conn:  # version 2 of activity: other rows
        v2 = create_group(conn, bank.name, "activity", {"account_id": "bigint", "event_time": "timestamptz",
                                                        "tx_count": "integer"}, ["account_id"], version=2, online=True)
        commit_rows(conn, v2, [(1, now() - dt.timedelta(minutes=5), 12345)])
    assert fv.get_feature_vector({"account_id": 1}) == before
    assert alice.get_feature_view("pinned").get_feature_vector({"account_id": 1}) == before  # a fresh handle too
    bumped = alice.create_feature_view("pinned", ["activity:tx_count"])
    assert (bumped.version, bumped.features) == (2, ["activity@2:tx_count"])
    with pytest.raises(NotFound, match="pinned version 2 has no fitted training dataset"):
        bumped.get_feature_vector({"account_id": 1})
    bumped.create_training_dataset(spine([1]).drop(columns=["amount"]))
    assert bumped.get_feature_vector({"account_id": 1}) == [12345.0]
    assert alice.get_feature_view("pinned", version=1).get_feature_vector({"account_id": 1}) == before


def test_parameters_come_from_the_training_split_and_a_version_can_be_chosen(bob: fstore.FeatureStore) -> None:
    fv = scoring(bob)
    first = fv.create_training_dataset(spine(list(range(1, 41))), split={"train": 0.5, "test": 0.5}, seed=1)
    second = fv.create_training_dataset(spine(list(range(1, 11))))
    assert (first.version, second.version) == (1, 2)
    fits = {f["training_dataset_version"]: f for f in fv.fits()}
    assert fits[1]["fitted_on"] == "train" and 0 < fits[1]["fitted_rows"] < 40 and fits[2]["fitted_on"] is None
    train = fv.get_training_data(1)
    assert train.num_rows == 40 and set(train.column("split").to_pylist()) == {"train", "test"}
    mean = fits[1]["params"]["tx_count"]["mean"]
    fv.init_serving(training_dataset_version=1)
    assert fv.serving_training_dataset_version == 1
    v1 = fv.get_feature_vector({"account_id": 5}, {"amount": 1.0})
    fv.init_serving()
    assert fv.serving_training_dataset_version == 2
    v2 = fv.get_feature_vector({"account_id": 5}, {"amount": 1.0})
    std1, std2 = fits[1]["params"]["tx_count"]["std"], fits[2]["params"]["tx_count"]["std"]
    raw = v1[0] * std1 + mean
    assert close(v2[0], (raw - fits[2]["params"]["tx_count"]["mean"]) / std2) and not close(v1[0], v2[0])


def test_an_export_carries_the_transformed_columns_in_order(bob: fstore.FeatureStore, tmp_path: Any) -> None:
    import pyarrow.parquet as pq

    fv = scoring(bob)
    fv.create_training_dataset(spine(list(range(1, 21))), split={"train": 0.8, "test": 0.2})
    result = fv.export(tmp_path / "scoring.parquet")
    train = pq.read_table(tmp_path / "scoring.parquet" / "train.parquet")
    assert train.column_names[:len(fv.columns)] == fv.columns and "is_fraud" in train.column_names
    assert result.rows == 20 and fv.training_dataset().exports[0]["rows"] == 20


def test_served_vectors_are_logged_only_when_sampled(bank: Any, alice: fstore.FeatureStore) -> None:
    quiet = scoring(alice, "quiet")
    quiet.create_training_dataset(spine(list(range(1, 41))))
    for account in range(1, 11):
        quiet.get_feature_vector({"account_id": account}, {"amount": 3.0})
    assert quiet.flush_log() == 0
    logged = scoring(alice, "logged", log_rate=1.0)
    logged.create_training_dataset(spine(list(range(1, 41))))
    for account in range(1, 21):
        logged.get_feature_vector({"account_id": account}, {"amount": 50.0})
    logged.get_feature_vectors([{"account_id": a} for a in (21, 22, 999)], [{"amount": 50.0}] * 3)
    assert logged._server.pending() == 23 and logged.flush_log() == 23
    rows = alice.conn.execute(
        "select v.name, count(*), count(*) filter (where not found), min(session_role), "
        "min((keys->>'account_id')::int), max(passed->>'amount') from fstore.served_vectors s "
        "join fstore.feature_views v on v.id = s.feature_view_id group by v.name").fetchall()
    assert rows == [("logged", 23, 1, bank.role("alice"), 1, "50.0")]
    [vector] = alice.conn.execute("select vector from fstore.served_vectors where keys = '{\"account_id\": 3}'"
                                  ).fetchone()
    assert vector == logged.get_feature_vector({"account_id": 3}, {"amount": 50.0})
    sampled = scoring(alice, "sampled", log_rate=0.25)
    sampled.create_training_dataset(spine(list(range(1, 41))))
    random.seed(2)
    sampled.get_feature_vectors([{"account_id": a % 40 + 1} for a in range(400)], [{"amount": 1.0}] * 400)
    sampled.flush_log()
    written = alice.conn.execute("select count(*) from fstore.served_vectors where feature_view_id = %s",
                                 (sampled.id,)).fetchone()[0]
    assert 60 < written < 140  # a quarter of 400, more or less
    # the log against the training split: what was served drifted (every amount was 50)
    report = alice.drift(logged)
    assert report.features[0].feature == "tx_count" and report.features[0].current_rows == 23
    assert "amount" in report.drifted and logged.drift().drifted == report.drifted


def test_a_served_log_batches_itself(alice: fstore.FeatureStore) -> None:
    fv = scoring(alice, "busy", log_rate=1.0)
    fv.create_training_dataset(spine(list(range(1, 41))))
    for i in range(serving_vectors.LOG_BATCH + 5):
        fv.get_feature_vector({"account_id": i % 40 + 1}, {"amount": 1.0})
    assert fv._server.pending() == 5  # the first hundred went to the background writer in one batch
    writer = fv._server._writer
    assert writer is not None and writer.name == "fstore-log-busy"
    fv.close()
    assert not writer.is_alive()
    assert alice.conn.execute("select count(*) from fstore.served_vectors").fetchone()[0] == \
        serving_vectors.LOG_BATCH + 5


def test_a_pool_serves_from_threads(bob: fstore.FeatureStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fv = scoring(bob)
    fv.create_training_dataset(spine(list(range(1, 41))))
    expected = {a: fv.get_feature_vector({"account_id": a}, {"amount": 2.0}) for a in range(1, 41)}
    with fv.init_serving(pool_size=3), ThreadPoolExecutor(4) as executor:
        served = list(executor.map(lambda a: fv.get_feature_vector({"account_id": a}, {"amount": 2.0}),
                                   list(range(1, 41)) * 3))
    assert served == [expected[a] for a in list(range(1, 41)) * 3]


def test_views_list_and_usage_show_what_uses_each_feature(bank: Any, bob: fstore.FeatureStore,
                                                          alice: fstore.FeatureStore, make_project: Any) -> None:
    fv = scoring(bob)
    fv.create_training_dataset(spine(list(range(1, 41))))
    fv.get_feature_vector({"account_id": 1}, {"amount": 1.0})
    other = bob.create_feature_view("simple", ["activity:tx_count"])
    assert [(v.name, v.version) for v in bob.list_feature_views()] == [("scoring", 1), ("simple", 1)]
    assert bob.get_feature_view("simple").features == other.features
    partner = make_project(owner="pia", scientists=["sam"], prefix="partner")
    projects.share_project(alice.conn, bank.name, partner.name)
    with fstore.connect(partner.name, "sam", home=bank.home) as sam:
        theirs = sam.create_feature_view("borrowed", [f"{bank.name}.activity:tx_count"])
        theirs.create_training_dataset(spine([1, 2]).drop(columns=["amount"]))
        assert {v.name for v in sam.list_feature_views()} >= {"borrowed", "scoring", "simple"}  # shared: visible
    usage = {u["feature"]: u for u in alice.feature_usage("activity")}
    assert usage["tx_count"]["views"] == ["scoring@1", "simple@1"]
    assert usage["tx_count"]["training_datasets"] == ["scoring_v1@1"]
    assert usage["tx_count"]["partner_projects"] == [partner.name]
    assert usage["tx_count"]["partner_training_datasets"] == [f"{partner.name}.borrowed_v1@1"]  # names only
    assert usage["balance"]["partner_projects"] == [] and usage["balance"]["views"] == ["scoring@1"]
    assert usage["balance"]["last_served"] is None  # scoring does not log
    report = alice.feature_usage(report=True)
    assert report["features_defined"] == 7 and report["reused_features"] == 1
    assert report["reused"] == ["activity@1:tx_count"] and report["partner_projects"] == [partner.name]
    # training columns: scoring_v1 uses 7 features, borrowed_v1 one (reused)
    assert (report["training_columns"], report["training_columns_from_reused"]) == (8, 2)
    assert report["reused_training_column_share"] == 0.25


def test_a_data_scientist_creates_a_view_in_their_own_project(bob: fstore.FeatureStore) -> None:
    fv = bob.create_feature_view("mine", ["profile:age"], transformations={"age": "standard_scaler"},
                                 description="age only", tags=["demo"])
    assert (fv.created_by, fv.description, fv.tags) == (bob.role, "age only", ["demo"])
    with pytest.raises(fstore.Conflict, match="mine version 1 exists already"):
        bob.create_feature_view("mine", ["profile:age"], version=1)
    with pytest.raises(InvalidInput, match="feature country is categorical.*one_hot or label_encoder"):
        bob.create_feature_view("bad", ["profile:country"])
    with pytest.raises(InvalidInput, match="the view has no feature nope"):
        bob.create_feature_view("bad", ["profile:age"], transformations={"nope": "log1p"})
    with pytest.raises(NotFound, match="unknown_group"):
        bob.create_feature_view("bad", ["unknown_group:*"])


def test_another_project_without_a_share_is_refused(bank: Any, make_project: Any) -> None:
    with fstore.connect(bank.name, "alice", home=bank.home) as alice:
        scoring(alice).create_training_dataset(spine(list(range(1, 41))))
    outsider = make_project(owner="olga", scientists=["eve"], prefix="outsider")
    with fstore.connect(outsider.name, "eve", home=bank.home) as eve:
        with pytest.raises(PermissionDenied, match=f"project {bank.name} is not shared"):
            eve.create_feature_view("stolen", [f"{bank.name}.activity:*"])
        with pytest.raises(NotFound, match="scoring does not exist or is not visible"):
            eve.get_feature_view("scoring")
        assert eve.list_feature_views() == []
        assert eve.feature_usage() == []  # eve's project has no features; bank's are not hers to see
        with pytest.raises(PermissionDenied):  # the online table itself, as eve
            eve.get_online_features([f"{bank.name}.activity:tx_count"], {"account_id": 1})


def test_after_unshare_the_partners_view_stops_serving(bank: Any, make_project: Any) -> None:
    partner = make_project(owner="pia", scientists=["sam"], prefix="partner")
    with bank.connect("alice") as conn:
        projects.share_project(conn, bank.name, partner.name)
    with fstore.connect(partner.name, "sam", home=bank.home) as sam:
        fv = sam.create_feature_view("shared", [f"{bank.name}.activity:tx_count", f"{bank.name}.profile:age"],
                                     transformations={"tx_count": "log1p"})
        fv.create_training_dataset(spine([1, 2, 3]).drop(columns=["amount"]))
        assert fv.get_feature_vector({"account_id": 2})[0] is not None  # prepared, and served
        with bank.connect("alice") as conn:
            projects.unshare_project(conn, bank.name, partner.name)
        with pytest.raises(PermissionDenied, match=f"feature view {partner.name}.shared uses feature groups of "
                                                   f"project {bank.name}, which is not shared"):
            fv.get_feature_vector({"account_id": 2})
        with pytest.raises(PermissionDenied, match=f"project {bank.name}, which is not shared"):
            fv.get_feature_vectors([{"account_id": 2}])
        with pytest.raises(PermissionDenied, match=f"project {bank.name}, which is not shared"):
            sam.get_feature_view("shared")
