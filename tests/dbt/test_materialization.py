"""An analyst's dbt models become feature groups: first run, re-runs, new data, late data.

Each test writes its own model over its own raw table, then runs ``dbt run`` as
alice (a Data Owner, with her certificate) and checks what landed offline, online
and in the catalog.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from psycopg import sql

from tests.dbt.conftest import DbtProject

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def feature_model(source: str, *, mode: str, version: int = 1, online: bool = True, extra: str = "") -> str:
    return f"""
{{{{ config(materialized='feature_group', keys=['account_id'], event_time='event_time',
            version={version}, online={online}, commit_mode='{mode}'{extra}) }}}}
select account_id, event_time, amount, amount * 2 as double_amount
  from {{{{ source('raw', '{source}') }}}}
"""


def test_first_run_creates_tables_and_registers_the_feature_group(dbt_project: DbtProject) -> None:
    p = dbt_project
    # a naive timestamp column: read as UTC whatever the session's time zone
    p.raw_table("payments", "account_id bigint, paid_at timestamp, amount numeric(10,2), channel text",
                [(1, dt.datetime(2024, 3, 1, 10), Decimal("5.00"), "card"),
                 (1, dt.datetime(2024, 3, 1, 12), Decimal("7.50"), "wire"),
                 (2, dt.datetime(2024, 3, 1, 11), Decimal("3.25"), "card")])
    p.write_model("payment_features", """
{{ config(materialized='feature_group', keys=['account_id'], event_time='event_time', version=1,
          online=true, ttl='2 days', tags=['payments', 'demo'], statistics=false,
          commit_mode='merge', validation=[{'rule': 'not_null', 'column': 'amount'}]) }}
-- a CTE, as analysts write them; lineage must look through it
with paid as (select account_id, paid_at, amount, channel from {{ source('raw', 'payments') }})
select account_id, paid_at as event_time, amount, channel, amount > 5 as large
  from paid
