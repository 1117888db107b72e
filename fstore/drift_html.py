"""A drift report to look at: one self-contained HTML file (``DriftReport.to_html``,
``fstore drift ... --html report.html``).

Per feature it holds the baseline's and the current window's histograms overlaid (drawn
with matplotlib's Agg renderer, PNG embedded as a data URI: the file needs nothing else),
the measures table with the threshold and the drifted flags, and the report's slices
(``report.slices``, when it has them, and any slice statistics passed in). The bins come
from ``fstore.drift_histograms`` (``sql/functions/81_drift_histograms.sql``), run with the
caller's rights over the same windows as the measures; a report the histograms cannot be
read for (no connection given, or a feature view's) is written without them and says so.

The page checks itself: a short inline script sets ``data-images-loaded`` ("true" when every
chart decoded) and ``data-errors`` (script errors seen) on ``<html>``, which a headless
browser reads back (tests/slices/test_drift_html.py).

Example::

    report = fs.drift("account_activity", baseline={"up_to_commit": 12}, current={"after_commit": 12})
    report.to_html("drift.html", fs)
    write_html(report, "drift.html", fs, slices=fg.statistics(slice_by="country"))
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row

from fstore.errors import translated
from fstore.files import write_atomic
from fstore.session import Session

DEFAULT_BINS = 30
BASELINE_COLOR = "#4c72b0"
CURRENT_COLOR = "#dd8452"
# the measures shown first, in this order; any other field a report's features carry follows
MEASURES = ("feature", "kind", "baseline_rows", "current_rows", "baseline_null_rate", "current_null_rate",
            "baseline_mean", "current_mean", "psi", "js_distance", "ks", "wasserstein", "new_values")

__all__ = ["histograms", "render_html", "write_html"]


def _plain(value: Any) -> Any:
    """A dataclass (or anything with fields) as a dict; other values as they are."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.repr}
    return value


