"""Python ingestion: every bad input names the column and the rows, and writes nothing;
merge and incremental modes; the newer-only online upsert; a Data Scientist is refused."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fstore import InvalidInput, PermissionDenied
from tests.featuregroups.conftest import ACTIVITY_TYPES, activity_frame

UTC = dt.timezone.utc


@pytest.fixture
def fg(alice):
    """An online activity group with one good commit already in it."""
    group = alice.create_feature_group("activity", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True)
    group.insert(activity_frame(rows=50))
    return group


def nothing_written(fg, rows_before: int = 50, commits_before: int = 1) -> None:
    assert fg.read().num_rows == rows_before
    assert len(fg.commits()) == commits_before


def bad_frame(**changes) -> pd.DataFrame:
    df = activity_frame(rows=30, seed=99)
    for column, value in changes.items():
        df[column] = value
    return df


def test_missing_key_column(fg) -> None:
    with pytest.raises(InvalidInput, match=r"missing column\(s\) 'account_id' \(entity key\)"):
        fg.insert(bad_frame().drop(columns=["account_id"]))
    nothing_written(fg)


def test_missing_event_time_column(fg) -> None:
    with pytest.raises(InvalidInput, match=r"'event_time' \(event time\)"):
        fg.insert(bad_frame().drop(columns=["event_time"]))
    nothing_written(fg)


def test_missing_feature_column(fg) -> None:
    with pytest.raises(InvalidInput, match=r"missing column\(s\) 'channel' \(feature\)"):
        fg.insert(bad_frame().drop(columns=["channel"]))
    nothing_written(fg)


def test_unknown_columns(fg) -> None:
    with pytest.raises(InvalidInput, match=r"unknown column\(s\) 'colour', 'size'"):
        fg.insert(bad_frame(colour="red", size=3))
    nothing_written(fg)


def test_null_keys_are_counted(fg) -> None:
    df = bad_frame()
    df["account_id"] = df["account_id"].astype("Int64")
    df.loc[[3, 8, 21], "account_id"] = pd.NA
    with pytest.raises(InvalidInput, match=r"entity key column 'account_id' has 3 NULL value\(s\) \(first at row 3\)"):
        fg.insert(df)
    nothing_written(fg)


def test_null_event_times_are_counted(fg) -> None:
    df = bad_frame()
    df.loc[[5, 6], "event_time"] = pd.NaT
    with pytest.raises(InvalidInput, match=r"event time column 'event_time' has 2 NULL value\(s\) \(first at row 5\)"):
        fg.insert(df)
    nothing_written(fg)


def test_wrong_type_names_the_column(fg) -> None:
    with pytest.raises(InvalidInput, match=r"column 'amount' \(double precision\) cannot be filled from Arrow type"):
        fg.insert(bad_frame(amount=["12.5"] * 30))
    nothing_written(fg)


def test_fractional_values_for_an_integer_feature(fg) -> None:
    df = bad_frame()
    df["tx_count"] = df["tx_count"].astype("float64")
    df.loc[[4, 9], "tx_count"] = 2.5
    with pytest.raises(InvalidInput, match=r"column 'tx_count' \(bigint\): 2 value\(s\) are not whole numbers \(first at row 4: 2.5\)"):
        fg.insert(df)
    nothing_written(fg)


def test_whole_floats_convert_to_integers(fg) -> None:
    df = bad_frame()
    df["tx_count"] = df["tx_count"].astype("float64")
    assert fg.insert(df).rows == 30


def test_out_of_range_integers(alice) -> None:
    group = alice.create_feature_group("small", 1, keys=["account_id"],
                                       features={"account_id": "bigint", "level": "smallint"})
    df = pd.DataFrame({"account_id": [1, 2, 3], "level": [1, 70000, -40000],
                       "event_time": pd.Timestamp("2024-01-01", tz="UTC")})
    with pytest.raises(InvalidInput, match=r"column 'level' \(smallint\): 2 value\(s\) are out of range"):
        group.insert(df)
    assert group.read().num_rows == 0 and group.commits() == []


def test_naive_timestamps_are_refused_unless_assumed_utc(fg) -> None:
    df = bad_frame()
    df["event_time"] = df["event_time"].dt.tz_localize(None)
    with pytest.raises(InvalidInput, match=r"column 'event_time' .* without a time zone.*assume_utc=True"):
        fg.insert(df)
    nothing_written(fg)
    commit = fg.insert(df, assume_utc=True)
    stored = fg.read().to_pandas()
    mine = stored[stored["_commit_id"] == commit.id]
    assert sorted(mine["event_time"]) == sorted(df["event_time"].dt.tz_localize("UTC"))


def test_other_time_zones_are_converted(fg) -> None:
    df = bad_frame()
    df["event_time"] = df["event_time"].dt.tz_convert("America/New_York")
    commit = fg.insert(df)
    assert commit.max_event_time == df["event_time"].max().to_pydatetime()


def test_an_error_in_a_later_stream_batch_writes_nothing(fg) -> None:
    good = pa.Table.from_pandas(bad_frame(), preserve_index=False)
    bad = bad_frame()
    bad["account_id"] = bad["account_id"].astype("Int64")
    bad.loc[[2], "account_id"] = pd.NA
    bad_table = pa.Table.from_pandas(bad, preserve_index=False).cast(good.schema)
    reader = pa.RecordBatchReader.from_batches(good.schema, [*good.to_batches(), *bad_table.to_batches()])
    with pytest.raises(InvalidInput, match=r"'account_id' has 1 NULL value\(s\) in rows 30-59 of the stream \(first at row 32\)"):
        fg.insert(reader)
    nothing_written(fg)


def test_arrow_stream_in_small_batches(fg) -> None:
    table = pa.Table.from_pandas(activity_frame(rows=1000, seed=4), preserve_index=False)
    commit = fg.insert(table.to_reader(max_chunksize=64))
    assert commit.rows == 1000
    commit2 = fg.insert(table, mode="merge", batch_rows=100)
    assert commit2.rows == 0


def test_merge_reinsert_adds_no_duplicates(fg) -> None:
    df = activity_frame(rows=120, seed=8)
    first = fg.insert(df, mode="merge")
    assert first.rows == len(df.drop_duplicates(["account_id", "event_time"]))
    again = fg.insert(df, mode="merge")
    assert again.rows == 0 and again.online_rows == 0
    more = pd.concat([df, activity_frame(rows=10, seed=9)])
    assert fg.insert(more, mode="merge").rows == 10
    assert fg.read().num_rows == 50 + first.rows + 10


def test_incremental_keeps_only_rows_after_the_watermark(alice) -> None:
    group = alice.create_feature_group("incr", 1, keys=["account_id"], features=ACTIVITY_TYPES)
    df = activity_frame(rows=200, seed=12).sort_values("event_time").reset_index(drop=True)
    first = group.insert(df.iloc[:120], mode="incremental")
    assert first.rows == 120  # no watermark yet: everything
    watermark = df["event_time"].iloc[119]
    second = group.insert(df, mode="incremental")  # overlaps the first 120 rows
    assert second.rows == int((df["event_time"] > watermark).sum()) == 80
    assert second.min_event_time > watermark
    assert group.read().num_rows == 200


def online_row(group, account_id: int) -> dict:
    table = group.read(online=True).to_pandas()
    return table[table["account_id"] == account_id].iloc[0].to_dict()


def test_online_upsert_is_newer_only_with_out_of_order_arrivals(alice) -> None:
    group = alice.create_feature_group("latest", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True)
    t = lambda day: pd.Timestamp(f"2024-01-{day:02d}", tz="UTC")  # noqa: E731

    def frame(rows):
        return pd.DataFrame([{"account_id": a, "event_time": t(d), "amount": float(v), "tx_count": 1,
                              "channel": "web", "flagged": False} for a, d, v in rows])

    # one batch, out of order inside it: day 5 wins for account 1, day 3 for account 2
    c1 = group.insert(frame([(1, 3, 30), (1, 5, 50), (1, 4, 40), (2, 3, 300), (2, 1, 100)]))
    assert c1.online_rows == 2
    assert online_row(group, 1)["amount"] == 50 and online_row(group, 2)["amount"] == 300
    # a later commit with OLDER events: offline gets them, online keeps the newer rows
    c2 = group.insert(frame([(1, 2, 20), (2, 2, 200)]))
    assert c2.rows == 2 and c2.online_rows == 0
    assert online_row(group, 1)["amount"] == 50 and online_row(group, 2)["amount"] == 300
    # newer for account 2 only, and a new account 3
    c3 = group.insert(frame([(1, 4, 41), (2, 9, 900), (3, 1, 7)]))
    assert c3.online_rows == 2
    assert online_row(group, 2)["amount"] == 900 and online_row(group, 3)["amount"] == 7
    assert online_row(group, 1)["amount"] == 50
    # a tie on event_time goes to the later commit
    c4 = group.insert(frame([(1, 5, 55)]))
    assert c4.online_rows == 1
    row = online_row(group, 1)
    assert row["amount"] == 55 and row["_commit_id"] == c4.id
    assert group.read().num_rows == 11


def test_data_scientist_cannot_insert(alice, bob) -> None:
    alice.create_feature_group("guarded", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True)
    group = bob.get_feature_group("guarded")
    with pytest.raises(PermissionDenied, match="may not write"):
        group.insert(activity_frame(rows=10))
    mine = alice.get_feature_group("guarded")
    assert mine.read().num_rows == 0 and mine.read(online=True).num_rows == 0 and mine.commits() == []


def test_data_scientist_cannot_create(bob) -> None:
    with pytest.raises(PermissionDenied, match="only its Data Owners"):
        bob.create_feature_group("nope", 1, keys=["account_id"], features=ACTIVITY_TYPES)
    assert bob.list_feature_groups() == []
    # the session is usable afterwards and is not left as another role
    assert bob.conn.execute("select current_user").fetchone()[0] == bob.role


def test_get_unknown_group_names_it(alice) -> None:
    from fstore import NotFound

    with pytest.raises(NotFound, match=r"feature group .*\.missing_group does not exist"):
        alice.get_feature_group("missing_group")
    with pytest.raises(NotFound, match=r"missing_group@3"):
        alice.get_feature_group("missing_group", version=3)


def test_versions_are_separate_tables(alice) -> None:
    v1 = alice.create_feature_group("versioned", 1, keys=["account_id"], features=ACTIVITY_TYPES)
    v2 = alice.create_feature_group("versioned", None, keys=["account_id"],
                                    features={**ACTIVITY_TYPES, "score": "real"})
    assert v2.version == 2 and v2.offline_table == "versioned__v2"
    assert alice.get_feature_group("versioned").version == 2
    assert alice.get_feature_group("versioned", 1).id == v1.id
    df = activity_frame(rows=5)
    df["score"] = np.float32(0.5)
    assert v2.insert(df).rows == 5 and v1.read().num_rows == 0


def test_strict_validation_aborts_the_python_insert(alice) -> None:
    group = alice.create_feature_group("validated", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True,
                                       validation=[{"rule": "min", "column": "amount", "value": 0}])
    df = activity_frame(rows=40)
    df.loc[[3, 7], "amount"] = -1.0
    with pytest.raises(InvalidInput, match="amount"):
        group.insert(df)
    assert group.read().num_rows == 0 and group.read(online=True).num_rows == 0 and group.commits() == []
    good = group.insert(activity_frame(rows=40))
    assert good.validation["passed"] is True


def test_warn_validation_commits_and_records_failures(alice) -> None:
    group = alice.create_feature_group("warned", 1, keys=["account_id"], features=ACTIVITY_TYPES,
                                       validation=[{"rule": "accepted_values", "column": "channel",
                                                    "values": ["web", "app"]}],
                                       validation_policy="warn")
    df = activity_frame(rows=60)
    commit = group.insert(df)
    assert commit.rows == 60
    assert commit.validation["passed"] is False
    failing = int((~df["channel"].isin(["web", "app"])).sum())
    assert [(f["rule"], f["column"], f["failing_rows"]) for f in commit.validation["failures"]] == [
        ("accepted_values", "channel", failing)]


def test_other_types_numeric_date_uuid_jsonb(alice) -> None:
    import decimal
    import uuid

    group = alice.create_feature_group(
        "typed", 1, keys=["account_id"],
        features={"account_id": "bigint", "balance": "numeric(12,2)", "opened": "date", "ref": "uuid",
                  "meta": "jsonb", "code": "varchar(8)", "score": "real"})
    ids = [uuid.uuid4() for _ in range(3)]
    table = pa.table({
        "account_id": pa.array([1, 2, 3], pa.int64()),
        "balance": pa.array([decimal.Decimal("10.25"), None, decimal.Decimal("-3.50")], pa.decimal128(12, 2)),
        "opened": pa.array([dt.date(2020, 1, 1), dt.date(2021, 6, 30), None], pa.date32()),
        "ref": pa.array([str(i) for i in ids]),
        "meta": pa.array(['{"a": 1}', None, "[1, 2]"]),
        "code": pa.array(["x1", "y2", None]),
        "score": pa.array([1, 2, 3], pa.int32()),
        "event_time": pa.array([dt.datetime(2024, 1, 1, tzinfo=UTC)] * 3, pa.timestamp("us", "UTC")),
    })
    assert group.insert(table).rows == 3
    rows = alice.conn.execute(
        f'select account_id, balance, opened, ref, meta, code, score from "{group.project}".typed__v1 order by 1'
    ).fetchall()
    assert rows[0] == (1, decimal.Decimal("10.25"), dt.date(2020, 1, 1), ids[0], {"a": 1}, "x1", 1.0)
    assert rows[2][1] == decimal.Decimal("-3.50") and rows[2][4] == [1, 2]
    bad = table.set_column(table.schema.get_field_index("ref"), "ref", pa.array(["not-a-uuid", "x", "y"]))
    with pytest.raises(InvalidInput, match="'ref'"):
        group.insert(bad)
    assert len(group.commits()) == 1
