"""Feature-view commands: ``fstore fv create | list | show | train | vector | drift`` and
``fstore usage``.

They run as the project-user given by ``--as`` (its certificate); the database decides
what that identity may read, define and serve.

Example::

    fstore fv create fraud_detection --feature account_activity:* --label is_fraud \\
        --passed amount:float8 --transform amount=log1p --transform tx_count_7d=standard_scaler \\
        --transform tx_amount_7d=bucketize:10,100,1000 --log-rate 0.01 --as fraud__bob
    fstore fv train fraud_detection --spine "select ... from fraud.labels" --split train=0.8 --split test=0.2 \\
        --as fraud__bob
    fstore fv vector fraud_detection --key account_id=42 --passed amount=120.5 --as fraud__bob
    fstore usage --report --as fraud__alice
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.table import Table

from fstore import featureviews
from fstore.cli.base import console, main, project_user_option, store_as
from fstore.cli.output import cell, echo_json, json_option, shown_number
from fstore.cli.training import parse_split
from fstore.datasets import parse_name
from fstore.errors import InvalidInput, PermissionDenied


@main.group("fv")
def fv_group() -> None:
    """Feature views: one definition of what a model consumes, for training and serving."""


@contextmanager
def worded(as_role: str) -> Iterator[None]:
    """A refusal because a project is not shared, with who can change that and how."""
    try:
        yield
    except PermissionDenied as exc:
        text = Exception.__str__(exc)
        marker = "which is not shared with" if "which is not shared with" in text else "is not shared with"
        if marker not in text:
            raise
        owner = text.split("project ", 1)[1].split()[0].rstrip(",") if "project " in text else "P"
        project = as_role.split("__", 1)[0]
        raise PermissionDenied(f"{text}: a Data Owner of {owner} may share it "
                               f"(`fstore share {owner} --with {project} --as {owner}__USER`)",
                               sqlstate=exc.sqlstate) from exc


def _pairs(values: tuple[str, ...], option: str, separator: str = "=") -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, text = value.partition(separator)
        if not sep or not name:
            raise InvalidInput(f"invalid {option} {value!r}: use NAME{separator}VALUE")
        pairs[name] = text
    return pairs


def parse_transform(value: str) -> tuple[str, dict[str, Any]]:
    """``col=fn`` or ``col=bucketize:10,100`` as (column, transformation).

    >>> parse_transform("amount=bucketize:10,100")
    ('amount', {'fn': 'bucketize', 'edges': [10.0, 100.0]})
    """
    column, sep, spec = value.partition("=")
    if not sep or not column or not spec:
        raise InvalidInput(f"invalid --transform {value!r}: use COLUMN=FN or COLUMN=bucketize:EDGE,EDGE,...")
    fn, _, edges = spec.partition(":")
    if not edges:
        return column, {"fn": fn}
    try:
        return column, {"fn": fn, "edges": [float(e) for e in edges.split(",")]}
    except ValueError:
        raise InvalidInput(f"invalid --transform {value!r}: edges are numbers, e.g. bucketize:10,100") from None


def _view(fs: Any, name: str) -> featureviews.FeatureView:
    base, version = parse_name(name)
    return fs.get_feature_view(base, version)


def _record(view: featureviews.FeatureView, with_fits: bool = True) -> dict[str, Any]:
    record = {k: getattr(view, k) for k in ("id", "project", "name", "version", "features", "label", "serving_keys",
                                            "passed_features", "transformations", "outputs", "description", "tags",
                                            "options", "created_at", "created_by", "app_id")}
    if with_fits:
        fits = view.fits() if view.project == view.fs.project else []  # type: ignore[union-attr]
        record["training_datasets"] = fits
        record["columns"] = view.columns if fits else []
    return record


@fv_group.command("create")
@click.argument("name")
@click.option("--feature", "features", multiple=True, required=True, metavar="REF",
              help="group:feature, group:*, group@2:feature or project.group:feature (repeat).")
@click.option("--label", "labels", multiple=True, metavar="COLUMN", help="Spine column holding the label (repeat).")
@click.option("--serving-key", "serving_keys", multiple=True, metavar="KEY",
              help="Serving key (repeat; default: the groups' keys).")
@click.option("--passed", "passed", multiple=True, metavar="NAME:TYPE",
              help="A request-time feature, e.g. amount:float8 (repeat); a feature's name overrides it.")
@click.option("--transform", "transforms", multiple=True, metavar="COLUMN=FN[:EDGES]",
              help=f"One of {', '.join(featureviews.TRANSFORMATIONS)}; bucketize:10,100 (repeat).")
@click.option("--log-rate", type=float, default=None, help="Share of served vectors logged (0 to 1).")
@click.option("--description", default="")
@click.option("--tag", "tags", multiple=True)
@click.option("--version", type=int, default=None, help="This version (default: the next).")
@json_option
@project_user_option
@click.pass_context
def fv_create(ctx: click.Context, name: str, features: tuple[str, ...], labels: tuple[str, ...],
              serving_keys: tuple[str, ...], passed: tuple[str, ...], transforms: tuple[str, ...],
              log_rate: float | None, description: str, tags: tuple[str, ...], version: int | None,
              as_json: bool, as_role: str) -> None:
    """Create feature view NAME (its next version): features pinned to their groups' versions."""
    transformations = dict(parse_transform(t) for t in transforms)
    with store_as(ctx, as_role) as fs, worded(as_role):
        view = fs.create_feature_view(name, list(features), label=list(labels) or None,
                                      serving_keys=list(serving_keys) or None,
                                      passed_features=_pairs(passed, "--passed", ":"),
                                      transformations=transformations, description=description, tags=list(tags),
                                      log_rate=log_rate, version=version)
        if as_json:
            echo_json(_record(view, with_fits=False))
            return
    console.print(f"created feature view {view.name} version {view.version}: {', '.join(view.features)}"
                  + (f"; passed {', '.join(p['name'] for p in view.passed_features)}" if view.passed_features else "")
                  + f"; serving keys {', '.join(view.serving_keys)}", highlight=False)
    console.print(f"next: fstore fv train {view.name} --spine TABLE_OR_SELECT --as {as_role}", highlight=False)


