"""Feature drift: how each feature's distribution moved between two windows of a
feature group's offline rows.

The measures are computed in SQL by ``fstore.feature_drift`` (``sql/functions/80_drift.sql``),
with the caller's rights: row-level security decides which rows each window holds.
A window is a commit, a list of commits, the commits up to or after one, an
event-time range, or what a training dataset saw.

Example::

    fs = fstore.connect("fraud", "bob")
    report = fs.drift("account_activity", baseline={"up_to_commit": 12}, current={"after_commit": 12})
    report.drifted                       # ['tx_amount_7d']
    report.to_pandas()

    # since a model was trained: the rows that dataset saw against everything newer
    report = fs.drift("account_activity", baseline=fs.training_dataset("fraud_detection"))

    # training/serving skew: what a feature view served (its log) against its training split
    report = fs.drift(fs.get_feature_view("fraud_detection"), current=(yesterday, None))

    # per slice: each country's current rows against its baseline rows (small ones folded)
    report = fs.drift("account_profile", baseline=12, current=13, slice_by="country")
    report.drifted_slices                # ['MT']
    report.slice("MT").features[0].psi
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from fstore.datasets import TrainingDataset
from fstore.errors import InvalidInput, NotFound, translated
from fstore.featuregroups import FeatureGroup, get_feature_group
from fstore.sensitive import readable_features
from fstore.session import Session

if TYPE_CHECKING:
    import pandas as pd

WINDOW_KEYS = ("commit", "commits", "up_to_commit", "after_commit", "from", "to")
MEASURES = ("psi", "js_distance", "ks", "wasserstein", "new_values", "null_rate_change")  # fstore.drift_measures()
Thresholds = Mapping[str, Mapping[str, float]]
DEFAULT_BINS = 10
DEFAULT_THRESHOLD = 0.2  # PSI from 0.2 on: the usual "significant shift"
DEFAULT_MIN_SLICE_ROWS = 30  # as fstore.slice_statistics: smaller slices are folded into '(other)'


@dataclass
class FeatureDrift:
    """The drift measures of one feature (see ``fstore.feature_drift`` for each definition)."""

    feature: str
    kind: str                       # numeric, categorical, vector (by L2 norm) or temporal
    baseline_rows: int
    current_rows: int
    baseline_null_rate: float | None
    current_null_rate: float | None
    baseline_mean: float | None     # numeric and vector only
    current_mean: float | None
    psi: float | None               # population stability index
    js_distance: float | None       # Jensen-Shannon distance, base 2, in [0, 1]
    ks: float | None                # two-sample Kolmogorov-Smirnov statistic (numeric and vector)
    new_values: int | None          # distinct current values the baseline never had (categorical)
    drifted: bool | None            # any measure reached its threshold (None: no thresholded measure applies)
    wasserstein: float | None = None  # Wasserstein-1 distance, in the feature's own units (numeric and vector)
    thresholds: dict[str, float] | None = None  # the thresholds applied, per measure
    tripped: list[str] | None = None  # the measures that reached their threshold
    estimated: bool = False         # measured on samples of the windows (sample_rows): estimates


@dataclass
class SliceDrift:
    """The drift of each feature within one slice, one value of ``slice_by`` (``fstore.slice_drift``):
    the slice's current rows against its baseline rows."""

    slice: str | None               # the value as text; None for NULLs; '(other)' for the folded small slices
    slice_kind: str                 # value, null or other
    baseline_rows: int              # the slice's rows in each window
    current_rows: int
    folded_values: int | None       # other: how many values were folded into it (each with too few rows)
    drifted: bool                   # a feature of the slice drifted
    features: list[FeatureDrift] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The slice as shown: its value, ``(null)`` or ``(other)``."""
        return "(null)" if self.slice_kind == "null" else str(self.slice)


@dataclass
class DriftReport:
    """Drift of a feature group's features between a baseline and a current window."""

    feature_group: str              # project.name@version
    baseline: dict[str, Any]
    current: dict[str, Any]
    threshold: float                # the PSI threshold under the stored and given per-feature thresholds
    features: list[FeatureDrift] = field(default_factory=list)
    note: str | None = None         # why there are no measures (nothing committed since the baseline)
    slice_by: str | None = None     # with slices: the column they are values of
    min_slice_rows: int | None = None  # values with fewer rows in a window were folded into '(other)'
    slices: list[SliceDrift] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        """The features where any measure reached its threshold (over the whole windows)."""
        return [f.feature for f in self.features if f.drifted]

    @property
    def drifted_slices(self) -> list[str]:
        """The slices (as :attr:`SliceDrift.name`) in which any feature drifted."""
        return [s.name for s in self.slices if s.drifted]

    @property
    def folded(self) -> SliceDrift | None:
        """The ``(other)`` slice of the values with fewer than ``min_slice_rows`` rows, if any."""
        return next((s for s in self.slices if s.slice_kind == "other"), None)

    def slice(self, value: str | None) -> SliceDrift:
        """The slice of one value (``None``: the NULLs); :class:`NotFound` when it is not a slice of its own."""
        kind = "null" if value is None else "value"
        text = str(value).lower() if isinstance(value, bool) else str(value)  # as PostgreSQL prints it
        for s in self.slices:
            if s.slice_kind == kind and (value is None or s.slice == text):
                return s
        raise NotFound(f"{self.slice_by} = {value!r} is not a slice of this drift report (absent, hidden from you, "
                       f"or folded into (other): fewer than {self.min_slice_rows} rows in a window)")

    def to_pandas(self) -> "pd.DataFrame":
        """One row per feature."""
        import pandas as pd

        return pd.DataFrame([asdict(f) for f in self.features])

    def to_html(self, path: Any, fs: Session | None = None, **options: Any) -> Any:
        """Write the report to ``path`` (str or Path) as one self-contained HTML file and return its Path
        (histograms need ``fs``): :func:`fstore.drift_html.write_html`. ``report.to_html("drift.html", fs)``."""
        from fstore import drift_html

        return drift_html.write_html(self, path, fs, **options)


