"""What the CLI prints: JSON documents (one per command, results or an error) and tables.

JSON conventions, the same for every ``--json`` command:

* a listing prints a JSON array, a show command one JSON object; an error prints
  ``{"error": {...}}`` (see :mod:`fstore.cli.report`) on stdout instead, so stdout
  always holds exactly one JSON document;
* timestamps are ISO 8601 strings with their UTC offset (``2024-06-01T10:00:00+00:00``);
* durations are numbers of seconds (``"ttl": 2592000`` for 30 days), whether the
  value came as a ``timedelta`` or as PostgreSQL interval text from a catalog record;
  a month counts 30 days and a year 365.25 days, as ``extract(epoch from interval)``
  counts them.

Example::

    echo_json({"ttl": dt.timedelta(days=1), "at": dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)})
    # {"ttl": 86400, "at": "2024-06-01T00:00:00+00:00"}
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click
from rich.table import Table

DURATION_KEYS = frozenset({"ttl"})  # keys whose text values are PostgreSQL intervals
_SECONDS_PER = {"year": 365.25 * 86400, "mon": 30 * 86400, "day": 86400.0}
_INTERVAL_PART = re.compile(r"([+-]?\d+(?:\.\d+)?) (year|mon|day)s?")
_INTERVAL_TIME = re.compile(r"([+-])?(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")

json_option = click.option(
    "--json", "as_json", is_flag=True,
    help="Print one JSON document on stdout (timestamps ISO 8601, durations in seconds; "
         "an error as {\"error\": ...}, with the same exit code).",
)


def _number(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


def interval_seconds(text: str) -> int | float:
    """Seconds in a PostgreSQL interval as its default output style prints it.

    >>> interval_seconds("30 days")
    2592000
    >>> interval_seconds("1 day 02:00:00.5")
    93600.5
    >>> interval_seconds("-01:30:00")
    -5400
    """
    rest = text.strip()
    total = 0.0
    for amount, unit in _INTERVAL_PART.findall(rest):
        total += float(amount) * _SECONDS_PER[unit]
    rest = _INTERVAL_PART.sub("", rest).strip()
    if rest:
        match = _INTERVAL_TIME.fullmatch(rest)
        if match is None:
            raise ValueError(f"not a PostgreSQL interval: {text!r}")
        sign, hours, minutes, seconds = match.groups()
        clock = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        total += -clock if sign == "-" else clock
    return _number(total)


def jsonable(value: Any, key: str | None = None) -> Any:
    """``value`` as plain JSON types, by the conventions above.

    Dataclass fields declared ``repr=False`` (handles such as a feature group's store)
    are left out.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, str(k)) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name), f.name)
                for f in dataclasses.fields(value) if f.repr}
    if isinstance(value, dt.timedelta):
        return _number(value.total_seconds())
    if isinstance(value, str) and key in DURATION_KEYS:
        return interval_seconds(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return _number(float(value))
    if isinstance(value, (Path, uuid.UUID)):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def echo_json(value: Any, *, err: bool = False) -> None:
    """Print ``value`` as one indented JSON document."""
    click.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False), err=err)


def shown_number(value: Any) -> str:
    """A number in a table: ``1,234`` for integers, six significant digits otherwise, ``-`` for NULL."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def shown_time(value: dt.datetime | None) -> str:
    """A timestamp in a table, to the second (``-`` for NULL)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def cell(value: Any) -> str:
    """A table cell: empty for NULL, timestamps to the second, lists joined."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(jsonable(value), separators=(",", ":"))
    return str(value)


def table(rows: Iterable[Mapping[str, Any]], columns: list[str], title: str | None = None) -> Table:
    """A rich table of ``columns`` of ``rows``."""
    result = Table(*columns, title=title)
    for row in rows:
        result.add_row(*(cell(row.get(c)) for c in columns))
    return result
