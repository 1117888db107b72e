#!/usr/bin/env bash
# Set everything up, then run the whole test suite against a real TLS PostgreSQL, and then
# the suite's core once more against a Citus coordinator with two workers (docs/cluster.md).
# With test paths as arguments, only those run, on the single node.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

# what must hold on a cluster too (issue 12): point-in-time reference and isolation, the
# commit pipeline and its crash test, online serving, exports, the tenancy walkthrough, and
# the core of the attack suite; erasure and feature-view serving
CLUSTER_SUITE=(
  tests/retrieval/test_pit_reference.py tests/retrieval/test_pit_isolation.py
  tests/featuregroups/test_commit_pipeline.py tests/featuregroups/test_crash.py
  tests/retrieval/test_online.py tests/retrieval/test_export.py
  tests/platform/test_tenancy_walkthrough.py
  tests/security/test_data_attacks.py tests/security/test_row_policy_attacks.py
  tests/security/test_control_attacks.py tests/security/test_certificate_attacks.py
  tests/security/test_membership_lifecycle.py
  tests/governance/test_erasure.py tests/featureviews/test_feature_views_python.py
)

# tests that mostly wait (pg_cron schedules by the minute): a second pytest process runs them
# beside the rest of the suite, on its own server, and its output follows the suite's
BESIDE=(tests/monitors)

paths=0
for arg in "$@"; do [[ "$arg" == -* ]] || paths=1; done
status=0
if [[ $paths == 0 ]]; then
  beside_log=$(mktemp)
  .venv/bin/python -m pytest "$@" "${BESIDE[@]}" >"$beside_log" 2>&1 &
  beside_pid=$!
  .venv/bin/python -m pytest "$@" "${BESIDE[@]/#/--ignore=}" || status=$?
  wait "$beside_pid" || status=$?
  echo "== ${BESIDE[*]}, run beside the suite =="
  cat "$beside_log"
  rm -f "$beside_log"
else
  .venv/bin/python -m pytest "$@" || status=$?
fi
if [[ $paths == 0 ]]; then
  echo "== the suite's core on a Citus coordinator with 2 workers (FSTORE_TEST_CLUSTER=2) =="
  FSTORE_TEST_CLUSTER=2 .venv/bin/python -m pytest "$@" "${CLUSTER_SUITE[@]}" || status=$?
fi
exit $status