@fv_group.command("list")
@click.option("--name", default=None, help="Only this view's versions.")
@json_option
@project_user_option
@click.pass_context
def fv_list(ctx: click.Context, name: str | None, as_json: bool, as_role: str) -> None:
    """Feature views visible to the identity (its project's and shared ones)."""
    with store_as(ctx, as_role) as fs:
        views = fs.list_feature_views(name)
    if as_json:
        echo_json([_record(v, with_fits=False) for v in views])
        return
    table = Table("project", "name", "version", "features", "label", "passed", "transformations", "log rate",
                  "created_by", "created_at")
    for v in views:
        table.add_row(v.project, v.name, str(v.version), " ".join(v.features), " ".join(v.label),
                      " ".join(p["name"] for p in v.passed_features),
                      ", ".join(f"{c}={t['fn']}" for c, t in v.transformations.items()), shown_number(v.log_rate),
                      v.created_by, v.created_at[:19])
    console.print(table)


@fv_group.command("show")
@click.argument("name", metavar="NAME[@V]")
@json_option
@project_user_option
@click.pass_context
def fv_show(ctx: click.Context, name: str, as_json: bool, as_role: str) -> None:
    """Feature view NAME (latest version, or NAME@V): its features, transformations, output
    columns and the training datasets it was fitted on."""
    with store_as(ctx, as_role) as fs, worded(as_role):
        record = _record(_view(fs, name))
    if as_json:
        echo_json(record)
        return
    header = Table(show_header=False, box=None)
    header.add_column(style="bold")
    header.add_column()
    for key, value in (
        ("feature view", f"{record['project']}.{record['name']} version {record['version']}"),
        ("description", record["description"] or "-"), ("features", ", ".join(record["features"])),
        ("label", ", ".join(record["label"]) or "-"), ("serving keys", ", ".join(record["serving_keys"])),
        ("passed", ", ".join(f"{p['name']} {p['type']}" for p in record["passed_features"]) or "-"),
        ("transformations", ", ".join(f"{c}={cell(t)}" for c, t in record["transformations"].items()) or "-"),
        ("log rate", shown_number(record["options"].get("log_rate") or 0)),
        ("columns", ", ".join(record["columns"]) or "- (not fitted yet: fstore fv train)"),
        ("training datasets", "\n".join(f"{f['training_dataset']}@{f['training_dataset_version']}: {f['rows']:,} rows, "
                                        f"fitted on {f['fitted_on'] or 'all'} ({f['fitted_rows']:,} rows)"
                                        for f in record["training_datasets"]) or "-"),
        ("created", f"{record['created_at'][:19]} by {record['created_by']}"),
    ):
        header.add_row(key, str(value))
    console.print(header, highlight=False)


@fv_group.command("train")
@click.argument("name", metavar="NAME[@V]")
@click.option("--spine", required=True, help="A table ([schema.]table) or one SELECT query, run as you: the "
              "serving keys, event time, label and passed features.")
@click.option("--split", "splits", multiple=True, metavar="NAME=SPEC", help="train=0.8 (repeat), as `train create`.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--event-time-column", default="event_time", show_default=True)
@click.option("--description", default="")
@json_option
@project_user_option
@click.pass_context
def fv_train(ctx: click.Context, name: str, spine: str, splits: tuple[str, ...], seed: int, event_time_column: str,
             description: str, as_json: bool, as_role: str) -> None:
    """Build the next training dataset of view NAME and fit its transformations on the training split."""
    with store_as(ctx, as_role) as fs, worded(as_role):
        view = _view(fs, name)
        dataset = view.create_training_dataset(spine, split=parse_split(splits), seed=seed, description=description,
                                               event_time_column=event_time_column)
        columns = view.columns_of(dataset.version)
    if as_json:
        echo_json({"training_dataset": dataset, "columns": columns})
        return
    console.print(f"built {dataset.name} version {dataset.version}: {dataset.rows:,} rows in "
                  f"{dataset.project}.{dataset.table_name}; fitted; columns {', '.join(columns)}", highlight=False)


