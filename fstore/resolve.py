"""Feature references resolved against the catalog, for the Python side of serving.

``fstore.resolve_features`` in SQL is THE resolver (the point-in-time builder uses it
too): it parses ``[project.]group[@version]:feature`` and ``group:*``, checks what the
caller may see and names every error. This module asks it, together with each
group's one description (``fstore.feature_group_json``: features, keys and stored
types), in one round trip, and adds what serving needs on top: a group without an
online table is refused for online use.

Example::

    groups = resolve_features(fs.conn, ["activity:*", "risk@2:score"])
    groups[0].label, groups[0].features        # 'fraud.activity@1', [('amount', 'amount'), ...]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pyarrow as pa
from psycopg import sql

from fstore.errors import InvalidInput, translated
from fstore.pgarrow import arrow_type, base_type, dimension, select_cast, type_sql

EVENT_TIME_TYPE = "timestamp with time zone"
_RESOLVE = """
select r.plan, array(select fstore.feature_group_json((g->>'id')::bigint)
                       from jsonb_array_elements(r.plan) with ordinality e(g, i) order by e.i)
  from (select fstore.resolve_features(%s::text[], %s) as plan) r
"""


@dataclass(frozen=True)
class Column:
    """A stored column of a feature group: its name and type as ``format_type`` prints it."""

    name: str
    pg_type: str

    @property
    def base(self) -> str:
        """The type without schema, modifier and ``[]`` (``vector``, ``numeric``, ``bigint``)."""
        return base_type(self.pg_type)

    @property
    def dimension(self) -> int | None:
        """The declared dimension of a ``vector(n)`` column."""
        return dimension(self.pg_type)

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type lookups return this column as (text for types without a mapping)."""
        return arrow_type(self.pg_type)

    def type_sql(self) -> sql.SQL:
        """The column's type, as SQL for a cast."""
        return type_sql(self.pg_type)

    def selected(self, alias: str | None = None) -> sql.Composable:
        """The select-list expression returning this column in its Arrow-friendly form."""
        expr = sql.Identifier(alias, self.name) if alias else sql.Identifier(self.name)
        cast = select_cast(self.pg_type)
        return sql.SQL("{}::{}").format(expr, sql.SQL(cast)) if cast else expr


@dataclass
class ResolvedGroup:
    """A resolved feature-group version: the table to read, its columns, the features asked of it."""

    label: str                  # project.name@version, as errors name the group
    project: str
    name: str
    table: str                  # the online table (online use) or the offline one
    keys: list[str]
    event_time: str
    ttl: dt.timedelta | None    # applied on read
    columns: dict[str, Column]  # keys, every feature and the event time, in storage order
    available: list[str] = field(default_factory=list)             # every non-key feature, in order
    features: list[tuple[str, str]] = field(default_factory=list)  # asked for: (feature, output name)


def resolve_features(conn: psycopg.Connection[Any], features: Sequence[str], *,
                     full_feature_names: bool = False, online: bool = True) -> list[ResolvedGroup]:
    """Resolve feature references with the catalog's resolver, one group per version asked of.

    Latest version unless ``@version`` is given; ``group:*`` is every non-key feature.
    Errors (from the resolver) name the reference: malformed, unknown group or feature,
    a key asked for as a feature, another project not shared with the caller's, an
    ambiguous output name (use ``full_feature_names`` to get ``group__feature``); here
    also a group without an online table when ``online``.
    """
    if isinstance(features, str) or not features:
        raise InvalidInput("give a list of feature references, e.g. ['activity:*']")
    with translated():
        plan, described = conn.execute(_RESOLVE, (list(features), full_feature_names)).fetchone()
    groups = []
    for entry, group in zip(plan, described):
        label = f"{entry['project']}.{entry['name']}@{entry['version']}"
        if online and not entry["online_table"]:
            raise InvalidInput(f"feature group {label} is not online: create it with online=True")
        ttl = entry["ttl_seconds"]
        columns = {f["name"]: Column(f["name"], f["pg_type"]) for f in group["features"]}
        columns[entry["event_time"]] = Column(entry["event_time"], EVENT_TIME_TYPE)
        groups.append(ResolvedGroup(
            label=label, project=entry["project"], name=entry["name"],
            table=entry["online_table"] if online else entry["table"], keys=list(entry["keys"]),
            event_time=entry["event_time"], ttl=dt.timedelta(seconds=float(ttl)) if ttl is not None else None,
            columns=columns, available=[f["name"] for f in group["features"] if not f["is_key"]],
            features=[(f["name"], f["output"]) for f in entry["features"]]))
    return groups


__all__ = ["Column", "ResolvedGroup", "resolve_features"]
