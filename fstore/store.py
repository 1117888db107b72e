"""The feature store handle: one identity (a project-user's certificate), one project.

Example::

    import fstore
    fs = fstore.connect("fraud", "alice")
    fg = fs.get_feature_group("account_activity")
    training = fs.get_historical_features(spine, ["account_activity:*"])

The handle holds the connection material and a lazily opened psycopg
connection; the work lives in the modules named after what users do
(:mod:`fstore.featuregroups`, :mod:`fstore.training`, :mod:`fstore.online`,
:mod:`fstore.export`, :mod:`fstore.drift`), which take any
:class:`fstore.session.Session` and never import this module. Methods here only
delegate; their modules are imported on first use, so that ``import fstore`` stays
light (the CRL keeper's image has no data libraries).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from fstore import slices as slice_defaults
from fstore.connection import ConnectionMaterial, open_adbc, open_psycopg
from fstore.home import FstoreHome
from fstore.roles import split_project_user

if TYPE_CHECKING:
    import datetime as dt

    import pyarrow as pa
    from psycopg import sql

    from fstore.datasets import TrainingDataset
    from fstore.drift import DriftReport
    from fstore.erasure import ErasureReport
    from fstore.export import ExportResult, Progress
    from fstore.featuregroups import FeatureGroup
    from fstore.featureviews import FeatureView
    from fstore.monitors import Monitors
    from fstore.pointintime import Spine
    from fstore.serving_pool import OnlineStore
    from fstore.slices import LabelRates


class FeatureStore:
    """A connection to one project as one project-user (see :func:`fstore.login.connect`).

    It satisfies :class:`fstore.session.Session`. Use it as a context manager to close
    its connection at the end.
    """

    def __init__(self, material: ConnectionMaterial, home: FstoreHome | None = None) -> None:
        self.material = material
        self.home = home
        self.role = material.role
        self.project, self.user = split_project_user(material.role)
        self._conn: psycopg.Connection[Any] | None = None

    # --- connections -------------------------------------------------------------
    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The handle's psycopg connection (opened on first use, autocommit).

        Example::

            fs.conn.execute("select count(*) from fraud.labels").fetchone()
        """
        if self._conn is None or self._conn.closed:
            self._conn = open_psycopg(self.material, autocommit=True)
        return self._conn

    def new_connection(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """A fresh psycopg connection with the same identity (the caller closes it).

        Example::

            with fs.new_connection() as conn:       # a transaction of its own
                conn.execute("select 1")
        """
        return open_psycopg(self.material, **kwargs)

    def adbc(self) -> Any:
        """A fresh ADBC connection with the same identity, for Arrow bulk reads (the caller closes it).

        Example::

            with fs.adbc() as conn, conn.cursor() as cur:
                cur.execute("select * from fraud.account_activity__v1")
                table = cur.fetch_arrow_table()
        """
        return open_adbc(self.material)

    def close(self) -> None:
        """Close the handle's connection (a later use opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore(project={self.project!r}, user={self.user!r})"

    # --- feature groups (fstore.featuregroups) -----------------------------------
    def get_feature_group(self, name: str, version: int | None = None) -> "FeatureGroup":
        """A feature group by name (``project.name`` for a shared project's), latest version by default.

        Example::

            fg = fs.get_feature_group("account_activity", version=2)
            fg.statistics()["amount"]["mean"]
        """
        from fstore import featuregroups

        return featuregroups.get_feature_group(self, name, version)

    def create_feature_group(
        self, name: str, version: int | None = None, keys: Sequence[str] = (), event_time: str = "event_time",
        online: bool = False, ttl: dt.timedelta | str | None = None, description: str = "",
        tags: Sequence[str] = (), features: Any = None, statistics: bool = True, validation: Any = None,
        validation_policy: str = "strict", options: Mapping[str, Any] | None = None,
        feature_descriptions: Mapping[str, str] | None = None,
    ) -> "FeatureGroup":
        """Create a feature-group version (its tables and catalog entry); Data Owners only.

        ``features`` is ``{column: type}`` or a DataFrame / Arrow table or schema to take the
        types from; ``version=None`` takes the next free version (allocated by the database).
        See :func:`fstore.featuregroups.create_feature_group`.

        Example::

            fg = fs.create_feature_group("risk", keys=["account_id"], features=df, online=True, ttl="7 days")
            fg.insert(df)
        """
        from fstore import featuregroups

        return featuregroups.create_feature_group(
            self, name, version, keys=keys, event_time=event_time, online=online, ttl=ttl, description=description,
            tags=tags, features=features, statistics=statistics, validation=validation,
            validation_policy=validation_policy, options=options, feature_descriptions=feature_descriptions)

    def list_feature_groups(self) -> list[dict[str, Any]]:
        """Every feature-group version the caller can see (own and shared projects), with commit totals.

        Example::

            [(g["name"], g["version"], g["rows"]) for g in fs.list_feature_groups()]
        """
        from fstore import featuregroups

        return featuregroups.list_feature_groups(self)

    def search(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Feature groups matching ``text`` in names, descriptions, tags or feature names, best first.

        Example::

            [r["name"] for r in fs.search("transaction count")]
        """
        from fstore import featuregroups

        return featuregroups.search(self, text, limit)

    # --- training data (fstore.training) -----------------------------------------
    def get_historical_features(
        self, spine: "Spine", features: str | Sequence[str], *, event_time_column: str = "event_time",
        ttl: dt.timedelta | str | None = None, full_feature_names: bool = False,
        keys: Mapping[str, str] | None = None, workers: int | None = None, strategy: str = "auto",
        plan: list[Any] | None = None,
    ) -> "pa.Table":
        """Point-in-time correct features for every spine row, as an Arrow table in spine order.

        ``spine`` is a DataFrame, Arrow data, a table name or a SELECT; ``features`` are
        references (``group:feature``, ``group:*``, ``group@2:feature``, ``project.group:feature``).
        ``strategy``: ``"auto"``, ``"probe"``, ``"merge"`` or ``"asof"``; a ``plan`` list receives each
        group's strategy and why. See :func:`fstore.pointintime.get_historical_features`.

        Example::

            table = fs.get_historical_features(labels_df, ["activity:*", "risk@2:score"], ttl="30 days")
        """
        from fstore import pointintime

        return pointintime.get_historical_features(
            self, spine, features, event_time_column=event_time_column, ttl=ttl,
            full_feature_names=full_feature_names, keys=keys, workers=workers, strategy=strategy, plan=plan)

    def explain_historical_features(
        self, spine: "Spine", features: str | Sequence[str], *, event_time_column: str = "event_time",
        ttl: dt.timedelta | str | None = None, full_feature_names: bool = False, strategy: str = "auto",
    ) -> list[dict[str, Any]]:
        """Which join each feature group gets for this spine (probe, merge or asof) and why.

        Example::

            [(g["group"], g["strategy"]) for g in fs.explain_historical_features(labels_df, ["activity:*"])]
        """
        from fstore import pointintime

        return pointintime.explain_historical_features(
            self, spine, features, event_time_column=event_time_column, ttl=ttl,
            full_feature_names=full_feature_names, strategy=strategy)

    def create_training_dataset(
        self, name: str, spine: "Spine", features: str | Sequence[str], *,
        label: str | Sequence[str] | None = None, split: Mapping[str, Any] | None = None, seed: int = 0,
        format: str | None = None, path: str | Path | None = None, event_time_column: str = "event_time",
        ttl: dt.timedelta | str | None = None, full_feature_names: bool = False,
        keys: Mapping[str, str] | None = None, description: str = "", version: int | None = None,
        new_version: bool = False, progress: "Progress | None" = None,
    ) -> "TrainingDataset":
        """Build, store and record a training dataset (and export it with ``path``).

        An existing name is refused unless ``new_version=True`` (or ``version=`` the next
        version). See :func:`fstore.training.create_training_dataset`.

        Example::

            ds = fs.create_training_dataset("fraud_train", "select * from fraud.labels", ["activity:*"],
                                            label="is_fraud", split={"train": 0.8, "test": 0.2})
            ds2 = fs.create_training_dataset("fraud_train", spine, ["activity:*"], new_version=True)
        """
        from fstore import training

        return training.create_training_dataset(
            self, name, spine, features, label=label, split=split, seed=seed, format=format, path=path,
            event_time_column=event_time_column, ttl=ttl, full_feature_names=full_feature_names, keys=keys,
            description=description, version=version, new_version=new_version, progress=progress)

    def get_training_dataset(self, name: str, version: int | None = None) -> "pa.Table":
        """The rows of a training dataset as stored, in spine order (the same rows every time).

        Example::

            table = fs.get_training_dataset("fraud_train")        # the latest version
        """
        from fstore import training

        return training.get_training_dataset(self, name, version)

    def training_dataset(self, name: str, version: int | None = None) -> "TrainingDataset":
        """The catalog record of a training dataset (not its rows): provenance, label, split, exports.

        Example::

            fs.training_dataset("fraud_train").commits       # {'fraud.activity@1': 42}
        """
        from fstore import datasets
        return datasets.find_training_dataset(self, name, version)

    def list_training_datasets(self, name: str | None = None) -> list["TrainingDataset"]:
        """Training datasets the caller can see (its project's and shared ones), newest first.

        Example::

            [(d.name, d.version, d.rows) for d in fs.list_training_datasets()]
        """
        from fstore import datasets
        return datasets.list_training_datasets(self, name)

    def forget(self, keys: Mapping[str, Any]) -> "ErasureReport":
        """Erase one entity everywhere in this project, in one transaction (Data Owners only; audited).

        Returns what was removed per table and what fstore cannot reach (exported files by
        path). See :func:`fstore.erasure.forget` and docs/erasure.md.

        Example::

            report = fs.forget({"account_id": 42})
            report.rows, report.needs_action["exports"]
        """
        from fstore import erasure
        return erasure.forget(self, keys)

    def label_rate_by_slice(self, name: str, slice_by: str, *, version: int | None = None,
                            label: str | None = None, split: str | None = None,
                            min_slice_rows: int = slice_defaults.DEFAULT_MIN_SLICE_ROWS,
                            max_difference: float = slice_defaults.DEFAULT_MAX_DIFFERENCE,
                            alpha: float | None = slice_defaults.DEFAULT_ALPHA) -> "LabelRates":
        """The label rate of training dataset ``name`` per value of its column ``slice_by``,
        each slice against the rest (:func:`fstore.slices.label_rate_by_slice`).

        Example::

            rates = fs.label_rate_by_slice("fraud_train", "country", split="train")
            rates.flagged
        """
        return slice_defaults.label_rate_by_slice(self, name, slice_by, version=version, label=label, split=split,
                                                  min_slice_rows=min_slice_rows, max_difference=max_difference,
                                                  alpha=alpha)

    # --- drift (fstore.drift) ----------------------------------------------------
    def drift(
        self, name: "str | FeatureView", baseline: Any = None, current: Any = None, *, version: int | None = None,
        features: Sequence[str] | None = None, bins: int = 10, threshold: float = 0.2,
        thresholds: Mapping[str, Mapping[str, float]] | None = None, sample_rows: int | None = None,
        slice_by: str | None = None, min_slice_rows: int = 30,
    ) -> "DriftReport":
        """Drift of a feature group's features between two windows of its rows.

        A window is a commit id, ``{"up_to_commit": N}`` and the like, a ``(from, to)`` pair,
        or a training dataset (what it saw; the current window then defaults to what came
        after). For a feature view, what it served and logged (``current``: a ``(from, to)`` pair
        of served times) against its training split. ``thresholds`` sets any measure's threshold
        per feature (``"*"``: every feature), over the group's stored defaults; ``sample_rows``
        measures larger windows on samples (estimates); ``slice_by`` adds the drift within each
        value of a column (``report.slices``; values with fewer than ``min_slice_rows`` rows in a
        window folded into ``(other)``). See :func:`fstore.drift.drift`.

        Example::

            report = fs.drift("account_activity", baseline=fs.training_dataset("fraud_train"))
            fs.drift("account_profile", 12, 14, slice_by="country").drifted_slices   # ['MT']
            fs.drift("account_activity", 12, 14, thresholds={"tx_amount_7d": {"psi": 0.1, "wasserstein": 50}})
            fs.drift(fs.get_feature_view("fraud_detection")).drifted    # training/serving skew
        """
        from fstore import drift

        return drift.drift(self, name, baseline, current, version=version, features=features, bins=bins,
                           threshold=threshold, thresholds=thresholds, sample_rows=sample_rows, slice_by=slice_by,
                           min_slice_rows=min_slice_rows)

    @property
    def monitors(self) -> "Monitors":
        """This project's monitors: scheduled drift checks run by pg_cron in this identity's rights
        (:class:`fstore.monitors.Monitors`: ``create``, ``list``, ``get``, ``drop``, ``alerts``).

        Example::

            fs.monitors.create("activity_drift", "account_activity", baseline={"up_to_commit": 12},
                               current="last 1 day", every="1h")
        """
        from fstore.monitors import Monitors

        return Monitors(self)

    # --- feature views (fstore.featureviews) --------------------------------------
    def create_feature_view(
        self, name: str, features: str | Sequence[str], *, label: str | Sequence[str] | None = None,
        serving_keys: Sequence[str] | None = None, passed_features: Any = None,
        transformations: Mapping[str, Any] | None = None, description: str = "", tags: Sequence[str] = (),
        log_rate: float | None = None, version: int | None = None,
    ) -> "FeatureView":
        """A new feature view, for training and serving: :func:`fstore.featureviews.create_feature_view`.

        Example::

            fv = fs.create_feature_view("scoring", ["activity:*"], label="is_fraud", passed_features={"amount": "float8"},
                                        transformations={"amount": "log1p", "tx_count_7d": "standard_scaler"})
        """
        from fstore import featureviews

        return featureviews.create_feature_view(
            self, name, features, label=label, serving_keys=serving_keys, passed_features=passed_features,
            transformations=transformations, description=description, tags=tags, log_rate=log_rate, version=version)

    def get_feature_view(self, name: str, version: int | None = None) -> "FeatureView":
        """A feature view of the project, the latest version unless ``version``.

        Example::

            fs.get_feature_view("scoring").get_feature_vector({"account_id": 1}, {"amount": 9.5})
        """
        from fstore import featureviews

        return featureviews.get_feature_view(self, name, version)

    def list_feature_views(self, name: str | None = None) -> list["FeatureView"]:
        """The feature views the caller can see (its project's and shared projects').

        Example::

            [(v.name, v.version) for v in fs.list_feature_views()]
        """
        from fstore import featureviews

        return featureviews.list_feature_views(self, name)

    def feature_usage(self, group: str | None = None, *, report: bool = False) -> Any:
        """Per feature of the project: the views, training datasets and partner projects using it and
        when it was last served; with ``report``, the reuse summary (see :mod:`fstore.featureviews`).

        Example::

            fs.feature_usage("activity"), fs.feature_usage(report=True)["reused_features"]
        """
        from fstore import featureviews

        return featureviews.usage_report(self, group) if report else featureviews.feature_usage(self, group)

    # --- online serving (fstore.online, fstore.vectors) --------------------------
    def get_online_features(self, features: Sequence[str], entity_rows: Any, *,
                            full_feature_names: bool = False) -> "pa.Table | dict[str, Any]":
        """The latest features of entities from the online store, in request order.

        ``entity_rows`` is a list of dicts, a DataFrame or an Arrow table of keys (a table comes
        back), or one dict (a dict comes back). See :func:`fstore.online.get_online_features`.

        Example::

            fs.get_online_features(["activity:*"], [{"account_id": 1}, {"account_id": 2}])
        """
        from fstore import online

        return online.get_online_features(self, features, entity_rows, full_feature_names=full_feature_names)

    def nearest(self, group: str, vector_feature: str, query_vector: Sequence[float], k: int = 10,
                where: str | None = None, *, metric: str | None = None,
                features: Sequence[str] | None = None) -> "pa.Table":
        """The ``k`` entities of an online feature group nearest to ``query_vector``, closest first.

        See :func:`fstore.vectors.nearest` (metrics, the ``where`` filter's whitelist).

        Example::

            fs.nearest("merchants", "embedding", [0.1, 0.2, 0.3], k=5, where="country = 'DE'")
        """
        from fstore import vectors

        return vectors.nearest(self.conn, group, vector_feature, query_vector, k, where, metric=metric,
                               features=features)

    def online_store(self, min_size: int = 1, max_size: int = 4, **pool_kwargs: Any) -> "OnlineStore":
        """An :class:`~fstore.serving_pool.OnlineStore`: lookups and vector search over a pool of
        connections with this identity, for long-lived serving processes (the caller closes it).

        Example::

            with fs.online_store(min_size=2, max_size=8) as store:
                store.get_online_features(["activity:*"], [{"account_id": 1}])
        """
        from fstore.serving_pool import OnlineStore

        return OnlineStore(self, min_size, max_size, **pool_kwargs)

    # --- exports (fstore.export) -------------------------------------------------
    def export(
        self, source: "str | TrainingDataset | sql.Composable", path: str | Path, format: str | None = None, *,
        label: str | Sequence[str] | None = None, split: bool = True, split_column: str | None = None,
        features: Sequence[str] | None = None, dtype: Any = "float64",
        progress: "Progress | None" = None, overwrite: bool = True,
    ) -> "ExportResult":
        """Export a training dataset (``name`` or ``name@version``, as the CLI takes it), a table or a query.

        A training dataset brings its label and split; its rows come in spine order, without
        the internal ``_row`` column. ``format`` defaults to ``path``'s suffix. See
        :func:`fstore.export.export`.

        Example::

            fs.export("fraud_train", "out/fraud_train.tfrecord")       # a directory of split files
            fs.export("account_activity__v1", "out/activity.parquet")  # a table
        """
        from fstore import export
        return export.export(self, source, path, format, label=label, split=split, split_column=split_column,
                             features=features, dtype=dtype, progress=progress, overwrite=overwrite)

    def tf_dataset(self, path: str | Path, *, label: str | Sequence[str] | None = None, batch_size: int = 256,
                   split: str | None = None, columns: Sequence[str] | None = None,
                   defaults: dict[str, Any] | None = None) -> Any:
        """A batched ``tf.data.Dataset`` over a TFRecord (or Parquet) export; needs ``fstore[tf]``.

        Yields feature dicts, or ``(features, label)`` with a label (by default the one the
        TFRecord spec records). See :func:`fstore.tfdata.tf_dataset`.

        Example::

            model.fit(fs.tf_dataset("out/fraud_train.tfrecord", split="train", batch_size=512), epochs=3)
        """
        from fstore import tfdata
        return tfdata.tf_dataset(path, label=label, batch_size=batch_size, split=split, columns=columns,
                                 defaults=defaults)

    def torch_dataset(self, path: str | Path, *, label: str | Sequence[str] | None = None,
                      split: str | None = None, columns: Sequence[str] | None = None,
                      batch_size: int | None = None) -> Any:
        """A PyTorch ``IterableDataset`` over a Parquet, Arrow or NPY export; needs ``fstore[torch]``.

        Yields dicts of tensors (one row, or ``batch_size`` rows), or ``(features, label)``
        pairs; ``DataLoader`` workers each read their own share. See
        :func:`fstore.torchdata.torch_dataset`.

        Example::

            loader = DataLoader(fs.torch_dataset("out/fraud_train.parquet", split="train", label="is_fraud"),
                                batch_size=256, num_workers=2)
        """
        from fstore import torchdata
        return torchdata.torch_dataset(path, label=label, split=split, columns=columns, batch_size=batch_size)
