"""Discovery: search across the caller's project and projects shared with it, and the
``fstore fg list|show|stats`` and ``fstore search`` commands."""

from __future__ import annotations

import json

import fstore
import pytest
from click.testing import CliRunner

from fstore import projects
from fstore.cli import main
from tests.featuregroups.conftest import ACTIVITY_TYPES, activity_frame


def make_velocity(fs):
    return fs.create_feature_group(
        "txn_velocity", 1, keys=["account_id"], online=True, tags=["aml", "velocity"],
        description="Transaction counts and sums per account over sliding windows",
        features={"account_id": "bigint",
                  "amount": {"type": "double precision", "description": "sum of transferred money"},
                  "tx_count": "bigint", "channel": "text", "flagged": "boolean"})


def names(hits) -> set[tuple[str, str]]:
    return {(h["project"], h["name"]) for h in hits}


def test_search_own_project_by_words_tags_features_and_fragments(alice) -> None:
    make_velocity(alice)
    alice.create_feature_group("account_profile", 1, keys=["account_id"], features=ACTIVITY_TYPES,
                               description="Static account attributes", tags=["profile"])
    me = alice.project
    assert names(alice.search("transactions")) == {(me, "txn_velocity")}          # stemmed description
    assert names(alice.search("velocity")) == {(me, "txn_velocity")}             # name word and tag
    assert names(alice.search("txn_vel")) == {(me, "txn_velocity")}              # fragment of a name
    assert names(alice.search("money")) == {(me, "txn_velocity")}                # a feature's description
    hits = alice.search("tx_count")                                              # a feature name
    assert names(hits) == {(me, "txn_velocity"), (me, "account_profile")}
    assert all("tx_count" in h["matched_features"] for h in hits)
    assert names(alice.search("account")) == {(me, "txn_velocity"), (me, "account_profile")}
    assert alice.search("account")[0]["name"] == "account_profile"               # name match ranks first
    assert alice.search("nothing like this") == []


def test_search_sees_shared_projects_only_while_shared(fraud, make_project, home, alice) -> None:
    make_velocity(alice)
    other = make_project(owner="carol", prefix="bank")
    with fstore.connect(other.name, "carol", home=home) as carol:
        assert carol.search("velocity") == []
        assert carol.list_feature_groups() == []
        with fraud.connect("alice") as conn:
            projects.share_project(conn, fraud.name, other.name)
        assert names(carol.search("velocity")) == {(fraud.name, "txn_velocity")}
        shared = carol.get_feature_group(f"{fraud.name}.txn_velocity")
        assert shared.keys == ["account_id"]
        with fraud.connect("alice") as conn:
            projects.unshare_project(conn, fraud.name, other.name)
        assert carol.search("velocity") == []
        with pytest.raises(fstore.NotFound, match="txn_velocity"):
            carol.get_feature_group(f"{fraud.name}.txn_velocity")


def run(home, *args: str) -> str:
    result = CliRunner().invoke(main, ["--home", str(home.root), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_list_show_stats_search(fraud, home, alice) -> None:
    fg = make_velocity(alice)
    df = activity_frame(rows=120, accounts=12)
    first = fg.insert(df.iloc[:100])
    fg.insert(df.iloc[100:])
    role = fraud.role("bob")  # a Data Scientist reads all of it

    listing = run(home, "fg", "list", "--as", role)
    assert "txn_velocity" in listing and fraud.name in listing and "120" in listing
    groups = json.loads(run(home, "fg", "list", "--as", role, "--json"))
    assert [(g["name"], g["version"], g["rows"], g["commits"]) for g in groups] == [("txn_velocity", 1, 120, 2)]

    shown = run(home, "fg", "show", "txn_velocity", "--as", role)
    for text in ("account_id", "double precision", "sum of transferred money", "event_time", "aml, velocity",
                 "txn_velocity__v1__online"):
        assert text in shown, text

    stats = json.loads(run(home, "fg", "stats", "txn_velocity", "--commit", str(first.id), "--as", role, "--json"))
    assert stats["amount"]["rows"] == 100
    table = run(home, "fg", "stats", "txn_velocity", "--as", role)
    assert "amount" in table and "channel" in table

    found = json.loads(run(home, "search", "velocity", "--as", role, "--json"))
    assert [h["name"] for h in found] == ["txn_velocity"]
    assert "txn_velocity" in run(home, "search", "sliding windows", "--as", role)


def test_cli_errors_are_one_line(fraud, home) -> None:
    result = CliRunner().invoke(main, ["--home", str(home.root), "fg", "show", "ghost", "--as", fraud.role("bob")])
    assert result.exit_code == 1
    assert "ghost does not exist" in result.output and "Traceback" not in result.output
