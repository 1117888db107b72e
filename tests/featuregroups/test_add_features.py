"""Adding features to a version: the one schema change that needs no new version.

A Data Owner adds columns (offline and online, nullable); earlier rows read NULL, new
commits fill them, the point-in-time join and online lookups serve them. A Data
Scientist trying the same, through the API or straight in SQL with their own
certificate, is refused and changes nothing.
"""

from __future__ import annotations

import pandas as pd
import psycopg
import pytest
from click.testing import CliRunner

from fstore import Conflict, InvalidInput, NotFound, PermissionDenied
from fstore.cli import main
from tests.featuregroups.conftest import ACTIVITY_TYPES, activity_frame


def test_a_data_owner_adds_a_feature_and_later_commits_fill_it(alice) -> None:
    fg = alice.create_feature_group("grow", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True)
    first = activity_frame(rows=40)
    fg.insert(first)
    fg = fg.add_features({"risk": {"type": "double precision", "description": "model score"}})
    assert [f.name for f in fg.features][-1] == "risk"
    assert fg.features[-1].description == "model score" and fg.features[-1].type == "double precision"
    assert fg.read().column("risk").null_count == 40  # history reads NULL

    later = activity_frame(rows=10, seed=11)
    later["event_time"] = later["event_time"] + pd.Timedelta(days=60)  # newer than everything before
    later["risk"] = 0.5
    fg.insert(later)
    offline = fg.read().to_pandas()
    assert offline["risk"].notna().sum() == 10
    online = fg.read(online=True).to_pandas().set_index("account_id")
    assert set(online.loc[later["account_id"].unique(), "risk"]) == {0.5}

    spine = pd.DataFrame({"account_id": later["account_id"][:3],
                          "event_time": later["event_time"][:3] + pd.Timedelta(seconds=1)})
    training = alice.get_historical_features(spine, ["grow:risk"]).to_pandas()
    assert list(training["risk"]) == [0.5, 0.5, 0.5]
    served = alice.get_online_features(["grow:risk"], [{"account_id": int(later["account_id"][0])}])
    assert served.column("risk").to_pylist() == [0.5]


def test_adding_is_refused_with_the_reason(alice) -> None:
    fg = alice.create_feature_group("fixed", 1, keys=["account_id"], features=ACTIVITY_TYPES)
    with pytest.raises(Conflict, match="already has a column amount"):
        fg.add_features({"amount": "double precision"})
    with pytest.raises(Conflict, match="already has a column event_time"):
        fg.add_features({"event_time": "timestamptz"})
    with pytest.raises(NotFound, match="column bad has unknown type 'no_such_type'"):
        fg.add_features({"bad": "no_such_type"})
    with pytest.raises(NotFound, match="column x has unknown type"):
        fg.add_features({"x": "int; drop table fstore.features"})
    with pytest.raises(InvalidInput):
        fg.add_features({})
    assert [f.name for f in fg.refresh().features] == [f.name for f in fg.features]  # nothing half-added


def test_a_data_scientist_may_not_add_features(alice, bob, fraud) -> None:
    alice.create_feature_group("owned", 1, keys=["account_id"], features=ACTIVITY_TYPES, online=True)
    group = bob.get_feature_group("owned")
    with pytest.raises(PermissionDenied, match="only its Data Owners"):
        group.add_features({"sneaky": "text"})
    # straight in SQL with bob's own certificate: the function refuses him (not the owner role) ...
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="SET ROLE"):
        bob.conn.execute("select fstore.add_features(%s, '[{\"name\": \"sneaky\", \"type\": \"text\"}]')",
                         (group.id,))
    bob.conn.rollback()
    # ... the catalog half alone refuses him too, and so does the table itself
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        bob.conn.execute("select fstore.register_added_features(%s, '[{\"name\": \"account_id\", \"type\": \"text\"}]')",
                         (group.id,))
    bob.conn.rollback()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        bob.conn.execute(f'alter table "{fraud.name}".owned__v1 add column sneaky text')
    bob.conn.rollback()
    assert "sneaky" not in [f.name for f in alice.get_feature_group("owned").features]


def test_cli_add_features(fraud, home, alice) -> None:
    alice.create_feature_group("cli_grow", 1, keys=["account_id"], features=ACTIVITY_TYPES)
    base = ["--home", str(home.root), "fg", "add-features", "cli_grow"]
    result = CliRunner().invoke(main, [*base, "risk=double precision", "--as", fraud.role("alice")])
    assert result.exit_code == 0, result.output
    assert "added risk" in result.output
    assert alice.get_feature_group("cli_grow").features[-1].name == "risk"

    refused = CliRunner().invoke(main, [*base, "other=text", "--as", fraud.role("bob")])
    assert refused.exit_code == 1 and "only its Data Owners" in " ".join(refused.output.split())
    malformed = CliRunner().invoke(main, [*base, "nocolon", "--as", fraud.role("alice")])
    assert malformed.exit_code == 2 and "COLUMN=TYPE" in malformed.output
