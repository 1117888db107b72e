"""Bias by slice: statistics of a feature group per value of one of its columns, and the
label rate of a training dataset per value of one of its columns.

Both are computed in SQL (``sql/functions/52_slices.sql``) with the caller's rights: row-level
security and row policies decide the rows, so a reader bound by a policy gets slices of
the rows they may read, and a hidden row's slice value never appears.

* :func:`slice_statistics` (``fg.statistics(slice_by="country")``): per slice, its rows and
  per feature count, nulls, mean/std/min/max (numeric) or top values (categorical), and the
  PSI of the slice's distribution against the whole; slices whose PSI reaches ``threshold``
  (default 0.2) are flagged.
* :func:`label_rate_by_slice` (``fs.label_rate_by_slice("fraud_train", "country")``): per
  slice, the label rate against the rest's, a two-proportion z test; a slice is flagged
  when the rates differ by at least ``max_difference`` (default 0.1) and the test's p-value
  is below ``alpha`` (default 0.05; ``alpha=None`` flags on the difference alone).

Slices with fewer than ``min_slice_rows`` rows (default 30) are folded into one slice,
``(other)`` (``kind == "other"``), whose ``folded_values`` says how many values it holds.

Example::

    stats = fs.get_feature_group("account_profile").statistics(slice_by="country")
    stats.flagged                                   # ['MT']: slices whose PSI >= 0.2
    stats.slice("DE").features["monthly_income"]["mean"]
    rates = fs.label_rate_by_slice("fraud_train", "country")
    [(s.slice, s.label_rate, s.rest_rate) for s in rates.slices if s.flagged]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from psycopg.rows import dict_row

from fstore.errors import InvalidInput, NotFound, translated
from fstore.session import Session

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_MIN_SLICE_ROWS = 30
DEFAULT_PSI_THRESHOLD = 0.2      # PSI from 0.2 on: the usual "significant shift", as drift
DEFAULT_MAX_DIFFERENCE = 0.1     # label rates 10 points apart
DEFAULT_ALPHA = 0.05             # two-proportion z test, two-sided
DEFAULT_BINS = 10

__all__ = [
    "LabelRateSlice", "LabelRates", "Slice", "SliceStatistics", "label_rate_by_slice", "slice_statistics",
]


def _kind_label(kind: str, value: str | None) -> str:
    return "(null)" if kind == "null" else str(value)


@dataclass
class Slice:
    """One slice of a feature group's rows (see ``fstore.slice_statistics``)."""

    slice: str | None                # the value (as text); None for NULLs; '(all)' and '(other)' for those kinds
    slice_kind: str                  # all (the whole), value, null, other (the folded small slices)
    rows: int
    share: float | None              # of the whole's rows
    folded_values: int | None        # other: how many values were folded into it
    features: dict[str, dict[str, Any]]
    psi_max: float | None
    flagged_features: list[str]
    flagged: bool

    @property
    def name(self) -> str:
        """The slice as shown: its value, ``(null)``, ``(other)`` or ``(all)``."""
        return _kind_label(self.slice_kind, self.slice)


@dataclass
class SliceStatistics:
    """Statistics of a feature group per value of ``slice_by`` (``fg.statistics(slice_by=...)``)."""

    feature_group: str               # project.name@version
    slice_by: str
    commit: int | None               # None: every offline row the caller may read
    threshold: float
    min_slice_rows: int
    slices: list[Slice] = field(default_factory=list)

    @property
    def whole(self) -> Slice:
        """The whole (every row), against which each slice's PSI is measured."""
        return next(s for s in self.slices if s.slice_kind == "all")

    @property
    def flagged(self) -> list[str]:
        """The slices (as :attr:`Slice.name`) with a feature whose PSI reached the threshold."""
        return [s.name for s in self.slices if s.flagged]

    @property
    def folded(self) -> Slice | None:
        """The ``(other)`` slice of the values with fewer than ``min_slice_rows`` rows, if any."""
        return next((s for s in self.slices if s.slice_kind == "other"), None)

    def slice(self, value: str | None) -> Slice:
        """The slice of one value (``None``: the NULLs); :class:`NotFound` when it is not a slice of its own."""
        kind = "null" if value is None else "value"
        text = str(value).lower() if isinstance(value, bool) else str(value)  # as PostgreSQL prints it
        for s in self.slices:
            if s.slice_kind == kind and (value is None or s.slice == text):
                return s
        raise NotFound(f"{self.slice_by} = {value!r} is not a slice of {self.feature_group} "
                       f"(absent, hidden from you, or folded into (other): fewer than {self.min_slice_rows} rows)")

    def to_pandas(self) -> "pd.DataFrame":
        """One row per slice and feature: slice, kind, rows, share, feature, then the feature's statistics."""
        import pandas as pd

        records = []
        for s in self.slices:
            for feature, stats in s.features.items():
                records.append({"slice": s.name, "slice_kind": s.slice_kind, "rows": s.rows, "share": s.share,
                                "feature": feature, **{k: v for k, v in stats.items() if k != "top_values"}})
        return pd.DataFrame(records)


