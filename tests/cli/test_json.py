"""``--json`` on every listing and show command: one JSON document on stdout, timestamps in
ISO 8601, durations in seconds, errors as ``{"error": ...}`` with the exit code they
have without ``--json``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
from typing import Any

import click
import pytest

from fstore.cli import main
from fstore.cli.output import interval_seconds, jsonable
from tests.cli.conftest import Cli, one_error_line

LISTING_AND_SHOW = {"list", "show", "stats", "status", "logs"}
TOP_LEVEL_SHOW = {"search", "audit", "env", "drift"}
THIRTY_DAYS = 30 * 86400


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= _commands(command, (*path, name))
        else:
            found[(*path, name)] = command
    return found


def _iso(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, text  # with its offset
    return parsed


def test_every_listing_and_show_command_takes_json() -> None:
    commands = _commands(main)
    wanted = [path for path in commands if path[-1] in LISTING_AND_SHOW or path in {(n,) for n in TOP_LEVEL_SHOW}]
    assert {("project", "list"), ("member", "list"), ("share", "list"), ("cert", "list"), ("fg", "list"),
            ("fg", "show"), ("fg", "stats"), ("search",), ("train", "list"), ("train", "show"), ("audit",),
            ("server", "status"), ("server", "logs"), ("env",), ("drift",)} <= set(wanted)
    missing = [" ".join(p) for p in wanted if "as_json" not in {q.name for q in commands[p].params}]
    assert missing == []


def test_tenancy_listings(cli: Cli, fraud: Any, partner: Any) -> None:
    [project] = [p for p in cli.json("project", "list") if p["name"] == fraud.name]
    assert (project["owner_user"], project["members"]) == ("alice", 2)
    _iso(project["created_at"])
    members = cli.json("member", "list", fraud.name, "--as", fraud.role("bob"))
    assert [(m["user_name"], m["project_role"]) for m in members] == [("alice", "data_owner"),
                                                                      ("bob", "data_scientist")]
    _iso(members[1]["added_at"])

    assert cli.json("share", "list", "--as", fraud.role("alice")) == []
    cli.run("share", fraud.name, "--with", partner.name, "--as", fraud.role("alice"))
    given = cli.json("share", "list", "--as", fraud.role("alice"))
    received = cli.json("share", "list", "--as", partner.role("carol"))
    assert given == received and len(given) == 1
    assert (given[0]["project"], given[0]["with_project"], given[0]["read_only"]) == (fraud.name, partner.name, True)
    _iso(given[0]["shared_at"])
    assert cli.json("share", "list", "--project", fraud.name) == given  # the admin, filtered
    table = cli.run("share", "list", "--as", partner.role("carol")).stdout
    assert fraud.name in table and partner.name in table

    [record] = [c for c in cli.json("cert", "list") if c["role"] == fraud.role("bob")]
    assert (record["kind"], record["expired"], record["revoked_at"]) == ("user", False, None)
    _iso(record["not_after"])
    audit = cli.json("audit", "--project", fraud.name, "--as", fraud.role("alice"))
    assert {"create_project", "add_member", "share_project"} <= {a["action"] for a in audit}
    _iso(audit[0]["at"])


def test_feature_group_listings_give_durations_in_seconds(cli: Cli, fraud: Any, activity: Any) -> None:
    bob = fraud.role("bob")
    [group] = cli.json("fg", "list", "--as", bob)
    assert (group["name"], group["ttl"], group["rows"]) == ("activity", THIRTY_DAYS, 25)
    _iso(group["last_commit_at"])
    shown = cli.json("fg", "show", "activity", "--as", bob)
    assert (shown["keys"], shown["ttl"], shown["event_time"]) == (["account_id"], THIRTY_DAYS, "event_time")
    assert [f["name"] for f in shown["features"]] == ["account_id", "n_tx"]
    assert [c["rows"] for c in shown["commits"]] == [25] and [v["version"] for v in shown["versions"]] == [1]
    assert "store" not in shown
    stats = cli.json("fg", "stats", "activity", "--as", bob)
    assert stats["n_tx"]["rows"] == 25
    [hit] = cli.json("search", "activity", "--as", bob)
    assert hit["name"] == "activity"


def test_training_datasets_give_durations_in_seconds(cli: Cli, fraud: Any, activity: Any) -> None:
    bob = fraud.role("bob")
    cli.run("train", "create", "fraud_train", "--spine", f"{fraud.name}.labels", "--feature", "activity:*",
            "--label", "is_fraud", "--ttl", "1 day 02:00:00", "--as", bob)
    [listed] = cli.json("train", "list", "--as", bob)
    shown = cli.json("train", "show", "fraud_train", "--as", bob)
    assert listed == shown
    assert (shown["name"], shown["rows"], shown["ttl"]) == ("fraud_train", 8, 86400 + 7200)
    [group] = shown["feature_groups"]
    assert (group["name"], group["max_commit"]) == ("activity", activity_commit(fraud))
    _iso(shown["created_at"])


def activity_commit(fraud: Any) -> int:
    """The one commit of fraud's activity group."""
    with fraud.connect("alice") as alice:
        return alice.execute("select max(c.id) from fstore.commits c join fstore.feature_groups g "
                             "on g.id = c.feature_group_id where g.project = %s and g.name = 'activity'",
                             (fraud.name,)).fetchone()[0]


