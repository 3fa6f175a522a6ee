"""Shared fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``LEGATO_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``). A private database is created for the session and
dropped after it; between tests its tables are truncated. If PostgreSQL does not answer,
the PostgreSQL half of the suite fails loudly instead of being skipped, unless
``LEGATO_TEST_SKIP_POSTGRES=1`` says to skip it on purpose.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from threadpoolctl import threadpool_limits

from legato.store.db import connect
from legato.store.schema import metadata

POSTGRES_URL = os.environ.get(
    "LEGATO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_native_pool() -> Iterator[None]:
    """One OpenMP and one BLAS thread for the whole suite.

    The suite runs on small machines shared with other work, where the gradient boosting's
    OpenMP barriers stall on busy cores: a 1,200-row propensity fit measured 4 s on one
    thread and 109 s on two. The fits' results do not depend on the thread count.
    """
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if os.environ.get("LEGATO_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("LEGATO_TEST_SKIP_POSTGRES=1: PostgreSQL tests skipped on purpose")
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"legato_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = connect(postgres_url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty store's URL, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'legato.db'}"
        connect(url).dispose()
        yield url
        return
    engine: Engine = request.getfixturevalue("_postgres_engine")
    _truncate(engine)
    yield engine.url.render_as_string(hide_password=False)
    _truncate(engine)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated, empty store on each backend."""
    engine = connect(database_url)
    yield engine
    engine.dispose()


def _truncate(engine: Engine) -> None:
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
