"""``fstore fv`` and ``fstore usage`` as real roles with their own certificates: define a view,
train it, serve a vector, read its usage; the refusals and bad input in one line each."""

from __future__ import annotations

import json
from typing import Any

import pytest

import fstore
from tests.cli.conftest import Cli, one_error_line
from tests.featureviews.conftest import build_bank, spine


@pytest.fixture
def bank(fraud: Any) -> Any:
    """fraud with the online groups activity and profile (40 accounts) and a spine table ``labels``."""
    build_bank(fraud)
    frame = spine(list(range(1, 41)))
    with fstore.connect(fraud.name, "alice", home=fraud.home) as alice:
        with alice.conn.transaction():
            alice.conn.execute(f"set local role {fraud.name}__owner")
            alice.conn.execute(f"create table {fraud.name}.labels (account_id bigint, event_time timestamptz, "
                               "amount float8, is_fraud int)")
            alice.conn.cursor().executemany(f"insert into {fraud.name}.labels values (%s, %s, %s, %s)",
                                            [tuple(row) for row in frame.itertuples(index=False)])
    return fraud


def test_a_view_from_definition_to_a_served_vector(cli: Cli, bank: Any) -> None:
    bob = bank.role("bob")
    created = cli.json("fv", "create", "scoring", "--feature", "activity:*", "--feature", "profile:country",
                       "--label", "is_fraud", "--passed", "amount:float8", "--transform", "tx_count=standard_scaler",
                       "--transform", "country=one_hot", "--transform", "amount=bucketize:10,100,1000",
                       "--log-rate", "0", "--description", "the scoring model", "--tag", "aml", "--as", bob)
    assert (created["name"], created["version"], created["features"][0]) == ("scoring", 1, "activity@1:tx_count")
    assert created["passed_features"] == [{"name": "amount", "type": "double precision"}]
    assert created["transformations"]["amount"] == {"fn": "bucketize", "edges": [10, 100, 1000]}
    plain = cli.run("fv", "create", "scoring", "--feature", "activity:tx_count", "--as", bob).stdout
    assert "created feature view scoring version 2" in plain
    shown = cli.json("fv", "show", "scoring@1", "--as", bob)
    assert shown["columns"] == [] and shown["training_datasets"] == []
    assert "not fitted yet" in cli.run("fv", "show", "scoring@1", "--as", bob).stdout
    trained = cli.json("fv", "train", "scoring@1", "--spine", f"{bank.name}.labels", "--split", "train=0.8",
                       "--split", "test=0.2", "--seed", "3", "--as", bob)
    assert trained["training_dataset"]["name"] == "scoring_v1" and trained["training_dataset"]["rows"] == 40
    assert trained["columns"][:3] == ["tx_count", "amount_7d", "balance"] and "country=DE" in trained["columns"]
    shown = cli.json("fv", "show", "scoring@1", "--as", bob)
    assert shown["columns"] == trained["columns"] and shown["training_datasets"][0]["fitted_on"] == "train"
    assert "fitted on train" in cli.run("fv", "show", "scoring@1", "--as", bob).stdout
    listed = cli.json("fv", "list", "--as", bob)
    assert [(v["name"], v["version"]) for v in listed] == [("scoring", 1), ("scoring", 2)]
    vector = cli.json("fv", "vector", "scoring@1", "--key", "account_id=7", "--passed", "amount=150.5", "--as", bob)
    with fstore.connect(bank.name, "bob", home=bank.home) as fs:
        expected = fs.get_feature_view("scoring", 1).get_feature_vector({"account_id": 7}, {"amount": 150.5})
    assert vector["vector"] == expected and vector["found"] is True and vector["columns"] == trained["columns"]
    missing = cli.json("fv", "vector", "scoring@1", "--key", "account_id=999", "--passed", "amount=1", "--as", bob)
    assert missing["found"] is False and missing["vector"][0] is None
    strict = cli.run("fv", "vector", "scoring@1", "--key", "account_id=999", "--strict", "--passed", "amount=1",
                     "--as", bob, code=1)
    assert "no online row for account_id='999'" in one_error_line(strict.stderr)
    table = cli.run("fv", "vector", "scoring@1", "--key", "account_id=7", "--passed", "amount=150.5", "--as", bob)
    assert "country=DE" in table.stdout and "found: True" in table.stdout