def window(spec: Any, group: FeatureGroup | None = None, *, label: str = "window") -> dict[str, Any]:
    """A window as ``fstore.feature_drift`` takes it.

    ``spec`` is a dict with any of ``commit``, ``commits``, ``up_to_commit``,
    ``after_commit``, ``from``, ``to`` (datetimes or ISO strings; event time in
    [from, to)); an int (one commit); a ``(from, to)`` pair (either may be None);
    or a :class:`~fstore.datasets.TrainingDataset` (the commits of ``group`` it saw).
    """
    if isinstance(spec, bool):
        raise InvalidInput(f"{label}: give a commit id, a dict, a (from, to) pair or a training dataset")
    if isinstance(spec, int):
        return {"commit": spec}
    if isinstance(spec, tuple) and len(spec) == 2:
        return {k: _timestamp(v, label) for k, v in zip(("from", "to"), spec) if v is not None}
    if isinstance(spec, TrainingDataset):
        return {"up_to_commit": _commit_seen(spec, group)}
    if isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in WINDOW_KEYS]
        if unknown:
            raise InvalidInput(f"{label}: unknown key {unknown[0]!r}; use {', '.join(WINDOW_KEYS)}")
        return {k: _timestamp(v, label) if k in ("from", "to") else v for k, v in spec.items()}
    raise InvalidInput(f"{label}: give a commit id, a dict, a (from, to) pair or a training dataset, "
                       f"not {type(spec).__name__}")


def _timestamp(value: Any, label: str) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        return value
    if hasattr(value, "isoformat"):  # pandas.Timestamp
        return value.isoformat()
    raise InvalidInput(f"{label}: from/to must be datetimes or ISO strings, not {type(value).__name__}")


def _commit_seen(dataset: TrainingDataset, group: FeatureGroup | None) -> int:
    if group is None:
        raise InvalidInput("a training dataset window needs the feature group it is compared on")
    for seen in dataset.feature_groups:
        if (seen.get("project"), seen.get("name"), seen.get("version")) == (group.project, group.name, group.version):
            if seen.get("max_commit") is None:
                raise InvalidInput(f"training dataset {dataset.name} v{dataset.version} saw no commit of "
                                   f"{group.full_name}")
            return int(seen["max_commit"])
    raise InvalidInput(f"training dataset {dataset.name} v{dataset.version} does not use feature group "
                       f"{group.full_name}")


