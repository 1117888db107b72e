"""The 'asof' strategy (the fstore_asof C extension) beside the reference tests: its query is
the one-pass merge, it is planned where it is cheapest, and called directly it gives a tenant
nothing a SELECT of their own would not: both queries run as the caller, read-only, so row
policies and privileges hold (each attack connects as the attacker, with their own certificate).
The rows it returns are checked against DuckDB in tests/retrieval/test_pit_reference.py, every
test there forced with 'asof' too.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import psycopg
import pytest

import fstore
from tests.retrieval.conftest import commit_rows, create_group

UTC = dt.timezone.utc
DAY = [dt.datetime(2024, 1, 1, tzinfo=UTC) + dt.timedelta(days=d) for d in range(6)]
CONSENTED = {"customer": "text", "event_time": "timestamptz", "score": "double precision", "consent": "boolean"}


@pytest.fixture
def consented(fraud: Any) -> Any:
    """A group whose rows the Data Scientists see only where consent is true (a row policy)."""
    from fstore import policies

    with fraud.connect("alice") as alice:
        group = create_group(alice, fraud.name, "consented", CONSENTED, ["customer"])
        commit_rows(alice, group, [("c1", DAY[0], 1.0, True), ("c1", DAY[1], 2.0, False), ("c2", DAY[0], 3.0, False)])
        policies.apply_policies(alice, fraud.name, [
            policies.RowPolicy("consented", "consented__v1", ("data_scientist",), "consent")])
    return group


def _asof(conn: psycopg.Connection, history: str, spine: str | None = None, columns: str = "rn int, score float8",
          ttl: str | None = None) -> list[tuple]:
    spine = spine or ("select rn, customer, t from (values (1, 'c1', '2024-01-03'::timestamptz),"
                      " (2, 'c2', '2024-01-03'::timestamptz), (3, 'c1', '2024-01-01'::timestamptz)) v(rn, customer, t)"
                      " order by customer, t desc")
    rows = conn.execute(f"select * from fstore_asof.asof_join(%s, %s, 1, %s::interval) as m({columns})",
                        (spine, history, ttl)).fetchall()
    return sorted(rows)


def test_forced_asof_is_the_c_merge_and_gives_the_probes_rows(consented: Any, fraud: Any) -> None:
    with fraud.connect("alice") as conn:
        conn.execute("create temp table _fstore_spine (customer text, event_time timestamptz)")
        conn.execute("insert into _fstore_spine values ('c1', '2024-01-03'), ('c2', '2024-01-03'), ('c1', '2024-01-01'),"
                     " (null, '2024-01-03'), ('c9', '2024-01-03'), ('c1', null)")
        build = ("select fstore.training_data_sql('pg_temp._fstore_spine'::regclass, array['consented:score'],"
                 " p_ttl => %s::interval, p_strategy => %s)")
        for ttl in (None, "1 day"):
            asof = conn.execute(build, (ttl, "asof")).fetchone()[0]
            assert "fstore_asof.asof_join(" in asof and "left join lateral" not in asof
            probe = conn.execute(build, (ttl, "probe")).fetchone()[0]
            assert conn.execute(asof).fetchall() == conn.execute(probe).fetchall()
        # the owner sees every row: c1's latest at day 2 is day 1's (2.0), in the 1-day TTL; c2's
        # (day 0) is older than that; a NULL key, an unknown key and a NULL time match nothing
        assert [r[2] for r in conn.execute(conn.execute(build, ("1 day", "asof")).fetchone()[0]).fetchall()] == [
            2.0, None, 1.0, None, None, None]


def test_the_planner_offers_asof_where_the_spine_is_large_against_the_history(fraud: Any, home: Any) -> None:
    with fraud.connect("alice") as alice:
        group = create_group(alice, fraud.name, "dense", {"k": "bigint", "event_time": "timestamptz", "x": "integer"},
                             ["k"])
        commit_rows(alice, group, [(k, DAY[d], k * d) for k in range(50) for d in range(2)])
        alice.execute(f'analyze "{fraud.name}".dense__v1')
    fs = fstore.connect(fraud.name, "bob", home=home)
    many = pd.DataFrame({"k": [i % 50 for i in range(5000)], "event_time": [DAY[5]] * 5000})
    plan = fs.explain_historical_features(many, ["dense:x"])[0]
    assert plan["strategy"] == "asof" and plan["asof_cost_s"] < min(plan["probe_cost_s"], plan["merge_cost_s"])
    assert "asof ~" in plan["reason"]
    got: list[Any] = []
    table = fs.get_historical_features(many, ["dense:x"], plan=got)
    assert [g["strategy"] for g in got] == ["asof"]
    assert table.column("x").to_pylist() == [k for k in range(50)] * 100
    few = fs.explain_historical_features(many.iloc[:2], ["dense:x"])[0]
    assert few["strategy"] == "probe"


def test_a_row_policy_restricted_scientist_gets_nulls_where_rows_are_hidden(consented: Any, fraud: Any,
                                                                            home: Any) -> None:
    spine = pd.DataFrame({"customer": ["c1", "c2", "c1"], "event_time": [DAY[2], DAY[2], DAY[0]]})
    bob = fstore.connect(fraud.name, "bob", home=home)
    assert bob.get_historical_features(spine, ["consented:score"], strategy="asof").column(
        "score").to_pylist() == [1.0, None, 1.0]
    # called directly, with his own history query: the policy still hides c1's day-1 row and c2's
    history = (f'select customer, event_time, score from "{fraud.name}".consented__v1'
               " order by customer, event_time desc, _commit_id desc")
    with fraud.connect("bob") as conn:
        assert _asof(conn, history) == [(1, 1.0), (2, None), (3, 1.0)]
    with fraud.connect("alice") as conn:  # the allowed counterpart: the owner sees them
        assert _asof(conn, history) == [(1, 2.0), (2, 3.0), (3, 1.0)]
        assert _asof(conn, history, ttl="12 hours") == [(1, None), (2, None), (3, 1.0)]


def test_it_reads_nothing_the_caller_may_not_and_writes_nothing(consented: Any, fraud: Any, make_project: Any) -> None:
    other = make_project(owner="olga", prefix="other")
    with other.connect("olga") as olga:
        secrets = create_group(olga, other.name, "secrets", CONSENTED, ["customer"])
        commit_rows(olga, secrets, [("c1", DAY[0], 42.0, True)])
    foreign = (f'select customer, event_time, score from "{other.name}".secrets__v1'
               " order by customer, event_time desc")
    with fraud.connect("bob") as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _asof(conn, foreign)
        # a statement that writes is refused (SPI read-only), as a data-modifying CTE is
        conn.execute("create temp table mine (customer text, event_time timestamptz, score float8)")
        for writer in ("insert into pg_temp.mine values ('c1', '2024-01-01', 7) returning customer, event_time, score",
                       "with w as (insert into pg_temp.mine values ('c1', '2024-01-01', 7) returning *)"
                       " select customer, event_time, score from w"):
            with pytest.raises(psycopg.errors.FeatureNotSupported, match="not allowed in a non-volatile function"):
                _asof(conn, writer)
        assert conn.execute("select count(*) from pg_temp.mine").fetchone()[0] == 0
        # the allowed counterpart: his own readable rows
        conn.execute("insert into pg_temp.mine values ('c1', '2024-01-02', 5)")
        assert _asof(conn, "select customer, event_time, score from pg_temp.mine order by 1, 2 desc") == [
            (1, 5.0), (2, None), (3, None)]
    with other.connect("olga") as olga:  # the allowed counterpart: the other project's owner reads it
        assert _asof(olga, foreign) == [(1, 42.0), (2, None), (3, 42.0)]


def test_bad_shapes_are_refused_by_name(fraud: Any) -> None:
    history = "select 'c1'::text, '2024-01-01'::timestamptz, 1.0::float8"
    with fraud.connect("bob") as conn:
        with pytest.raises(psycopg.errors.DatatypeMismatch, match="column definition list has 3 columns"):
            _asof(conn, history, columns="rn int, score float8, extra int")
        with pytest.raises(psycopg.errors.DatatypeMismatch, match="a feature"):
            _asof(conn, history, columns="rn int, score text")
        with pytest.raises(psycopg.errors.DatatypeMismatch, match="its event time"):
            _asof(conn, "select 'c1'::text, now()::date, 1.0::float8")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="between 1 and 32 keys"):
            conn.execute("select * from fstore_asof.asof_join('select 1', 'select 1', 0) as m(x int)")
