"""Bulk inserts through the driver: one ``executemany`` on SQLite, ``COPY`` on PostgreSQL.

SQLAlchemy's ``executemany`` runs every value through its type processors in Python, which
dominated the cost of writing a page of decisions. Here values arrive already in the form
the driver wants, so only the database does per-row work. Callers pass JSON columns as
serialized text and timestamps as aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, Table

from legato.store.types import UTCDateTime

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format, which UTCDateTime reads back


def insert_many(connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` inside the connection's transaction."""
    if not rows:
        return
    names = ", ".join(columns)
    driver = connection.connection.driver_connection
    if connection.dialect.name == "sqlite":
        times = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, UTCDateTime)]
        if times:
            # A page's timestamps repeat (one decision time, a few send times): format each once.
            text: dict[datetime, str] = {}
            rows = [_sqlite_times(row, times, text) for row in rows]
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
