"""The README's main job on a cluster, as a new user runs it: `fstore demo --workers 2` in a
fresh home, then `fstore cluster status`, then `fstore server stop`.

Feature groups are distributed by default on a cluster, but the demo's four groups are keyed
by ``account_id``, which its entity policy ``hide_pep_accounts`` (policies/fraud.yml, declared
before dbt creates the groups) governs: Citus allows no subquery in a distributed table's
policies, so those groups stay on the coordinator, where the policy holds (docs/cluster.md,
"Data placement"). The dbt path of distributed groups on a cluster is tested by
``FSTORE_TEST_CLUSTER=2 pytest tests/dbt/test_materialization.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fstore import cluster
from fstore.connection import connect_operator
from fstore.demo import FEATURE_GROUPS
from fstore.home import FstoreHome
from fstore.sandbox import free_port


def _fstore(home: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FSTORE_HOME": str(home), "PGSERVICEFILE": str(home / "pg_service.conf")}
    return subprocess.run([sys.executable, "-m", "fstore", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_demo_runs_on_a_fresh_two_worker_cluster() -> None:
    if not cluster.citus_installed():
        pytest.skip("Citus is not installed: run scripts/setup.sh")
    home = Path(tempfile.mkdtemp(prefix="fcl-demo-", dir="/tmp"))
    try:
        # its own port: the demo's default (55433) may be another home's on a shared machine
        demo = _fstore(home, "demo", "--workers", "2", "--transactions", "3000", "--port", str(free_port()))
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "a Citus coordinator with 2 workers" in demo.stdout
        assert "11. the cluster" in demo.stdout and "done" in demo.stdout
        status = _fstore(home, "cluster", "status", "--json")
        assert status.returncode == 0, status.stderr
        nodes = json.loads(status.stdout)["nodes"]
        workers = [n for n in nodes if n["name"] != "coordinator"]
        assert [w["name"] for w in workers] == ["worker1", "worker2"]
        assert all(w["healthy"] and w["running"] for w in workers), workers
        with connect_operator(FstoreHome(home), autocommit=True) as op:
            placed = dict(op.execute(
                "select g.name, fstore.is_distributed(format('%I.%I', g.project, g.offline_table)::regclass)"
                "       or (g.online and fstore.is_distributed(format('%I.%I', g.project, g.online_table)::regclass))"
                "  from fstore.feature_groups g where g.project = 'fraud'").fetchall())
            governing = op.execute("select name, entity_key from fstore.row_policies where project = 'fraud'"
                                   ).fetchall()
        assert governing == [("hide_pep_accounts", "account_id")]
        # kept on the coordinator by design: the entity policy could not hold on shards
        assert placed == {name: False for name in FEATURE_GROUPS}, placed
    finally:
        _fstore(home, "server", "stop", timeout=120)
        shutil.rmtree(home, ignore_errors=True)
