"""Staging: good rows go to a temporary table in bulk, and progress is reported as one bar.

Loading uses ``executemany`` on sqlite3 and ``COPY`` on PostgreSQL; the real tables are then
reached through a handful of set-based statements in the same transaction.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: turns within the process only
    fcntl = None  # type: ignore[assignment]

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Connection, Engine, bindparam, text

from legato.store.ingest.columns import contiguous
from legato.store.types import UTCDateTime

Progress = Callable[[int, int], None]

_CHUNK = 100_000  # rows per bulk call, so progress moves and memory stays bounded
_ANALYZED = 1_000  # rows from which a PostgreSQL stage gets statistics

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
    *,
    kept: bool = False,
) -> str:
    """Create a temporary table and bulk-load ``rows`` into it; returns its qualified name.

    ``columns`` pairs each column of ``rows`` with a kind (int, text, real, time, json,
    jsonb). Loading uses the driver directly on the transaction's own connection: one
    ``executemany`` per chunk on sqlite3 and ``COPY`` on psycopg, instead of a
    round trip per row.

    A ``kept`` stage stays on its connection from one import to the next, emptied instead of
    dropped (:func:`clear_stage`): creating and dropping a temporary table are catalog writes
    (about 10 ms a call on PostgreSQL, most of a 100-event HTTP batch's statements). Only a
    stage whose columns never change after loading can be kept (the customer stage gains a
    ``state`` column, so it is created each time).
    """
    dialect = connection.dialect.name
    qualified = _stage_name(connection, name)
    kinds = _STAGE_TYPES[dialect]
    definition = ", ".join(f"{column} {kinds[kind]}" for column, kind in columns)
    if kept:
        # IF NOT EXISTS each time rather than remembering it was made: a table created in a
        # transaction that rolled back is gone. On PostgreSQL, ON COMMIT DELETE ROWS empties it
        # (a truncation: no dead rows pile up in a table autovacuum never visits); the DELETE
        # empties it of an earlier import in the same transaction (Segment's calls run several).
        on_commit = " ON COMMIT DELETE ROWS" if dialect == "postgresql" else ""
        connection.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {name} ({definition}){on_commit}"))
        clear_stage(connection, qualified)
    else:
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
        # Temporary tables have no statistics; without them the planner guesses badly. A small
        # stage (an HTTP batch) is read in full whatever the plan: its ANALYZE is only a cost.
        if rows.num_rows > _ANALYZED:
            connection.execute(text(f"ANALYZE {qualified}"))
    return qualified


@contextmanager
def transaction(store: Engine | Connection, *, rows: int | None = None) -> Iterator[Connection]:
    """The import's one transaction: its own on an engine, or the caller's on a connection.

    A caller that passes a connection in a transaction it began writes its own rows in the
    same transaction as the import (the HTTP ingest marks the Segment messageIds it applied),
    so both are committed together or not at all; committing is then the caller's.

    ``rows``: how many rows the import writes, when the caller knows. On SQLite a small import
    (an HTTP batch) does not checkpoint the write-ahead log in its commit, while it holds the
    turn to write: every few small imports checkpoint after their turn instead
    (:func:`_checkpoint_now_and_then`), beside the next writer's transaction.
    """
    if isinstance(store, Connection):
        yield store
        return
    if store.dialect.name != "sqlite":
        with store.begin() as connection:
            yield connection
        return
    small = rows is not None and rows <= _ANALYZED
    with store.connect() as connection:
        driver = connection.connection.driver_connection
        if small:
            driver.execute("PRAGMA wal_autocheckpoint=0")
        try:
            # One writer at a time, in turn (_Turns): SQLite has one writer anyway, and its busy
            # handler's growing sleeps left some of many concurrent HTTP batches waiting seconds.
            with _writer(store), connection.begin():
                # The write lock now, waiting for it as long as the busy timeout allows: pysqlite
                # would begin at the first write, and a transaction that read before another
                # process wrote cannot take the lock at all then (SQLITE_BUSY at once, whatever
                # the timeout), which concurrent HTTP requests met on every other batch.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
            if small:
                _checkpoint_now_and_then(store, driver)
        finally:
            if small:
                driver.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")


_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default, which every other connection keeps
# Small imports between two checkpoints of their own: an HTTP batch of 100 events writes about
# 200 pages (its rows, the indexes, the traits), so about SQLite's own rhythm.
_CHECKPOINT_EVERY = 5
_since_checkpoint: dict[str, int] = {}


def _checkpoint_now_and_then(store: Engine, driver: Any) -> None:
    """A passive checkpoint (it waits for no reader or writer) every few small imports, made
    after the import's turn to write is over: in the commit, under the turn, it was a third of a
    100-event batch's time on SQLite, which every batch waiting behind it paid too."""
    key = str(store.url)
    with _writers_lock:
        count = _since_checkpoint.get(key, 0) + 1
        due = count >= _CHECKPOINT_EVERY
        _since_checkpoint[key] = 0 if due else count
    if due:
        driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class _Turns:
    """The right to write a SQLite store, taken in turn: first come, first served within the process,
    and across processes on the same file (``legato serve --workers``, a ``legato import`` beside
    the server) by an exclusive ``flock`` on a lock file beside the database.

    SQLite has one writer at a time anyway. Left to its busy handler, waiting writers sleep longer
    each try and wake in no order, so under concurrent HTTP batches a few waited seconds; a plain
    lock is no fairer (whoever the scheduler wakes first wins), which a batch's p99 felt. Re-entrant
    in its thread, as the lock it replaces was.
    """

    def __init__(self, lock_file: Path | None) -> None:
        self._condition = threading.Condition()
        self._tickets = 0  # the next ticket given out
        self._serving = 0  # the ticket whose turn it is
        self._owner: int | None = None
        self._depth = 0
        self._lock_file = lock_file
        self._descriptor: int | None = None
        self._pid = os.getpid()  # a forked child opens its own: a shared descriptor is a shared lock

    def __enter__(self) -> None:
        me = threading.get_ident()
        with self._condition:
            if self._owner == me:
                self._depth += 1
                return
            ticket = self._tickets
            self._tickets += 1
            while self._serving != ticket:
                self._condition.wait()
            self._owner, self._depth = me, 1
        try:
            self._lock_other_processes()
        except BaseException:
            self._next_turn()
            raise

    def __exit__(self, *exc: object) -> None:
        with self._condition:
            self._depth -= 1
            if self._depth:
                return
        self._unlock_other_processes()
        self._next_turn()

    def _next_turn(self) -> None:
        with self._condition:
            self._owner = None
            self._serving += 1
            self._condition.notify_all()

    def _lock_other_processes(self) -> None:
        if self._lock_file is None or fcntl is None:
            return
        if self._descriptor is not None and self._pid != os.getpid():
            self._descriptor, self._pid = None, os.getpid()
        if self._descriptor is None:
            try:
                self._descriptor = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                # A folder we may not write in: the database itself will say so if it matters.
                self._lock_file = None
                return
        fcntl.flock(self._descriptor, fcntl.LOCK_EX)  # kept open: one descriptor per process and store

    def _unlock_other_processes(self) -> None:
        if self._descriptor is not None and fcntl is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)


