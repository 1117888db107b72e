"""Monitors: drift checks that run by themselves inside the server (pg_cron), in the rights
of the person who created them, with their results and alerts stored under RLS.

The SQL is in ``sql/functions/88_monitors.sql`` (``fstore.create_monitor``,
``fstore.drop_monitor``, ``fstore.run_monitor``, tables ``fstore.monitors``,
``fstore.monitor_runs``, ``fstore.monitor_alerts``); docs/monitors.md says how it runs.
A window is a drift window (see :func:`fstore.drift.window`) or a relative one:
``"last 1 day"``, ``"last 7 days before 1 day"`` (``{"last": "7 days", "before": "1 day"}``),
resolved at each run. ``every`` is ``1m``, ``5m``, ``1h``, ``1d`` (a number and m, h or d),
``@daily`` and friends, or a cron expression.

Example::

    fs = fstore.connect("fraud", "bob")
    fs.monitors.create("activity_drift", "account_activity", baseline={"up_to_commit": 12},
                       current="last 1 day", every="1h")
    fs.monitors.list()                       # [Monitor(name='activity_drift', ...)]
    fs.monitors.get("activity_drift").runs   # the latest runs, newest first
    fs.monitors.alerts()                     # drifted runs, newest first
    fs.monitors.drop("activity_drift")
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from fstore.drift import DEFAULT_BINS, DEFAULT_THRESHOLD, Thresholds, window
from fstore.errors import InvalidInput, NotFound, translated
from fstore.featuregroups import get_feature_group
from fstore.session import Session

ALERT_CHANNEL = "fstore_alerts"

_MONITORS = """
select m.id, m.project, m.name, g.project || '.' || g.name || '@' || g.version as feature_group, m.baseline,
       m.current, m.every, m.schedule, m.features, m.slice_by, m.bins, m.threshold, m.thresholds, m.sample_rows,
       m.created_by, m.created_at,
       m.active, m.stopped_reason,
       (select jsonb_build_object('status', r.status, 'finished_at', r.finished_at)
          from fstore.monitor_runs r where r.monitor_id = m.id order by r.id desc limit 1) as last_run
  from fstore.monitors m join fstore.feature_groups g on g.id = m.feature_group_id
"""


@dataclass
class MonitorRun:
    """One run of a monitor (``status``: ok, drifted, error or stopped)."""

    id: int
    started_at: dt.datetime
    finished_at: dt.datetime
    status: str
    baseline: dict[str, Any] | None
    current: dict[str, Any] | None
    baseline_rows: int | None
    current_rows: int | None
    drifted_features: list[str]
    flagged_slices: list[str]
    results: list[dict[str, Any]]      # fstore.feature_drift's rows
    slices: list[dict[str, Any]] | None  # with slice_by: each slice's rows, drifted, drifted_features
    error: str | None                  # the error of a failed run, or why a monitor stopped


@dataclass
class Monitor:
    """A monitor's definition; ``runs`` when read with :meth:`Monitors.get` (newest first)."""

    id: int
    project: str
    name: str
    feature_group: str                 # project.name@version
    baseline: Any
    current: Any
    every: str
    schedule: str                      # the cron expression it runs on
    features: list[str] | None
    slice_by: str | None
    bins: int
    threshold: float
    thresholds: dict[str, dict[str, float]] | None  # per feature (or "*") and measure, over the group's stored ones
    sample_rows: int | None            # windows larger than that are measured on samples
    created_by: str
    created_at: dt.datetime
    active: bool
    stopped_reason: str | None
    last_run: dict[str, Any] | None    # {status, finished_at} of the latest run the reader may see
    runs: list[MonitorRun] = field(default_factory=list)


@dataclass
class Alert:
    """A drifted run of a monitor."""

    id: int
    monitor: str
    raised_at: dt.datetime
    drifted_features: list[str]
    flagged_slices: list[str]
    run_id: int


