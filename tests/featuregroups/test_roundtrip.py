"""A Data Owner creates a feature group, inserts a DataFrame and reads it back."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.featuregroups.conftest import activity_frame


def test_create_insert_get_round_trip(alice) -> None:
    df = activity_frame()
    fg = alice.create_feature_group("account_activity", 1, keys=["account_id"], features=df, online=True,
                                    description="Per-account activity", tags=["aml", "activity"])
    assert fg.keys == ["account_id"] and fg.version == 1 and fg.online
    assert {f.name: f.pg_type for f in fg.features} == {
        "account_id": "bigint", "amount": "double precision", "tx_count": "bigint",
        "channel": "text", "flagged": "boolean"}

    commit = fg.insert(df)
    assert commit.rows == len(df)
    assert commit.online_rows == df["account_id"].nunique()

    again = alice.get_feature_group("account_activity")
    assert again.id == fg.id
    offline = again.read().to_pandas()
    assert len(offline) == len(df)
    assert set(offline["_commit_id"]) == {commit.id}
    expected = df.sort_values(["account_id", "event_time"]).reset_index(drop=True)
    got = offline.sort_values(["account_id", "event_time"]).reset_index(drop=True)
    pd.testing.assert_series_equal(got["amount"], expected["amount"], check_names=False)
    assert list(got["channel"]) == list(expected["channel"])


def pit_index(alice, fg) -> str:
    return alice.conn.execute("select indexdef from pg_indexes where schemaname = %s and indexname = %s",
                              (fg.project, f"{fg.offline_table}_pit")).fetchone()[0]


def test_point_in_time_index_covering_by_default_or_keys_only(alice) -> None:
    from fstore import InvalidInput

    covering = alice.create_feature_group("pit_cov", 1, keys=["account_id"], features=activity_frame(rows=5))
    assert "(account_id, event_time DESC, _commit_id DESC) INCLUDE (amount, tx_count, channel, flagged)" in \
        pit_index(alice, covering)
    keys = alice.create_feature_group("pit_keys", 1, keys=["account_id"], features=activity_frame(rows=5),
                                      options={"offline_index": "keys"})
    definition = pit_index(alice, keys)
    assert "(account_id, event_time DESC, _commit_id DESC)" in definition and "INCLUDE" not in definition
    assert keys.insert(activity_frame(rows=30)).rows == 30
    with pytest.raises(InvalidInput, match="offline_index must be covering or keys"):
        alice.create_feature_group("pit_bad", 1, keys=["account_id"], features=activity_frame(rows=5),
                                   options={"offline_index": "brin"})
