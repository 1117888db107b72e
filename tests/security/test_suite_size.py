"""The attack tables themselves: distinct case ids, and at least 60 refusals."""

from __future__ import annotations

from collections import Counter

from tests.security import test_control_attacks, test_data_attacks, test_tenant_code_attacks


def test_attack_tables_are_distinct_and_large_enough() -> None:
    cases = test_data_attacks.CASES + test_control_attacks.CASES + test_tenant_code_attacks.CASES
    duplicates = [case_id for case_id, n in Counter(c.id for c in cases).items() if n > 1]
    assert duplicates == []
    kinds = Counter(case.kind for case in cases)
    assert kinds["denied"] >= 60 and kinds["allowed"] >= 20, kinds