@dataclass
class LabelRateSlice:
    """The label rate of one slice of a training dataset, against the rest (see ``fstore.training_dataset_slices``)."""

    slice: str | None
    slice_kind: str                  # all, value, null, other
    rows: int
    labelled: int                    # rows with a non-NULL label
    positives: int
    label_rate: float | None
    rest_labelled: int | None
    rest_rate: float | None
    difference: float | None         # label_rate - rest_rate
    z: float | None                  # two-proportion z statistic (pooled)
    p_value: float | None            # two-sided
    folded_values: int | None
    flagged: bool

    @property
    def name(self) -> str:
        """The slice as shown: its value, ``(null)``, ``(other)`` or ``(all)``."""
        return _kind_label(self.slice_kind, self.slice)


@dataclass
class LabelRates:
    """The label rate of a training dataset per value of ``slice_by`` (``fs.label_rate_by_slice``)."""

    training_dataset: str            # project.name@version
    label: str | None
    slice_by: str
    split: str | None
    min_slice_rows: int
    max_difference: float
    alpha: float | None
    slices: list[LabelRateSlice] = field(default_factory=list)

    @property
    def whole(self) -> LabelRateSlice:
        """Every row: the dataset's label rate."""
        return next(s for s in self.slices if s.slice_kind == "all")

    @property
    def flagged(self) -> list[str]:
        """The slices whose label rate differs from the rest's beyond the thresholds."""
        return [s.name for s in self.slices if s.flagged]

    def to_pandas(self) -> "pd.DataFrame":
        """One row per slice."""
        import pandas as pd

        return pd.DataFrame([{"name": s.name, **asdict(s)} for s in self.slices])


def slice_statistics(group: Any, slice_by: str, *, features: Sequence[str] | None = None,
                     commit: int | None = None, min_slice_rows: int = DEFAULT_MIN_SLICE_ROWS,
                     threshold: float = DEFAULT_PSI_THRESHOLD, bins: int = DEFAULT_BINS) -> SliceStatistics:
    """Statistics of feature group ``group`` (a :class:`~fstore.featuregroups.FeatureGroup`) per value
    of its column ``slice_by``, over every offline row the caller may read (or commit ``commit``'s).

    Example::

        stats = slice_statistics(fg, "country", features=["monthly_income"])
        stats.whole.features["monthly_income"]["mean"], stats.flagged
    """
    if not isinstance(slice_by, str) or not slice_by:
        raise InvalidInput("give slice_by: the name of a column of the feature group")
    if isinstance(features, str):
        features = [features]
    with translated(), group.store.conn.transaction(), group.store.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "select * from fstore.slice_statistics(%s, %s, %s, %s, %s, %s, %s)",
            (group.id, slice_by, list(features) if features is not None else None, commit, min_slice_rows,
             threshold, bins)).fetchall()
    return SliceStatistics(feature_group=f"{group.project}.{group.name}@{group.version}", slice_by=slice_by,
                           commit=commit, threshold=threshold, min_slice_rows=min_slice_rows,
                           slices=[Slice(**row) for row in rows])


def label_rate_by_slice(fs: Session, name: str, slice_by: str, *, version: int | None = None,
                        label: str | None = None, split: str | None = None,
                        min_slice_rows: int = DEFAULT_MIN_SLICE_ROWS, max_difference: float = DEFAULT_MAX_DIFFERENCE,
                        alpha: float | None = DEFAULT_ALPHA) -> LabelRates:
    """The label rate of training dataset ``name`` (``name@version`` too) per value of its column
    ``slice_by``, each slice against the rest, over the rows the caller may read.

    Example::

        rates = label_rate_by_slice(fs, "fraud_train", "country", split="train")
        rates.whole.label_rate, rates.flagged
    """
    from fstore.datasets import parse_name

    base, at_version = parse_name(name)
    if at_version is not None and version is not None and at_version != version:
        raise InvalidInput(f"{name!r} names version {at_version}, but version={version} was given")
    version = at_version if at_version is not None else version
    if not isinstance(slice_by, str) or not slice_by:
        raise InvalidInput("give slice_by: the name of a column of the training dataset")
    with translated(), fs.conn.cursor(row_factory=dict_row) as cur:
        found = cur.execute("select version, label from fstore.find_training_dataset(%s, %s)",
                            (base, version)).fetchone()
        rows = cur.execute(
            "select * from fstore.training_dataset_slices(%s, %s, %s, %s, %s, %s, %s, %s)",
            (base, slice_by, found["version"], label, split, min_slice_rows, max_difference, alpha)).fetchall()
    labels = list(found["label"] or [])
    return LabelRates(training_dataset=f"{fs.project}.{base}@{found['version']}",
                      label=label or (labels[0] if len(labels) == 1 else None), slice_by=slice_by,
                      split=split, min_slice_rows=min_slice_rows, max_difference=max_difference, alpha=alpha,
                      slices=[LabelRateSlice(**row) for row in rows])
