"""The point-in-time join, checked row by row against an independent reference.

The reference is DuckDB's ASOF LEFT JOIN over the same rows, with the rules of
DESIGN.md spelled out by hand: ties on event_time go to the latest commit
(deduplicated before the join), a TTL nulls matches older than t - ttl, times
without a zone are UTC. The generated data has ties, NULL keys, unknown keys,
duplicate spine rows, spine times exactly on feature times, composite keys, a
catalog TTL, two versions of a group and spines in several time zones.

Every test runs once per strategy of the join, forced in turn (index probes, the merge)
and as the planner picks: the same rows, whichever way they are joined.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from psycopg import sql

import fstore
from fstore.errors import InvalidInput, NotFound
from tests.conftest import TEST_CLUSTER_WORKERS
from tests.retrieval.conftest import SqlFeatureGroup, commit_rows, create_group

UTC = dt.timezone.utc
BASE = dt.datetime(2024, 1, 1, tzinfo=UTC)
DAYS = [BASE + dt.timedelta(days=d) for d in range(20)]
CUSTOMERS = [f"c{i}" for i in range(6)]
MERCHANTS = [1, 2, 3]
ACTIVITY = {"customer": "text", "merchant": "integer", "event_time": "timestamptz",
            "amount": "double precision", "n": "integer", "flag": "boolean", "note": "text"}
RISK_V1 = {"customer": "text", "event_time": "timestamptz", "score": "double precision", "tier": "text"}
RISK_V2 = {"customer": "text", "event_time": "timestamptz", "score": "double precision", "band": "integer"}


@dataclass
class History:
    """What was committed to one feature group: rows with their commit ids."""

    group: SqlFeatureGroup
    rows: list[dict[str, Any]]

    def commit(self, conn: Any, rows: list[tuple]) -> int:
        commit_id = commit_rows(conn, self.group, rows)
        self.rows += [dict(zip(self.group.columns, r), _commit=commit_id) for r in rows]
        return commit_id

    def latest_per_time(self) -> pd.DataFrame:
        """One row per (keys, event_time): the latest commit's (ties go to the later commit)."""
        frame = pd.DataFrame(self.rows).sort_values("_commit")
        frame = frame.drop_duplicates([*self.group.keys, "event_time"], keep="last")
        frame["event_time"] = frame["event_time"].map(lambda t: t.astimezone(UTC).replace(tzinfo=None))
        return frame.drop(columns="_commit")


STRATEGIES = ["probe", "merge", "asof", "auto"]


@pytest.fixture(params=STRATEGIES)
def strategy(request: Any) -> str:
    """The join strategy every point-in-time call of a test is made with."""
    return request.param


class Forced:
    """A FeatureStore whose point-in-time calls all use one strategy."""

    def __init__(self, fs: fstore.FeatureStore, strategy: str) -> None:
        self.fs, self.strategy = fs, strategy

    def get_historical_features(self, *args: Any, **kwargs: Any) -> pa.Table:
        return self.fs.get_historical_features(*args, strategy=self.strategy, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fs, name)


def bob(pit: "PitData", home: Any, strategy: str) -> Forced:
    return Forced(fstore.connect(pit.project, "bob", home=home), strategy)


@dataclass
class PitData:
    project: str
    activity: History
    risk_v1: History
    risk_v2: History
    spine: pd.DataFrame  # customer, merchant, event_time (naive UTC), label


def _value_rows(rng: random.Random, keys: list[tuple], features: str, count: int) -> list[tuple]:
    rows = []
    for key in keys:
        for day in rng.sample(DAYS, count):
            if features == "activity":
                values = (rng.choice([None, round(rng.uniform(1, 500), 2)]), rng.randint(0, 9),
                          rng.choice([True, False, None]), rng.choice(["a", "b", None]))
            elif features == "risk_v1":
                values = (round(rng.random(), 4), rng.choice(["low", "high"]))
            else:
                values = (round(rng.random(), 4), rng.randint(1, 5))
            rows.append((*key, day, *values))
    return rows


