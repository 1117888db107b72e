"""Vector features (pgvector): stored offline and online like any other feature, with an
HNSW index on the online table when asked for, and vector statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fstore import InvalidInput, NotFound
from fstore.pgarrow import base_type, dimension


def embeddings_frame(rows: int = 40, dims: int = 4, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "account_id": np.arange(rows, dtype="int64") % 10,
        "event_time": pd.Timestamp("2024-02-01", tz="UTC") + pd.to_timedelta(np.arange(rows), unit="h"),
        "embedding": [rng.normal(size=dims).astype("float32") for _ in range(rows)],
        "score": rng.random(rows),
    })


def hnsw_indexes(alice, fg) -> list[str]:
    return [d for (d,) in alice.conn.execute(
        "select indexdef from pg_indexes where schemaname = %s and tablename = %s and indexdef ilike '%%hnsw%%'",
        (fg.project, fg.online_table))]


def test_vector_feature_offline_online_with_hnsw(alice) -> None:
    df = embeddings_frame()
    fg = alice.create_feature_group("account_embedding", 1, keys=["account_id"], features=df, online=True,
                                    options={"hnsw": {"embedding": "vector_cosine_ops"}})
    stored = {f.name: f.pg_type for f in fg.features}["embedding"]  # as the catalog prints it
    assert base_type(stored) == "vector" and dimension(stored) == 4
    indexes = hnsw_indexes(alice, fg)
    assert len(indexes) == 1 and "hnsw (embedding vector_cosine_ops)" in indexes[0]

    commit = fg.insert(df)
    assert commit.rows == 40 and commit.online_rows == 10
    offline = fg.read().to_pandas()
    got = dict(zip(offline["event_time"], offline["embedding"]))
    for t, vec in zip(df["event_time"], df["embedding"]):
        assert np.allclose(np.array(got[t], dtype="float32"), vec)

    online = fg.read(online=True).to_pandas()
    latest = df.sort_values("event_time").groupby("account_id").tail(1).set_index("account_id")
    assert len(online) == 10
    for _, row in online.iterrows():
        vec = np.array(row["embedding"])
        assert np.allclose(vec, latest.loc[row["account_id"], "embedding"])

    # the index serves nearest-neighbour queries on the online table
    target = latest.loc[3, "embedding"]
    nearest = alice.conn.execute(
        f'select account_id from "{fg.project}"."{fg.online_table}" order by embedding <=> %s::vector limit 1',
        ("[" + ",".join(map(str, target.tolist())) + "]",)).fetchone()[0]
    assert nearest == 3

    stats = fg.statistics()["embedding"]
    norms = np.linalg.norm(np.stack(df["embedding"]).astype("float64"), axis=1)
    assert stats["kind"] == "vector" and stats["count"] == 40 and stats["nulls"] == 0
    assert stats["dims"] == {"min": 4, "max": 4}
    assert np.isclose(stats["norm"]["min"], norms.min(), rtol=1e-6)
    assert np.isclose(stats["norm"]["max"], norms.max(), rtol=1e-6)
    assert np.isclose(stats["norm"]["mean"], norms.mean(), rtol=1e-6)


def test_fixed_size_list_and_default_l2_index(alice) -> None:
    df = embeddings_frame(rows=6, dims=3)
    table = pa.Table.from_pandas(df, preserve_index=False)
    fixed = pa.array([v.tolist() for v in df["embedding"]], pa.list_(pa.float32(), 3))
    table = table.set_column(table.schema.get_field_index("embedding"), "embedding", fixed)
    fg = alice.create_feature_group("emb_fixed", 1, keys=["account_id"], features=table.schema, online=True,
                                    options={"hnsw": ["embedding"]})
    assert "vector_l2_ops" in hnsw_indexes(alice, fg)[0]
    assert fg.insert(table).rows == 6


def test_wrong_dimensions_and_nan_elements_are_refused(alice) -> None:
    df = embeddings_frame(rows=8, dims=4)
    fg = alice.create_feature_group("emb_checked", 1, keys=["account_id"], features=df, online=True)
    bad = df.copy()
    bad.at[2, "embedding"] = np.zeros(5, dtype="float32")
    bad.at[6, "embedding"] = np.zeros(3, dtype="float32")
    with pytest.raises(InvalidInput, match=r"column 'embedding' \((public\.)?vector\(4\)\): 2 row\(s\) do not have 4 dimensions \(first at row 2"):
        fg.insert(bad)
    nan = df.copy()
    nan.at[5, "embedding"] = np.array([1, np.nan, 0, 0], dtype="float32")
    with pytest.raises(InvalidInput, match=r"column 'embedding' .* 1 row\(s\) hold NULL, NaN or infinite elements \(first at row 5\)"):
        fg.insert(nan)
    assert fg.read().num_rows == 0 and fg.commits() == []


def test_hnsw_option_is_checked(alice) -> None:
    df = embeddings_frame(rows=4)
    with pytest.raises(InvalidInput, match="needs an online feature group"):
        alice.create_feature_group("emb_a", 1, keys=["account_id"], features=df, options={"hnsw": ["embedding"]})
    with pytest.raises(InvalidInput, match="'score' is not a vector feature"):
        alice.create_feature_group("emb_b", 1, keys=["account_id"], features=df, online=True,
                                   options={"hnsw": ["score"]})
    with pytest.raises(InvalidInput, match="unknown operator class 'evil_ops'"):
        alice.create_feature_group("emb_c", 1, keys=["account_id"], features=df, online=True,
                                   options={"hnsw": {"embedding": "evil_ops"}})
    with pytest.raises(NotFound):
        alice.get_feature_group("emb_b")  # nothing half-created
