"""``fstore monitor``: drift checks that run by themselves inside the server (pg_cron), in the
rights of the identity that created them; see :mod:`fstore.monitors` and docs/monitors.md.

A window is ``'last 1 day'``, ``'last 7 days before 1 day'`` (relative to each run) or drift
windows' ``KEY=VALUE`` options, repeated to combine: ``up_to_commit=12``, ``from=2024-01-01``.
``--every`` takes 1m, 5m, 1h, 1d, @daily or a cron expression (``'*/15 * * * *'``).

Example::

    fstore monitor create activity_drift --group account_activity --baseline up_to_commit=12 \\
        --current 'last 1 day' --every 1h --as fraud__bob
    fstore monitor list --as fraud__bob
    fstore monitor show activity_drift --json --as fraud__bob
    fstore monitor alerts --as fraud__bob
    fstore monitor drop activity_drift --as fraud__bob
"""

from __future__ import annotations

from typing import Any

import click

from fstore.cli.base import console, main, project_user_option, store_as
from fstore.cli.drift import limit_option, parse_limits
from fstore.cli.output import echo_json, json_option, shown_number, shown_time, table
from fstore.drift import DEFAULT_BINS, DEFAULT_THRESHOLD


def parse_window(values: tuple[str, ...], option: str) -> Any:
    """``('last 1 day',)`` as it is; ``('up_to_commit=12', ...)`` as a drift window dict.

    >>> parse_window(("up_to_commit=12", "from=2024-01-01"), "--baseline")
    {'up_to_commit': 12, 'from': '2024-01-01'}
    """
    if len(values) == 1 and values[0].strip().lower().startswith("last "):
        return values[0].strip()
    spec: dict[str, Any] = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key or not text:
            raise click.BadParameter(f"{value!r}: write 'last 1 day' or KEY=VALUE, e.g. up_to_commit=12",
                                     param_hint=option)
        if key == "commits":
            spec[key] = [int(v) for v in text.split(",") if v.strip().isdigit()] or text
        elif key in ("commit", "up_to_commit", "after_commit") and text.isdigit():
            spec[key] = int(text)
        else:
            spec[key] = text
    return spec


@main.group("monitor")
def monitor_group() -> None:
    """Monitors: scheduled drift checks inside the database, with alerts."""


@monitor_group.command("create")
@click.argument("name")
@click.option("--group", "group", required=True, help="The feature group (project.name for a shared one).")
@click.option("--version", type=int, default=None, help="Feature group version (default: the latest).")
@click.option("--baseline", multiple=True, required=True, metavar="WINDOW",
              help="'last 7 days before 1 day' or KEY=VALUE (repeatable).")
@click.option("--current", multiple=True, required=True, metavar="WINDOW",
              help="'last 1 day' or KEY=VALUE (repeatable).")
@click.option("--every", required=True, help="1m, 5m, 1h, 1d, @daily or a cron expression.")
@click.option("--feature", "features", multiple=True, help="Only these features (repeatable; default: all).")
@click.option("--slice-by", default=None,
              help="Also measure drift per slice of this column; a drifted slice alerts.")
@click.option("--bins", type=int, default=DEFAULT_BINS, show_default=True, help="Bins for numeric features.")
@click.option("--threshold", type=float, default=DEFAULT_THRESHOLD, show_default=True,
              help="PSI from which a feature counts as drifted.")
@limit_option
@click.option("--sample-rows", type=click.IntRange(min=1000), default=None, metavar="N",
              help="Measure windows larger than N rows on samples of about N rows (estimates, faster).")
@json_option
@project_user_option
@click.pass_context
def monitor_create(ctx: click.Context, name: str, group: str, version: int | None, baseline: tuple[str, ...],
                   current: tuple[str, ...], every: str, features: tuple[str, ...], slice_by: str | None, bins: int,
                   threshold: float, limits: tuple[str, ...], sample_rows: int | None, as_json: bool,
                   as_role: str) -> None:
    """Create monitor NAME: every --every, the drift of --group between --baseline and --current,
    measured in your rights by your own pg_cron job (it starts within a minute). A feature drifted
    when its PSI reached --threshold or any --limit was reached (over the group's stored thresholds)."""
    with store_as(ctx, as_role) as fs:
        monitor = fs.monitors.create(name, group, baseline=parse_window(baseline, "--baseline"),
                                     current=parse_window(current, "--current"), every=every, version=version,
                                     features=list(features) or None, slice_by=slice_by, bins=bins,
                                     threshold=threshold, thresholds=parse_limits(limits), sample_rows=sample_rows)
    if as_json:
        echo_json(monitor)
        return
    console.print(f"created monitor {monitor.name} on {monitor.feature_group}, schedule '{monitor.schedule}' "
                  f"(runs as {monitor.created_by}; the first run is within two minutes)")


