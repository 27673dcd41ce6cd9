"""``query:`` on postgres, clickhouse and mongodb: the first row of the user's own read-only query becomes
observations (``row.<column>``, and ``result`` when the row has one column) and its numeric columns become
``prober_query_value{column}``.

Values are made JSON-like for conditions and ``/status``: numbers stay numbers (a ``Decimal`` becomes a float,
or an int when it is whole), times become ISO 8601 text, durations seconds, bytes their hex (cut), anything
else its text, cut to :data:`MAX_TEXT` characters. A row keeps at most :data:`MAX_COLUMNS` columns, nested
values at most :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import datetime
import decimal
import math
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from prober.errors import ProbeFailure
from prober.judge import Observable
from prober.status import Reason, Series

MAX_COLUMNS = 20  # columns kept of the row (and so exported)
MAX_TEXT = 200  # characters of a text value
MAX_NAME = 100  # characters of a column name (a label value of prober_query_value)
MAX_ITEMS = 20  # items of a list or map nested in a value
MAX_DEPTH = 3
MAX_QUERY = 10_000  # characters of a query in the config

WROTE = "the query tried to write"

OBSERVES: dict[str, Observable] = {
    "row": Observable("map", "with query: the first row, by column (empty when the query returned no row)"),
    "result": Observable("double", "with query: the row's value when it has a single column (numbers; text: use row)"),
    "rows": Observable("int", "with query: 1 when the query returned a row, else 0"),
}


def plain(value: Any, depth: int = 0) -> Any:
    """A driver's value as JSON-like data."""
    if value is None or isinstance(value, bool | int | str):
        return value if not isinstance(value, str) or len(value) <= MAX_TEXT else value[: MAX_TEXT - 3] + "..."
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() and abs(value) < 2**63 else float(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return plain(bytes(value)[: MAX_TEXT // 2].hex(), depth)
    if isinstance(value, uuid.UUID):
        return str(value)
    if depth < MAX_DEPTH and isinstance(value, Mapping):
        return {str(k): plain(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    if depth < MAX_DEPTH and isinstance(value, list | tuple | set | frozenset):
        return [plain(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    return plain(str(value), depth)


def observe(columns: Iterable[tuple[str, Any]] | None) -> tuple[dict[str, Any], Series]:
    """The first row (None: no row) -> the observations (``row``, ``rows``, ``result``) and the
    ``query_value`` samples of its numeric columns."""
    if columns is None:
        return {"row": {}, "rows": 0}, ()
    row = {str(name)[:MAX_NAME]: plain(value) for name, value in list(columns)[:MAX_COLUMNS]}
    values: dict[str, Any] = {"row": row, "rows": 1}
    if len(row) == 1:
        values["result"] = next(iter(row.values()))
    samples = tuple(
        ((name,), float(value))
        for name, value in row.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))
    )
    return values, samples


def wrote(said: str) -> ProbeFailure:
    """The failure of a query the server refused because it writes (or would in a read-only session)."""
    return ProbeFailure(Reason.ASSERTION, f"{WROTE}: {said}")


def summary(values: Mapping[str, Any]) -> str:
    if not values["rows"]:
        return "the query returned no row"
    shown = ", ".join(f"{name}={value}" for name, value in list(values["row"].items())[:3])
    return f"query: {shown}"[:120]