@pytest.fixture
def pit(fraud: Any) -> PitData:
    """Three feature-group versions with several commits (ties included) and a messy spine."""
    rng = random.Random(20240101)
    with fraud.connect("alice") as alice:
        activity = History(create_group(alice, fraud.name, "activity", ACTIVITY, ["customer", "merchant"]), [])
        risk_v1 = History(create_group(alice, fraud.name, "risk", RISK_V1, ["customer"], ttl="3 days"), [])
        risk_v2 = History(create_group(alice, fraud.name, "risk", RISK_V2, ["customer"], version=2), [])
        pairs = [(c, m) for c in CUSTOMERS for m in MERCHANTS]
        first = _value_rows(rng, pairs, "activity", 5)
        activity.commit(alice, first)
        # commit 2: the same (keys, event_time) as earlier rows with new values (ties), and new rows
        ties = [(*row[:3], 999.0 + i, 99, True, "tie") for i, row in enumerate(rng.sample(first, 15))]
        activity.commit(alice, ties + _value_rows(rng, rng.sample(pairs, 6), "activity", 2))
        activity.commit(alice, _value_rows(rng, rng.sample(pairs, 6), "activity", 2))
        risk_v1.commit(alice, _value_rows(rng, [(c,) for c in CUSTOMERS], "risk_v1", 4))
        risk_v2.commit(alice, _value_rows(rng, [(c,) for c in CUSTOMERS], "risk_v2", 4))

    offsets = [dt.timedelta(0), dt.timedelta(0), dt.timedelta(microseconds=1), dt.timedelta(microseconds=-1),
               dt.timedelta(hours=12), dt.timedelta(days=4)]
    spine_rows = []
    for _ in range(260):
        customer = rng.choice(CUSTOMERS + ["c6", "c7"]) if rng.random() > 0.06 else None
        merchant = rng.choice(MERCHANTS + [4]) if rng.random() > 0.06 else None
        t = (rng.choice(DAYS) + rng.choice(offsets)).replace(tzinfo=None)
        spine_rows.append({"customer": customer, "merchant": merchant, "event_time": t, "label": rng.randint(0, 1)})
    for _ in range(25):  # duplicate spine rows, anywhere
        spine_rows.insert(rng.randrange(len(spine_rows)), dict(rng.choice(spine_rows)))
    spine = pd.DataFrame(spine_rows).astype({"merchant": "Int64"})
    return PitData(fraud.name, activity, risk_v1, risk_v2, spine)


def reference(spine: pd.DataFrame, history: History, features: list[str], ttl: dt.timedelta | None,
              keys: dict[str, str] | None = None) -> pd.DataFrame:
    """DuckDB ASOF LEFT JOIN of the spine with one group's history, TTL applied afterwards."""
    keys = keys or {}
    spine_keys = {k: next((s for s, g in keys.items() if g == k), k) for k in history.group.keys}
    con = duckdb.connect()
    con.register("spine", spine.assign(_i=range(len(spine))))
    con.register("hist", history.latest_per_time())
    on = " and ".join(f's."{spine_keys[k]}" = h."{k}"' for k in history.group.keys)
    select = ", ".join(f'h."{f}"' for f in features)
    frame = con.execute(
        f"select s._i, s.event_time as _t, h.event_time as _ft, {select} from spine s "
        f"asof left join hist h on {on} and s.event_time >= h.event_time order by s._i").df()
    if ttl is not None:
        expired = frame["_ft"].notna() & (frame["_ft"] < frame["_t"] - ttl)
        frame.loc[expired, features] = None
    return frame


def as_rows(table: pa.Table, columns: list[str]) -> list[tuple]:
    return [tuple(row[c] for c in columns) for row in table.to_pylist()]


def expected_rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    def clean(value: Any) -> Any:
        if value is None or value is pd.NA or (isinstance(value, float) and value != value):
            return None
        return value.item() if hasattr(value, "item") else value
    return [tuple(clean(v) for v in row) for row in frame[columns].itertuples(index=False)]


