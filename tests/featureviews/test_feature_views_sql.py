"""Feature views through SQL, as a psql user or a service in any language would use them:
create a view (pinned features, label, serving keys, a passed feature, transformations),
build and fit its training dataset, read its training data and serve its vectors.

The skew test: for random entities, the point-in-time row at "now" from the training path,
transformed with the stored parameters, equals the served vector for every column and
every transformation, to 1e-12. The leak test: parameters come from the training split
alone. And the refusals: another project without a share, a share that ended.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from typing import Any

import psycopg
import pytest

from fstore import policies, projects

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
VIEW_TRANSFORMS = {
    "tx_count": {"fn": "standard_scaler"}, "amount_7d": {"fn": "log1p"}, "balance": {"fn": "min_max_scaler"},
    "age": {"fn": "robust_scaler"}, "country": {"fn": "one_hot"}, "segment": {"fn": "label_encoder"},
    "amount": {"fn": "bucketize", "edges": [10, 100, 1000]},
}


def _group(conn: psycopg.Connection, project: str, name: str, columns: dict[str, str]) -> int:
    spec = [{"name": n, "type": t} for n, t in columns.items()]
    with conn.transaction():
        conn.execute(f"set local role {project}__owner")
        return conn.execute("select fstore.create_feature_group(%s, %s, 1, array['account_id'], 'event_time', "
                            "%s::jsonb, true)", (project, name, json.dumps(spec))).fetchone()[0]


def _commit(conn: psycopg.Connection, fg: int, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    names = ", ".join([*columns, "event_time"])
    table = conn.execute("select format('%%I.%%I', project, offline_table) from fstore.feature_groups where id = %s",
                         (fg,)).fetchone()[0]
    with conn.transaction():
        conn.execute(f"create temp table stage on commit drop as select {names} from {table} limit 0")
        with conn.cursor().copy(f"copy stage ({names}) from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("select fstore.commit_feature_rows(%s, 'pg_temp.stage'::regclass)", (fg,))


@pytest.fixture
def bank(make_project: Any) -> Any:
    """Project with two online groups (activity, profile) of 40 accounts, history then a latest row."""
    project = make_project(owner="alice", scientists=["bob"], prefix="bank")
    rng = random.Random(7)
    with project.connect("alice") as alice:
        activity = _group(alice, project.name, "activity", {"account_id": "bigint", "tx_count": "integer",
                                                             "amount_7d": "double precision", "balance": "double precision"})
        profile = _group(alice, project.name, "profile", {"account_id": "bigint", "age": "integer", "country": "text",
                                                           "segment": "text", "is_business": "boolean"})
        history, latest = [], []
        for account in range(1, 41):
            for days in (30, 20, 10):
                history.append((account, rng.randint(0, 50), rng.random() * 900, rng.random() * 5000,
                                NOW - dt.timedelta(days=days)))
            latest.append((account, rng.randint(0, 50), rng.random() * 900, rng.random() * 5000,
                           NOW - dt.timedelta(hours=1)))
        _commit(alice, activity, ["account_id", "tx_count", "amount_7d", "balance"], history)
        _commit(alice, activity, ["account_id", "tx_count", "amount_7d", "balance"], latest)
        _commit(alice, profile, ["account_id", "age", "country", "segment", "is_business"],
                [(a, 20 + a % 50, rng.choice(["DE", "FR", "NL"]), rng.choice(["retail", "sme", "corp"]), a % 3 == 0,
                  NOW - dt.timedelta(days=60)) for a in range(1, 41)])
    project.groups = {"activity": activity, "profile": profile}
    return project


def _create_view(conn: psycopg.Connection, name: str = "scoring", **options: Any) -> dict[str, Any]:
    return conn.execute(
        "select to_jsonb(v) from fstore.create_feature_view(%s, %s, p_label => array['is_fraud'], "
        "p_passed_features => %s::jsonb, p_transformations => %s::jsonb, p_options => %s::jsonb) v",
        (name, ["activity:*", "profile:age", "profile:country", "profile:segment", "profile:is_business"],
         json.dumps([{"name": "amount", "type": "double precision"}]), json.dumps(VIEW_TRANSFORMS),
         json.dumps(options))).fetchone()[0]


def _spine(conn: psycopg.Connection, accounts: list[int], at: dt.datetime) -> None:
    conn.execute("drop table if exists pg_temp.spine")
    conn.execute("create temp table spine (account_id bigint, event_time timestamptz, amount float8, is_fraud int)")
    with conn.cursor().copy("copy spine from stdin") as copy:
        for i, account in enumerate(accounts):
            copy.write_row((account, at, 5.0 * (i + 1) ** 1.7, i % 2))


def test_the_served_vector_is_the_training_row_transformed_alike(bank: Any) -> None:
    with bank.connect("bob") as bob:
        view = _create_view(bob)
        assert view["features"][0] == "activity@1:tx_count" and view["serving_keys"] == ["account_id"]
        accounts = random.Random(3).sample(range(1, 41), 25)
        _spine(bob, accounts, NOW)
        td = bob.execute("select to_jsonb(t) from fstore.create_feature_view_training_table('scoring', "
                         "'pg_temp.spine'::regclass) t").fetchone()[0]
        assert td["name"] == "scoring_v1" and td["rows"] == 25
        query = bob.execute("select fstore.feature_view_training_sql('scoring')").fetchone()[0]
        cur = bob.execute(query)
        columns = [c.name for c in cur.description]
        training = cur.fetchall()
        assert columns[:4] == ["tx_count", "amount_7d", "balance", "age"]
        assert {"country=DE", "country=FR", "country=NL"} <= set(columns) and columns[-1] == "is_fraud"
        spine_amounts = {a: 5.0 * (i + 1) ** 1.7 for i, a in enumerate(accounts)}
        for account, row in zip(accounts, training):
            served = bob.execute("select fstore.feature_vector('scoring', %s::jsonb, %s::jsonb)",
                                 (json.dumps({"account_id": account}), json.dumps({"amount": spine_amounts[account]}))
                                 ).fetchone()[0]
            expected = list(row[:-1])  # without the label
            assert len(served) == len(expected), (columns, served)
            for name, a, b in zip(columns, served, expected):
                assert (a is None and b is None) or math.isclose(a, b, rel_tol=0, abs_tol=1e-12), (account, name, a, b)


def test_parameters_are_fitted_on_the_training_split_alone(bank: Any) -> None:
    with bank.connect("bob") as bob:
        _create_view(bob)
        _spine(bob, list(range(1, 41)), NOW)
        td = bob.execute("select to_jsonb(t) from fstore.create_feature_view_training_table('scoring', "
                         "'pg_temp.spine'::regclass, '{\"train\": 0.5, \"test\": 0.5}', 11) t").fetchone()[0]
        fit = bob.execute("select params, fitted_on, fitted_rows from fstore.feature_view_fits "
                          "where training_dataset_id = %s", (td["id"],)).fetchone()
        params, fitted_on, fitted_rows = fit
        table = f"{bank.name}.{td['table_name']}"
        train = bob.execute(f"select avg(tx_count::float8), stddev_pop(tx_count::float8), min(balance), max(balance), "
                            f"count(*) from {table} where split = 'train'").fetchone()
        everything = bob.execute(f"select avg(tx_count::float8) from {table}").fetchone()[0]
        assert fitted_on == "train" and fitted_rows == train[4] and 0 < train[4] < 40
        assert math.isclose(params["tx_count"]["mean"], train[0], abs_tol=1e-12)
        assert math.isclose(params["tx_count"]["std"], train[1], abs_tol=1e-12)
        assert params["balance"] == {"min": train[2], "range": train[3] - train[2]}
        assert not math.isclose(params["tx_count"]["mean"], everything, abs_tol=1e-9)  # the test rows did not count
        # a fitted version never changes: fitting again returns the same parameters
        view_id = bob.execute("select id from fstore.feature_views where name = 'scoring'").fetchone()[0]
        again = bob.execute("select params from fstore.fit_feature_view(%s, %s)", (view_id, td["id"])).fetchone()[0]
        assert again == params


def test_a_view_keeps_serving_its_pinned_version_until_it_is_bumped(bank: Any) -> None:
    with bank.connect("alice") as alice:
        view = _create_view(alice)
        _spine(alice, [1, 2], NOW)
        alice.execute("select fstore.create_feature_view_training_table('scoring', 'pg_temp.spine'::regclass)")
        before = alice.execute("select fstore.feature_vector('scoring', '{\"account_id\": 1}', '{\"amount\": 3}')"
                               ).fetchone()[0]
        with alice.transaction():  # version 2 of activity, with other rows
            alice.execute(f"set local role {bank.name}__owner")
            alice.execute("select fstore.create_feature_group(%s, 'activity', 2, array['account_id'], 'event_time', "
                          "'[{\"name\": \"account_id\", \"type\": \"bigint\"}, {\"name\": \"tx_count\", \"type\": \"integer\"}]'"
                          "::jsonb, true)", (bank.name,))
        assert alice.execute("select fstore.feature_vector('scoring', '{\"account_id\": 1}', '{\"amount\": 3}')"
                             ).fetchone()[0] == before
        assert view["features"][0] == "activity@1:tx_count"


def test_a_missing_entity_gives_nulls_or_a_clear_error(bank: Any) -> None:
    with bank.connect("bob") as bob:
        _create_view(bob)
        _spine(bob, [1], NOW)
        bob.execute("select fstore.create_feature_view_training_table('scoring', 'pg_temp.spine'::regclass)")
        missing = bob.execute("select fstore.feature_vector('scoring', '{\"account_id\": 999}', '{\"amount\": 5}')"
                              ).fetchone()[0]
        assert missing[0] is None  # tx_count of nobody
        with pytest.raises(psycopg.errors.NoDataFound, match="no online row for"):
            bob.execute("select fstore.feature_vector('scoring', '{\"account_id\": 999}', '{}', p_strict => true)")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="needs the serving key account_id"):
            bob.execute("select fstore.feature_vector('scoring', '{\"acct\": 1}')")


def test_views_are_refused_without_a_share_and_stop_when_it_ends(bank: Any, make_project: Any) -> None:
    partner = make_project(owner="pia", scientists=["sam"], prefix="partner")
    with partner.connect("sam") as sam:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"project {bank.name} is not shared"):
            sam.execute("select fstore.create_feature_view('stolen', %s)", ([f"{bank.name}.activity:*"],))
    with bank.connect("alice") as alice:
        projects.share_project(alice, bank.name, partner.name)
    with partner.connect("sam") as sam:
        sam.execute("select fstore.create_feature_view('shared', %s, p_transformations => '{\"tx_count\": {\"fn\": \"log1p\"}}',"
                    " p_options => '{\"log_rate\": 1}')", ([f"{bank.name}.activity:tx_count"],))
        _spine(sam, [1, 2, 3], NOW)
        sam.execute("select fstore.create_feature_view_training_table('shared', 'pg_temp.spine'::regclass)")
        assert sam.execute("select fstore.feature_vector('shared', '{\"account_id\": 2}')").fetchone()[0][0] is not None
        sam.commit()
        served = "select count(*) from fstore.served_vectors"
        with partner.connect("pia") as pia:  # the partner's log holds the source's feature values ...
            assert pia.execute(served).fetchone()[0] == 1
        with bank.connect("alice") as alice:
            projects.unshare_project(alice, bank.name, partner.name)
        with partner.connect("pia") as pia:  # ... and goes with the share
            assert pia.execute(served).fetchone()[0] == 0
            assert pia.execute("select count(*) from fstore.audit_log where action = 'drop_served_vectors'"
                               ).fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"uses feature groups of project {bank.name}"):
            sam.execute("select fstore.feature_vector('shared', '{\"account_id\": 2}')")


def test_bad_views_are_refused_with_the_reason(bank: Any) -> None:
    with bank.connect("bob") as bob:
        for features, transforms, passed, message in [
            (["profile:country"], {}, [], "feature country is categorical .*one_hot or label_encoder"),
            (["activity:tx_count"], {"tx_count": {"fn": "sqrt"}}, [], "sqrt.* is not one of"),
            (["profile:country"], {"country": {"fn": "standard_scaler"}}, [], "needs a numeric column"),
            (["activity:tx_count"], {"tx_count": {"fn": "bucketize", "edges": [3, 1]}}, [], "increasing order"),
            (["activity:tx_count"], {"nope": {"fn": "log1p"}}, [], "the view has no feature nope"),
            (["activity:tx_count"], {}, [{"name": "amount", "type": "money"}], "passed feature amount has type"),
            (["activity:tx_count"], {}, [{"name": "account_id", "type": "bigint"}], "is a serving key or a label"),
        ]:
            with pytest.raises(psycopg.Error, match=message):
                bob.execute("select fstore.create_feature_view('bad', %s, p_passed_features => %s::jsonb, "
                            "p_transformations => %s::jsonb)", (features, json.dumps(passed), json.dumps(transforms)))


def test_served_vectors_are_logged_and_measured_against_training(bank: Any) -> None:
    with bank.connect("alice") as alice:
        _create_view(alice, "logged", log_rate=1.0)
        _spine(alice, list(range(1, 41)), NOW)
        alice.execute("select fstore.create_feature_view_training_table('logged', 'pg_temp.spine'::regclass)")
        for account in range(1, 21):
            alice.execute("select fstore.feature_vector('logged', %s::jsonb, '{\"amount\": 50}')",
                          (json.dumps({"account_id": account}),))
        logged = alice.execute("select count(*), bool_and(found), min(session_role) from fstore.served_vectors"
                               ).fetchone()
        assert logged == (20, True, bank.role("alice"))
        drift = {r[0]: r for r in alice.execute(
            'select "column", baseline_rows, current_rows, psi, ks, drifted from fstore.feature_view_drift(\'logged\')')}
        assert drift["tx_count"][1:3] == (40, 20) and drift["tx_count"][3] is not None
        assert drift["amount"][5] is True  # every request passed 50: far from the training amounts
    with bank.connect("bob") as bob:  # the log holds entities' feature values: Data Owners read it
        assert bob.execute("select count(*) from fstore.served_vectors").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="has served no logged vectors"):
            bob.execute("select * from fstore.feature_view_drift('logged')")


def test_a_share_partner_cannot_write_into_a_views_log(bank: Any, make_project: Any) -> None:
    partner = make_project(owner="pia", scientists=["sam"], prefix="partner")
    with bank.connect("alice") as alice:
        view = _create_view(alice, "logged", log_rate=1.0)
        projects.share_project(alice, bank.name, partner.name)
    with partner.connect("sam") as sam:
        assert sam.execute("select count(*) from fstore.feature_views where id = %s", (view["id"],)).fetchone()[0] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"only members of project {bank.name} log"):
            sam.execute("select fstore.log_served_vectors(%s, null, '[{\"keys\": {}, \"vector\": [1]}]')",
                        (view["id"],))


def test_a_reader_bound_by_a_row_policy_never_sees_a_fit_over_hidden_rows(bank: Any) -> None:
    """Fitted parameters show what rows hold (a one_hot vocabulary lists their values): bob,
    bound by a policy hiding NL, sees no fit made over NL rows and cannot serve with one; the
    fit he makes himself is over the rows he may read, and serves him."""
    with bank.connect("alice") as alice:
        policies.apply_policies(alice, bank.name, [
            policies.RowPolicy("no_nl", "profile", ("data_scientist",), "country <> 'NL'")])
        _create_view(alice)
        _spine(alice, list(range(1, 41)), NOW)
        alice.execute("select fstore.create_feature_view_training_table('scoring', 'pg_temp.spine'::regclass)")
        alices = alice.execute("select params->'country'->'vocabulary' from fstore.feature_view_fits").fetchall()
        assert alices == [(["DE", "FR", "NL"],)]
    with bank.connect("bob") as bob:
        assert bob.execute("select count(*) from fstore.feature_view_fits").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.NoDataFound, match="has no fitted training dataset"):
            bob.execute("select fstore.feature_vector('scoring', '{\"account_id\": 1}', '{\"amount\": 1}')")
        bob.rollback()
        with pytest.raises(psycopg.errors.NoDataFound, match="has no fitted training dataset"):
            bob.execute("select fstore.feature_view_training_sql('scoring')")
        bob.rollback()
        _spine(bob, list(range(1, 41)), NOW)
        bob.execute("select fstore.create_feature_view_training_table('scoring', 'pg_temp.spine'::regclass)")
        bobs = bob.execute("select params->'country'->'vocabulary' from fstore.feature_view_fits").fetchall()
        assert bobs == [(["DE", "FR"],)]
        vector = bob.execute("select fstore.feature_vector('scoring', '{\"account_id\": 1}', '{\"amount\": 1}')")
        assert vector.fetchone()[0] is not None
    with bank.connect("alice") as alice:  # the owner sees both fits
        assert alice.execute("select count(*) from fstore.feature_view_fits").fetchone()[0] == 2
