"""Staging: good rows go to a temporary table in bulk, and progress is reported as one bar.

Loading uses ``executemany`` on sqlite3 and ``COPY`` on PostgreSQL; the real tables are then
reached through a handful of set-based statements in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Connection, bindparam, text

from legato.store.ingest.columns import contiguous
from legato.store.types import UTCDateTime

Progress = Callable[[int, int], None]

_CHUNK = 100_000  # rows per bulk call, so progress moves and memory stays bounded

_STAGE_TYPES = {
    "sqlite": {"int": "INTEGER", "text": "TEXT", "real": "REAL", "time": "TEXT", "json": "TEXT", "jsonb": "TEXT"},
    "postgresql": {
        "int": "BIGINT",
        "text": "TEXT",
        "real": "DOUBLE PRECISION",
        "time": "TIMESTAMPTZ",
        "json": "JSON",
        "jsonb": "JSONB",
    },
}


def _stage_name(connection: Connection, name: str) -> str:
    # Qualified with the temporary schema so DROP can never reach a permanent table.
    return f"temp.{name}" if connection.dialect.name == "sqlite" else f"pg_temp.{name}"


def _db_time(stamps: pa.Array, dialect: str) -> pa.Array:
    """Instants as the text the database expects from a bulk load.

    SQLite gets exactly SQLAlchemy's storage format for DateTime ('YYYY-MM-DD HH:MM:SS.ffffff',
    naive UTC), so UTCDateTime reads the values back and text comparison is chronological;
    PostgreSQL gets the same with an explicit +00 offset for timestamptz.
    """
    # Casting a naive timestamp[us] to text gives exactly that layout and is ten times
    # faster than pc.strftime.
    texts = pc.cast(pc.cast(stamps, pa.timestamp("us", "UTC")).cast(pa.timestamp("us")), pa.string())
    if dialect == "postgresql":
        texts = pc.binary_join_element_wise(texts, "+00", "")
    return texts


def load_stage(
    connection: Connection,
    name: str,
    columns: Sequence[tuple[str, str]],
    rows: pa.Table,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Create a temporary table and bulk-load ``rows`` into it; returns its qualified name.

    ``columns`` pairs each column of ``rows`` with a kind (int, text, real, time, json,
    jsonb). Loading uses the driver directly on the transaction's own connection: one
    ``executemany`` per chunk on sqlite3 and ``COPY`` on psycopg, instead of a
    round trip per row.
    """
    dialect = connection.dialect.name
    qualified = _stage_name(connection, name)
    kinds = _STAGE_TYPES[dialect]
    definition = ", ".join(f"{column} {kinds[kind]}" for column, kind in columns)
    connection.execute(text(f"DROP TABLE IF EXISTS {qualified}"))
    on_commit = " ON COMMIT DROP" if dialect == "postgresql" else ""
    connection.execute(text(f"CREATE TEMPORARY TABLE {name} ({definition}){on_commit}"))
    arrays = []
    for (column, kind), array in zip(columns, rows.columns):
        array = contiguous(array)
        arrays.append(_db_time(array, dialect) if kind == "time" else array)
    rows = pa.table(arrays, names=[column for column, _ in columns])
    names = ", ".join(column for column, _ in columns)
    driver = connection.connection.driver_connection
    if dialect == "sqlite":
        cursor = driver.cursor()
        insert = f"INSERT INTO {qualified} ({names}) VALUES ({', '.join('?' * len(columns))})"
        for start in range(0, rows.num_rows, _CHUNK):
            chunk = rows.slice(start, _CHUNK)
            cursor.executemany(insert, zip(*(column.to_pylist() for column in chunk.columns)))
            if progress:
                progress(start + chunk.num_rows)
        cursor.close()
    else:
        options = pacsv.WriteOptions(include_header=False)
        with driver.cursor() as cursor:
            with cursor.copy(f"COPY {qualified} ({names}) FROM STDIN (FORMAT csv)") as copy:
                for start in range(0, rows.num_rows, _CHUNK):
                    chunk = rows.slice(start, _CHUNK)
                    buffer = pa.BufferOutputStream()
                    pacsv.write_csv(chunk, buffer, write_options=options)
                    copy.write(memoryview(buffer.getvalue()))
                    if progress:
                        progress(start + chunk.num_rows)
        # Temporary tables have no statistics; without them the planner guesses badly.
        connection.execute(text(f"ANALYZE {qualified}"))
    return qualified


def drop_stage(connection: Connection, qualified: str) -> None:
    connection.execute(text(f"DROP TABLE IF EXISTS {qualified}"))


def timed(statement: str, *names: str) -> Any:
    """A text statement whose named parameters are instants bound as UTCDateTime."""
    return text(statement).bindparams(*(bindparam(n, type_=UTCDateTime()) for n in names))


class Steps:
    """Reports progress across reading, loading and the final statements as one bar."""

    def __init__(self, progress: Progress | None, rows: int) -> None:
        self.progress = progress
        # Loading is most of the work; the set-based statements after it get a share too.
        self.total = max(rows, 1) * 2

    def at(self, done: int) -> None:
        if self.progress:
            self.progress(min(done, self.total), self.total)

    def loaded(self, rows: int) -> None:
        self.at(rows)

    def finish(self) -> None:
        self.at(self.total)
