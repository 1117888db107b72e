"""How the CLI shows slices: ``fstore fg stats NAME --slice-by COL`` (statistics per slice)
and ``fstore train slices NAME --slice-by COL`` (label rate per slice); see :mod:`fstore.slices`.

Example::

    fstore fg stats account_profile --slice-by country --as fraud__bob
    fstore train slices fraud_train --slice-by country --json --as fraud__bob
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from fstore.cli.base import console
from fstore.cli.output import shown_number
from fstore.slices import LabelRates, SliceStatistics


def _share(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else "-"


def _summary(stats: dict[str, Any]) -> str:
    if stats.get("top_values"):
        return ", ".join(f"{t['value']} ({t['count']:,})" for t in stats["top_values"][:3])
    if stats.get("kind") == "numeric":
        return (f"mean {shown_number(stats.get('mean'))}, std {shown_number(stats.get('std'))}, "
                f"{shown_number(stats.get('min'))}..{shown_number(stats.get('max'))}")
    if stats.get("min") is not None:
        return f"{stats['min']}..{stats['max']}"
    return ""


def show_slices(report: SliceStatistics) -> None:
    """A table of the slices of a feature group: one line per slice and feature."""
    where = f"commit {report.commit}" if report.commit is not None else "every row you may read"
    table = Table(title=f"{report.feature_group} by {report.slice_by} ({where})")
    for column in ("slice", "rows", "share", "feature", "count", "nulls", "values", "psi", "flagged"):
        table.add_column(column, justify="right" if column in ("rows", "share", "count", "nulls", "psi") else "left")
    for s in report.slices:
        name = s.name + (f" [{s.folded_values} values]" if s.slice_kind == "other" else "")
        first = True
        for feature, stats in s.features.items() or [("-", {})]:
            table.add_row(name if first else "", shown_number(s.rows) if first else "",
                          _share(s.share) if first else "", feature, shown_number(stats.get("count")),
                          shown_number(stats.get("nulls")), _summary(stats), shown_number(stats.get("psi")),
                          "yes" if stats.get("flagged") else "")
            first = False
    console.print(table)
    folded = report.folded
    if folded is not None:
        console.print(f"(other): {folded.folded_values} values with fewer than {report.min_slice_rows} rows each, "
                      f"folded into one slice of {folded.rows:,} rows")
    console.print(f"flagged (psi >= {report.threshold:g} against the whole): {', '.join(report.flagged) or 'none'}")


def show_label_rates(report: LabelRates) -> None:
    """A table of the label rate per slice of a training dataset."""
    split = f", split {report.split}" if report.split else ""
    table = Table(title=f"{report.training_dataset}: rate of {report.label or 'the label'} by {report.slice_by}{split}")
    for column in ("slice", "rows", "labelled", "rate", "rest", "difference", "z", "p", "flagged"):
        table.add_column(column, justify="left" if column in ("slice", "flagged") else "right")
    for s in report.slices:
        name = s.name + (f" [{s.folded_values} values]" if s.slice_kind == "other" else "")
        table.add_row(name, shown_number(s.rows), shown_number(s.labelled), _share(s.label_rate),
                      _share(s.rest_rate), shown_number(s.difference), shown_number(s.z), shown_number(s.p_value),
                      "yes" if s.flagged else "")
    console.print(table)
    test = f" and p < {report.alpha:g} (two-proportion z test)" if report.alpha is not None else ""
    console.print(f"flagged (|rate - rest| >= {report.max_difference:g}{test}): {', '.join(report.flagged) or 'none'}")