def _text(value: Any) -> str:
    """A value in a table cell, escaped."""
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "&ndash;" if math.isnan(value) else html.escape(f"{value:.4g}")
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Mapping):
        return "; ".join(f"{html.escape(str(k))}: {_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return html.escape(str(value))


def _feature_group_of(report: Any) -> tuple[str, int] | None:
    """``(project.name, version)`` of the report's group, or None for a feature view's report."""
    label = str(getattr(report, "feature_group", ""))
    name, at, version = label.rpartition("@")
    if not at or " " in label or not version.isdigit() or "." not in name:
        return None
    return name, int(version)


def histograms(fs: Session, report: Any, bins: int = DEFAULT_BINS) -> dict[str, dict[str, Any]]:
    """The bins of each feature of ``report`` over its two windows (``fstore.drift_histograms``),
    by feature; empty for a report that has no feature group windows (a feature view's).

    Example::

        histograms(fs, report)["amount"]["edges"][:3]
    """
    from fstore.featuregroups import get_feature_group

    found = _feature_group_of(report)
    features = [f.feature for f in getattr(report, "features", [])]
    if found is None or not features:
        return {}
    group = get_feature_group(fs, found[0], found[1])
    with translated(), fs.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("select * from fstore.drift_histograms(%s, %s::jsonb, %s::jsonb, %s, %s)",
                           (group.id, json.dumps(report.baseline), json.dumps(report.current), features,
                            bins)).fetchall()
    return {row["feature"]: row for row in rows}


def _chart(feature: str, bins: Mapping[str, Any], drifted: bool | None) -> str:
    """One feature's overlaid histograms as a PNG data URI."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 2.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    baseline, current = list(bins.get("baseline") or []), list(bins.get("current") or [])
    if bins.get("edges"):
        edges = list(bins["edges"])
        axes.stairs(baseline, edges, fill=True, alpha=0.45, color=BASELINE_COLOR, label="baseline")
        axes.stairs(current, edges, fill=True, alpha=0.45, color=CURRENT_COLOR, label="current")
        axes.stairs(baseline, edges, color=BASELINE_COLOR, linewidth=1.2)
        axes.stairs(current, edges, color=CURRENT_COLOR, linewidth=1.2)
        if bins.get("kind") == "vector":
            axes.set_xlabel("L2 norm")
    else:
        labels = ["(other values)" if v is None else str(v)[:24] for v in bins.get("labels") or []]
        positions = range(len(labels))
        axes.bar([p - 0.2 for p in positions], baseline, width=0.4, color=BASELINE_COLOR, alpha=0.8, label="baseline")
        axes.bar([p + 0.2 for p in positions], current, width=0.4, color=CURRENT_COLOR, alpha=0.8, label="current")
        axes.set_xticks(list(positions), labels, rotation=30 if len(labels) > 4 else 0, ha="right"
                        if len(labels) > 4 else "center", fontsize=8)
    axes.set_ylabel("share of values")
    axes.set_title(feature + ("  (drifted)" if drifted else ""), color="#b00020" if drifted else "black",
                   fontsize=11, loc="left")
    axes.legend(fontsize=8, frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _measures_table(report: Any) -> str:
    rows = [_plain(f) for f in getattr(report, "features", [])]
    if not rows:
        return "<p class=note>No measures.</p>"
    extra = [k for row in rows for k in row if k not in MEASURES and k != "drifted"]
    columns = [c for c in MEASURES if any(c in row for row in rows)] + list(dict.fromkeys(extra)) + ["drifted"]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = []
    for row in rows:
        flag = row.get("drifted")
        cells = []
        for c in columns:
            value = row.get(c)
            if c == "drifted":
                cells.append(f"<td class={'flag' if flag else 'ok'}>{_text(flag)}</td>")
            else:
                cells.append(f"<td>{_text(value)}</td>")
        body.append(f"<tr class={'drifted' if flag else 'steady'}>{''.join(cells)}</tr>")
    return f"<table class=measures><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _generic_table(rows: Sequence[Any]) -> str:
    """Any list of records (dataclasses or dicts) as a table: scalar fields as columns; a field
    holding a dict of dicts (per-feature statistics) as one cell per feature."""
    records = [_plain(r) for r in rows]
    records = [r if isinstance(r, Mapping) else {"value": r} for r in records]
    columns = list(dict.fromkeys(k for r in records for k in r))
    head = "".join(f"<th>{html.escape(str(c).replace('_', ' '))}</th>" for c in columns)
    body = []
    for r in records:
        flagged = any(r.get(k) is True for k in ("flagged", "drifted"))
        cells = "".join(f"<td>{_cell(r.get(c))}</td>" for c in columns)
        body.append(f"<tr class={'drifted' if flagged else 'steady'}>{cells}</tr>")
    return f"<table class=slices><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


STATISTICS_ORDER = ("kind", "count", "nulls", "distinct", "mean", "std", "min", "max", "psi", "flagged")


def _ordered(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Statistics in reading order (count, nulls, moments, psi, flag), the rest after; no top-value lists."""
    first = {k: stats[k] for k in STATISTICS_ORDER if k in stats}
    return {**first, **{k: v for k, v in stats.items() if k not in first and k != "top_values"}}


def _cell(value: Any) -> str:
    value = _plain(value)
    if isinstance(value, Mapping) and value and all(isinstance(v, Mapping) for v in value.values()):
        return "".join(f"<div><b>{html.escape(str(k))}</b>: {_text(_ordered(inner))}</div>"
                       for k, inner in value.items())
    if isinstance(value, list) and value and all(isinstance(_plain(v), Mapping) for v in value):
        return _generic_table(value)
    return _text(value)


def _slices_section(groups: Sequence[tuple[str, Any]]) -> str:
    parts = []
    for title, source in groups:
        source = _plain(source)
        rows = source.get("slices") if isinstance(source, Mapping) and "slices" in source else source
        if not rows:
            continue
        header = ""
        if isinstance(source, Mapping):
            facts = {k: v for k, v in source.items() if k != "slices" and not isinstance(v, (list, dict))}
            header = f"<p class=facts>{_text(facts)}</p>"
        parts.append(f"<h3>{html.escape(title)}</h3>{header}{_generic_table(list(rows))}")
    if not parts:
        return ""
    return "<section id=slices><h2>Slices</h2>" + "".join(parts) + "</section>"


STYLE = """
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
tr.drifted td { background: #fdecea; } td.flag { color: #b00020; font-weight: bold; } td.ok { color: #2e7d32; }
.summary { font-size: 14px; } .note { color: #666; font-style: italic; } .facts { font-size: 12px; color: #444; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .chart { border: 1px solid #ddd; padding: 4px; }
.chart img { display: block; width: 640px; height: 280px; }
"""

# The page's own check, read back by a headless browser: every image decoded, no script errors.
SELF_CHECK = """
window.fstoreErrors = 0;
window.addEventListener('error', function () {
  window.fstoreErrors += 1; document.documentElement.dataset.errors = String(window.fstoreErrors); }, true);
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.documentElement.dataset.images = String(images.length);
  document.documentElement.dataset.imagesLoaded = String(ok);
  document.documentElement.dataset.errors = String(window.fstoreErrors);
});
"""


def render_html(report: Any, bins: Mapping[str, Mapping[str, Any]] | None = None, *,
                slices: Any = None, note: str | None = None) -> str:
    """The report as one HTML document (``bins``: :func:`histograms`' result; ``slices``: more
    slices to show, e.g. a :class:`~fstore.slices.SliceStatistics`)."""
    bins = bins or {}
    features = list(getattr(report, "features", []))
    drifted = [f.feature for f in features if getattr(f, "drifted", False)]
    threshold = getattr(report, "threshold", None)
    charts = []
    for f in features:
        found = bins.get(f.feature)
        if found and (found.get("edges") or found.get("labels")):
            charts.append(f"<figure class=chart><img alt='{html.escape(f.feature)}: baseline and current' "
                          f"src='{_chart(f.feature, found, getattr(f, 'drifted', None))}'></figure>")
    if not charts:
        charts_html = f"<p class=note>{html.escape(note or 'No histograms for this report.')}</p>"
    else:
        charts_html = "<div class=charts>" + "".join(charts) + "</div>"
    slice_groups = [("slices of the drift report", getattr(report, "slices", None) or [])]
    if slices is not None:
        slice_groups.append((f"statistics by {getattr(slices, 'slice_by', 'slice')}", slices))
    title = f"Drift of {getattr(report, 'feature_group', 'features')}"
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    report_note = getattr(report, "note", None)
    return f"""<!DOCTYPE html>
<html lang=en data-images-loaded=pending data-errors=0>
<head><meta charset=utf-8><title>{html.escape(title)}</title>
<meta name=viewport content="width=device-width, initial-scale=1">
<style>{STYLE}</style><script>{SELF_CHECK}</script></head>
<body>
<h1>{html.escape(title)}</h1>
<p class=facts>baseline {_text(getattr(report, 'baseline', None))} &rarr; current {_text(getattr(report, 'current', None))};
threshold {_text(threshold)}; written {generated}</p>
{f"<p class=note>{html.escape(str(report_note))}</p>" if report_note else ""}
<p class=summary>Drifted: <b>{html.escape(', '.join(drifted)) if drifted else 'none'}</b>
({len(drifted)} of {len(features)} features)</p>
<section id=measures><h2>Measures</h2>{_measures_table(report)}</section>
<section id=histograms><h2>Histograms</h2>{charts_html}</section>
{_slices_section(slice_groups)}
</body></html>
"""


def write_html(report: Any, path: str | Path, fs: Session | None = None, *, slices: Any = None,
               bins: int = DEFAULT_BINS) -> Path:
    """Write ``report`` (a :class:`~fstore.drift.DriftReport`) to ``path`` as one self-contained
    HTML file, atomically; returns the path. The histograms need ``fs`` (the handle the report
    was made with, or any with the same rights); without it the page says they are missing.

    Example::

        write_html(fs.drift("account_profile", baseline=1, current=2), "drift.html", fs)
    """
    fs = fs if fs is not None else getattr(report, "_session", None)
    note = None
    found: dict[str, dict[str, Any]] = {}
    if fs is None:
        note = "Histograms need a connection: report.to_html(path, fs)."
    elif _feature_group_of(report) is None:
        note = "No histograms: the report's windows are not windows of a feature group's rows."
    else:
        found = histograms(fs, report, bins)
    return write_atomic(Path(path), render_html(report, found, slices=slices, note=note))
