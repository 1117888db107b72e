"""dbt as a project-user: generated profiles, runs (each in a process of its own), and lineage.

``dbt run`` connects with the person's own certificate. A Data Owner's profile
sets ``role: PROJECT__owner`` (dbt runs ``set role`` at connect) so ordinary dbt
models create tables and views the project owns; the ``feature_group``
materialization of fstore's dbt package (``dbt_package/``, installed by a project's
``packages.yml``) then acts as the person for reads and commits and as the owner
only to create a new version's tables. A Data Scientist's profile has no owner
role, and the database refuses their commit. The demo's project (``dbt_project/``)
installs the package like any other.

Example::

    home = FstoreHome.resolve()
    write_profile(home, "fraud", "alice")                  # ~/.fstore/dbt/fraud__alice/profiles.yml
    run = run_dbt(home, "fraud", "alice", ["run"])          # the demo project's feature groups
    run.raise_for_failure()
    run_dbt(home, "fraud", "alice", ["build"], "~/analytics")  # your own project, with the package
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from psycopg.types.json import Jsonb

from fstore.connection import material_for, open_psycopg
from fstore.errors import FstoreError, InvalidInput, NotFound, PermissionDenied, translated
from fstore.files import PRIVATE, write_atomic
from fstore.home import FstoreHome
from fstore.roles import group_role, project_user_role

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "dbt_package"  # the dbt package `fstore`
DEMO_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"  # the demo, which installs it
PROFILE_NAME = "fstore"
_NO_TARGET_FLAGS = frozenset({"debug", "deps", "clean", "init"})
_PACKAGE_FILES = ("packages.yml", "dependencies.yml")


def dbt_dir(home: FstoreHome, role: str) -> Path:
    """Where a role's generated profile, dbt target and logs live: ``$FSTORE_HOME/dbt/ROLE``."""
    return home.root / "dbt" / role


def is_data_owner(home: FstoreHome, role: str) -> bool:
    """Whether ``role`` may act as its project's owner role (asks the database)."""
    project = role.split("__", 1)[0]
    material = material_for(home, role)
    with translated(), open_psycopg(material, autocommit=True) as conn:
        row = conn.execute(
            "select pg_has_role(session_user, %s, 'MEMBER')", (group_role(project, "owner"),)
        ).fetchone()
    return bool(row and row[0])


def profile_for(home: FstoreHome, project: str, user: str) -> dict[str, Any]:
    """The dbt-postgres profile of ``project__user``: certificate login, schema = project.

    Data Owners get ``role: PROJECT__owner``; Data Scientists run as themselves.
    """
    role = project_user_role(project, user)
    profile = material_for(home, role).dbt_profile(PROFILE_NAME, schema=project)
    if is_data_owner(home, role):
        profile[PROFILE_NAME]["outputs"]["dev"]["role"] = group_role(project, "owner")
    return profile


def write_profile(home: FstoreHome, project: str, user: str, directory: str | Path | None = None) -> Path:
    """Write ``profiles.yml`` for ``project__user`` (default: :func:`dbt_dir`); returns its path.

    Example: ``write_profile(home, "fraud", "alice")`` then
    ``dbt run --profiles-dir ~/.fstore/dbt/fraud__alice --project-dir dbt_project``.
    """
    role = project_user_role(project, user)
    target = Path(directory) if directory is not None else dbt_dir(home, role)
    target.mkdir(parents=True, exist_ok=True)
    path = target / "profiles.yml"
    text = yaml.safe_dump(profile_for(home, project, user), sort_keys=False)
    return write_atomic(path, text, PRIVATE)


@dataclass
class NodeFailure:
    """A dbt node that did not succeed, with dbt's message (the database's words)."""

    unique_id: str
    status: str
    message: str


@dataclass
class DbtRun:
    """The outcome of :func:`run_dbt`."""

    success: bool
    args: list[str]
    target_path: Path
    result: Any = None  # runs, builds, tests: .results, each with .node.unique_id, .status, .message; ls: names
    exception: BaseException | None = None  # dbt's exception, as an FstoreError with its text
    failures: list[NodeFailure] = field(default_factory=list)
    lineage: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)  # what the models' macros logged (fstore's lines)

    def raise_for_failure(self) -> None:
        """Raise :class:`PermissionDenied` (a refusal) or :class:`FstoreError` if the run failed."""
        if self.success:
            return
        text = "; ".join(f"{f.unique_id}: {' '.join(f.message.split())}" for f in self.failures)
        if not text:
            text = str(self.exception) if self.exception else "dbt failed"
        if "permission denied" in text.lower():
            raise PermissionDenied(f"dbt {' '.join(self.args[:1])} refused: {text}")
        raise FstoreError(f"dbt {' '.join(self.args[:1])} failed: {text}")