def drift(
    fs: Session,
    name: Any,
    baseline: Any = None,
    current: Any = None,
    *,
    version: int | None = None,
    features: Sequence[str] | None = None,
    bins: int = DEFAULT_BINS,
    threshold: float = DEFAULT_THRESHOLD,
    thresholds: Thresholds | None = None,
    sample_rows: int | None = None,
    slice_by: str | None = None,
    min_slice_rows: int = DEFAULT_MIN_SLICE_ROWS,
) -> DriftReport:
    """Drift of the features of feature group ``name`` between two windows of its rows.

    A feature drifted when any measure reached its threshold: ``threshold`` is the PSI's;
    ``thresholds`` gives any measure (:data:`MEASURES`) per feature, or for every feature
    as ``"*"``; they apply over the group's stored defaults
    (:meth:`fstore.featuregroups.FeatureGroup.set_drift_thresholds`), measure by measure.

    ``sample_rows`` measures a window larger than that on a uniform sample of about that
    many rows: faster, and every measure is then an estimate (``estimated`` is true; the
    row counts stay exact).

    ``current`` defaults to the rows after the baseline's last commit when the
    baseline is a training dataset or ``{"up_to_commit": N}``; otherwise it is
    required. See :func:`window` for the forms a window takes. When nothing was
    committed after such a baseline, the report has no measures and says so in ``note``.

    ``slice_by`` (a column of the group) adds the drift within each of its values
    (``report.slices``, ``fstore.slice_drift``): each slice's current rows against its
    baseline rows, with the same thresholds; a value with fewer than ``min_slice_rows`` rows
    in either window is folded into one ``(other)`` slice that says how many values it holds.
    A slice column the caller may not read (a sensitive feature) is refused by name.

    ``name`` may also be a feature view (:class:`fstore.featureviews.FeatureView`): then the
    current window is what it served and logged (``current``: a ``(from, to)`` pair of served
    times, default all) and the baseline its training split (``baseline``: one of its
    training datasets, default the latest fitted); see :func:`feature_view_drift`.

    Example::

        report = fs.drift("account_activity", baseline=("2024-01-01", "2024-02-01"),
                          current=("2024-02-01", None), features=["tx_amount_7d"],
                          thresholds={"tx_amount_7d": {"psi": 0.1, "wasserstein": 50}})
    """
    if not isinstance(name, str) and hasattr(name, "serving_keys"):  # a feature view
        if thresholds is not None or sample_rows is not None or slice_by is not None:
            raise InvalidInput("a feature view's drift takes the PSI threshold only (no thresholds, sample_rows, slice_by)")
        if baseline is not None and not isinstance(baseline, TrainingDataset):
            raise InvalidInput("the baseline of a feature view's drift is one of its training datasets")
        return feature_view_drift(fs, name.name, current, version=name.version,
                                  training_dataset_version=baseline.version if baseline is not None else None,
                                  bins=bins, threshold=threshold)
    if baseline is None:
        raise InvalidInput("give a baseline window (a commit, a dict, a (from, to) pair or a training dataset)")
    group = get_feature_group(fs, name, version=version)
    if slice_by is not None:
        readable_features(group, [slice_by])  # a sensitive slice column: refused by name
    asked = features
    features = readable_features(group, features)  # a sensitive feature: refused by name; None: the readable ones
    label = f"{group.project}.{group.name}@{group.version}"
    base = window(baseline, group, label="baseline")
    if current is None:
        if set(base) != {"up_to_commit"}:
            raise InvalidInput("give the current window too (only a training dataset or up_to_commit baseline "
                               "implies it: the rows committed after)")
        cur = {"after_commit": base["up_to_commit"]}
        if not _committed_after(fs, group, base["up_to_commit"]):
            return DriftReport(feature_group=label, baseline=base, current=cur, threshold=threshold,
                               note=f"nothing was committed to {label} after commit {base['up_to_commit']} "
                                    f"(the baseline's last): no drift to measure yet")
    else:
        cur = window(current, group, label="current")
    if isinstance(features, str):
        features = [features]
    if slice_by is not None:
        return _slice_drift(fs, group, label, base, cur, slice_by, None if asked is None else features, bins=bins, threshold=threshold,
                            thresholds=thresholds, sample_rows=sample_rows, min_slice_rows=min_slice_rows)
    with translated(), fs.conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            "select * from fstore.feature_drift(%s, %s::jsonb, %s::jsonb, %s, %s, %s, %s::jsonb, %s)",
            (group.id, json.dumps(base), json.dumps(cur), list(features) if features is not None else None,
             bins, threshold, json.dumps(thresholds) if thresholds is not None else None, sample_rows)).fetchall()
    return DriftReport(feature_group=label, baseline=base, current=cur, threshold=threshold,
                       features=[FeatureDrift(**row) for row in rows])


