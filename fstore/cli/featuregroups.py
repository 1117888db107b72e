"""Feature-group commands: ``fstore fg list|show|stats|add-features|set-drift-thresholds|set-sensitive``
and ``fstore search``.

They run as the project-user given by ``--as`` (its own certificate); the
catalog's row-level security decides what that identity sees: its project's
feature groups and those of projects shared with it.

Example::

    fstore fg list --as fraud__alice
    fstore fg show account_activity --as fraud__alice
    fstore fg stats account_activity --version 1 --as fraud__bob
    fstore fg stats account_profile --slice-by country --as fraud__bob
    fstore fg add-features account_activity tx_amount_30d='double precision' --as fraud__alice
    fstore fg set-drift-thresholds account_activity --limit tx_amount_7d.psi=0.1 --limit '*.ks=0.3' --as fraud__alice
    fstore fg set-sensitive account_profile is_pep --as fraud__alice
    fstore search "transaction count" --as fraud__bob
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from fstore import featuregroups, sensitive
from fstore.cli.base import console, main, project_user_option, store_as
from fstore.cli.drift import limit_option, parse_limits
from fstore.cli.output import echo_json, json_option, jsonable, shown_number, shown_time
from fstore.cli.slices import show_slices


@main.group("fg")
def fg_group() -> None:
    """Feature groups: list, show, statistics, add features."""


@fg_group.command("list")
@project_user_option
@json_option
@click.pass_context
def fg_list(ctx: click.Context, as_role: str, as_json: bool) -> None:
    """Feature groups you can see: yours and those shared with your project."""
    with store_as(ctx, as_role) as fs:
        groups = featuregroups.list_feature_groups(fs)
    if as_json:
        echo_json(groups)
        return
    table = Table(title=f"feature groups visible to {as_role}")
    for column in ("project", "name", "version", "online", "rows", "commits", "last commit"):
        table.add_column(column, justify="right" if column in ("version", "rows", "commits") else "left")
    for g in groups:
        table.add_row(g["project"], g["name"], str(g["version"]), "yes" if g["online"] else "no",
                      shown_number(g["rows"]), shown_number(g["commits"]), shown_time(g["last_commit_at"]))
    console.print(table)
    if not groups:
        console.print("no feature groups yet")


def _upstream_lines(upstream: list[Any]) -> list[str]:
    lines = []
    for entry in upstream:
        if isinstance(entry, dict):
            relation = entry.get("relation") or entry.get("name") or json.dumps(entry)
            detail = ", ".join(x for x in (entry.get("kind"), "/".join(entry.get("found_by", []))) if x)
            lines.append(f"{relation} ({detail})" if detail else relation)
        else:
            lines.append(str(entry))
    return lines


@fg_group.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Version (default: the latest).")
@project_user_option
@json_option
@click.pass_context
def fg_show(ctx: click.Context, name: str, version: int | None, as_role: str, as_json: bool) -> None:
    """Keys, event time, features, versions, commits and upstream tables of NAME (``project.name`` for a
    shared project's group). --json: the feature group with its ``versions`` and every commit."""
    with store_as(ctx, as_role) as fs:
        fg = featuregroups.get_feature_group(fs, name, version)
        commits = fg.commits()
        versions = [g for g in featuregroups.list_feature_groups(fs)
                    if g["project"] == fg.project and g["name"] == fg.name]
    if as_json:
        echo_json({**jsonable(fg), "versions": versions, "commits": commits})
        return
    header = Table(show_header=False, box=None)
    header.add_column(style="bold")
    header.add_column()
    header.add_row("feature group", f"{fg.project}.{fg.name} version {fg.version}")
    header.add_row("description", fg.description or "-")
    header.add_row("entity keys", ", ".join(fg.keys))
    header.add_row("event time", fg.event_time)
    header.add_row("online", f"yes ({fg.online_table})" if fg.online else "no")
    header.add_row("ttl", str(fg.ttl) if fg.ttl else "-")
    header.add_row("tags", ", ".join(fg.tags) or "-")
    header.add_row("offline table", f"{fg.project}.{fg.offline_table}")
    header.add_row("created", f"{shown_time(fg.created_at)} by {fg.created_by}")
    header.add_row("versions", ", ".join(
        f"v{g['version']} ({shown_number(g['rows'])} rows)" for g in versions) or "-")
    header.add_row("upstream", "\n".join(_upstream_lines(fg.upstream)) or "-")
    console.print(header)

    features = Table(title="features")
    for column in ("name", "type", "key", "description"):
        features.add_column(column)
    for f in fg.features:
        features.add_row(f.name, f.pg_type, "key" if f.is_key else "", f.description)
    features.add_row(fg.event_time, "timestamp with time zone", "event time", "")
    console.print(features)

    history = Table(title=f"commits ({len(commits)})")
    for column in ("id", "rows", "online rows", "source", "by", "app", "at", "event times"):
        history.add_column(column, justify="right" if column in ("id", "rows", "online rows") else "left")
    for c in commits[:20]:
        history.add_row(str(c.id), shown_number(c.rows), shown_number(c.online_rows), c.source, c.session_role or "-",
                        c.app_id or "-", shown_time(c.committed_at),
                        f"{shown_time(c.min_event_time)} .. {shown_time(c.max_event_time)}")
    console.print(history)
    if len(commits) > 20:
        console.print(f"... and {len(commits) - 20} older commits")


@fg_group.command("stats")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Version (default: the latest).")
@click.option("--commit", "commit_id", type=int, default=None,
              help="Commit id (default: the latest; with --slice-by: every row).")
@click.option("--slice-by", default=None, metavar="COLUMN",
              help="Statistics per value of this column, each slice's PSI against the whole.")
@click.option("--feature", "features", multiple=True, help="With --slice-by: only these features (repeatable).")
@click.option("--min-slice-rows", type=int, default=30, show_default=True,
              help="With --slice-by: smaller slices are folded into one '(other)' slice.")
@click.option("--threshold", type=float, default=0.2, show_default=True,
              help="With --slice-by: PSI from which a slice is flagged.")
@project_user_option
@json_option
@click.pass_context
def fg_stats(ctx: click.Context, name: str, version: int | None, commit_id: int | None, slice_by: str | None,
             features: tuple[str, ...], min_slice_rows: int, threshold: float, as_role: str, as_json: bool) -> None:
    """Statistics of one commit of NAME: counts, completeness, distinct values, moments, percentiles,
    histograms and top values; or, with --slice-by, per slice of its rows."""
    if features and slice_by is None:
        raise click.UsageError("--feature chooses the features of statistics per slice: give --slice-by too")
    with store_as(ctx, as_role) as fs:
        fg = featuregroups.get_feature_group(fs, name, version)
        if slice_by is not None:
            sliced = fg.statistics(commit_id, slice_by=slice_by, features=list(features) or None,
                                   min_slice_rows=min_slice_rows, threshold=threshold)
        else:
            stats = fg.statistics(commit_id)
    if slice_by is not None:
        if as_json:
            echo_json({**jsonable(sliced), "flagged": sliced.flagged})
        else:
            show_slices(sliced)
        return
    if as_json:
        echo_json(stats)
        return
    first = next(iter(stats.values()), {})
    sampled = (f", mean, stddev and order statistics from a {first.get('sample_rows'):,}-row sample"
               if first.get("sampled") else "")
    table = Table(title=f"{fg.project}.{fg.name} v{fg.version}: {first.get('rows', 0):,} rows{sampled}")
    for column in ("column", "kind", "count", "nulls", "complete", "distinct", "min", "mean", "stddev",
                   "p50", "max", "top values / norm"):
        table.add_column(column, justify="left" if column in ("column", "kind", "top values / norm") else "right")
    order = [f.name for f in fg.features] + [fg.event_time]
    for column in sorted(stats, key=lambda c: order.index(c) if c in order else len(order)):
        s = stats[column]
        extra = ""
        if s.get("top_values"):
            extra = ", ".join(f"{t['value']} ({t['count']:,})" for t in s["top_values"][:3])
        elif s.get("norm"):
            extra = f"dims {s['dims']['min']}, norm {shown_number(s['norm']['min'])}..{shown_number(s['norm']['max'])}"
        completeness = s.get("completeness")
        table.add_row(
            column, s.get("kind", ""), shown_number(s.get("count")), shown_number(s.get("nulls")),
            f"{completeness:.1%}" if completeness is not None else "-", shown_number(s.get("distinct")),
            shown_number(s.get("min")), shown_number(s.get("mean")), shown_number(s.get("stddev")),
            shown_number((s.get("percentiles") or {}).get("p50")), shown_number(s.get("max")), extra)
    console.print(table)


@fg_group.command("add-features")
@click.argument("name")
@click.argument("columns", nargs=-1, required=True, metavar="COLUMN=TYPE...")
@click.option("--version", type=int, default=None, help="Version (default: the latest).")
@project_user_option
@click.pass_context
def fg_add_features(ctx: click.Context, name: str, columns: tuple[str, ...], version: int | None,
                    as_role: str) -> None:
    """Add features (COLUMN=TYPE, e.g. risk='double precision') to a version of NAME; earlier rows read
    NULL for them. A Data Owner's change: no new version needed."""
    features = {}
    for column in columns:
        column_name, equals, type_name = column.partition("=")
        if not equals or not column_name or not type_name:
            raise click.BadParameter(f"{column!r}: write COLUMN=TYPE", param_hint="COLUMNS")
        features[column_name] = type_name
    with store_as(ctx, as_role) as fs:
        fg = fs.get_feature_group(name, version=version).add_features(features)
    console.print(f"{fg.full_name}: added {', '.join(features)}; features now "
                  f"{', '.join(f.name for f in fg.features if not f.is_key)}")


@fg_group.command("set-drift-thresholds")
@click.argument("name")
@limit_option
@click.option("--clear", is_flag=True, help="Remove the stored thresholds.")
@click.option("--version", type=int, default=None, help="Feature group version (default: the latest).")
@json_option
@project_user_option
@click.pass_context
def set_drift_thresholds_command(ctx: click.Context, name: str, limits: tuple[str, ...], clear: bool,
                                 version: int | None, as_json: bool, as_role: str) -> None:
    """Store NAME's default drift thresholds, which `fstore drift` and monitors apply (Data Owners);
    the given ones replace the stored ones."""
    if bool(limits) == clear:
        raise click.UsageError("give --limit FEATURE.MEASURE=VALUE ... or --clear")
    with store_as(ctx, as_role) as fs:
        fg = fs.get_feature_group(name, version=version)
        stored = fg.set_drift_thresholds(None if clear else parse_limits(limits))
    if as_json:
        echo_json({"feature_group": fg.full_name, "drift_thresholds": stored})
        return
    console.print(f"{fg.full_name}: drift thresholds "
                  + (", ".join(f"{feature}.{measure}={value:g}" for feature, measures in stored.items()
                               for measure, value in measures.items()) or "cleared"))


@fg_group.command("set-sensitive")
@click.argument("name")
@click.argument("features", nargs=-1, required=True, metavar="FEATURE...")
@click.option("--off", is_flag=True, help="Unmark them: everyone who reads the group reads them again.")
@project_user_option
@json_option
@click.pass_context
def fg_set_sensitive(ctx: click.Context, name: str, features: tuple[str, ...], off: bool, as_role: str,
                     as_json: bool) -> None:
    """Mark FEATUREs of NAME sensitive (every version; --off: unmark them). Only Data Owners, and the
    people a sensitive grant in policies/<project>.yml names, then read them. A Data Owner's change."""
    with store_as(ctx, as_role) as fs:
        marked = sensitive.set_sensitive(fs, name, list(features), not off)
    if as_json:
        echo_json({"feature_group": name, "sensitive": marked})
        return
    console.print(f"{fs.project}.{name}: {'unmarked' if off else 'marked'} {', '.join(features)} sensitive; "
                  f"sensitive features now: {', '.join(marked) or 'none'}")


@main.command("search")
@click.argument("text")
@project_user_option
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many feature groups.")
@json_option
@click.pass_context
def search_command(ctx: click.Context, text: str, as_role: str, limit: int, as_json: bool) -> None:
    """Find feature groups by names, descriptions, tags and feature names (yours and shared ones)."""
    with store_as(ctx, as_role) as fs:
        hits = featuregroups.search(fs, text, limit)
    if as_json:
        echo_json(hits)
        return
    table = Table(title=f"feature groups matching {text!r}")
    for column in ("project", "name", "version", "online", "matched features", "description", "tags"):
        table.add_column(column)
    for h in hits:
        table.add_row(h["project"], h["name"], ", ".join(f"v{v}" for v in h["versions"]),
                      "yes" if h["online"] else "no", ", ".join(h["matched_features"]) or "-",
                      h["description"] or "-", ", ".join(h["tags"]) or "-")
    console.print(table)
    if not hits:
        console.print("nothing found")
