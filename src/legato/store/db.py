"""Connections: the embedded SQLite default and PostgreSQL through ``LEGATO_DATABASE_URL``.

``connect`` is the one way the rest of Legato gets an engine: it applies SQLite's WAL and
foreign-key pragmas, brings the schema to the newest Alembic revision, and turns a wrong or
unreachable URL into a :class:`StoreError` that says which URL failed and how to fix it.

What the driver raises later is translated in one place, :func:`store_error`, hooked into
every engine (SQLAlchemy's ``handle_error``) and called by the CLI's error handler for the
driver-level paths (bulk inserts, ``COPY``) that bypass SQLAlchemy: a locked database
(:class:`StoreBusy`, after waiting ``LEGATO_BUSY_TIMEOUT`` seconds, default 10), a file that is
not a database, a read-only file, an unreachable server (:class:`StoreUnreachable`) each
become one line naming the database and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from legato.errors import StoreBusy, StoreError, StoreUnreachable

URL_VARIABLE = "LEGATO_DATABASE_URL"
DEFAULT_URL = "sqlite:///legato.db"
BUSY_VARIABLE = "LEGATO_BUSY_TIMEOUT"
DEFAULT_BUSY_SECONDS = 10.0
# The URL of the store this process opened last: what a driver-level error that reaches the
# CLI names (one process, one store, in every face that exists).
_opened: list[str] = []
_MIGRATIONS = Path(__file__).with_name("migrations")


def database_url(explicit: str | None = None) -> str:
    """The URL to use: an explicit one, else ``$LEGATO_DATABASE_URL``, else ``./legato.db``."""
    return explicit or os.environ.get(URL_VARIABLE) or DEFAULT_URL


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def connect(url: str | None = None, *, migrate: bool = True) -> Engine:
    """Open the store at ``url`` (see :func:`database_url`) and bring its schema up to date."""
    url = database_url(url)
    engine = _create_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (DBAPIError, StoreError) as exc:
        engine.dispose()
        raise (store_error(exc, url) or _unreadable(exc, url)) from exc
    _opened[:] = [url]
    if migrate:
        upgrade(engine)
        _write_back_pending_opt_outs(engine)
    return engine


def _write_back_pending_opt_outs(engine: Engine) -> None:
    """Opt-outs an earlier command could not write wait in a file (``legato.trust.pending_optouts``):
    every command that opens the store writes them back first, if it can (quietly: the cycle
    and the dispatcher refuse to market while any waits)."""
    from legato.trust.pending_optouts import path_for, replay_quietly

    if path_for(engine).exists():
        replay_quietly(engine)


def unopened(url: str | None = None) -> Engine:
    """An engine for ``url`` that has not connected yet (it connects on first use), for what must
    go on when the store cannot be opened: keeping an opt-out in the pending file, listing it."""
    return _create_engine(database_url(url))


def busy_seconds() -> float:
    """How long a statement waits for another process's lock before it fails (SQLite)."""
    raw = os.environ.get(BUSY_VARIABLE)
    if not raw:
        return DEFAULT_BUSY_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:
        raise StoreError(f"{BUSY_VARIABLE}={raw!r} is not a number of seconds", hint=f"set it to e.g. 30, or unset it for {DEFAULT_BUSY_SECONDS:g}")
    return seconds


def store_error(error: BaseException, url: str | None = None) -> StoreError | None:
    """The user's error a driver error stands for, naming the database and the fix; None for a bug.

    Takes SQLAlchemy's wrapped errors and the drivers' own (``sqlite3``, ``psycopg``).
    """
    if isinstance(error, StoreError):
        return error
    original = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    url = url or (_opened[0] if _opened else None)
    place = _redacted(url) if url else "the database"
    reason = (str(original).strip().splitlines() or [type(original).__name__])[0]
    import sqlite3

    if isinstance(original, sqlite3.Error):
        return _sqlite_error(reason.lower(), reason, place, url)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if not isinstance(original, psycopg.Error):
        return None
    if isinstance(original, (psycopg.errors.LockNotAvailable, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)):
        return StoreBusy(
            f"the database {place} is busy: {reason}",
            hint="another transaction holds what this one needs; run the command again when it is done",
        )
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(original, psycopg.OperationalError) and (sqlstate is None or sqlstate.startswith(("08", "57P"))):
        return StoreUnreachable(
            f"cannot reach the database {place}: {reason}",
            hint=f"check {URL_VARIABLE} or --database (for example postgresql+psycopg://user@127.0.0.1:5432/legato) "
            "and that the server is running",
        )
    if isinstance(original, (psycopg.errors.InsufficientPrivilege, psycopg.errors.DiskFull, psycopg.errors.ReadOnlySqlTransaction)):
        return StoreError(f"the database {place} refused the change: {reason}", hint="ask its administrator; nothing of this step was written")
    return None