def test_platform_show_commands(cli: Cli, fraud: Any) -> None:
    status = cli.json("server", "status")
    assert status["running"] is True and status["port"] == cli.home.port
    logs = cli.json("server", "logs", "-n", "5")
    assert logs["log_file"] == str(cli.home.log_file) and len(logs["lines"]) <= 5
    env = cli.json("env", fraud.role("bob"))
    assert env["service"] == fraud.role("bob") and env["params"]["sslmode"] == "verify-full"
    assert env["dbt_profile"]["fstore"]["outputs"]["dev"]["user"] == fraud.role("bob")


@pytest.mark.parametrize("command", [["fg", "show", "ghost"], ["train", "show", "ghost"], ["fg", "stats", "ghost"],
                                     ["member", "list", "{other}"]])
def test_an_error_has_the_same_exit_code_with_json(cli: Cli, fraud: Any, partner: Any, command: list[str]) -> None:
    args = [a.replace("{other}", partner.name) for a in command] + ["--as", fraud.role("bob")]
    plain = cli.run(*args, code=1)
    as_json = cli.run(*args, "--json", code=1)
    assert plain.stdout == "" and plain.stderr == as_json.stderr
    error = json.loads(as_json.stdout)["error"]
    assert error["kind"] == "not_found" and error["exit_code"] == 1
    sqlstate = f" (SQLSTATE {error['sqlstate']})" if error["sqlstate"] else ""
    assert one_error_line(plain.stderr) == f"error: {error['message']}{sqlstate}"


def test_a_usage_error_has_exit_2_and_a_json_error(cli: Cli, fraud: Any) -> None:
    plain = cli.run("fg", "list", "--bogus", "--as", fraud.role("bob"), code=2)
    as_json = cli.run("fg", "list", "--bogus", "--json", "--as", fraud.role("bob"), code=2)
    assert "No such option '--bogus'" in plain.stderr and plain.stdout == ""
    assert json.loads(as_json.stdout) == {"error": {"kind": "usage", "message": "No such option '--bogus'.",
                                                    "sqlstate": None, "exit_code": 2}}


@pytest.mark.parametrize(("text", "seconds"), [
    ("30 days", THIRTY_DAYS), ("1 day", 86400), ("01:00:00", 3600), ("1 day 02:00:00.5", 93600.5),
    ("-01:30:00", -5400), ("1 mon", THIRTY_DAYS), ("1 year 2 mons", 365.25 * 86400 + 2 * THIRTY_DAYS),
    ("-1 days +02:00:00", -86400 + 7200), ("00:00:00", 0),
])
def test_intervals_are_read_as_postgres_counts_them(text: str, seconds: float, operator: Any) -> None:
    assert interval_seconds(text) == seconds
    assert float(operator.execute("select extract(epoch from %s::interval)", (text,)).fetchone()[0]) == seconds


def test_a_value_that_is_no_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="not a PostgreSQL interval: 'soon'"):
        interval_seconds("soon")


def test_jsonable_conventions() -> None:
    @dataclasses.dataclass
    class Thing:
        at: dt.datetime
        ttl: dt.timedelta
        amount: decimal.Decimal
        handle: object = dataclasses.field(default=None, repr=False)

    at = dt.datetime(2024, 6, 1, 12, tzinfo=dt.timezone.utc)
    assert jsonable(Thing(at, dt.timedelta(hours=1), decimal.Decimal("2.5"))) == {
        "at": "2024-06-01T12:00:00+00:00", "ttl": 3600, "amount": 2.5}
    assert jsonable({"ttl": "2 days", "rows": (1, 2)}) == {"ttl": 172800, "rows": [1, 2]}


def test_drift_in_json_and_its_usage_errors(cli: Cli, fraud: Any, activity: Any) -> None:
    commit = str(activity_commit(fraud))
    args = ["drift", "activity", "--baseline", f"commit={commit}", "--current", f"commit={commit}",
            "--as", fraud.role("bob")]
    report = cli.json(*args)
    assert [(f["feature"], f["drifted"]) for f in report["features"]] == [("n_tx", False)]
    bad = ["drift", "activity", "--baseline-dataset", "fraud_train@two", "--as", fraud.role("bob")]
    plain = cli.run(*bad, code=2)
    as_json = cli.run(*bad, "--json", code=2)
    assert "'fraud_train@two': write NAME or NAME@VERSION (a number)" in plain.stderr
    assert json.loads(as_json.stdout)["error"] == {
        "kind": "usage", "sqlstate": None, "exit_code": 2,
        "message": "Invalid value for --baseline-dataset: 'fraud_train@two': write NAME or NAME@VERSION (a number)"}