def test_usage_and_the_reuse_report(cli: Cli, bank: Any) -> None:
    bob, alice = bank.role("bob"), bank.role("alice")
    for name, feature in (("one", "activity:tx_count"), ("two", "activity:*")):
        cli.run("fv", "create", name, "--feature", feature, "--label", "is_fraud", "--as", bob)
        cli.run("fv", "train", name, "--spine", f"select account_id, event_time, is_fraud from {bank.name}.labels",
                "--as", bob)
    usage = {u["feature"]: u for u in cli.json("usage", "activity", "--as", alice)}
    assert usage["tx_count"]["views"] == ["one@1", "two@1"] and usage["balance"]["views"] == ["two@1"]
    assert usage["tx_count"]["training_datasets"] == ["one_v1@1", "two_v1@1"]
    assert "one@1, two@1" in cli.run("usage", "--as", alice).stdout
    report = cli.json("usage", "--report", "--as", alice)
    assert (report["features_defined"], report["reused_features"], report["reused"]) == (7, 1, ["activity@1:tx_count"])
    assert (report["training_columns"], report["training_columns_from_reused"]) == (4, 2)
    text = cli.run("usage", "--report", "--as", alice).stdout
    assert "7 features defined" in text and "1 reused" in text and "2 of 4 (50%)" in text


def test_refusals_and_bad_input_in_one_line(cli: Cli, bank: Any, partner: Any) -> None:
    carol = partner.role("carol")
    refused = cli.run("fv", "create", "stolen", "--feature", f"{bank.name}.activity:*", "--as", carol, code=1)
    line = one_error_line(refused.stderr)
    assert f"project {bank.name} is not shared with" in line and "(SQLSTATE 42501)" in line
    assert f"`fstore share {bank.name} --with {partner.name} --as {bank.name}__USER`" in line
    error = json.loads(cli.run("fv", "create", "stolen", "--feature", f"{bank.name}.activity:*", "--json",
                               "--as", carol, code=1).stdout)["error"]
    assert (error["kind"], error["sqlstate"]) == ("permission_denied", "42501")
    bob = bank.role("bob")
    for args, words in [
        (["--feature", "activity:tx_count", "--transform", "tx_count"], "use COLUMN=FN"),
        (["--feature", "activity:tx_count", "--transform", "tx_count=bucketize:a,b"], "edges are numbers"),
        (["--feature", "activity:tx_count", "--transform", "tx_count=sqrt"], "sqrt"),
        (["--feature", "activity:tx_count", "--passed", "amount"], "use NAME:VALUE"),
        (["--feature", "profile:country"], "feature country is categorical"),
        (["--feature", "nothing:*"], "nothing"),
    ]:
        assert words in one_error_line(cli.run("fv", "create", "bad", *args, "--as", bob, code=1).stderr), args
    assert "does not exist or is not visible" in one_error_line(
        cli.run("fv", "show", "absent", "--as", bob, code=1).stderr)
    assert "invalid version" in one_error_line(cli.run("fv", "show", "absent@x", "--as", bob, code=1).stderr)
    cli.run("fv", "create", "fresh", "--feature", "activity:tx_count", "--as", bob)
    assert "has no fitted training dataset" in one_error_line(
        cli.run("fv", "vector", "fresh", "--key", "account_id=1", "--as", bob, code=1).stderr)
    cli.run("fv", "train", "fresh", "--spine", f"{bank.name}.labels", "--as", bob)
    assert "no value for serving key(s) account_id" in one_error_line(
        cli.run("fv", "vector", "fresh", "--key", "acct=1", "--as", bob, code=1).stderr)
