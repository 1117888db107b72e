"""``fstore drift``: how a feature group's features moved between two windows of its rows.

Windows are ``KEY=VALUE`` options, repeated to combine (AND): ``commit=12``,
``commits=12,14``, ``up_to_commit=12``, ``after_commit=12``, ``from=2024-01-01``,
``to=2024-02-01``; or ``--baseline-dataset NAME[@V]`` for the commits a training
dataset saw (then the current window defaults to everything after).

Example::

    fstore drift account_activity --baseline up_to_commit=12 --current after_commit=12 --as fraud__bob
    fstore drift account_activity --baseline from=2024-01-01 --baseline to=2024-02-01 \\
        --current from=2024-02-01 --feature tx_amount_7d --json --as fraud__bob
    fstore drift account_activity --baseline-dataset fraud_detection --as fraud__bob
    fstore drift account_activity --baseline-dataset fraud_detection --limit tx_amount_7d.wasserstein=50 \
        --fail-on-drift --as fraud__bob          # exit 1 when anything drifted
    fstore drift account_profile --baseline commit=12 --current commit=13 --slice-by country \
        --min-slice-rows 50 --as fraud__bob      # and per country (small ones folded into (other))
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from fstore import drift as drift_module
from fstore.cli.base import console, err_console, main, project_user_option, store_as
from fstore.cli.output import echo_json, json_option, jsonable, shown_number


def parse_limits(pairs: tuple[str, ...], option: str = "--limit") -> dict[str, dict[str, float]] | None:
    """``FEATURE.MEASURE=VALUE`` options (FEATURE ``*``: every feature) as drift thresholds."""
    if not pairs:
        return None
    limits: dict[str, dict[str, float]] = {}
    for pair in pairs:
        target, equals, value = pair.partition("=")
        feature, dot, measure = target.rpartition(".")
        try:
            number = float(value)
        except ValueError:
            number = None
        if not equals or not dot or not feature or number is None:
            raise click.BadParameter(f"{pair!r}: write FEATURE.MEASURE=VALUE, e.g. tx_amount_7d.psi=0.1 or *.ks=0.3 "
                                     f"(measures: {', '.join(drift_module.MEASURES)})", param_hint=option)
        limits.setdefault(feature, {})[measure] = number
    return limits


limit_option = click.option(
    "--limit", "limits", multiple=True, metavar="FEATURE.MEASURE=VALUE",
    help=f"A drift threshold (repeatable; FEATURE * for every feature; measures: {', '.join(drift_module.MEASURES)}).")


def _window(pairs: tuple[str, ...], label: str) -> dict[str, Any] | None:
    if not pairs:
        return None
    spec: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not value:
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE, e.g. commit=12", param_hint=f"--{label}")
        spec[key] = [int(v) for v in value.split(",")] if key == "commits" and value.replace(",", "").isdigit() \
            else int(value) if key in ("commit", "up_to_commit", "after_commit") and value.isdigit() else value
    return spec


@main.command("drift")
@click.argument("name")
@click.option("--baseline", "baseline", multiple=True, metavar="KEY=VALUE", help="The baseline window (repeatable).")
@click.option("--baseline-dataset", default=None, metavar="NAME[@V]",
              help="The baseline is what this training dataset saw of the group.")
@click.option("--current", "current", multiple=True, metavar="KEY=VALUE", help="The current window (repeatable).")
@click.option("--version", type=int, default=None, help="Feature group version (default: the latest).")
@click.option("--feature", "features", multiple=True, help="Only these features (repeatable; default: all).")
@click.option("--bins", type=int, default=drift_module.DEFAULT_BINS, show_default=True,
              help="Bins for numeric features.")
@click.option("--threshold", type=float, default=drift_module.DEFAULT_THRESHOLD, show_default=True,
              help="PSI from which a feature counts as drifted.")
@limit_option
@click.option("--sample-rows", type=click.IntRange(min=1000), default=None, metavar="N",
              help="Measure windows larger than N rows on samples of about N rows (estimates, faster).")
@click.option("--slice-by", default=None, metavar="COLUMN",
              help="Also the drift within each value of COLUMN (current slice against baseline slice).")
@click.option("--min-slice-rows", type=click.IntRange(min=1), default=drift_module.DEFAULT_MIN_SLICE_ROWS,
              show_default=True, help="With --slice-by: values with fewer rows in a window are folded into (other).")
@click.option("--fail-on-drift", is_flag=True,
              help="Exit 1 when any feature drifted, overall or in a slice (for CI and cron).")
@click.option("--html", "html_path", default=None, metavar="PATH", help="Also write the report as one HTML file.")
@json_option
@project_user_option
@click.pass_context
def drift_command(ctx: click.Context, name: str, baseline: tuple[str, ...], baseline_dataset: str | None,
                  current: tuple[str, ...], version: int | None, features: tuple[str, ...], bins: int,
                  threshold: float, limits: tuple[str, ...], sample_rows: int | None, slice_by: str | None,
                  min_slice_rows: int, fail_on_drift: bool, html_path: str | None, as_json: bool, as_role: str) -> None:
    """Drift of the features of NAME between a baseline and a current window: PSI, Jensen-Shannon
    distance, Kolmogorov-Smirnov, Wasserstein-1, null rates, means and new categories. A feature
    drifted when any measure reached its threshold (--threshold: the PSI's; --limit: any measure,
    over the group's stored thresholds)."""
    if bool(baseline) == bool(baseline_dataset):
        raise click.UsageError("give the baseline: --baseline KEY=VALUE ... or --baseline-dataset NAME")
    dataset_name, _, dataset_version = (baseline_dataset or "").partition("@")
    if dataset_version and not dataset_version.isdigit():
        raise click.BadParameter(f"{baseline_dataset!r}: write NAME or NAME@VERSION (a number)",
                                 param_hint="--baseline-dataset")
    with store_as(ctx, as_role) as fs:
        if baseline_dataset:
            base: Any = fs.training_dataset(dataset_name, int(dataset_version) if dataset_version else None)
        else:
            base = _window(baseline, "baseline")
        report = fs.drift(name, base, _window(current, "current"), version=version,
                          features=list(features) or None, bins=bins, threshold=threshold,
                          thresholds=parse_limits(limits), sample_rows=sample_rows, slice_by=slice_by,
                          min_slice_rows=min_slice_rows)
        if html_path:
            (err_console if as_json else console).print(f"wrote {report.to_html(html_path, fs)}")
    if as_json:
        echo_json({**jsonable(report), "drifted": report.drifted, "drifted_slices": report.drifted_slices})
    else:
        _print_report(report)
        if report.slice_by is not None:
            _print_slices(report)
    if fail_on_drift and (report.drifted or report.drifted_slices):
        where = ", ".join(report.drifted + [f"slice {s}" for s in report.drifted_slices])
        err_console.print(f"drift: {where} drifted (--fail-on-drift)")
        ctx.exit(1)


def _print_report(report: drift_module.DriftReport) -> None:
    table = Table(title=f"{report.feature_group}: {json.dumps(report.baseline)} -> {json.dumps(report.current)}")
    for column in ("feature", "kind", "rows", "nulls", "mean", "psi", "js", "ks", "w1", "new", "drifted"):
        table.add_column(column, justify="left" if column in ("feature", "kind") else "right")
    def moved(before: Any, after: Any) -> str:
        return f"{shown_number(before)} -> {shown_number(after)}"

    for f in report.features:
        table.add_row(f.feature, f.kind, moved(f.baseline_rows, f.current_rows),
                      moved(f.baseline_null_rate, f.current_null_rate),
                      moved(f.baseline_mean, f.current_mean) if f.baseline_mean is not None else "-",
                      shown_number(f.psi), shown_number(f.js_distance), shown_number(f.ks),
                      shown_number(f.wasserstein), shown_number(f.new_values),
                      f"yes ({', '.join(f.tripped or [])})" if f.drifted else "-" if f.drifted is None else "no")
    console.print(table)
    if any(f.estimated for f in report.features):
        console.print("measured on samples of the windows (--sample-rows): the measures are estimates")
    console.print(f"drifted (any measure at its threshold; psi >= {report.threshold:g} unless set): "
                  f"{', '.join(report.drifted) or 'none'}")


def _print_slices(report: drift_module.DriftReport) -> None:
    table = Table(title=f"by {report.slice_by} (values with fewer than {report.min_slice_rows} rows in a window: "
                        f"folded into (other))")
    for column in ("slice", "rows", "feature", "psi", "ks", "w1", "drifted"):
        table.add_column(column, justify="right" if column in ("rows", "psi", "ks", "w1") else "left")
    for s in report.slices:
        name = s.name + (f" [{s.folded_values} values folded]" if s.slice_kind == "other" else "")
        for i, f in enumerate(s.features):
            table.add_row(name if i == 0 else "", f"{shown_number(s.baseline_rows)} -> {shown_number(s.current_rows)}"
                          if i == 0 else "", f.feature, shown_number(f.psi), shown_number(f.ks),
                          shown_number(f.wasserstein),
                          f"yes ({', '.join(f.tripped or [])})" if f.drifted else "-" if f.drifted is None else "no")
    console.print(table)
    console.print(f"drifted slices: {', '.join(report.drifted_slices) or 'none'}")