def run_dbt(
    home: FstoreHome,
    project: str,
    user: str,
    args: list[str],
    project_dir: str | Path = DEMO_PROJECT_DIR,
    *,
    profiles_dir: str | Path | None = None,
    write_profile_first: bool = True,
    lineage: bool = True,
) -> DbtRun:
    """Run dbt as ``project__user`` with that user's certificate (in a child process).

    ``args`` is a dbt command line without ``dbt`` (``["run", "--select", "fraud"]``).
    The profile is (re)written first unless ``write_profile_first`` is false; target
    and logs go to :func:`dbt_dir`. A project whose ``packages.yml`` packages are not
    installed yet gets ``dbt deps`` first (:func:`install_packages`). After a run or
    build, the upstream tables parsed from each committed feature_group model's
    compiled SQL are added to its lineage.

    Example: ``run_dbt(home, "fraud", "alice", ["run"]).raise_for_failure()``
    """
    if not args:
        raise InvalidInput("give a dbt command, e.g. ['run']")
    role = project_user_role(project, user)
    workdir = dbt_dir(home, role)
    directory = Path(project_dir).expanduser().absolute()
    profiles = Path(profiles_dir) if profiles_dir is not None else workdir
    if write_profile_first:
        write_profile(home, project, user, profiles)
    elif not (profiles / "profiles.yml").exists():
        raise NotFound(f"no dbt profile in {profiles}: run `fstore dbt-profile {project} {user}`")
    if args[0] not in _NO_TARGET_FLAGS:
        install_packages(directory, profiles, workdir / "logs")
    target_path = workdir / "target"
    argv = list(args) + ["--project-dir", str(directory), "--profiles-dir", str(profiles)]
    if args[0] not in _NO_TARGET_FLAGS:
        argv += ["--target-path", str(target_path), "--log-path", str(workdir / "logs")]
    outcome, logs = _invoke(argv)
    run = DbtRun(success=bool(outcome.success), args=list(args), target_path=target_path,
                 result=outcome.result, exception=outcome.exception,
                 failures=_failures(outcome.result), logs=logs)
    if lineage and args[0] in ("run", "build") and (target_path / "run_results.json").exists():
        run.lineage = record_lineage(home, role, target_path)
    return run


def install_packages(project_dir: str | Path, profiles_dir: str | Path, log_dir: str | Path | None = None) -> bool:
    """``dbt deps`` for a project whose declared packages are not installed; True if it ran.

    "Not installed" is its ``packages-install-path`` (``dbt_packages``) missing. Other
    processes running dbt on the same project (the demo's, in one checkout) wait on a
    lock of the project directory rather than install it twice at once.

    Example: ``install_packages(DEMO_PROJECT_DIR, dbt_dir(home, "fraud__alice"))``
    """
    directory = Path(project_dir)
    if not (directory / "dbt_project.yml").exists() or not any((directory / n).exists() for n in _PACKAGE_FILES):
        return False  # not a dbt project (dbt says so), or one without packages
    config = yaml.safe_load((directory / "dbt_project.yml").read_text()) or {}
    installed = directory / config.get("packages-install-path", "dbt_packages")
    if installed.exists():
        return False
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if installed.exists():
            return False
        argv = ["deps", "--project-dir", str(directory), "--profiles-dir", str(profiles_dir)]
        outcome, _ = _invoke(argv + (["--log-path", str(log_dir)] if log_dir is not None else []))
    finally:
        os.close(fd)  # releases the lock
    if not outcome.success:
        raise FstoreError(f"dbt deps failed in {directory}: {outcome.exception or 'see the log above'}")
    return True


def _invoke(argv: list[str]) -> tuple[Any, list[str]]:
    """dbt in a child process (:mod:`fstore.dbt_process`): its outcome (``success``,
    ``result``, ``exception``) and the lines macros logged. dbt's own output goes to this
    process's stdout and stderr, as if dbt ran here."""
    with tempfile.TemporaryDirectory(prefix="fstore-dbt-") as scratch:
        summary_path = Path(scratch) / "summary.json"
        child = subprocess.run([sys.executable, "-m", "fstore.dbt_process", str(summary_path), *argv,
                                "--no-send-anonymous-usage-stats"], check=False)
        if not summary_path.exists():
            raise FstoreError(f"dbt {argv[0]} ended without a result (exit status {child.returncode})")
        summary = json.loads(summary_path.read_text())
    result = summary["result"]
    if isinstance(result, dict):
        result = SimpleNamespace(results=[
            SimpleNamespace(node=SimpleNamespace(unique_id=r["unique_id"]), status=r["status"], message=r["message"])
            for r in result["results"]])
    exception = FstoreError(summary["exception"]) if summary["exception"] else None
    return SimpleNamespace(success=summary["success"], result=result, exception=exception), summary["logs"]