@pytest.mark.parametrize("workers", [1, 3])
def test_join_matches_duckdb_asof_row_by_row(pit: PitData, home: Any, strategy: str, workers: int) -> None:
    fs = bob(pit, home, strategy)
    table = fs.get_historical_features(pit.spine, ["activity:*", "risk@1:*"], workers=workers)

    assert table.column_names == ["customer", "merchant", "event_time", "label",
                                  "amount", "n", "flag", "note", "score", "tier"]
    assert table.num_rows == len(pit.spine)
    # spine columns come back unchanged, in spine order (duplicates included)
    assert as_rows(table, ["customer", "merchant", "label"]) == expected_rows(pit.spine, ["customer", "merchant", "label"])
    assert table.column("event_time").to_pylist() == list(pit.spine["event_time"].dt.to_pydatetime())

    activity = reference(pit.spine, pit.activity, ["amount", "n", "flag", "note"], None)
    risk = reference(pit.spine, pit.risk_v1, ["score", "tier"], dt.timedelta(days=3))  # the catalog TTL
    assert as_rows(table, ["amount", "n", "flag", "note"]) == expected_rows(activity, ["amount", "n", "flag", "note"])
    assert as_rows(table, ["score", "tier"]) == expected_rows(risk, ["score", "tier"])

    # the data really exercises every rule
    t = activity["_t"]
    assert (activity["_ft"] == t).sum() > 5, "spine times exactly on feature times (inclusive bound)"
    assert (table.column("note").to_pylist().count("tie")) > 0, "ties resolved to the later commit"
    assert pit.spine["customer"].isna().sum() > 0 and pit.spine.duplicated().sum() > 0
    null_key = pit.spine["customer"].isna() | pit.spine["merchant"].isna()
    assert all(v is None for v, null in zip(table.column("n").to_pylist(), null_key) if null)
    expired = risk["_ft"].notna() & (risk["_ft"] < risk["_t"] - dt.timedelta(days=3))
    assert expired.sum() > 5, "matches older than the TTL"


def test_ttl_argument_and_versions(pit: PitData, home: Any, strategy: str) -> None:
    fs = bob(pit, home, strategy)
    ttl = dt.timedelta(days=2)
    table = fs.get_historical_features(pit.spine, ["activity:amount", "activity:note", "risk:*"], ttl=ttl, workers=2)
    assert table.column_names[-4:] == ["amount", "note", "score", "band"]  # risk without @ is version 2
    activity = reference(pit.spine, pit.activity, ["amount", "note"], ttl)
    risk = reference(pit.spine, pit.risk_v2, ["score", "band"], ttl)
    assert as_rows(table, ["amount", "note"]) == expected_rows(activity, ["amount", "note"])
    assert as_rows(table, ["score", "band"]) == expected_rows(risk, ["score", "band"])

    with pytest.raises(InvalidInput, match="score"):  # both versions have score
        fs.get_historical_features(pit.spine, ["risk@1:score", "risk@2:score"])
    with pytest.raises(InvalidInput, match="risk__score"):  # still one name with full names
        fs.get_historical_features(pit.spine, ["risk@1:score", "risk@2:score"], full_feature_names=True)


def test_time_zones_and_spine_kinds_give_the_same_features(pit: PitData, home: Any, strategy: str) -> None:
    fs = bob(pit, home, strategy)
    features = ["activity:amount", "activity:n", "risk@1:score"]
    naive_utc = fs.get_historical_features(pit.spine, features)
    expected = as_rows(naive_utc, ["amount", "n", "score"])

    for zone in ("America/New_York", "Asia/Kolkata"):
        aware = pit.spine.assign(event_time=pit.spine["event_time"].dt.tz_localize("UTC").dt.tz_convert(zone))
        table = fs.get_historical_features(aware, features)
        assert as_rows(table, ["amount", "n", "score"]) == expected, zone
        assert table.schema.field("event_time").type.tz is not None

    arrow_spine = pa.Table.from_pandas(pit.spine, preserve_index=False)
    polars_spine = pl.from_pandas(pit.spine)
    for spine in (arrow_spine, polars_spine, arrow_spine.to_reader(max_chunksize=50)):
        assert as_rows(fs.get_historical_features(spine, features), ["amount", "n", "score"]) == expected

    # a query spine: the same rows as a VALUES list (the caller's own SQL, read-only)
    values = ", ".join(
        f"({i}, {'null' if pd.isna(c) else repr(c)}, {'null' if pd.isna(m) else int(m)}, timestamp '{t}')"
        for i, (c, m, t) in enumerate(zip(pit.spine["customer"], pit.spine["merchant"], pit.spine["event_time"])))
    query = f"select customer, merchant, event_time from (values {values}) v(i, customer, merchant, event_time) order by i"
    from_query = fs.get_historical_features(query, features)
    assert as_rows(from_query, ["amount", "n", "score"]) == expected