""", description="Payments of each account.",
        columns={"amount": "Amount paid.", "channel": "How it was paid.", "account_id": "The account."})

    run = p.run("payment_features")
    run.raise_for_failure()

    fg = p.feature_group("payment_features")
    assert fg is not None
    assert (fg["entity_keys"], fg["event_time"], fg["online"]) == (["account_id"], "event_time", True)
    assert fg["ttl"] == dt.timedelta(days=2)
    assert fg["description"] == "Payments of each account."
    assert fg["tags"] == ["payments", "demo"]
    assert fg["statistics_enabled"] is False
    assert (fg["offline_table"], fg["online_table"]) == ("payment_features__v1", "payment_features__v1__online")
    assert fg["options"]["validation"] == [{"rule": "not_null", "column": "amount"}]
    assert fg["options"]["commit_mode"] == "merge"
    assert fg["created_by"] == f"{p.name}__alice"

    features = p.query("select name, data_type, description, is_key from fstore.features "
                       "where feature_group_id = %s order by position", (fg["id"],))
    assert features == [
        ("account_id", "bigint", "The account.", True),
        ("amount", "numeric(10,2)", "Amount paid.", False),
        ("channel", "text", "How it was paid.", False),
        ("large", "boolean", "", False),
    ]

    # lineage: dbt's graph (the source) and the compiled SQL parsed with pglast agree
    upstream = {e["relation"]: e for e in fg["upstream"]}
    assert set(upstream) == {f"{p.name}.payments"}
    assert upstream[f"{p.name}.payments"]["kind"] == "source"
    assert sorted(upstream[f"{p.name}.payments"]["found_by"]) == ["dbt", "sql"]
    assert run.lineage[f"{p.name}.payment_features@1"] == fg["upstream"]

    # the tables belong to the project owner and keep row-level security
    owners = p.query("select c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity "
                     "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                     "where n.nspname = %s and c.relname like 'payment\\_features%%' and c.relkind = 'r' "
                     "order by 1", (p.name,))
    assert owners == [("payment_features__v1", f"{p.name}__owner", True, True),
                      ("payment_features__v1__online", f"{p.name}__owner", True, True)]

    assert p.rows("payment_features__v1", "account_id,event_time") == [
        (1, Decimal("5.00"), "card", False, at(10)),
        (1, Decimal("7.50"), "wire", True, at(12)),
        (2, Decimal("3.25"), "card", False, at(11)),
    ]
    assert p.rows("payment_features__v1__online", "account_id") == [
        (1, Decimal("7.50"), "wire", True, at(12)),
        (2, Decimal("3.25"), "card", False, at(11)),
    ]
    [commit] = p.commits(fg["id"])
    assert (commit["rows"], commit["online_rows"], commit["source"]) == (3, 2, "dbt")
    assert commit["session_role"] == f"{p.name}__alice"
    assert (commit["min_event_time"], commit["max_event_time"]) == (at(10), at(12))
    assert commit["validation"]["passed"] is True


def test_incremental_reruns_add_nothing_and_new_data_only_the_new_rows(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("inc_events", "account_id bigint, event_time timestamptz, amount double precision",
                [(1, at(1), 1.0), (2, at(2), 2.0), (1, at(3), 3.0)])
    p.write_model("inc_features", feature_model("inc_events", mode="incremental"))
    p.run("inc_features").raise_for_failure()
    fg = p.feature_group("inc_features")
    oid = p.query("select %s::regclass::oid", (f"{p.name}.inc_features__v1",))[0][0]
    assert p.count("inc_features__v1") == 3

    p.run("inc_features").raise_for_failure()  # unchanged data: no rows, and no empty commit
    assert p.count("inc_features__v1") == 3
    assert [c["rows"] for c in p.commits(fg["id"])] == [3]

    # two new rows after the watermark, and one late row at or before it
    p.insert("inc_events", [(2, at(4), 4.0), (3, at(5), 5.0), (3, at(2), 9.0)])
    p.run("inc_features").raise_for_failure()
    commits = p.commits(fg["id"])
    assert [c["rows"] for c in commits] == [3, 2]
    assert (commits[-1]["min_event_time"], commits[-1]["max_event_time"]) == (at(4), at(5))
    assert p.rows("inc_features__v1", "account_id,event_time") == [
        (1, 1.0, 2.0, at(1)), (1, 3.0, 6.0, at(3)), (2, 2.0, 4.0, at(2)), (2, 4.0, 8.0, at(4)),
        (3, 5.0, 10.0, at(5)),
    ]
    assert p.rows("inc_features__v1__online", "account_id") == [
        (1, 3.0, 6.0, at(3)), (2, 4.0, 8.0, at(4)), (3, 5.0, 10.0, at(5)),
    ]
    # the same table all along: never dropped and recreated
    assert p.query("select %s::regclass::oid", (f"{p.name}.inc_features__v1",))[0][0] == oid


def test_merge_reruns_are_idempotent_and_late_rows_land_offline_only(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("merge_events", "account_id bigint, event_time timestamptz, amount double precision",
                [(1, at(10), 10.0), (2, at(10), 20.0),
                 (3, at(12), 30.0), (3, at(8), 31.0)])  # out of order within one batch
    p.write_model("merge_features", feature_model("merge_events", mode="merge"))
    p.run("merge_features").raise_for_failure()
    fg = p.feature_group("merge_features")
    first = p.commits(fg["id"])[0]["id"]
    assert p.count("merge_features__v1") == 4
    assert p.rows("merge_features__v1__online", "account_id") == [
        (1, 10.0, 20.0, at(10)), (2, 20.0, 40.0, at(10)), (3, 30.0, 60.0, at(12)),
    ]

    p.run("merge_features").raise_for_failure()  # same data again: nothing added anywhere, no commit
    assert p.count("merge_features__v1") == 4
    assert [c["rows"] for c in p.commits(fg["id"])] == [4]

    # late arrivals: account 1 gets an OLDER row (offline only, online keeps 10:00);
    # account 2 a newer one (online moves on); account 4 is new
    p.insert("merge_events", [(1, at(9), 11.0), (2, at(11), 21.0), (4, at(1), 40.0)])
    p.run("merge_features").raise_for_failure()
    commits = p.commits(fg["id"])
    assert [c["rows"] for c in commits] == [4, 3]
    assert p.rows("merge_features__v1", "account_id,event_time") == [
        (1, 11.0, 22.0, at(9)), (1, 10.0, 20.0, at(10)), (2, 20.0, 40.0, at(10)), (2, 21.0, 42.0, at(11)),
        (3, 31.0, 62.0, at(8)), (3, 30.0, 60.0, at(12)), (4, 40.0, 80.0, at(1)),
    ]
    assert p.rows("merge_features__v1__online", "account_id") == [
        (1, 10.0, 20.0, at(10)), (2, 21.0, 42.0, at(11)), (3, 30.0, 60.0, at(12)), (4, 40.0, 80.0, at(1)),
    ]
    online_commits = dict(p.query(f'select account_id, _commit_id from "{p.name}".merge_features__v1__online'))
    assert online_commits[1] == first and online_commits[2] == commits[-1]["id"]

    p.run("merge_features").raise_for_failure()  # and again: still idempotent
    assert p.count("merge_features__v1") == 7
    assert p.commits(fg["id"]) == commits


WATERMARK_MODEL = """
{{ config(materialized='feature_group', keys=['account_id'], event_time='event_time', online=true,
          commit_mode='merge') }}
