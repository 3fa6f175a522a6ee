"""Bulk inserts through the driver: one ``executemany`` on SQLite, ``COPY`` on PostgreSQL.

SQLAlchemy's ``executemany`` runs every value through its type processors in Python, which
dominated the cost of writing a page of decisions. Here values arrive already in the form
the driver wants, so only the database does per-row work. Callers pass JSON columns as
serialized text and timestamps as aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, Table

from legato.store.types import UTCDateTime

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format, which UTCDateTime reads back


def insert_many(connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` inside the connection's transaction."""
    if not rows:
        return
    if connection.dialect.name == "sqlite":
        times = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
        if times:
            # A page's timestamps repeat (one decision time, a few send times): format each once.
            text: dict[datetime, str] = {}
            rows = [_sqlite_times(row, times, text) for row in rows]
    insert_driver_rows(connection, table, columns, rows)


def insert_driver_rows(connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows already in the driver's form (as the driver reads them back; JSON as text):
    executemany on SQLite, COPY on PostgreSQL."""
    if not rows:
        return
    names = ", ".join(columns)
    driver = connection.connection.driver_connection
    if connection.dialect.name == "sqlite":
        cursor = driver.cursor()  # type: ignore[union-attr]
        cursor.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)
        cursor.close()
        return
    with driver.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row(row)


def _sqlite_times(row: Sequence[Any], positions: list[int], text: dict[datetime, str]) -> list[Any]:
    values = list(row)
    for i in positions:
        value: datetime | None = values[i]
        if value is not None:
            formatted = text.get(value)
            if formatted is None:
                formatted = text[value] = value.astimezone(timezone.utc).strftime(SQLITE_TIME)
            values[i] = formatted
    return values


def insert_columns(connection: Connection, table: Table, columns: Mapping[str, Sequence[Any] | npt.NDArray[Any]]) -> None:
    """Insert column-shaped data: ``{column: values}``, all of one length.

    Timestamp columns may be given as ``datetime64`` arrays (UTC, NaT for NULL); they are
    turned into the driver's form once per distinct value, not once per row, which is what
    makes a page of decisions cheap to write (a page has one decision time and a few send times).
    """
    names = list(columns)
    if not names:
        return
    ready = [_driver_values(values, connection.dialect.name) for values in columns.values()]
    insert_driver_rows(connection, table, names, list(zip(*ready, strict=True)))


def _driver_values(values: Sequence[Any] | npt.NDArray[Any], dialect: str) -> list[Any]:
    if not isinstance(values, np.ndarray):
        return list(values)
    if values.dtype.kind != "M":
        return values.tolist()  # type: ignore[no-any-return]
    unique, inverse = np.unique(values.astype("datetime64[us]"), return_inverse=True)
    # SQLite keeps SQLAlchemy's text form; PostgreSQL's COPY reads ISO text with an offset.
    text = [
        None if np.isnat(u) else (str(u).replace("T", " ") if dialect == "sqlite" else f"{u}+00:00")
        for u in unique
    ]
    return [text[i] for i in inverse.tolist()]