def _sqlite_error(lowered: str, reason: str, place: str, url: str | None) -> StoreError | None:
    path = _sqlite_path(url) or place
    if "locked" in lowered or "busy" in lowered:
        return StoreBusy(
            f"the database {path} is locked by another process (waited {busy_seconds():g} s)",
            hint="wait for the other legato command (or program) using it to finish, or stop it, then run this again; "
            f"{BUSY_VARIABLE} sets how many seconds to wait",
        )
    if "not a database" in lowered or "malformed" in lowered:
        return StoreError(
            f"{path} is not a SQLite database ({reason})",
            hint=f"point --database or {URL_VARIABLE} at a Legato database file, e.g. sqlite:///legato.db (a new file name creates one)",
        )
    if "readonly" in lowered or "read-only" in lowered:
        return StoreError(
            f"cannot write the database {path}: it is read-only",
            hint="make the file, its folder and its -wal and -shm files writable by this user, or use another database",
        )
    if "unable to open" in lowered:
        return StoreError(
            f"cannot open the database {path}",
            hint="check that the path names a file (not a folder) and that this user may read and write it and its folder",
        )
    if "disk" in lowered or "full" in lowered or "i/o" in lowered:
        return StoreError(f"the database {path} cannot be written: {reason}", hint="free disk space or move the database; nothing of this step was written")
    return None


def _unreadable(error: BaseException, url: str) -> StoreError:
    original = getattr(error, "orig", None) or error
    reason = (str(original).strip().splitlines() or [type(original).__name__])[0]
    return StoreError(
        f"cannot open the database {_redacted(url)}: {reason}",
        hint=f"check {URL_VARIABLE} (for example postgresql+psycopg://user@127.0.0.1:5432/legato) and that the server is running",
    )


def _sqlite_path(url: str | None) -> str | None:
    if not url:
        return None
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return str(Path(parsed.database).expanduser().resolve()) if parsed.database != ":memory:" else ":memory:"


def _create_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"'{url}' is not a database URL",
            hint="use sqlite:///path/to/legato.db or postgresql+psycopg://user@host:5432/dbname",
        ) from exc
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        # pysqlite's busy handler: wait this long for another process's lock, then fail.
        options["connect_args"] = {"timeout": busy_seconds()}
        database = parsed.database
        if database and database != ":memory:":
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(
                    f"cannot open the database {url}: the folder {parent} does not exist",
                    hint="create the folder first or point the URL at an existing one",
                )
    elif parsed.get_backend_name() == "postgres" or (parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() != "psycopg"):
        # postgres:// and postgresql:// are what other tools print; SQLAlchemy needs the driver named.
        fixed = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
        raise StoreError(
            f"{_redacted(url)} does not name the driver Legato uses for PostgreSQL",
            hint=f"write it as {fixed} (the postgresql+psycopg:// scheme; psycopg 3 is installed with Legato)",
        )
    elif parsed.get_backend_name() != "postgresql":
        raise StoreError(
            f"'{parsed.get_backend_name()}' databases are not supported ({_redacted(url)})",
            hint="use SQLite (the default) or PostgreSQL (postgresql+psycopg://...)",
        )
    try:
        engine = create_engine(parsed, **options)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise StoreError(
            f"no database driver for {_redacted(url)}: {exc}",
            hint="for PostgreSQL use the postgresql+psycopg:// scheme (psycopg 3 is installed with Legato)",
        ) from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "handle_error", _translate)
    return engine


def _translate(context: Any) -> None:
    """SQLAlchemy's error hook: a user's error raised in place of the driver's."""
    engine = context.engine
    found = store_error(context.original_exception, engine.url.render_as_string(hide_password=False) if engine is not None else None)
    if found is not None:
        raise found from context.original_exception


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dispatcher read while a cycle writes; NORMAL sync is durable in WAL mode
    # across application crashes, which is the failure the outbox must survive.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Apply every Alembic migration the database does not have yet."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def is_empty(engine: Engine) -> bool:
    """True when the schema exists but no customer was imported."""
    if not inspect(engine).has_table("customers"):
        return True
    with engine.connect() as connection:
        return connection.execute(text("SELECT 1 FROM customers LIMIT 1")).first() is None