with recent as (
    select * from {{ source('raw', 'wm_events') }}
     where event_time > {{ fstore.watermark(lookback='2 hours') }}
),
windowed as (
    select account_id, event_time,
           sum(amount) over (partition by account_id order by event_time
                             range between interval '2 hours' preceding and current row) as amount_2h
      from recent
)
select * from windowed where event_time > {{ fstore.watermark() }}
"""


def test_fstore_watermark_computes_only_new_rows_and_full_refresh_recomputes(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("wm_events", "account_id bigint, event_time timestamptz, amount double precision",
                [(1, at(1), 1.0), (1, at(2), 2.0), (2, at(2), 5.0)])
    p.write_model("wm_features", WATERMARK_MODEL)
    p.run("wm_features").raise_for_failure()  # first run: everything
    assert p.rows("wm_features__v1", "account_id,event_time") == [(1, 1.0, at(1)), (1, 3.0, at(2)), (2, 5.0, at(2))]

    # new rows after the watermark (at 2:00), whose 2-hour windows reach back before it,
    # and a late row at 1:00 that the watermark leaves out
    p.insert("wm_events", [(1, at(3), 4.0), (2, at(4), 1.0), (2, at(1), 100.0)])
    p.run("wm_features").raise_for_failure()
    fg = p.feature_group("wm_features")
    assert [c["rows"] for c in p.commits(fg["id"])] == [3, 2]
    assert p.rows("wm_features__v1", "account_id,event_time") == [
        (1, 1.0, at(1)), (1, 3.0, at(2)), (1, 7.0, at(3)),  # 1 + 2 + 4: the lookback read 1:00 and 2:00
        (2, 5.0, at(2)), (2, 6.0, at(4)),
    ]
    assert p.rows("wm_features__v1__online", "account_id") == [(1, 7.0, at(3)), (2, 6.0, at(4))]

    p.run("wm_features").raise_for_failure()  # unchanged: nothing new, no commit
    assert [c["rows"] for c in p.commits(fg["id"])] == [3, 2]

    # --full-refresh: the watermark is -infinity, the model computes everything, merge adds
    # only the row not stored yet (the late one)
    p.run("wm_features", "alice", "--full-refresh").raise_for_failure()
    last = p.commits(fg["id"])[-1]
    assert (last["rows"], last["source"]) == (1, "dbt --full-refresh")
    assert (2, 100.0, at(1)) in p.rows("wm_features__v1", "account_id,event_time")
    assert p.count("wm_features__v1") == 6


@pytest.mark.parametrize("mode", ["incremental", "append"])
def test_full_refresh_recomputes_and_commits_with_merge_whatever_the_mode(dbt_project: DbtProject, mode: str) -> None:
    p = dbt_project
    name, source = f"fr_{mode}", f"fr_{mode}_events"
    table = f"{name}__v1"
    p.raw_table(source, "account_id bigint, event_time timestamptz, amount double precision",
                [(1, at(1), 1.0), (2, at(2), 2.0)])
    p.write_model(name, feature_model(source, mode=mode))
    p.run(name).raise_for_failure()
    fg = p.feature_group(name)
    oid = p.query("select %s::regclass::oid", (f"{p.name}.{table}",))[0][0]

    # a late row (before the last commit's max event time) and a changed value of a stored row
    p.insert(source, [(1, at(0), 9.0)])
    p.query(sql.SQL("update {} set amount = 5.0 where account_id = 2 returning 1").format(
        sql.Identifier(p.name, source)))
    p.run(name).raise_for_failure()
    if mode == "incremental":  # misses the late row
        assert [c["rows"] for c in p.commits(fg["id"])] == [2]
    else:  # commits every row again, the changed one beside the stored one
        assert [c["rows"] for c in p.commits(fg["id"])] == [2, 3]
    before = p.rows(table, "account_id,event_time")

    # --full-refresh: the whole model, committed with merge whatever commit_mode says: what
    # is not stored yet is added, stored (keys, event_time) keep their rows, same tables
    run = p.run(name, "alice", "--full-refresh")
    run.raise_for_failure()
    assert any("--full-refresh: the model is recomputed from scratch and committed with commit_mode 'merge'"
               in line for line in run.logs), run.logs
    after = p.rows(table, "account_id,event_time")
    if mode == "incremental":
        last = p.commits(fg["id"])[-1]
        assert (last["rows"], last["source"]) == (1, "dbt --full-refresh")
        assert after == [(1, 9.0, 18.0, at(0)), (1, 1.0, 2.0, at(1)), (2, 2.0, 4.0, at(2))]
    else:  # every (keys, event_time) is stored already: nothing to add, no commit
        assert [c["rows"] for c in p.commits(fg["id"])] == [2, 3]
        assert after == before
        assert any("nothing new to commit (no commit recorded)" in line for line in run.logs)
    assert p.query("select %s::regclass::oid", (f"{p.name}.{table}",))[0][0] == oid


def test_ref_to_a_feature_group_reads_its_offline_table(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("ref_events", "account_id bigint, event_time timestamptz, amount double precision",
                [(1, at(1), 1.0), (1, at(2), 2.0)])
    p.write_model("ref_base", feature_model("ref_events", mode="merge", online=False))
    p.write_model("ref_derived", """
{{ config(materialized='feature_group', keys=['account_id'], commit_mode='merge') }}
select account_id, max(event_time) as event_time, sum(double_amount) as total
  from {{ ref('ref_base') }} group by account_id
