"""Connections: the embedded SQLite default and PostgreSQL through ``LEGATO_DATABASE_URL``.

``connect`` is the one way the rest of Legato gets an engine: it applies SQLite's WAL and
foreign-key pragmas, brings the schema to the newest Alembic revision, and turns a wrong or
unreachable URL into a :class:`StoreError` that says which URL failed and how to fix it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from legato.errors import StoreError

URL_VARIABLE = "LEGATO_DATABASE_URL"
DEFAULT_URL = "sqlite:///legato.db"
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
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise StoreError(
            f"cannot open the database {_redacted(url)}: {reason}",
            hint=f"check {URL_VARIABLE} (for example postgresql+psycopg://user@127.0.0.1:5432/legato) "
            "and that the server is running",
        ) from exc
    if migrate:
        upgrade(engine)
    return engine


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
        database = parsed.database
        if database and database != ":memory:":
            parent = Path(database).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(
                    f"cannot open the database {url}: the folder {parent} does not exist",
                    hint="create the folder first or point the URL at an existing one",
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
    return engine


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