def test_keys_can_be_mapped_from_other_spine_columns(pit: PitData, home: Any, strategy: str) -> None:
    fs = bob(pit, home, strategy)
    spine = pit.spine.rename(columns={"customer": "cust", "merchant": "shop"})
    keys = {"cust": "customer", "shop": "merchant"}
    table = fs.get_historical_features(spine, ["activity:amount", "risk@1:tier"], keys=keys, workers=2)
    assert table.column_names[:2] == ["cust", "shop"]
    activity = reference(spine, pit.activity, ["amount"], None, keys)
    assert as_rows(table, ["amount"]) == expected_rows(activity, ["amount"])
    risk = reference(spine, pit.risk_v1, ["tier"], dt.timedelta(days=3), keys)
    assert as_rows(table, ["tier"]) == expected_rows(risk, ["tier"])


def test_name_clashes_need_full_feature_names(pit: PitData, fraud: Any, home: Any, strategy: str) -> None:
    with fraud.connect("alice") as alice:
        other = History(create_group(alice, fraud.name, "other", {"customer": "text", "event_time": "timestamptz",
                                                                  "amount": "double precision"}, ["customer"]), [])
        other.commit(alice, [(c, DAYS[0], 1.5) for c in CUSTOMERS])
    fs = bob(pit, home, strategy)
    with pytest.raises(InvalidInput, match=r"amount is ambiguous.*activity.*other"):
        fs.get_historical_features(pit.spine, ["activity:amount", "other:amount"])
    table = fs.get_historical_features(pit.spine, ["activity:amount", "other:amount"], full_feature_names=True)
    assert table.column_names[-2:] == ["activity__amount", "other__amount"]
    expected = reference(pit.spine, other, ["amount"], None)
    assert as_rows(table, ["other__amount"]) == expected_rows(expected, ["amount"])
    with pytest.raises(InvalidInput, match="amount is ambiguous: the spine has a column"):
        fs.get_historical_features(pit.spine.rename(columns={"label": "amount"}), ["activity:amount"])


def test_errors_name_what_is_wrong(pit: PitData, home: Any, strategy: str) -> None:
    fs = bob(pit, home, strategy)
    for workers in (1, 2):  # from parallel shards too
        with pytest.raises(InvalidInput, match=r"no column merchant .*entity key merchant of feature group"):
            fs.get_historical_features(pit.spine.drop(columns="merchant"), ["activity:amount"], workers=workers)
    with pytest.raises(InvalidInput, match="_fstore_row"):
        fs.get_historical_features(pit.spine.assign(_fstore_row=1), ["activity:amount"])
    with pytest.raises(InvalidInput, match=r"no column ts \(the event time column\)"):
        fs.get_historical_features(pit.spine, ["activity:amount"], event_time_column="ts")
    with pytest.raises(NotFound, match=r"feature nope does not exist in feature group .*activity@1"):
        fs.get_historical_features(pit.spine, ["activity:nope"])
    with pytest.raises(NotFound, match=r"feature group .*\.missing does not exist"):
        fs.get_historical_features(pit.spine, ["missing:*"])
    with pytest.raises(NotFound, match=r"risk@7"):
        fs.get_historical_features(pit.spine, ["risk@7:score"])
    with pytest.raises(InvalidInput, match="invalid feature reference 'activity'"):
        fs.get_historical_features(pit.spine, ["activity"])
    with pytest.raises(InvalidInput, match="entity key of feature group"):
        fs.get_historical_features(pit.spine, ["activity:customer"])
    with pytest.raises(InvalidInput, match="must be a timestamp"):
        fs.get_historical_features(pit.spine.assign(event_time="2024-01-01"), ["activity:amount"])
    with pytest.raises(InvalidInput, match="single SELECT"):
        fs.get_historical_features("select 1; drop table x", ["activity:amount"])


def test_empty_spine_gives_empty_table_with_columns(pit: PitData, home: Any, strategy: str) -> None:
    fs = bob(pit, home, strategy)
    table = fs.get_historical_features(pit.spine.iloc[:0], ["activity:amount", "risk@1:tier"])
    assert table.num_rows == 0
    assert table.column_names == ["customer", "merchant", "event_time", "label", "amount", "tier"]