_writers: dict[str, _Turns] = {}
_writers_lock = threading.Lock()


def writer_lock_file(engine: Engine) -> Path | None:
    """The file whose ``flock`` is the SQLite store's turn to write across processes (None: in memory)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve().with_name(Path(database).name + "-writer.lock")


def _writer(engine: Engine) -> _Turns:
    with _writers_lock:
        key = str(engine.url)
        if key not in _writers:
            _writers[key] = _Turns(writer_lock_file(engine))
        return _writers[key]


@contextmanager
def probing(connection: Connection, rows: int, *, restore: bool) -> Iterator[None]:
    """Within it, a small stage (an HTTP batch) reaches the real tables by their indexes on
    PostgreSQL: nested loops only, no hash or merge join.

    A temporary table has no statistics, and a young store's tables have stale ones (autovacuum
    analyzes them a minute or more after they grew): the planner then hashes all of ``events``
    or ``customers`` to match 100 staged rows (5 to 20 ms a statement, growing with the table)
    where 100 index probes take a fraction of a millisecond. A stage this small is read in full
    whatever the plan, so probing is never the worse choice. The settings are the transaction's
    (set_config's is_local): its commit ends them, and ``restore`` (a caller's transaction, which
    goes on) puts them back at once.
    """
    if connection.dialect.name != "postgresql" or rows > _ANALYZED:
        yield
        return
    hash_join, merge_join = connection.execute(
        text(
            "SELECT current_setting('enable_hashjoin'), current_setting('enable_mergejoin'), "
            "set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)"
        )
    ).one()[:2]
    yield
    if not restore:
        return
    # Not on an error: the transaction is then rolled back, which puts them back too.
    connection.execute(
        text("SELECT set_config('enable_hashjoin', :hash, true), set_config('enable_mergejoin', :merge, true)"),
        {"hash": hash_join, "merge": merge_join},
    )


def drop_stage(connection: Connection, qualified: str) -> None:
    connection.execute(text(f"DROP TABLE IF EXISTS {qualified}"))


def clear_stage(connection: Connection, qualified: str) -> None:
    """Empty a kept stage (SQLite truncates on a DELETE without WHERE)."""
    connection.execute(text(f"DELETE FROM {qualified}"))


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