def _slice_drift(fs: Session, group: FeatureGroup, label: str, base: dict[str, Any], cur: dict[str, Any],
                 slice_by: str, features: Sequence[str] | None, *, bins: int, threshold: float,
                 thresholds: Thresholds | None, sample_rows: int | None, min_slice_rows: int) -> DriftReport:
    """``fstore.slice_drift``'s rows as a report: the whole's features, then one :class:`SliceDrift` per slice."""
    if features is not None:
        features = [f for f in features if f != slice_by]  # the readable list, without the slice column
    with translated(), fs.conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            "select * from fstore.slice_drift(%s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s)",
            (group.id, slice_by, json.dumps(base), json.dumps(cur), features, bins, threshold,
             json.dumps(thresholds) if thresholds is not None else None, sample_rows, min_slice_rows)).fetchall()
    report = DriftReport(feature_group=label, baseline=base, current=cur, threshold=threshold, slice_by=slice_by,
                         min_slice_rows=min_slice_rows)
    for row in rows:
        key = {k: row.pop(k) for k in ("slice", "slice_kind", "slice_baseline_rows", "slice_current_rows",
                                      "folded_values", "slice_drifted")}
        measured = FeatureDrift(**row)
        if key["slice_kind"] == "all":
            report.features.append(measured)
            continue
        if not report.slices or (report.slices[-1].slice, report.slices[-1].slice_kind) != (key["slice"],
                                                                                             key["slice_kind"]):
            report.slices.append(SliceDrift(slice=key["slice"], slice_kind=key["slice_kind"],
                                            baseline_rows=key["slice_baseline_rows"],
                                            current_rows=key["slice_current_rows"],
                                            folded_values=key["folded_values"], drifted=key["slice_drifted"]))
        report.slices[-1].features.append(measured)
    return report


def _committed_after(fs: Session, group: FeatureGroup, commit: int) -> bool:
    """True when a commit with rows came to ``group`` after ``commit``."""
    with translated():
        return fs.conn.execute("select exists (select 1 from fstore.commits where feature_group_id = %s "
                               "and id > %s and rows > 0)", (group.id, commit)).fetchone()[0]


def feature_view_drift(fs: Session, view: str, current: Any = None, *, version: int | None = None,
                       training_dataset_version: int | None = None, bins: int = DEFAULT_BINS,
                       threshold: float = DEFAULT_THRESHOLD) -> DriftReport:
    """Training/serving skew of feature view ``view``: per model-ready column, its training split
    (transformed with the fitted parameters) against the vectors the view served and logged in
    ``current`` (a ``(from, to)`` pair of served times, either None; default everything),
    measured by ``fstore.feature_view_drift`` (the same measures as a group's drift).

    Example::

        report = fs.get_feature_view("fraud_detection").drift((dt.datetime(2024, 6, 1), None))
        report.drifted                          # ['amount']
    """
    served = window(current, label="current") if current is not None else {}
    if set(served) - {"from", "to"}:
        raise InvalidInput("the window of a feature view's drift is a (from, to) pair of served times")
    with translated(), fs.conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            "select * from fstore.feature_view_drift(%s, %s, %s, %s::timestamptz, %s::timestamptz, %s, %s)",
            (view, version, training_dataset_version, served.get("from"), served.get("to"), bins, threshold)
        ).fetchall()
    features = [FeatureDrift(feature=r.pop("column"), kind="numeric", new_values=None, **r) for r in rows]
    return DriftReport(feature_group=f"feature view {view}" + (f"@{version}" if version else ""),
                       baseline={"training_dataset_version": training_dataset_version, "split": "train"},
                       current={"served": served}, threshold=threshold, features=features)