def test_query_spines_are_one_select_run_read_only(pit: PitData, home: Any, strategy: str) -> None:
    fs = bob(pit, home, strategy)
    query = "select 'c1' as customer, 1 as merchant, timestamp '2024-01-10' as event_time; -- labels"
    table = fs.get_historical_features(query, ["activity:n"])
    assert table.column_names == ["customer", "merchant", "event_time", "n"] and table.num_rows == 1
    with pytest.raises(InvalidInput, match="single SELECT"):
        fs.get_historical_features("delete from x returning *", ["activity:n"])
    with pytest.raises(InvalidInput, match="INTO"):
        fs.get_historical_features("select 1 as customer into t", ["activity:n"])
    dataset = fs.create_training_dataset("read_only_check", query, ["activity:n"])
    # no writes, even inside functions (on a cluster the filter runs on the workers, where the
    # catalog's functions find no catalog: refused there before any write)
    refused = "read-only transaction" + ('|type "fstore.training_datasets" does not exist' if TEST_CLUSTER_WORKERS else "")
    with pytest.raises(fstore.FstoreError, match=refused):
        fs.get_historical_features("select customer, merchant, event_time from "
                                   f"{pit.project}.activity__v1 where "
                                   f"fstore.record_training_export({dataset.id}, 'csv', '/x', 0)::text is not null",
                                   ["activity:n"])


def _spine_table(fraud: Any, pit: PitData) -> str:
    """The spine as a table of the project, rows inserted in spine order (created by the Data Owner)."""
    name = sql.Identifier(pit.project, "pit_labels")
    with fraud.connect("alice") as alice, alice.transaction():
        alice.execute(sql.SQL("set local role {}").format(sql.Identifier(f"{pit.project}__owner")))
        alice.execute(sql.SQL("create table {} (customer text, merchant bigint, event_time timestamp, label integer)"
                              " with (fillfactor = 10)").format(name))  # a few rows a page: several pages to shard
        alice.cursor().executemany(sql.SQL("insert into {} values (%s, %s, %s, %s)").format(name), [
            tuple(None if pd.isna(v) else v for v in row) for row in pit.spine.itertuples(index=False)])
    return f"{pit.project}.pit_labels"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_spine_table_is_joined_like_a_dataframe(pit: PitData, fraud: Any, home: Any, strategy: str,
                                                  workers: int) -> None:
    labels = _spine_table(fraud, pit)
    fs = bob(pit, home, strategy)
    features = ["activity:*", "risk@1:*"]
    from_table = fs.get_historical_features(labels, features, workers=workers)
    from_frame = fs.get_historical_features(pit.spine, features)
    columns = ["customer", "merchant", "label", "amount", "n", "flag", "note", "score", "tier"]
    assert as_rows(from_table, columns) == as_rows(from_frame, columns)
    activity = reference(pit.spine, pit.activity, ["amount", "n", "flag", "note"], None)
    assert as_rows(from_table, ["amount", "n", "flag", "note"]) == expected_rows(activity, ["amount", "n", "flag", "note"])

    with fraud.connect("bob") as conn:  # a psql user: the builder's query as is, with a row number
        query = conn.execute("select fstore.training_data_sql(%s::regclass, %s, p_row_number => 'i',"
                             " p_strategy => %s)", (labels, features, strategy)).fetchone()[0]
        rows = conn.execute(query).fetchall()
    assert [r[0] for r in rows] == list(range(1, len(pit.spine) + 1))
    assert [r[5:9] for r in rows] == expected_rows(activity, ["amount", "n", "flag", "note"])


