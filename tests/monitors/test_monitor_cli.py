"""``fstore monitor create/list/show/drop/alerts``, run for real as real roles with their own
certificates. The runs and alerts shown are written by the operator (a run is recorded only by
a monitor's pg_cron job, which tests/monitors/test_monitors.py waits for); refusals are one
clear line with exit code 1."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

import fstore
from fstore.connection import connect_operator
from tests.cli.conftest import Cli, one_error_line


def test_monitor_commands(make_project: Any) -> None:
    project = make_project(owner="alice", scientists=["bob"], prefix="moncli")
    cli = Cli(project.home)
    alice, bob = project.role("alice"), project.role("bob")
    with fstore.connect(project.name, "alice", home=project.home) as fs:
        fg = fs.create_feature_group("payments", 1, keys=["account_id"],
                                     features={"account_id": "bigint", "amount": "double precision"})
        base = fg.insert(pa.Table.from_pylist([{"account_id": i, "amount": float(i),
                                                "event_time": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)}
                                               for i in range(1, 11)])).id

    created = cli.run("monitor", "create", "amount_drift", "--group", "payments", "--baseline", f"up_to_commit={base}",
                      "--current", "last 1 day", "--every", "1h", "--limit", "amount.wasserstein=5",
                      "--sample-rows", "5000", "--as", bob).stdout
    assert "created monitor amount_drift" in created and "'0 * * * *'" in created and f"runs as {bob}" in created

    # refusals, by name: slicing by a column the group lacks, a bad schedule, a bad window, a duplicate, a DS dropping alice's
    sliced = one_error_line(cli.run("monitor", "create", "sliced", "--group", "payments", "--baseline",
                                    f"up_to_commit={base}", "--current", "last 1 day", "--every", "1h",
                                    "--slice-by", "nope", "--as", bob, code=1).stderr)
    assert "has no column 'nope' to slice by" in sliced
    schedule = one_error_line(cli.run("monitor", "create", "bad", "--group", "payments", "--baseline",
                                      f"up_to_commit={base}", "--current", "last 1 day", "--every", "90m",
                                      "--as", bob, code=1).stderr)
    assert "invalid schedule '90m'" in schedule
    window = one_error_line(cli.run("monitor", "create", "bad", "--group", "payments", "--baseline",
                                    f"up_to_commit={base}", "--current", "last forever", "--every", "1h",
                                    "--as", bob, code=1).stderr)
    assert "current window" in window
    limit = one_error_line(cli.run("monitor", "create", "bad", "--group", "payments", "--baseline",
                                   f"up_to_commit={base}", "--current", "last 1 day", "--every", "1h",
                                   "--limit", "amount.nonsense=1", "--as", bob, code=1).stderr)
    assert "unknown measure 'nonsense'" in limit
    again = one_error_line(cli.run("monitor", "create", "amount_drift", "--group", "payments", "--baseline",
                                   f"up_to_commit={base}", "--current", "last 1 day", "--every", "1h",
                                   "--as", alice, code=1).stderr)
    assert "already exists" in again
    cli.run("monitor", "create", "owners", "--group", "payments", "--baseline", f"up_to_commit={base}",
            "--current", "last 7 days before 1 day", "--every", "*/15 * * * *", "--as", alice)
    refused = one_error_line(cli.run("monitor", "drop", "owners", "--as", bob, code=1).stderr)
    assert "only its creator" in refused

    listed = cli.json("monitor", "list", "--as", alice)
    assert [(m["name"], m["created_by"], m["schedule"], m["active"]) for m in listed] == [
        ("amount_drift", bob, "0 * * * *", True), ("owners", alice, "*/15 * * * *", True)]
    assert listed[1]["current"] == {"last": "7 days", "before": "1 day"}
    table = cli.run("monitor", "list", "--as", bob).stdout
    assert "amount_drift" in table and "owners" in table and "active" in table

    # one drifted run with its alert, as the monitor's job would have stored it
    with connect_operator(project.home, autocommit=True) as op:
        monitor_id = op.execute("select id from fstore.monitors where project = %s and name = 'amount_drift'",
                                (project.name,)).fetchone()[0]
        run = op.execute("insert into fstore.monitor_runs (monitor_id, started_at, status, baseline_rows,"
                         " current_rows, drifted_features) values (%s, now(), 'drifted', 10, 12, '{amount}')"
                         " returning id", (monitor_id,)).fetchone()[0]
        op.execute("insert into fstore.monitor_alerts (monitor_id, run_id, drifted_features) values (%s, %s, '{amount}')",
                   (monitor_id, run))
    shown = cli.json("monitor", "show", "amount_drift", "--as", bob)
    assert shown["thresholds"] == {"amount": {"wasserstein": 5}} and shown["sample_rows"] == 5000
    assert [(r["status"], r["drifted_features"], r["current_rows"]) for r in shown["runs"]] == [
        ("drifted", ["amount"], 12)]
    text = cli.run("monitor", "show", "amount_drift", "--as", bob).stdout
    assert "drifted" in text and "amount" in text and "10 -> 12" in text
    alerts = cli.json("monitor", "alerts", "--as", alice)
    assert [(a["monitor"], a["drifted_features"], a["run_id"]) for a in alerts] == [("amount_drift", ["amount"], run)]
    assert cli.json("monitor", "alerts", "--monitor", "owners", "--as", alice) == []
    assert "amount_drift" in cli.run("monitor", "alerts", "--as", bob).stdout

    cli.run("monitor", "drop", "amount_drift", "--as", bob)
    cli.run("monitor", "drop", "owners", "--as", alice)
    assert cli.json("monitor", "list", "--as", alice) == []
    assert cli.json("monitor", "alerts", "--as", alice) == []
    gone = one_error_line(cli.run("monitor", "show", "amount_drift", "--as", alice, code=1).stderr)
    assert "does not exist" in gone
