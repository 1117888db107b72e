"""The README's main job on a cluster, as a new user runs it: `fstore demo --workers 2` in a
fresh home, then `fstore cluster status`, then `fstore server stop`."""

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


def _fstore(home: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FSTORE_HOME": str(home), "PGSERVICEFILE": str(home / "pg_service.conf")}
    return subprocess.run([sys.executable, "-m", "fstore", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_demo_runs_on_a_fresh_two_worker_cluster() -> None:
    if not cluster.citus_installed():
        pytest.skip("Citus is not installed: run scripts/setup.sh")
    home = Path(tempfile.mkdtemp(prefix="fcl-demo-", dir="/tmp"))
    try:
        demo = _fstore(home, "demo", "--workers", "2", "--transactions", "3000")
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "a Citus coordinator with 2 workers" in demo.stdout
        assert "11. the cluster" in demo.stdout and "done" in demo.stdout
        status = _fstore(home, "cluster", "status", "--json")
        assert status.returncode == 0, status.stderr
        nodes = json.loads(status.stdout)["nodes"]
        workers = [n for n in nodes if n["name"] != "coordinator"]
        assert [w["name"] for w in workers] == ["worker1", "worker2"]
        assert all(w["healthy"] and w["running"] for w in workers), workers
    finally:
        _fstore(home, "server", "stop", timeout=120)
        shutil.rmtree(home, ignore_errors=True)