@monitor_group.command("list")
@json_option
@project_user_option
@click.pass_context
def monitor_list(ctx: click.Context, as_json: bool, as_role: str) -> None:
    """The monitors of your project, with their latest run you may see."""
    with store_as(ctx, as_role) as fs:
        monitors = fs.monitors.list()
    if as_json:
        echo_json(monitors)
        return
    rows = [{"name": m.name, "group": m.feature_group, "every": m.every, "created by": m.created_by,
             "state": "active" if m.active else f"stopped: {m.stopped_reason}",
             "last run": f"{m.last_run['status']} at {m.last_run['finished_at'][:19]}" if m.last_run else "-"}
            for m in monitors]
    console.print(table(rows, ["name", "group", "every", "created by", "state", "last run"], title="monitors"))


@monitor_group.command("show")
@click.argument("name")
@click.option("--runs", type=int, default=10, show_default=True, help="How many of the latest runs.")
@json_option
@project_user_option
@click.pass_context
def monitor_show(ctx: click.Context, name: str, runs: int, as_json: bool, as_role: str) -> None:
    """Monitor NAME: its definition and its latest runs (those you may see)."""
    with store_as(ctx, as_role) as fs:
        monitor = fs.monitors.get(name, runs=runs)
    if as_json:
        echo_json(monitor)
        return
    console.print(f"monitor {monitor.name} on {monitor.feature_group}: every {monitor.every} ('{monitor.schedule}'), "
                  f"as {monitor.created_by}; {'active' if monitor.active else 'stopped: ' + str(monitor.stopped_reason)}")
    console.print(f"baseline {monitor.baseline}, current {monitor.current}, threshold {monitor.threshold:g}"
                  + (f", limits {monitor.thresholds}" if monitor.thresholds else "")
                  + (f", samples of {monitor.sample_rows} rows" if monitor.sample_rows else "")
                  + (f", slices by {monitor.slice_by}" if monitor.slice_by else ""))
    rows = [{"run": r.id, "finished": shown_time(r.finished_at), "status": r.status,
             "rows": f"{shown_number(r.baseline_rows)} -> {shown_number(r.current_rows)}",
             "drifted": ", ".join(r.drifted_features + r.flagged_slices) or "-", "error": r.error or ""}
            for r in monitor.runs]
    console.print(table(rows, ["run", "finished", "status", "rows", "drifted", "error"], title="latest runs"))


@monitor_group.command("drop")
@click.argument("name")
@project_user_option
@click.pass_context
def monitor_drop(ctx: click.Context, name: str, as_role: str) -> None:
    """Drop monitor NAME with its runs and alerts (its creator or a Data Owner)."""
    with store_as(ctx, as_role) as fs:
        fs.monitors.drop(name)
    console.print(f"dropped monitor {name}")


@monitor_group.command("alerts")
@click.option("--monitor", "monitor", default=None, help="Only this monitor's alerts.")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
@project_user_option
@click.pass_context
def monitor_alerts(ctx: click.Context, monitor: str | None, limit: int, as_json: bool, as_role: str) -> None:
    """The latest alerts (drifted runs) you may see, newest first."""
    with store_as(ctx, as_role) as fs:
        alerts = fs.monitors.alerts(monitor, limit=limit)
    if as_json:
        echo_json(alerts)
        return
    rows = [{"alert": a.id, "monitor": a.monitor, "raised": shown_time(a.raised_at),
             "drifted": ", ".join(a.drifted_features + a.flagged_slices)} for a in alerts]
    console.print(table(rows, ["alert", "monitor", "raised", "drifted"], title="alerts"))
