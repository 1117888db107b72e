"""fstore.validate_batch in SQL: every rule counts its failing rows exactly; strict raises
23514 naming the column, the rule and the count; malformed rules are refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

COLUMNS = [{"name": "account_id", "type": "bigint"}, {"name": "amount", "type": "numeric(10,2)"},
           {"name": "channel", "type": "text"}, {"name": "country", "type": "text"},
           {"name": "event_time", "type": "timestamptz"}]
ROWS = """(values (1, 5.00, 'card', 'US', timestamptz '2024-03-01 10:00Z'),
                  (1, -1.00, 'wire', 'GB', timestamptz '2024-03-01 10:00Z'),
                  (2, null, 'cash', 'gb', timestamptz '2024-03-01 11:00Z'),
                  (3, 250.00, null, 'DEU', timestamptz '2024-03-01 12:00Z'),
                  (3, 20.00, 'card', null, timestamptz '2024-03-01 13:00Z'))
           as v (account_id, amount, channel, country, event_time)"""


@dataclass
class Staged:
    """alice's connection, a feature group of hers, and a staged batch pg_temp.batch."""

    conn: psycopg.Connection
    fg_id: int

    def execute(self, query: str) -> psycopg.Cursor:
        return self.conn.execute(query)


@pytest.fixture
def owner(make_project) -> Iterator[Staged]:
    project = make_project(owner="alice")
    conn = project.connect("alice")
    with conn.transaction():
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{project.name}__owner")))
        fg_id = conn.execute(
            "select fstore.create_feature_group(%s, 'payments', 1, array['account_id'], 'event_time', %s)",
            (project.name, Jsonb(COLUMNS))).fetchone()[0]
    conn.execute("create temp table batch as select * from " + ROWS)
    yield Staged(conn, fg_id)
    conn.close()


def validate(staged: Staged, rules: list[dict], policy: str = "warn") -> dict:
    return staged.conn.execute("select fstore.validate_batch(%s, 'pg_temp.batch'::regclass, %s, %s)",
                               (staged.fg_id, Jsonb(rules), policy)).fetchone()[0]


def failing(conn: Staged, rule: dict) -> int:
    result = validate(conn, [rule])
    return result["failures"][0]["failing_rows"] if result["failures"] else 0


def test_each_rule_counts_its_failing_rows(owner) -> None:
    assert failing(owner, {"rule": "not_null", "column": "amount"}) == 1
    assert failing(owner, {"rule": "not_null", "column": "account_id"}) == 0
    assert failing(owner, {"rule": "min", "column": "amount", "value": 0}) == 1  # NULL passes
    assert failing(owner, {"rule": "min", "column": "amount", "value": "5.00"}) == 1
    assert failing(owner, {"rule": "max", "column": "amount", "value": 100}) == 1
    assert failing(owner, {"rule": "max", "column": "event_time", "value": "2024-03-01 11:30Z"}) == 2
    assert failing(owner, {"rule": "accepted_values", "column": "channel", "values": ["card", "wire"]}) == 1
    assert failing(owner, {"rule": "accepted_values", "column": "amount", "values": [5, 20, 250]}) == 1
    assert failing(owner, {"rule": "regex", "column": "country", "pattern": "^[A-Z]{2}$"}) == 2
    assert failing(owner, {"rule": "unique"}) == 1  # keys + event_time: account 1 at 10:00 twice
    assert failing(owner, {"rule": "unique", "columns": ["account_id"]}) == 2
    assert failing(owner, {"rule": "unique", "column": "country"}) == 0
    assert failing(owner, {"rule": "row_count_min", "value": 5}) == 0
    assert failing(owner, {"rule": "row_count_min", "value": 8}) == 3


def test_warn_returns_every_failure(owner) -> None:
    rules = [{"rule": "not_null", "column": "channel"}, {"rule": "min", "column": "amount", "value": 0},
             {"rule": "max", "column": "amount", "value": 1000}]
    result = validate(owner, rules)
    assert result["passed"] is False and result["policy"] == "warn" and result["rows"] == 5
    assert [(f["rule"], f["column"], f["failing_rows"]) for f in result["failures"]] == [
        ("not_null", "channel", 1), ("min", "amount", 1)]
    assert validate(owner, [])["passed"] is True
    assert validate(owner, [rules[2]], "strict") == {"passed": True, "policy": "strict", "rows": 5,
                                                     "rules": 1, "failures": []}


def test_strict_raises_naming_column_rule_and_count(owner) -> None:
    rules = [{"rule": "min", "column": "amount", "value": 0},
             {"rule": "regex", "column": "country", "pattern": "^[A-Z]{2}$"}]
    with pytest.raises(psycopg.errors.CheckViolation) as info:
        validate(owner, rules, "strict")
    message = info.value.diag.message_primary
    assert "column amount, rule min: 1 failing rows" in message
    assert "column country, rule regex: 2 failing rows" in message
    assert info.value.sqlstate == "23514"
    assert json.loads(info.value.diag.message_detail)[1]["failing_rows"] == 2


@pytest.mark.parametrize("rule, sqlstate, phrase", [
    ({"rule": "between", "column": "amount"}, "22023", "unknown validation rule 'between'"),
    ({"rule": "min", "column": "nope", "value": 1}, "42703", "names column nope, which is not in the batch"),
    ({"rule": "min", "column": "amount"}, "22023", 'needs a "value"'),
    ({"rule": "min", "column": "amount", "value": "ten"}, "22023", "value 'ten' is not a valid numeric"),
    ({"rule": "accepted_values", "column": "channel", "values": "card"}, "22023", 'needs a list "values"'),
    ({"rule": "regex", "column": "channel", "pattern": "(["}, "22023", "invalid pattern"),
    ({"rule": "unique", "columns": ["account_id", "nope"]}, "42703", "names column nope"),
    ({"rule": "not_null"}, "22023", 'needs a "column"'),
])
def test_malformed_rules_are_refused_by_name(owner, rule: dict, sqlstate: str, phrase: str) -> None:
    with pytest.raises(psycopg.Error) as info:
        validate(owner, [rule])
    assert info.value.sqlstate == sqlstate
    assert phrase in info.value.diag.message_primary


def test_values_never_become_sql(owner) -> None:
    evil = "x'); drop table pg_temp.batch; --"
    assert failing(owner, {"rule": "accepted_values", "column": "channel", "values": [evil]}) == 4
    assert failing(owner, {"rule": "regex", "column": "channel", "pattern": evil.replace(")", "")}) == 4
    assert owner.execute("select count(*) from pg_temp.batch").fetchone()[0] == 5


def test_policy_is_checked(owner) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="use strict or warn"):
        validate(owner, [], "lenient")
