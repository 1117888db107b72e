"""Sensitive features, as a Data Owner marks them and a Data Scientist lives with them: marked in
Python, SQL or the CLI; every version of the group carries the mark (one made later too);
unmarking restores the column everywhere; a project shared after the mark, a feature added
after it, a grant from the policy file, statistics of a reader bound by a row policy. Each
person connects with their own certificate.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest
import yaml

import fstore
from fstore import projects, sensitive
from fstore.home import FstoreHome
from tests.cli.conftest import Cli

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
ROWS = [{"account_id": i, "country": "DE" if i % 2 else "FR", "is_pep": i == 3, "event_time": T0}
        for i in range(1, 9)]
SPINE = pa.table({"account_id": [3, 4], "event_time": [T0 + dt.timedelta(days=1)] * 2})
REFUSED = "permission denied for feature is_pep of feature group"


def _profile(fs: fstore.FeatureStore, version: int | None = None) -> Any:
    fg = fs.create_feature_group("profile", version, keys=["account_id"], online=True, features={
        "account_id": "bigint", "country": "text", "is_pep": "boolean"})
    fg.insert(pa.Table.from_pylist(ROWS))
    return fg


def _bob_reads_is_pep(bob: fstore.FeatureStore, ref: str = "profile") -> bool:
    """Whether bob's point-in-time join and online lookup of is_pep work (both, or neither)."""
    try:
        pit = bob.get_historical_features(SPINE, [f"{ref}:is_pep"]).column("is_pep").to_pylist()
    except fstore.PermissionDenied as exc:
        assert REFUSED in str(exc)
        with pytest.raises(fstore.PermissionDenied, match=REFUSED):
            bob.get_online_features([f"{ref}:*"], {"account_id": 3})
        return False
    assert pit == [True, False]
    assert bob.get_online_features([f"{ref}:*"], {"account_id": 3})["is_pep"] is True
    return True