@fv_group.command("vector")
@click.argument("name", metavar="NAME[@V]")
@click.option("--key", "keys", multiple=True, required=True, metavar="KEY=VALUE", help="A serving key (repeat).")
@click.option("--passed", "passed", multiple=True, metavar="NAME=VALUE", help="A request-time feature (repeat).")
@click.option("--training-dataset-version", type=int, default=None, help="Its fitted parameters (default: latest).")
@click.option("--strict", is_flag=True, help="Fail when the entity is missing from a feature group.")
@json_option
@project_user_option
@click.pass_context
def fv_vector(ctx: click.Context, name: str, keys: tuple[str, ...], passed: tuple[str, ...],
              training_dataset_version: int | None, strict: bool, as_json: bool, as_role: str) -> None:
    """The model-ready vector of one entity, as a model gets it from get_feature_vector."""
    with store_as(ctx, as_role) as fs, worded(as_role):
        view = _view(fs, name).init_serving(training_dataset_version)
        vector = view.get_feature_vector(_pairs(keys, "--key"), _pairs(passed, "--passed") or None, strict=strict)
        record = {"view": view.name, "version": view.version,
                  "training_dataset_version": view.serving_training_dataset_version, "found": view.last_found,
                  "columns": view.columns, "vector": vector}
        view.close()
    if as_json:
        echo_json(record)
        return
    table = Table("column", "value", title=f"{view.name}@{view.version} (training dataset version "
                                           f"{record['training_dataset_version']}), found: {record['found']}")
    for column, value in zip(record["columns"], vector):
        table.add_row(column, shown_number(value))
    console.print(table)


@fv_group.command("drift")
@click.argument("name", metavar="NAME[@V]")
@click.option("--from", "start", default=None, help="Served at or after (ISO time).")
@click.option("--to", "end", default=None, help="Served before (ISO time).")
@click.option("--training-dataset-version", type=int, default=None)
@json_option
@project_user_option
@click.pass_context
def fv_drift(ctx: click.Context, name: str, start: str | None, end: str | None, training_dataset_version: int | None,
             as_json: bool, as_role: str) -> None:
    """Training/serving skew: what view NAME served (its log) against its training split."""
    base, version = parse_name(name)
    with store_as(ctx, as_role) as fs, worded(as_role):
        from fstore import drift

        report = drift.feature_view_drift(fs, base, (start, end) if start or end else None, version=version,
                                          training_dataset_version=training_dataset_version)
    if as_json:
        echo_json(report)
        return
    table = Table("column", "rows (train -> served)", "mean", "psi", "ks", "drifted", title=report.feature_group)
    for f in report.features:
        table.add_row(f.feature, f"{f.baseline_rows:,} -> {f.current_rows:,}",
                      f"{shown_number(f.baseline_mean)} -> {shown_number(f.current_mean)}", shown_number(f.psi),
                      shown_number(f.ks), "yes" if f.drifted else "no")
    console.print(table)


@main.command("usage")
@click.argument("group", required=False)
@click.option("--report", is_flag=True, help="The project's reuse summary instead of the per-feature listing.")
@json_option
@project_user_option
@click.pass_context
def usage_command(ctx: click.Context, group: str | None, report: bool, as_json: bool, as_role: str) -> None:
    """Per feature of the project (of GROUP): the views and training datasets using it, the partner
    projects using it through shares (their datasets' names, no data), and when it was last served."""
    with store_as(ctx, as_role) as fs:
        result: Any = fs.feature_usage(group, report=report)
    if as_json:
        echo_json(result)
        return
    if report:
        print_report(result)
        return
    table = Table("feature", "views", "training datasets", "partner projects", "partner datasets", "last served")
    for u in result:
        table.add_row(f"{u['feature_group']}@{u['version']}:{u['feature']}", cell(u["views"]),
                      cell(u["training_datasets"]), cell(u["partner_projects"]), cell(u["partner_training_datasets"]),
                      cell(u["last_served"]))
    console.print(table)


def print_report(report: dict[str, Any]) -> None:
    """The reuse summary as a few lines."""
    share = report["reused_training_column_share"]
    console.print(f"project {report['project']}: {report['features_defined']} features defined in "
                  f"{report['feature_groups']} feature group versions, {report['features_used']} used, "
                  f"{report['reused_features']} reused (by more than one view or project); "
                  f"{report['views']} feature view versions; partner projects: "
                  f"{', '.join(report['partner_projects']) or 'none'}", highlight=False)
    console.print(f"training columns from reused features: {report['training_columns_from_reused']} of "
                  f"{report['training_columns']}" + (f" ({share:.0%})" if share is not None else ""), highlight=False)
    if report["reused"]:
        console.print(f"reused: {', '.join(report['reused'])}", highlight=False)


__all__ = ["fv_group", "parse_transform", "print_report", "usage_command", "worded"]
