"""What several benchmarks need around the work they time: a free loopback port, and a fresh
store on either backend that is dropped afterwards (a PostgreSQL bench database of its own,
made from the server's ``test`` database and removed with everything in it)."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import sqlalchemy as sa


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_store(kind: str, folder: Path, postgres: str, prefix: str) -> str:
    """An empty store's URL: a file in ``folder`` for ``sqlite``, else a new database named
    ``legato_bench_<prefix>_…`` on the server ``postgres`` points at."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}"
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    name = f"legato_bench_{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(postgres).set(database=name).render_as_string(hide_password=False)


def drop_store(url: str, postgres: str) -> None:
    """Drop a PostgreSQL store :func:`fresh_store` made (a SQLite file goes with its folder)."""
    if url.startswith("postgresql"):
        admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)'))
        admin.dispose()
