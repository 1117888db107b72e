"""Sensitive features, tried as an attacker: a Data Scientist (bob) and a share partner's Data
Owner and Data Scientist (carol, dave), each with their own certificate, try every way to
read a sensitive feature -- the offline and online tables, select *, the point-in-time join,
online lookups of ``group:*``, stored statistics, slices by it, drift, exports, training
datasets (the owner's, their own built before the mark, a partner's copy), a feature view's
vectors and fitted parameters, copies through a view or a function of their own -- and are
refused, by name where fstore answers. Allowed counterparts: the other features through the
join and online lookups, the person a grant in policies/ names (erin), the Data Owner (alice).

World (built once): project A (alice Data Owner; bob, erin Data Scientists) with an online
group ``profile`` (account_id, country, income, is_pep) whose features income and is_pep are
sensitive, is_pep granted to erin; A shared read-only with B (carol, dave).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

import fstore
from fstore import projects, sensitive
from fstore.connection import connect
from fstore.home import FstoreHome
from tests.conftest import unique
from tests.security.attack import allow, deny, hide, run_case

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
ACCOUNTS = 20
PEPS = (3, 7, 11)
SENSITIVE = ("income", "is_pep")
SPINE = "create temp table if not exists s as select g::bigint as account_id, now() as event_time from generate_series(1, 5) g"


class SensitiveWorld:
    def __init__(self, home: FstoreHome) -> None:
        self.home = home
        self.a, self.b = unique("sna"), unique("snb")
        self.names: dict[str, Any] = {"a": self.a, "b": self.b}
        self._conns: dict[str, psycopg.Connection[Any]] = {}

    def project_of(self, user: str) -> str:
        return self.b if user in ("carol", "dave") else self.a

    def conn(self, user: str) -> psycopg.Connection[Any]:
        conn = self._conns.get(user)
        if conn is None or conn.closed:
            conn = connect(self.home, f"{self.project_of(user)}__{user}", autocommit=True)
            self._conns[user] = conn
        return conn

    def store(self, user: str) -> fstore.FeatureStore:
        return fstore.connect(self.project_of(user), user, home=self.home)

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


def _build(home: FstoreHome) -> SensitiveWorld:
    w = SensitiveWorld(home)
    a, b = w.a, w.b
    with connect(home, "fstore_admin", autocommit=True) as admin:
        projects.create_project(home, admin, a, "alice")
        projects.create_project(home, admin, b, "carol")
    with connect(home, f"{a}__alice", autocommit=True) as conn:
        projects.add_member(home, conn, a, "bob", "data-scientist")
        projects.add_member(home, conn, a, "erin", "data-scientist")
    with connect(home, f"{b}__carol", autocommit=True) as conn:
        projects.add_member(home, conn, b, "dave", "data-scientist")
    with w.store("alice") as alice:
        conn = alice.conn
        conn.execute(f"set role {a}__owner")
        conn.execute(f"create table {a}.labels (account_id bigint, event_time timestamptz, is_fraud boolean)")
        conn.execute("reset role")
        conn.execute(f"insert into {a}.labels select g, %s, g %% 3 = 0 from generate_series(1, {ACCOUNTS}) g",
                     (T0 + dt.timedelta(days=2),))
        fg = alice.create_feature_group("profile", 1, keys=["account_id"], online=True, features={
            "account_id": "bigint", "country": "text", "income": "double precision", "is_pep": "boolean"})
        commit = fg.insert(pa.Table.from_pylist([
            {"account_id": i, "country": "DE" if i % 2 else "FR", "income": 1000.0 * i, "is_pep": i in PEPS,
             "event_time": T0} for i in range(1, ACCOUNTS + 1)]))
        projects.share_project(conn, a, b)
    # derived before the mark: bob's own training dataset, and carol's copy in B
    with w.store("bob") as bob:
        bob_td = bob.create_training_dataset("bob_td", f"select * from {a}.labels",
                                             ["profile:is_pep", "profile:country"]).table_name
    with w.store("carol") as carol:
        carol_td = carol.create_training_dataset("carol_td", f"select account_id, event_time from {a}.labels",
                                                 [f"{a}.profile:is_pep", f"{a}.profile:country"]).table_name
    with w.store("alice") as alice:
        alice.get_feature_group("profile").set_sensitive(list(SENSITIVE))
        sensitive.apply_sensitive_grants(alice.conn, a, [
            sensitive.SensitiveGrant("compliance_reads_pep", ("profile:is_pep",), ("erin",))])
        scored = alice.create_training_dataset("scored", f"select * from {a}.labels",
                                               ["profile:country", "profile:is_pep", "profile:income"],
                                               label="is_fraud").table_name
        fv = alice.create_feature_view("pepview", ["profile:country", "profile:income"], label="is_fraud",
                                       transformations={"income": "standard_scaler", "country": "one_hot"},
                                       log_rate=1.0)
        fv_td = fv.create_training_dataset(f"select * from {a}.labels")
        alice.get_feature_view("pepview").init_serving().get_feature_vector({"account_id": 1})
    w.names.update({"fg": fg.id, "commit": commit.id, "bob_td": bob_td, "carol_td": carol_td, "scored": scored,
                    "fv": fv.id, "fv_td": fv_td.id, "erin": f"{a}__erin", "bob": f"{a}__bob"})
    return w


@pytest.fixture(scope="module")
def sworld(home: FstoreHome) -> Iterator[SensitiveWorld]:
    w = _build(home)
    try:
        yield w
    finally:
        w.close()
        with connect(home, "fstore_admin", autocommit=True) as admin:
            for name in (w.b, w.a):
                try:
                    projects.delete_project(home, admin, name)
                except Exception:  # noqa: BLE001 -- best effort
                    pass


def _reader_cases(actor: str, ref: str) -> list[Any]:
    """What a reader without the grant tries in SQL (``ref``: how they name the group)."""
    t = "{a}.profile__v1"
    named = "permission denied for feature (is_pep|income) of feature group"
    return [
        deny(f"{actor}_selects_sensitive_offline", actor, f"select is_pep from {t}", match="permission denied for table"),
        deny(f"{actor}_selects_star_offline", actor, f"select * from {t}", match="permission denied for table"),
        deny(f"{actor}_selects_sensitive_online", actor, f"select income from {t}__online",
             match="permission denied for table"),
        deny(f"{actor}_selects_star_online", actor, f"select * from {t}__online", match="permission denied for table"),
        deny(f"{actor}_filters_on_sensitive", actor, f"select count(*) from {t} where is_pep",
             match="permission denied for table"),
        deny(f"{actor}_pit_sql_asks_sensitive", actor, SPINE,
             f"select fstore.training_data_sql('pg_temp.s'::regclass, array['{ref}:is_pep'])", match=named),
        deny(f"{actor}_pit_sql_asks_star", actor, SPINE,
             f"select fstore.historical_features('h_{actor}', 'pg_temp.s'::regclass, array['{ref}:*'])", match=named),
        deny(f"{actor}_readable_check_names_feature", actor,
             "select fstore.check_readable_features({fg}, array['country', 'is_pep'])", match=named),
        hide(f"{actor}_stored_statistics_of_sensitive", actor,
             "select count(*) from fstore.commit_statistics where commit_id = {commit} and feature in ('is_pep', 'income')",
             rows=[(0,)]),
        deny(f"{actor}_slices_by_sensitive", actor, "select * from fstore.slice_statistics({fg}, 'is_pep')",
             match="permission denied for feature is_pep"),
        deny(f"{actor}_slices_of_sensitive", actor,
             "select * from fstore.slice_statistics({fg}, 'country', p_features => array['income'])",
             match="permission denied for feature income"),
        deny(f"{actor}_drift_histograms_of_sensitive", actor,
             "select * from fstore.drift_histograms({fg}, '{\"commit\": {commit}}', '{\"commit\": {commit}}', "
             "array['is_pep'])", match="permission denied"),
        deny(f"{actor}_reads_owner_training_dataset", actor, "select is_pep from {a}.{scored}",
             match="permission denied for table"),
        deny(f"{actor}_star_owner_training_dataset", actor, "select * from {a}.{scored}",
             match="permission denied for table"),
        deny(f"{actor}_training_dataset_column_named", actor,
             "select fstore.check_readable_columns('{a}.{scored}'::regclass)",
             match="permission denied for column (is_pep|income) .*sensitive feature"),
        deny(f"{actor}_reads_bob_td_built_before_mark", actor, "select is_pep from {a}.{bob_td}",
             match="permission denied for table"),
        hide(f"{actor}_feature_view_fits_of_sensitive", actor,
             "select params from fstore.feature_view_fits where feature_view_id = {fv}", rows=[]),
        deny(f"{actor}_fit_of_sensitive_view", actor, "select fstore.fit_feature_view({fv}, {fv_td})",
             match="permission denied for column income"),
        hide(f"{actor}_served_vectors_of_sensitive_view", actor,
             "select count(*) from fstore.served_vectors where feature_view_id = {fv}", rows=[(0,)]),
        deny(f"{actor}_copies_through_temp_view", actor, "begin",
             f"create temp view leak_{actor} as select is_pep from {t}", f"select * from leak_{actor}",
             match="permission denied for table"),
        deny(f"{actor}_copies_through_temp_function", actor, "begin",
             f"create function pg_temp.leak() returns setof boolean language sql as $$select is_pep from {t}$$",
             "select pg_temp.leak()", match="permission denied for table"),
        deny(f"{actor}_copies_into_temp_table", actor, "begin",
             f"create temp table leak_{actor} as select account_id, is_pep from {t}", match="permission denied for table"),
        deny(f"{actor}_marks_unsensitive", actor, "select fstore.set_sensitive('profile', array['is_pep'], false, '{a}')",
             match="only a Data Owner of project {a}"),
        deny(f"{actor}_grants_itself_sensitive", actor, "select fstore.set_sensitive_grants('{a}', "
             "'[{\"name\": \"mine\", \"features\": [\"profile:is_pep\"], \"roles\": [\"bob\"]}]')",
             match="only a Data Owner of project {a}"),
        deny(f"{actor}_grants_column_itself", actor, f"grant select (is_pep) on {t} to {{bob}}",
             match="permission denied for column \"?is_pep"),
        allow(f"{actor}_reads_other_columns_offline", actor,
              f"select count(*) from (select account_id, country, event_time, _commit_id from {t}) x",
              rows=[(ACCOUNTS,)]),
        allow(f"{actor}_reads_other_columns_online", actor, f"select country from {t}__online where account_id = 2",
              rows=[("FR",)]),
        allow(f"{actor}_pit_sql_other_features", actor, SPINE, "drop table if exists pg_temp.ok",
              f"select fstore.historical_features('ok', 'pg_temp.s'::regclass, array['{ref}:country'])", rows=[(5,)]),
    ]


def _cases() -> list[Any]:
    cases = _reader_cases("bob", "profile") + _reader_cases("dave", "{a}.profile")
    cases += [
        # carol (B's Data Owner) reads A's sensitive features no more than dave; her copy is dark
        deny("partner_owner_selects_sensitive", "carol", "select is_pep from {a}.profile__v1",
             match="permission denied for table"),
        deny("partner_copy_column_refused", "carol", "select is_pep from {b}.{carol_td}", match="permission denied"),
        hide("partner_copy_rows_hidden", "carol", "select count(*) from {b}.{carol_td}", rows=[(0,)]),
        hide("partner_copy_hidden_from_owner_role", "carol", "begin", "set local role {b}__owner",
             "select count(*) from {b}.{carol_td}", rows=[(0,)]),
        hide("partner_scientist_copy_rows_hidden", "dave", "select count(*) from {b}.{carol_td}", rows=[(0,)]),
        deny("scientist_feature_vector_of_sensitive_view", "bob",
             "select fstore.feature_vector('pepview', '{\"account_id\": 1}')", match="permission denied for feature income"),
        deny("partner_owner_unmarks", "carol", "select fstore.set_sensitive('profile', array['is_pep'], false, '{a}')",
             match="only a Data Owner of project {a}"),
        # erin: granted is_pep by policies/, not income
        allow("granted_reads_sensitive", "erin", "select count(*) from {a}.profile__v1 where is_pep", rows=[(3,)]),
        allow("granted_reads_sensitive_online", "erin", "select count(*) from {a}.profile__v1__online where is_pep",
              rows=[(3,)]),
        allow("granted_reads_sensitive_in_training", "erin", "select count(*) from {a}.{scored} where is_pep",
              rows=[(len(PEPS),)]),
        allow("granted_pit_sensitive", "erin", SPINE, "drop table if exists pg_temp.ok",
              "select fstore.historical_features('ok', 'pg_temp.s'::regclass, array['profile:is_pep'])", rows=[(5,)]),
        allow("granted_statistics_of_granted_feature", "erin",
              "select count(*) from fstore.commit_statistics where commit_id = {commit} and feature = 'is_pep'",
              rows=[(1,)]),
        deny("granted_only_what_was_granted", "erin", "select income from {a}.profile__v1",
             match="permission denied for table"),
        hide("granted_no_statistics_of_other_sensitive", "erin",
             "select count(*) from fstore.commit_statistics where commit_id = {commit} and feature = 'income'",
             rows=[(0,)]),
        # the Data Owner reads everything
        allow("owner_reads_sensitive_offline", "alice", "select count(*) from {a}.profile__v1 where is_pep", rows=[(3,)]),
        allow("owner_reads_star_online", "alice", "select count(*) from (select * from {a}.profile__v1__online) x",
              rows=[(ACCOUNTS,)]),
        allow("owner_reads_training_dataset", "alice", "select count(*) from {a}.{scored} where is_pep",
              rows=[(len(PEPS),)]),
        allow("owner_reads_statistics_of_sensitive", "alice",
              "select count(*) from fstore.commit_statistics where commit_id = {commit} and feature in ('is_pep', 'income')",
              rows=[(2,)]),
        allow("owner_reads_fits_of_sensitive", "alice",
              "select count(*) from fstore.feature_view_fits where feature_view_id = {fv} and params ? 'income'",
              rows=[(1,)]),
    ]
    return cases


CASES = _cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_sensitive_case(sworld: SensitiveWorld, case: Any, tally: Any) -> None:
    run_case(sworld.conn(case.actor), case, sworld.names)
    tally.add(case.kind, case.id)


@pytest.mark.parametrize("user,ref", [("bob", "profile"), ("dave", None)])
def test_python_read_paths_refuse_the_feature_by_name(sworld: SensitiveWorld, user: str, ref: str | None,
                                                      tmp_path: Path, tally: Any) -> None:
    a = sworld.a
    group = ref or f"{a}.profile"
    spine = pa.table({"account_id": [1, 3], "event_time": [T0 + dt.timedelta(days=1)] * 2})
    named = "permission denied for feature (is_pep|income) of feature group"
    with sworld.store(user) as fs:
        for features in ([f"{group}:is_pep"], [f"{group}:*"], [f"{group}:country", f"{group}:income"]):
            with pytest.raises(fstore.PermissionDenied, match=named):
                fs.get_historical_features(spine, features)
            with pytest.raises(fstore.PermissionDenied, match=named):
                fs.get_online_features(features, {"account_id": 3})
        with pytest.raises(fstore.PermissionDenied, match=named):
            fs.create_training_dataset(f"leak_{user}", f"select * from {a}.labels", [f"{group}:is_pep"])
        with pytest.raises(fstore.PermissionDenied, match=named):
            fs.create_feature_view(f"leak_{user}", [f"{group}:is_pep"])
        fg = fs.get_feature_group(group)
        assert fg.sensitive_features == ["income", "is_pep"]
        with pytest.raises(fstore.PermissionDenied, match=named):
            fg.read()
        with pytest.raises(fstore.PermissionDenied, match=named):
            fg.read(online=True)
        stats = fg.statistics()
        assert set(stats) == {"account_id", "country", "event_time"}, stats.keys()
        with pytest.raises(fstore.PermissionDenied, match="permission denied for feature is_pep"):
            fg.statistics(slice_by="is_pep")
        assert "income" not in fg.statistics(slice_by="country").whole.features
        commit = sworld.names["commit"]
        with pytest.raises(fstore.PermissionDenied, match="permission denied for feature is_pep"):
            fs.drift(group, baseline=commit, current=commit, features=["is_pep"])
        assert [f.feature for f in fs.drift(group, baseline=commit, current=commit).features] == ["country"]
        with pytest.raises(fstore.PermissionDenied, match="permission denied for column (is_pep|income)"):
            fs.export(f"{a}.profile__v1", tmp_path / "leak.parquet")
        # the point-in-time join and online lookups of the other features keep working
        joined = fs.get_historical_features(spine, [f"{group}:country"])
        assert joined.column("country").to_pylist() == ["DE", "DE"]
        assert fs.get_online_features([f"{group}:country"], {"account_id": 2})["country"] == "FR"
        if user == "bob":  # the owner's training dataset and feature view, in bob's project
            for name in ("scored", "bob_td"):
                with pytest.raises(fstore.PermissionDenied, match="permission denied for column (is_pep|income) .*"
                                   "sensitive feature"):
                    fs.get_training_dataset(name)
                with pytest.raises(fstore.PermissionDenied, match="sensitive feature"):
                    fs.export(name, tmp_path / f"{name}.parquet")
            with pytest.raises(fstore.PermissionDenied, match="permission denied for column is_pep of training dataset"):
                fs.label_rate_by_slice("scored", "is_pep")
            view = fs.get_feature_view("pepview")
            with pytest.raises(fstore.PermissionDenied, match="permission denied for feature income"):
                view.init_serving().get_feature_vector({"account_id": 1})
            with pytest.raises(fstore.PermissionDenied, match="permission denied for feature income"):
                view.get_training_data()
            with pytest.raises(fstore.PermissionDenied, match="permission denied for feature income"):
                view.create_training_dataset(f"select * from {a}.labels")
    tally.deny(*(f"python_{user}_{k}" for k in (
        "pit_sensitive", "pit_star", "online_sensitive", "online_star", "build_training_dataset", "create_feature_view",
        "read_offline", "read_online", "slice_by_sensitive", "drift_sensitive", "export_table")))
    tally.allow(f"python_{user}_statistics_without_sensitive", f"python_{user}_drift_readable_features",
                f"python_{user}_pit_other_features", f"python_{user}_online_other_features")
    if user == "bob":
        tally.deny("python_bob_training_dataset", "python_bob_export_training_dataset", "python_bob_label_rate_by_sensitive",
                   "python_bob_feature_vector", "python_bob_view_training_data", "python_bob_view_build")


def test_granted_and_owner_read_through_python(sworld: SensitiveWorld, tmp_path: Path, tally: Any) -> None:
    spine = pa.table({"account_id": [3, 4], "event_time": [T0 + dt.timedelta(days=1)] * 2})
    with sworld.store("erin") as erin:
        assert erin.get_historical_features(spine, ["profile:is_pep"]).column("is_pep").to_pylist() == [True, False]
        assert erin.get_online_features(["profile:is_pep"], {"account_id": 3})["is_pep"] is True
        assert "is_pep" in erin.get_feature_group("profile").statistics()
        with pytest.raises(fstore.PermissionDenied, match="permission denied for feature income"):
            erin.get_historical_features(spine, ["profile:*"])
    with sworld.store("alice") as alice:
        table = alice.get_historical_features(spine, ["profile:*"])
        assert table.column("income").to_pylist() == [3000.0, 4000.0]
        assert alice.get_training_dataset("scored").column("is_pep").to_pylist().count(True) == len(PEPS)
        assert alice.export("scored", tmp_path / "scored.parquet", split=False).rows == ACCOUNTS
        assert set(alice.get_feature_group("profile").statistics()) >= set(SENSITIVE)
        assert alice.get_feature_view("pepview").init_serving().get_feature_vector({"account_id": 1}) is not None
    tally.allow("python_granted_pit", "python_granted_online", "python_granted_statistics",
                "python_owner_pit_star", "python_owner_training_dataset", "python_owner_export",
                "python_owner_statistics", "python_owner_feature_vector")
    tally.deny("python_granted_not_other_sensitive")
