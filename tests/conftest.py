"""Shared fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from ``LEGATO_TEST_POSTGRES_URL`` (default: the local server on
127.0.0.1:5432, database ``test``). A private database is created for the session and
dropped after it; between tests its tables are truncated. If PostgreSQL does not answer,
the PostgreSQL half of the suite fails loudly instead of being skipped, unless
``LEGATO_TEST_SKIP_POSTGRES=1`` says to skip it on purpose.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from threadpoolctl import threadpool_limits

from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.db import connect
from legato.monitor import metrics
from legato.store.schema import cycles, decisions, metadata

from tests.world import AT, PLAYBOOK

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """No process a test starts outlives the test's body.

    A test that fails between starting a ``legato worker`` (or any child) and stopping it
    would leave the child running: it keeps working on the worker's database, takes locks the
    next test's TRUNCATE waits on, and changes rows under the next test. So every process
    started while the test body runs and still alive when it returns is killed and reaped here,
    before the fixtures' teardown.
    """
    started: list[subprocess.Popen[Any]] = []
    original = subprocess.Popen.__init__

    def track(self: subprocess.Popen[Any], *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        started.append(self)

    subprocess.Popen.__init__ = track  # type: ignore[method-assign]
    try:
        return (yield)
    finally:
        subprocess.Popen.__init__ = original  # type: ignore[method-assign]
        for process in started:
            if process.poll() is None:
                process.kill()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass


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


@pytest.fixture(scope="session")
def _migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store migrated once per worker: each test gets a copy (migrating takes about 2 s)."""
    path = tmp_path_factory.mktemp("template") / "legato.db"
    engine = connect(f"sqlite:///{path}")
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty store's URL, once per backend."""
    if request.param == "sqlite":
        target = tmp_path / "legato.db"
        shutil.copyfile(request.getfixturevalue("_migrated_sqlite"), target)
        url = f"sqlite:///{target}"
        yield url
        return
    engine: Engine = request.getfixturevalue("_postgres_engine")
    _truncate(engine)
    yield engine.url.render_as_string(hide_password=False)
    _truncate(engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database with no schema at all, once per backend: for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.db'}"
        return
    if os.environ.get("LEGATO_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("LEGATO_TEST_SKIP_POSTGRES=1: PostgreSQL tests skipped on purpose")
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"legato_blank_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated, empty store on each backend."""
    engine = connect(database_url)
    yield engine
    engine.dispose()


def _truncate(engine: Engine) -> None:
    """Empty every table of the worker's database.

    A test that failed may leave a session behind that holds a lock (an open transaction in
    a thread, a subprocess it did not stop): TRUNCATE would wait on it for ever and hang the
    whole suite. So every other session on this database is ended first, and the TRUNCATE
    gives up after a minute instead of waiting without end.
    """
    engine.dispose()  # the pool's idle connections would be ended below; open fresh ones after
    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        )
        connection.execute(text("SET LOCAL lock_timeout = '60s'"))
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


# --- the one-agent e-mail world most store tests share (tests/world.py) ----------------


@pytest.fixture
def cycle_at() -> datetime:
    """When the shared world's first cycle runs; :func:`write_decisions` decides at this instant."""
    return AT


@pytest.fixture
def make_playbook() -> Callable[..., Playbook]:
    """The one-agent e-mail playbook (agent ``mailer``, creative ``hello``) at a stage, holdout and budget.

    ``agent`` adds lines to the agent's block (indented by four spaces), e.g. a stop-loss rule.
    """

    def make(stage: int = 2, holdout: float = 0.0, budget: str = "{}", agent: str = "") -> Playbook:
        text = PLAYBOOK.replace("STAGE", str(stage)).replace("HOLDOUT", str(holdout)).replace("BUDGET", budget)
        if agent:
            text = text.replace("    budget: ", agent.rstrip("\n") + "\n    budget: ", 1)
        return parse_playbook(text)

    return make


def _per_row(column: str, value: Any) -> bool:
    return isinstance(value, list) and column != "findings"  # findings: one JSON list per decision


# The columns a decision gets from its route, as the cycle writes them, and once dispatched.
DECISION_KINDS: dict[str, dict[str, Any]] = {
    "sent": {"route": "scheduled", "status": "sent", "holdout": False, "creative_id": "hello", "channel": "email"},
    "holdout": {"route": "holdout", "status": "holdout", "holdout": True},
    "control": {"route": "control", "status": "control", "holdout": False},
    "suppressed": {"route": "suppressed", "status": "suppressed", "holdout": False},
}


@pytest.fixture
def write_decisions(engine: Engine) -> Callable[..., None]:
    """Writes decisions as a cycle, the dispatcher and settlement would have left them, with their counts.

    ``write_decisions(kind, count, **columns)``: ``count`` decisions of ``kind`` (see
    :data:`DECISION_KINDS`) for agent ``mailer``, decided at :data:`AT` and settled eight
    days later unless ``columns`` say otherwise (``settled_at=None`` for unsettled ones). A
    column given as a list gives each decision its own value (except ``findings``, a list for
    every decision). Customer ids continue
    across calls, so every decision is another customer.
    """
    written = {"n": 0}
    with engine.begin() as connection:
        cycle_id = connection.execute(
            sa.insert(cycles).values(at=AT, started_at=AT, finished_at=AT, status="finished").returning(cycles.c.id)
        ).scalar_one()

    def write(kind: str, count: int, **columns: Any) -> None:
        first = written["n"]
        written["n"] += count
        rows = []
        for i in range(count):
            row: dict[str, Any] = {
                "cycle_id": cycle_id,
                "agent_id": "mailer",
                "customer_id": f"d{first + i:05d}",
                "decided_at": AT,
                "action": "hello",
                "propensity": 1.0,
                "findings": [],
                "settled_at": AT + timedelta(days=8),
                "visited": False,
                "purchased": False,
                "revenue": 0.0,
                "reward": 0.0,
                "unsubscribed": False,
                "complained": False,
                **DECISION_KINDS[kind],
            }
            row.update({name: value[i] if _per_row(name, value) else value for name, value in columns.items()})
            rows.append(row)
        with engine.begin() as connection:
            connection.execute(sa.insert(decisions), rows)
            # The counts those writers would have kept as they went (monitor.metrics).
            metrics.rebuild(connection)

    return write