def _failures(result: Any) -> list[NodeFailure]:
    failures = []
    for node_result in getattr(result, "results", None) or []:
        status = str(getattr(node_result, "status", ""))
        if status.lower() in ("error", "fail", "runtimeerr", "runstatus.error"):
            node = getattr(node_result, "node", None)
            message = (node_result.message or "").split("CONTEXT:", 1)[0].strip()
            failures.append(NodeFailure(getattr(node, "unique_id", "?"), status, message))
    return failures


def sql_relations(sql: str) -> list[str]:
    """Tables and views a SQL statement reads, as sorted ``schema.name`` (CTE names excluded).

    >>> sql_relations('with a as (select * from "db"."fraud"."tx") select * from a join public.b using (k)')
    ['fraud.tx', 'public.b']
    """
    from pglast import parse_sql
    from pglast.visitors import Visitor

    found: list[tuple[str | None, str]] = []
    ctes: set[str] = set()

    class _Relations(Visitor):  # type: ignore[misc]
        def visit_RangeVar(self, ancestors: Any, node: Any) -> None:
            found.append((node.schemaname, node.relname))

        def visit_CommonTableExpr(self, ancestors: Any, node: Any) -> None:
            ctes.add(node.ctename)

    _Relations()(parse_sql(sql))
    return sorted({f"{schema}.{name}" if schema else name
                   for schema, name in found if schema is not None or name not in ctes})


def merge_upstream(upstream: list[dict[str, Any]], parsed: list[str]) -> list[dict[str, Any]]:
    """Add the relations parsed from SQL to dbt's lineage entries (``found_by`` gains ``sql``)."""
    merged = [dict(entry, found_by=[b for b in entry.get("found_by", []) if b != "sql"])
              for entry in upstream if entry.get("found_by") != ["sql"]]
    by_relation = {entry.get("relation"): entry for entry in merged}
    for relation in parsed:
        if relation in by_relation:
            by_relation[relation]["found_by"].append("sql")
        else:
            entry = {"relation": relation, "kind": "table", "found_by": ["sql"]}
            merged.append(entry)
            by_relation[relation] = entry
    return merged


def record_lineage(home: FstoreHome, role: str, target_path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """After a run: add the tables parsed from each committed feature group's compiled SQL
    to its upstream lineage (``fstore.describe_feature_group``, as the Data Owner ``role``).

    Reads ``run_results.json`` and ``manifest.json`` in ``target_path``. Returns
    ``{"project.name@version": upstream}`` for the feature groups it updated.
    """
    from pglast.parser import ParseError

    target = Path(target_path)
    results = json.loads((target / "run_results.json").read_text())["results"]
    nodes = json.loads((target / "manifest.json").read_text())["nodes"]
    updated: dict[str, list[dict[str, Any]]] = {}
    todo = []
    for result in results:
        node = nodes.get(result["unique_id"], {})
        if result["status"] != "success" or node.get("config", {}).get("materialized") != "feature_group":
            continue
        name, _, version = node["alias"].rpartition("__v")
        try:
            parsed = sql_relations(result["compiled_code"])
        except ParseError:  # lineage from dbt's graph stays; the SQL is PostgreSQL's to judge
            parsed = []
        todo.append((node["schema"], name, int(version), parsed))
    if not todo:
        return updated
    with translated(), open_psycopg(material_for(home, role), autocommit=True) as conn:
        for project, name, version, parsed in todo:
            row = conn.execute(
                "select id, upstream from fstore.feature_groups where project = %s and name = %s and version = %s",
                (project, name, version),
            ).fetchone()
            if row is None:
                continue
            upstream = merge_upstream(row[1], parsed)
            if upstream != row[1]:
                conn.execute("select fstore.describe_feature_group(%s, null, null, null, %s)",
                             (row[0], Jsonb(upstream)))
            updated[f"{project}.{name}@{version}"] = upstream
    return updated
