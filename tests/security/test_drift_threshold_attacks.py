"""Attacks on stored drift thresholds: only a Data Owner of the group's project stores
them (through ``fstore.set_drift_thresholds``, never by writing the catalog), nobody else
(a Data Scientist, share partners read-only and read-write, another project, the admin),
and hostile names or values are refused by name before anything is stored."""

from __future__ import annotations

import pytest

from tests.security.attack import Case, allow, deny, run_case

NOT_DATA_OWNER = "only a Data Owner of project {a} may"
LIMITS = '{"amount": {"psi": 0.1, "wasserstein": 5}}'


def set_limits(thresholds: str) -> tuple[str, tuple[object, ...]]:
    return ("select fstore.set_drift_thresholds(%s, %s::jsonb)", ("{fg}", thresholds))


CASES: list[Case] = [
    deny("scientist_sets_drift_thresholds", "bob", set_limits(LIMITS), match=NOT_DATA_OWNER),
    deny("read_share_owner_sets_drift_thresholds", "carol", set_limits(LIMITS), match=NOT_DATA_OWNER),
    deny("read_share_scientist_sets_drift_thresholds", "dave", set_limits(LIMITS), match=NOT_DATA_OWNER),
    deny("write_share_owner_sets_drift_thresholds", "frank", set_limits(LIMITS), match=NOT_DATA_OWNER),
    deny("write_share_scientist_sets_drift_thresholds", "gina", set_limits(LIMITS), match=NOT_DATA_OWNER),
    deny("unshared_sets_drift_thresholds", "hank", set_limits(LIMITS), state="P0002",
         match="does not exist or is not visible"),
    deny("admin_sets_drift_thresholds", "admin", set_limits(LIMITS), state="P0002",
         match="does not exist or is not visible"),
    # the catalog is written by the control plane only, not by its readers or the owner role
    deny("owner_writes_thresholds_into_the_catalog", "alice",
         "update fstore.feature_groups set options = options || '{\"drift_thresholds\": {}}' where id = {fg}",
         match="permission denied for table feature_groups"),
    deny("owner_role_writes_thresholds_into_the_catalog", "alice", "begin", "set local role {a}__owner",
         "update fstore.feature_groups set options = '{}' where id = {fg}",
         match="permission denied for table feature_groups"),
    # hostile thresholds: names and values checked, named, nothing stored
    deny("thresholds_name_an_injected_feature", "alice", set_limits('{"amount\'; drop table t; --": {"psi": 1}}'),
         state="42703", match="does not have"),
    deny("thresholds_name_a_key", "alice", set_limits('{"id": {"psi": 1}}'), state="42703", match="does not have"),
    deny("thresholds_name_an_unknown_measure", "alice", set_limits('{"amount": {"pg_sleep(10)": 1}}'),
         state="22023", match="unknown measure"),
    deny("thresholds_carry_sql_as_a_value", "alice", set_limits('{"amount": {"psi": "1); drop table t; --"}}'),
         state="22023", match="must be a number"),
    deny("thresholds_carry_an_object_as_a_value", "alice", set_limits('{"amount": {"psi": {"x": 1}}}'),
         state="22023", match="must be a number"),
    deny("thresholds_not_an_object", "alice", set_limits('[1, 2]'), state="22023", match="must be an object"),
    deny("drift_call_thresholds_injected", "bob",
         ("select * from fstore.feature_drift(%s, %s::jsonb, %s::jsonb, p_thresholds => %s::jsonb)",
          ("{fg}", '{"commit": 1}', '{"after_commit": 1}', '{"amount": {"psi": "0 or true"}}')),
         state="22023", match="must be a number"),
    # the Data Owner stores them (rolled back by the session reset); readers see them in the catalog
    allow("owner_sets_drift_thresholds", "alice", "begin", set_limits(LIMITS),
          ("select options->'drift_thresholds' = %s::jsonb from fstore.feature_groups where id = {fg}", (LIMITS,)),
          rows=[(True,)]),
    allow("scientist_checks_thresholds", "bob", ("select fstore.check_drift_thresholds(%s, %s::jsonb) = %s::jsonb",
                                                  ("{fg}", LIMITS, LIMITS)), rows=[(True,)]),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_drift_threshold_attack(case: Case, world, tally) -> None:
    run_case(world.conn(case.actor), case, world.names)
    tally.add(case.kind, case.id)
