"""Reading a query's result as columns, straight from the driver.

SQLAlchemy builds a ``Row`` per result row and runs every value through its type's result
processor; for the cycle's audience query (tens of columns, a million rows) that was a
large share of the cycle. Here the driver's tuples are turned into one NumPy array per
column. Timestamps become ``datetime64[us]`` in UTC (NaT for NULL) in one vectorized parse,
other typed columns go through their SQLAlchemy processor, and plain values stay as the
driver returned them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timezone
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.types import UTCDateTime

# Types whose driver values are already what the cycle reads (str, int, float, None).
_PLAIN = (sa.String, sa.Integer, sa.Float, sa.types.NullType)


def fetch_columns(
    connection: Connection, statement: sa.Select[Any], params: Mapping[str, Any] | None = None
) -> tuple[dict[str, npt.NDArray[Any]], int]:
    """The result of ``statement`` as {label: array}, and its number of rows."""
    result = connection.execute(statement, dict(params or {}))
    keys = list(result.keys())
    rows = result.cursor.fetchall()  # type: ignore[attr-defined]  # the DBAPI cursor: raw tuples
    result.close()
    n = len(rows)
    values: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [() for _ in keys]
    columns: dict[str, npt.NDArray[Any]] = {}
    for key, column, raw in zip(keys, statement.selected_columns, values, strict=True):
        kind = column.type
        if isinstance(kind, UTCDateTime):
            columns[key] = _utc_datetime64(raw, connection.dialect.name)
        elif isinstance(kind, _PLAIN):
            columns[key] = _objects(raw)
        else:
            process = kind._cached_result_processor(connection.dialect, None)  # noqa: SLF001 - SQLAlchemy's own conversion
            columns[key] = _objects(raw if process is None else [process(v) for v in raw])
    return columns, n


def _objects(values: Any) -> npt.NDArray[np.object_]:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _utc_datetime64(values: tuple[Any, ...], dialect: str) -> npt.NDArray[np.datetime64]:
    if dialect == "sqlite":
        # Stored as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC (see UTCDateTime); NumPy parses that form.
        return np.array(["NaT" if v is None else v for v in values], dtype="datetime64[us]")
    return np.array(
        [np.datetime64("NaT") if v is None else np.datetime64(v.astimezone(timezone.utc).replace(tzinfo=None), "us") for v in values],
        dtype="datetime64[us]",
    )