""")
    run = p.run("ref_base ref_derived")
    run.raise_for_failure()
    assert p.rows("ref_derived__v1") == [(1, 6.0, at(2))]
    upstream = p.feature_group("ref_derived")["upstream"]
    assert [(e["relation"], e["kind"], sorted(e["found_by"])) for e in upstream] == [
        (f"{p.name}.ref_base__v1", "model", ["dbt", "sql"])]


def test_vector_features_with_an_hnsw_index_online(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("vec_events", "account_id bigint, event_time timestamptz, x real, y real, z real",
                [(1, at(1), 1, 0, 0), (2, at(1), 0, 1, 0), (2, at(2), 0, 0, 1)])
    p.write_model("vec_features", """
{{ config(materialized='feature_group', keys=['account_id'], online=true, commit_mode='merge',
          hnsw={'embedding': 'vector_cosine_ops'}) }}
select account_id, event_time, array[x, y, z]::vector(3) as embedding from {{ source('raw', 'vec_events') }}
""")
    p.run("vec_features").raise_for_failure()
    fg = p.feature_group("vec_features")
    assert p.query("select data_type from fstore.features where feature_group_id = %s and name = 'embedding'",
                   (fg["id"],)) == [("vector(3)",)]
    indexes = [d for (d,) in p.query("select indexdef from pg_indexes where schemaname = %s "
                                     "and tablename = 'vec_features__v1__online'", (p.name,))]
    assert any("hnsw (embedding vector_cosine_ops)" in d for d in indexes)
    assert p.query(f'select account_id, embedding::text from "{p.name}".vec_features__v1__online '
                   "order by account_id") == [(1, "[1,0,0]"), (2, "[0,0,1]")]


def test_config_in_yaml_and_config_mistakes_named_clearly(dbt_project: DbtProject) -> None:
    p = dbt_project
    p.raw_table("cfg_events", "account_id bigint, event_time timestamptz, seen text, amount numeric",
                [(1, at(1), "x", 1)])
    # configured entirely in the model's YAML, as dbt allows
    (p.dir / "models" / "cfg_yaml.sql").write_text(
        "select account_id, event_time, amount from {{ source('raw', 'cfg_events') }}")
    (p.dir / "models" / "cfg_yaml.yml").write_text("""
version: 2
models:
  - name: cfg_yaml
    description: Configured in YAML.
    config: {materialized: feature_group, keys: account_id, version: 3, commit_mode: incremental, tags: [yaml]}
""")
    mistakes = {
        "cfg_nokeys": ("online=true", "set `keys` to the entity key column(s)"),
        "cfg_mode": ("keys=['account_id'], commit_mode='upsert'", "`commit_mode` must be merge, incremental or append"),
        "cfg_missing": ("keys=['customer_id']", "the model has no column customer_id (named in `keys`)"),
        "cfg_time": ("keys=['account_id'], event_time='seen'", "event_time column seen is text; it must be a timestamptz"),
        "cfg_policy": ("keys=['account_id'], validation_policy='lenient'", "`validation_policy` must be strict or warn"),
    }
    for name, (config, _) in mistakes.items():
        p.write_model(name, f"{{{{ config(materialized='feature_group', {config}) }}}}\n"
                            "select account_id, event_time, seen, amount from {{ source('raw', 'cfg_events') }}")
    run = p.run(" ".join(["cfg_yaml", *mistakes]))
    assert not run.success
    failed = {f.unique_id.rsplit(".", 1)[1]: " ".join(f.message.split()) for f in run.failures}
    assert set(failed) == set(mistakes)
    for name, (_, phrase) in mistakes.items():
        assert phrase in failed[name], failed[name]
        assert p.feature_group(name) is None

    fg = p.feature_group("cfg_yaml", 3)
    assert (fg["description"], fg["tags"], fg["options"]["commit_mode"]) == ("Configured in YAML.", ["yaml"],
                                                                             "incremental")
    assert p.rows("cfg_yaml__v3") == [(1, 1, at(1))]
