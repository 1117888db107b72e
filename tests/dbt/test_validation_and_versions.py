"""Validation rules, breaking schema changes and version bumps, through real dbt runs.

A strict rule that fails aborts the run with nothing written anywhere; a warn rule
commits and records the failure; a model whose output no longer fits the tables
of its version is refused until its `version` is bumped, and the old version stays
readable.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from psycopg import sql

from fstore.connection import connect
from tests.dbt.conftest import DbtProject, assert_failed

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def model(source: str, *, version: int = 1, select: str = "account_id, event_time, amount, channel",
          keys: str = "['account_id']", event_time: str = "event_time", rules: str = "[]",
          policy: str = "strict") -> str:
    return f"""
{{{{ config(materialized='feature_group', keys={keys}, event_time='{event_time}', version={version},
            online=true, commit_mode='merge', validation={rules}, validation_policy='{policy}') }}}}
select {select} from {{{{ source('raw', '{source}') }}}}
"""


STRICT_RULES = ("[{'rule': 'min', 'column': 'amount', 'value': 0},"
                " {'rule': 'accepted_values', 'column': 'channel', 'values': ['card', 'wire']}]")


def test_strict_validation_failing_on_the_first_run_creates_nothing(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("strict_new", "account_id bigint, event_time timestamptz, amount numeric, channel text",
                [(1, at(1), 5, "card"), (2, at(2), -3, "card"), (3, at(3), 4, "cash")])
    p.write_model("strict_new_fg", model("strict_new", rules=STRICT_RULES))
    message = assert_failed(p.run("strict_new_fg"), "validation failed for feature group",
                            "column amount, rule min: 1 failing rows",
                            "column channel, rule accepted_values: 1 failing rows")
    assert f"{p.name}.strict_new_fg version 1" in message
    # the version was never created: no catalog entry, no tables, no commit
    assert p.feature_group("strict_new_fg") is None
    assert not p.exists("strict_new_fg__v1") and not p.exists("strict_new_fg__v1__online")


def test_strict_validation_failing_later_writes_nothing(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("strict_events", "account_id bigint, event_time timestamptz, amount numeric, channel text",
                [(1, at(1), 5, "card"), (2, at(2), 6, "wire")])
    p.write_model("strict_fg", model("strict_events", rules=STRICT_RULES))
    p.run("strict_fg").raise_for_failure()
    before = p.state("strict_fg")
    assert len(before["offline"]) == 2 and len(before["commits"]) == 1

    # good new rows together with one bad row: the whole run is refused
    p.insert("strict_events", [(1, at(5), 7, "card"), (3, at(6), -1, "wire"), (4, at(7), 1, "wire")])
    assert_failed(p.run("strict_fg"), "column amount, rule min: 1 failing rows")
    assert p.state("strict_fg") == before  # offline, online, catalog and commits untouched

    # fixed upstream: the next run commits the new rows
    p.query(sql.SQL("update {} set amount = 1 where amount < 0 returning 1").format(
        sql.Identifier(p.name, "strict_events")))
    p.run("strict_fg").raise_for_failure()
    assert p.count("strict_fg__v1") == 5


def test_warn_validation_commits_and_records_the_failures(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("warn_events", "account_id bigint, event_time timestamptz, amount numeric, channel text",
                [(1, at(1), 5, "card"), (2, at(2), -3, "card"), (3, at(3), None, "crypto"), (3, at(4), 2, "x")])
    rules = ("[{'rule': 'min', 'column': 'amount', 'value': 0}, {'rule': 'not_null', 'column': 'amount'},"
             " {'rule': 'regex', 'column': 'channel', 'pattern': '^[a-z]{3,}$'}]")
    p.write_model("warn_fg", model("warn_events", rules=rules, policy="warn"))
    run = p.run("warn_fg")
    run.raise_for_failure()
    fg = p.feature_group("warn_fg")
    assert p.count("warn_fg__v1") == 4
    [commit] = p.commits(fg["id"])
    validation = commit["validation"]
    assert validation["passed"] is False and validation["policy"] == "warn"
    failures = {(f["rule"], f["column"]): f["failing_rows"] for f in validation["failures"]}
    assert failures == {("min", "amount"): 1, ("not_null", "amount"): 1, ("regex", "channel"): 1}

    # the analyst tightens the policy: the next run's new rows are held to the new rules
    p.write_model("warn_fg", model("warn_events", rules=rules, policy="strict"))
    p.insert("warn_events", [(4, at(9), 1, "card"), (5, at(9), -2, "card")])
    assert_failed(p.run("warn_fg"), "column amount, rule min: 1 failing rows")
    assert p.feature_group("warn_fg")["options"]["validation_policy"] == "warn"  # rolled back with the run
    assert p.count("warn_fg__v1") == 4
    p.query(sql.SQL("delete from {} where amount < 0 returning 1").format(sql.Identifier(p.name, "warn_events")))
    p.run("warn_fg").raise_for_failure()
    fg = p.feature_group("warn_fg")
    assert fg["options"]["validation_policy"] == "strict"
    assert p.commits(fg["id"])[-1]["validation"]["passed"] is True
    assert p.count("warn_fg__v1") == 5


@pytest.mark.parametrize("change, select, keys, event_time, phrase", [
    ("drop", "account_id, event_time, amount", "['account_id']", "event_time",
     "column channel (text) was dropped"),
    ("retype", "account_id, event_time, amount::float8 as amount, channel", "['account_id']", "event_time",
     "column amount changed type from numeric to double precision"),
    ("keys", "account_id, event_time, amount, channel", "['account_id', 'channel']", "event_time",
     "keys changed from account_id to account_id, channel"),
    ("event_time", "account_id, event_time as seen_at, amount, channel", "['account_id']", "seen_at",
     "event_time changed from event_time to seen_at"),
])
def test_breaking_change_without_a_version_bump_is_refused(dbt_project: DbtProject, change: str, select: str,
                                                            keys: str, event_time: str, phrase: str) -> None:
    p = dbt_project
    source, name = f"brk_{change}", f"brk_{change}_fg"
    p.raw_table(source, "account_id bigint, event_time timestamptz, amount numeric, channel text",
                [(1, at(1), 5, "card"), (2, at(2), 6, "wire")])
    p.write_model(name, model(source))
    p.run(name).raise_for_failure()
    before = p.state(name)

    p.insert(source, [(3, at(3), 7, "card")])
    p.write_model(name, model(source, select=select, keys=keys, event_time=event_time))
    message = assert_failed(p.run(name), phrase, "bump `version`", "version=2", "version 1 and its data stay readable")
    assert p.state(name) == before


def test_an_added_column_becomes_a_feature_of_the_same_version(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("add_events", "account_id bigint, event_time timestamptz, amount numeric, channel text",
                [(1, at(1), 5, "card"), (2, at(2), 6, "wire")])
    p.write_model("add_fg", model("add_events", select="account_id, event_time, amount"))
    p.run("add_fg").raise_for_failure()
    fg = p.feature_group("add_fg")
    oid = p.query("select %s::regclass::oid", (f"{p.name}.add_fg__v1",))[0][0]

    # on_schema_change='fail': the new column is refused like any other change
    strict = model("add_events").replace("commit_mode='merge'", "commit_mode='merge', on_schema_change='fail'")
    p.write_model("add_fg", strict)
    before = p.state("add_fg")
    assert_failed(p.run("add_fg"), "column channel (text) was added (on_schema_change is fail)", "version=2")
    assert p.state("add_fg") == before

    # dbt's default, ignore: the run commits the other columns and leaves the new one out
    p.insert("add_events", [(1, at(3), 7, "wire")])
    p.write_model("add_fg", model("add_events"))
    p.run("add_fg").raise_for_failure()
    assert [c["rows"] for c in p.commits(fg["id"])] == [2, 1]
    assert [n for (n,) in p.query("select name from fstore.features where feature_group_id = %s", (fg["id"],))] \
        == ["account_id", "amount"]

    # append_new_columns: same version, same tables, one more feature
    p.insert("add_events", [(1, at(4), 8, "wire")])
    grow = model("add_events").replace("commit_mode='merge'", "commit_mode='merge', on_schema_change='append_new_columns'")
    p.write_model("add_fg", grow, columns={"channel": "how the payment was made"})
    p.run("add_fg").raise_for_failure()
    assert p.feature_group("add_fg")["id"] == fg["id"]
    assert p.query("select %s::regclass::oid", (f"{p.name}.add_fg__v1",))[0][0] == oid
    assert p.query("select name, data_type, description from fstore.features where feature_group_id = %s "
                   "order by position", (fg["id"],)) == [
        ("account_id", "bigint", ""), ("amount", "numeric", ""), ("channel", "text", "how the payment was made")]
    assert p.rows("add_fg__v1", "account_id,event_time") == [  # earlier rows read NULL
        (1, Decimal(5), at(1), None), (1, Decimal(7), at(3), None), (1, Decimal(8), at(4), "wire"),
        (2, Decimal(6), at(2), None)]
    assert p.rows("add_fg__v1__online", "account_id") == [(1, Decimal(8), at(4), "wire"), (2, Decimal(6), at(2), None)]
    audit = p.query("select details from fstore.audit_log where project = %s and action = 'add_features'", (p.name,))
    assert audit == [({"feature_group": "add_fg", "version": 1, "features": ["channel"]},)]


def test_version_bump_creates_new_tables_and_the_old_version_stays_readable(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("ver_events", "account_id bigint, event_time timestamptz, amount numeric, channel text",
                [(1, at(1), 5, "card"), (2, at(2), 6, "wire")])
    p.write_model("ver_fg", model("ver_events"))
    p.run("ver_fg").raise_for_failure()
    v1 = p.state("ver_fg")

    # drop a column and retype another: a breaking change, so version 2
    p.insert("ver_events", [(3, at(3), 7, "card")])
    p.write_model("ver_fg", model("ver_events", version=2, select="account_id, event_time, amount::float8 as amount"))
    p.run("ver_fg").raise_for_failure()

    fg2 = p.feature_group("ver_fg", 2)
    assert fg2["offline_table"] == "ver_fg__v2"
    assert p.query("select name, data_type from fstore.features where feature_group_id = %s order by position",
                   (fg2["id"],)) == [("account_id", "bigint"), ("amount", "double precision")]
    assert p.rows("ver_fg__v2", "account_id") == [(1, 5.0, at(1)), (2, 6.0, at(2)), (3, 7.0, at(3))]
    assert p.state("ver_fg", 1) == v1  # version 1 untouched

    # a Data Scientist reads both versions
    with connect(p.home, f"{p.name}__bob", autocommit=True) as bob:
        assert bob.execute(f'select count(*) from "{p.name}".ver_fg__v1').fetchone()[0] == 2
        assert bob.execute(f'select count(*) from "{p.name}".ver_fg__v2').fetchone()[0] == 3
        versions = bob.execute("select version from fstore.feature_groups where project = %s and name = 'ver_fg' "
                               "order by version", (p.name,)).fetchall()
    assert versions == [(1,), (2,)]

    p.run("ver_fg").raise_for_failure()  # version 2 re-run: idempotent
    assert p.count("ver_fg__v2") == 3