def test_marked_unmarked_and_carried_to_new_versions(home: FstoreHome, make_project) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    with fstore.connect(a.name, "alice", home=home) as alice, fstore.connect(a.name, "bob", home=home) as bob:
        fg = _profile(alice)
        assert fg.sensitive_features == [] and _bob_reads_is_pep(bob)
        fg = fg.set_sensitive("is_pep")
        assert fg.sensitive_features == ["is_pep"]
        assert [f.sensitive for f in fg.features] == [False, False, True]
        assert not _bob_reads_is_pep(bob)  # its cached lookup plan too: resolved again, refused by name
        # the other features keep working for bob, through the join and online
        assert bob.get_historical_features(SPINE, ["profile:country"]).column("country").to_pylist() == ["DE", "FR"]
        assert bob.get_online_features(["profile:country"], {"account_id": 4})["country"] == "FR"
        # a new version carries the mark, from its first commit on
        v2 = _profile(alice, 2)
        assert v2.version == 2 and v2.sensitive_features == ["is_pep"]
        assert not _bob_reads_is_pep(bob, "profile@2") and not _bob_reads_is_pep(bob, "profile@1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            bob.conn.execute(f"select is_pep from {a.name}.profile__v2__online")
        # the Data Owner reads it in every version
        assert alice.get_historical_features(SPINE, ["profile@2:is_pep"]).column("is_pep").to_pylist() == [True, False]
        # unmarked (by SQL this time): every version is readable again, and so is its statistic
        assert alice.conn.execute("select fstore.set_sensitive('profile', array['is_pep'], false)").fetchone()[0] == []
        assert _bob_reads_is_pep(bob, "profile@1") and _bob_reads_is_pep(bob, "profile@2")
        assert "is_pep" in bob.get_feature_group("profile").statistics()
        assert bob.conn.execute(f"select count(*) from {a.name}.profile__v2 where is_pep").fetchone()[0] == 1
        audit = [r[0] for r in alice.conn.execute(
            "select action from fstore.audit_log where project = %s and action like '%%sensitive' order by id",
            (a.name,))]
        assert audit == ["mark_sensitive", "unmark_sensitive"]


def test_only_data_owners_mark_and_bad_marks_are_named(home: FstoreHome, make_project) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    with fstore.connect(a.name, "alice", home=home) as alice, fstore.connect(a.name, "bob", home=home) as bob:
        _profile(alice)
        with pytest.raises(fstore.PermissionDenied, match=f"only a Data Owner of project {a.name}"):
            bob.get_feature_group("profile").set_sensitive(["is_pep"])
        with pytest.raises(fstore.NotFound, match="feature nope does not exist in feature group"):
            alice.get_feature_group("profile").set_sensitive(["nope"])
        with pytest.raises(fstore.InvalidInput, match="account_id is an entity key"):
            alice.get_feature_group("profile").set_sensitive(["account_id"])
        with pytest.raises(psycopg.errors.NoDataFound, match="feature group .*ghost does not exist"):
            alice.conn.execute("select fstore.set_sensitive('ghost', array['x'])")


def test_a_share_made_after_the_mark_and_a_feature_added_after_it(home: FstoreHome, make_project) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    b = make_project(owner="carol")
    with fstore.connect(a.name, "alice", home=home) as alice:
        _profile(alice).set_sensitive(["is_pep"])
        projects.share_project(alice.conn, a.name, b.name)
    with fstore.connect(b.name, "carol", home=home) as carol:  # the share's grants leave is_pep out
        assert not _bob_reads_is_pep(carol, f"{a.name}.profile")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            carol.conn.execute(f"select is_pep from {a.name}.profile__v1")
    with fstore.connect(a.name, "alice", home=home) as alice:  # a feature added later is readable
        fg = alice.get_feature_group("profile").add_features({"segment": "text"})
        fg.insert(pa.Table.from_pylist([{**r, "segment": "s", "event_time": T0 + dt.timedelta(hours=1)}
                                        for r in ROWS]))
    with fstore.connect(b.name, "carol", home=home) as carol:
        table = carol.get_historical_features(SPINE, [f"{a.name}.profile:segment", f"{a.name}.profile:country"])
        assert table.column("segment").to_pylist() == ["s", "s"]
        assert not _bob_reads_is_pep(carol, f"{a.name}.profile")
    with fstore.connect(a.name, "bob", home=home) as bob:
        assert bob.get_online_features(["profile:segment"], {"account_id": 1})["segment"] == "s"


def test_grants_from_the_policy_file_and_a_reader_bound_by_a_row_policy(home: FstoreHome, make_project,
                                                                        tmp_path: Path) -> None:
    a = make_project(owner="alice", scientists=["bob", "erin"])
    path = tmp_path / "policies.yml"
    path.write_text(yaml.safe_dump({
        "policies": [{"name": "no_fr", "table": "profile", "roles": ["data_scientist"], "using": "country <> 'FR'"}],
        "sensitive_grants": [{"name": "compliance", "features": ["profile:is_pep"], "roles": ["erin"]}]}))
    cli = Cli(home)
    with fstore.connect(a.name, "alice", home=home) as alice:
        _profile(alice)
    cli.run("fg", "set-sensitive", "profile", "is_pep", "--as", f"{a.name}__alice")
    result = cli.run("fg", "set-sensitive", "profile", "is_pep", "--as", f"{a.name}__bob", code=1)
    assert f"only a Data Owner of project {a.name}" in result.stderr
    assert "1 sensitive grant" in cli.run("policy", "apply", a.name, "--file", str(path),
                                          "--as", f"{a.name}__alice").stdout
    with fstore.connect(a.name, "erin", home=home) as erin:
        assert erin.get_historical_features(SPINE, ["profile:is_pep"]).column("is_pep").to_pylist() == [True, None]
    with fstore.connect(a.name, "bob", home=home) as bob:
        assert not _bob_reads_is_pep(bob)
        stats = bob.get_feature_group("profile").statistics()  # bound by no_fr: computed over his rows
        assert set(stats) == {"account_id", "country", "event_time"}
        assert stats["account_id"]["rows"] == 4 and stats["country"]["scope"] == "visible rows"
    # the grant goes with the next apply that lacks it
    path.write_text(yaml.safe_dump({"policies": []}))
    cli.run("policy", "apply", a.name, "--file", str(path), "--as", f"{a.name}__alice")
    with fstore.connect(a.name, "erin", home=home) as erin:
        with pytest.raises(fstore.PermissionDenied, match=REFUSED):
            erin.get_historical_features(SPINE, ["profile:is_pep"])
    out = json.loads(cli.run("fg", "set-sensitive", "profile", "is_pep", "--off", "--json",
                             "--as", f"{a.name}__alice").stdout)
    assert out == {"feature_group": "profile", "sensitive": []}


def test_bad_grants_are_named(home: FstoreHome, make_project, tmp_path: Path) -> None:
    a = make_project(owner="alice", scientists=["bob"])
    with fstore.connect(a.name, "alice", home=home) as alice:
        _profile(alice)
        for grant, message in (
                ({"name": "g", "features": ["profile:is_pep"], "roles": ["mallory"]}, "'mallory' is not a member"),
                ({"name": "g", "features": ["profile"], "roles": ["bob"]}, "invalid feature 'profile'"),
                ({"name": "g", "features": ["profile:nope"], "roles": ["bob"]}, "feature nope does not exist")):
            with pytest.raises(psycopg.Error, match=message):
                alice.conn.execute("select fstore.set_sensitive_grants(%s, %s::jsonb)", (a.name, json.dumps([grant])))
    bad = tmp_path / "bad.yml"
    bad.write_text("sensitive_grants:\n  - {name: g, features: ['profile:is_pep'], roles: []}\n")
    with pytest.raises(fstore.InvalidInput, match="roles must be a non-empty list"):
        sensitive.load_sensitive_grants(bad)