def _window_spec(spec: Any, label: str) -> Any:
    """A window for ``fstore.create_monitor``: relative text goes as it is, the rest as drift windows."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, Mapping) and ("last" in spec or "before" in spec):
        return dict(spec)
    return window(spec, label=label)


class Monitors:
    """The monitors of a session's project (``fs.monitors``)."""

    def __init__(self, fs: Session) -> None:
        self.fs = fs

    def create(self, name: str, group: str, *, baseline: Any, current: Any, every: str,
               version: int | None = None, features: Sequence[str] | None = None, slice_by: str | None = None,
               bins: int = DEFAULT_BINS, threshold: float = DEFAULT_THRESHOLD,
               thresholds: Thresholds | None = None, sample_rows: int | None = None) -> Monitor:
        """Create monitor ``name`` on feature group ``group`` (``project.name`` for a shared one): every
        ``every`` its pg_cron job measures the drift between ``baseline`` and ``current`` in this
        identity's rights, stores the run and alerts when a feature drifts: its PSI reached
        ``threshold`` or any measure reached its ``thresholds`` entry (as :func:`fstore.drift.drift`,
        over the group's stored drift thresholds); ``sample_rows`` measures on samples. The job
        starts within a minute. With ``slice_by`` each run measures drift per slice of that column too
        (``fstore.slice_drift``); a drifted slice alerts like a drifted feature (``flagged_slices``).

        Example::

            fs.monitors.create("activity_drift", "account_activity", baseline={"up_to_commit": 12},
                               current="last 1 day", every="1h", features=["tx_amount_7d"],
                               thresholds={"tx_amount_7d": {"wasserstein": 50}})
        """
        if isinstance(features, str):
            features = [features]
        fg = get_feature_group(self.fs, group, version=version)
        with translated():
            self.fs.conn.execute(
                "select fstore.create_monitor(p_name => %s, p_feature_group_id => %s, p_baseline => %s::jsonb,"
                " p_current => %s::jsonb, p_every => %s, p_features => %s, p_slice_by => %s, p_bins => %s,"
                " p_threshold => %s, p_thresholds => %s::jsonb, p_sample_rows => %s)",
                (name, fg.id, json.dumps(_window_spec(baseline, "baseline")),
                 json.dumps(_window_spec(current, "current")), every,
                 list(features) if features is not None else None, slice_by, bins, threshold,
                 json.dumps(thresholds) if thresholds is not None else None, sample_rows))
        return self.get(name, runs=0)

    def list(self) -> list[Monitor]:
        """The monitors of this project (their runs are not read).

        Example::

            [(m.name, m.last_run) for m in fs.monitors.list()]
        """
        with translated(), self.fs.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(_MONITORS + " order by m.name").fetchall()
        return [Monitor(**row) for row in rows]

    def get(self, name: str, *, runs: int = 20) -> Monitor:
        """Monitor ``name`` with its latest ``runs`` runs that this identity may read, newest first.

        Example::

            m = fs.monitors.get("activity_drift")
            m.runs[0].status, m.runs[0].drifted_features
        """
        with translated(), self.fs.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(_MONITORS + " where m.name = %s and m.project = %s", (name, self.fs.project)).fetchone()
            if row is None:
                raise NotFound(f"monitor {name!r} does not exist in project {self.fs.project}")
            history = cur.execute(
                "select id, started_at, finished_at, status, baseline, current, baseline_rows, current_rows,"
                "       drifted_features, flagged_slices, results, slices, error"
                "  from fstore.monitor_runs where monitor_id = %s order by id desc limit %s",
                (row["id"], runs)).fetchall()
        return Monitor(**row, runs=[MonitorRun(**r) for r in history])

    def drop(self, name: str) -> None:
        """Drop monitor ``name`` with its runs and alerts (its creator or a Data Owner; audited).

        Example::

            fs.monitors.drop("activity_drift")
        """
        with translated():
            self.fs.conn.execute("select fstore.drop_monitor(%s)", (name,))

    def alerts(self, monitor: str | None = None, *, limit: int = 50) -> list[Alert]:
        """The latest alerts (drifted runs) this identity may read, newest first.

        Example::

            for alert in fs.monitors.alerts():
                print(alert.monitor, alert.drifted_features)
        """
        if limit < 1:
            raise InvalidInput(f"limit must be a positive number, not {limit}")
        with translated(), self.fs.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "select a.id, m.name as monitor, a.raised_at, a.drifted_features, a.flagged_slices, a.run_id"
                "  from fstore.monitor_alerts a join fstore.monitors m on m.id = a.monitor_id"
                " where (%s::text is null or m.name = %s) order by a.id desc limit %s",
                (monitor, monitor, limit)).fetchall()
        return [Alert(**row) for row in rows]


def wait_for_alert(conn: psycopg.Connection[Any], timeout: float) -> dict[str, Any] | None:
    """Wait up to ``timeout`` seconds for the next ``NOTIFY fstore_alerts`` on ``conn`` (an autocommit
    connection that ran ``LISTEN fstore_alerts``); its payload or None: ``{alert, monitor_id, monitor,
    project, feature_group, run_at, drifted}`` (ids, names and the run's time; no data values).

    Example::

        conn.execute("listen fstore_alerts")
        payload = wait_for_alert(conn, 120)
    """
    deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
    while (left := (deadline - dt.datetime.now()).total_seconds()) > 0:
        for notice in conn.notifies(timeout=left, stop_after=1):
            if notice.channel == ALERT_CHANNEL:
                return json.loads(notice.payload)
    return None