def test_the_planner_says_which_strategy_each_group_gets(pit: PitData, home: Any) -> None:
    fs = fstore.connect(pit.project, "bob", home=home)
    plan = fs.explain_historical_features(pit.spine, ["activity:*", "risk@1:*"])
    assert [g["group"] for g in plan] == [f"{pit.project}.activity@1", f"{pit.project}.risk@1"]
    assert all(g["strategy"] in ("probe", "merge", "asof") and g["reason"] for g in plan)
    if TEST_CLUSTER_WORKERS:  # distributed groups: the merge, the join Citus runs on the workers, whatever is asked
        forced = fs.explain_historical_features(pit.spine, ["activity:*", "risk@1:*"], strategy="probe")
        assert all(g["strategy"] == "merge" and "distributed" in g["reason"] for g in plan + forced), plan + forced
        return
    assert plan[0]["spine_rows"] == len(pit.spine) and "probes ~" in plan[0]["reason"]
    # the choice follows the cost model: a spine much smaller than the history gets probes
    small = fs.explain_historical_features(pit.spine.iloc[:3], ["activity:*"])[0]
    assert small["strategy"] == "probe" and small["probe_cost_s"] <= min(small["merge_cost_s"], small["asof_cost_s"])
    for g in plan:  # the cheapest of the three, by the model's figures
        costs = {"probe": g["probe_cost_s"], "merge": g["merge_cost_s"], "asof": g["asof_cost_s"]}
        assert costs[g["strategy"]] == min(costs.values())
    late = pit.spine[pit.spine["event_time"] >= DAYS[15].replace(tzinfo=None)]
    unbounded = fs.explain_historical_features(late, ["activity:*"])[0]
    bounded = fs.explain_historical_features(late, ["activity:*"], ttl="1 day")[0]
    assert bounded["history_rows_to_read"] < unbounded["history_rows_to_read"], "a TTL bounds the history to read"
    forced = fs.explain_historical_features(pit.spine, ["activity:*"], strategy="merge")
    assert forced[0]["strategy"] == "merge" and "asked for" in forced[0]["reason"]
    # the plan of a run, and one strategy per group
    got: list[Any] = []
    mixed = fs.get_historical_features(pit.spine, ["activity:*", "risk@1:*"], strategy="merge,probe", plan=got)
    assert [g["strategy"] for g in got] == ["merge", "probe"]
    assert mixed.equals(fs.get_historical_features(pit.spine, ["activity:*", "risk@1:*"], strategy="probe"))
    with pytest.raises(InvalidInput, match="strategy must be"):
        fs.get_historical_features(pit.spine, ["activity:*"], strategy="hash")


@pytest.mark.parametrize("merge", ["merge", "asof"])
def test_with_a_ttl_the_merge_reads_no_history_older_than_the_spine_minus_the_ttl(pit: PitData, fraud: Any,
                                                                                  merge: str) -> None:
    with fraud.connect("bob") as conn:
        conn.execute("create temp table _fstore_spine (customer text, merchant bigint, event_time timestamptz)")
        conn.execute("insert into _fstore_spine values ('c1', 1, '2024-01-10 00:00+00'), ('c2', 2, '2024-01-12 00:00+00')")
        query = conn.execute("select fstore.training_data_sql('pg_temp._fstore_spine'::regclass, array['activity:n'],"
                             " p_ttl => '1 day', p_strategy => %s)", (merge,)).fetchone()[0]
        asof = merge == "asof" and not TEST_CLUSTER_WORKERS  # a distributed group always gets the merge
        quoted = (lambda text: text.replace("'", "''")) if asof else (lambda text: text)  # asof: in a literal
        assert quoted("o.event_time >= '2024-01-10 00:00:00+00'::timestamptz - '1 day'::interval") in query
        assert quoted("o.event_time <= '2024-01-12 00:00:00+00'::timestamptz") in query
        merged = conn.execute(query).fetchall()
        probed = conn.execute(conn.execute(
            "select fstore.training_data_sql('pg_temp._fstore_spine'::regclass, array['activity:n'],"
            " p_ttl => '1 day', p_strategy => 'probe')").fetchone()[0]).fetchall()
    assert merged == probed


@pytest.mark.parametrize("strategy", ["probe", "merge", "asof"])
def test_row_policies_and_sensitive_features_hold_in_each_strategy(fraud: Any, home: Any, strategy: str) -> None:
    from fstore import policies

    with fraud.connect("alice") as alice:
        group = create_group(alice, fraud.name, "consented", {"customer": "text", "event_time": "timestamptz",
                                                              "score": "double precision", "consent": "boolean"},
                             ["customer"])
        commit_rows(alice, group, [("c1", DAYS[0], 1.0, True), ("c1", DAYS[1], 2.0, False), ("c2", DAYS[0], 3.0, False)])
        policies.apply_policies(alice, fraud.name, [
            policies.RowPolicy("consented", "consented__v1", ("data_scientist",), "consent")])
    spine = pd.DataFrame({"customer": ["c1", "c2", "c1"], "event_time": [DAYS[2], DAYS[2], DAYS[0]]})
    scientist = fstore.connect(fraud.name, "bob", home=home)
    owner = fstore.connect(fraud.name, "alice", home=home)
    # the scientist's join sees consented rows only: c1's latest consented row, nothing for c2
    assert scientist.get_historical_features(spine, ["consented:score"], strategy=strategy).column(
        "score").to_pylist() == [1.0, None, 1.0]
    assert owner.get_historical_features(spine, ["consented:score"], strategy=strategy).column(
        "score").to_pylist() == [2.0, 3.0, 1.0]
