"""No tracebacks for what a user can cause (issue 10, item 12): the real `legato` process, each
error one line with the place and the fix, and its kind's exit code."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

import legato
from legato.errors import StoreBusy, StoreError, StoreUnreachable
from legato.store.db import connect, store_error

from tests.world import AT, PLAYBOOK, load_customers

SRC = str(Path(legato.__file__).resolve().parents[1])
README = Path(legato.__file__).resolve().parents[2] / "README.md"


def legato_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from legato.cli.app import main; main()", *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "300", "LEGATO_BUSY_TIMEOUT": "0.3", **env},
    )


def assert_user_error(done: subprocess.CompletedProcess[str], code: int, *parts: str) -> None:
    everything = done.stdout + done.stderr
    assert done.returncode == code, everything
    assert "Traceback" not in everything and "╭" not in everything, everything
    first = done.stderr.strip().splitlines()[0]
    assert first.startswith("error: ") and "hint: " in done.stderr, done.stderr
    for part in parts:
        assert part in " ".join(done.stderr.split()), (part, done.stderr)


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    engine = connect(url)
    load_customers(engine, n=8)
    engine.dispose()
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}"))
    return playbook, url


@pytest.mark.parametrize("command", [["review", "list"], ["report", "lift"], ["inbound", "list"]])
def test_a_file_that_is_not_a_database(command: list[str], tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database, only some words\n" * 20)
    for path in (README, text):
        assert_user_error(legato_cli(*command, "--database", f"sqlite:///{path}"), 6, f"{path} is not a SQLite database", "sqlite:///legato.db")


def test_a_folder_as_the_database(tmp_path: Path) -> None:
    assert_user_error(legato_cli("review", "list", "-d", f"sqlite:///{tmp_path}"), 6, f"cannot open the database {tmp_path}", "names a file (not a folder)")


def test_a_database_url_that_cannot_connect() -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
    assert_user_error(legato_cli("review", "list", "-d", url), 6, f"cannot reach the database {url}", "LEGATO_DATABASE_URL")


@contextmanager
def locked(url: str) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.readline()", url.split("sqlite:///", 1)[1]],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_locked_database_for_any_command(project: tuple[Path, str], tmp_path: Path) -> None:
    playbook, url = project
    customers = tmp_path / "more.csv"
    customers.write_text("id,email\nz1,z1@test.example\n")
    database = url.split("sqlite:///", 1)[1]
    assert legato_cli("run", str(playbook), "-d", url, "--at", AT.isoformat(), "--json").returncode == 0  # the agent exists
    with locked(url):
        for command in (
            ["run", str(playbook), "-d", url, "--at", (AT + timedelta(hours=1)).isoformat()],
            ["import", "customers", str(customers), "-d", url],
            ["suppress", "add", "--email", "z1@test.example", "--reason", "asked", "-d", url],
            ["agents", "pause", "mailer", "--by", "ana", "--reason", "x", "-d", url],
        ):
            assert_user_error(legato_cli(*command), 6, f"the database {database} is locked by another process", "LEGATO_BUSY_TIMEOUT")


def test_an_outbox_that_cannot_be_written(project: tuple[Path, str], tmp_path: Path) -> None:
    playbook, url = project
    (tmp_path / "out" / "email.jsonl").mkdir(parents=True)  # a folder where the outbox file goes
    assert_user_error(
        legato_cli("run", str(playbook), "-d", url, "--at", AT.isoformat()), 2,
        f"cannot write the outbox file of channel email {tmp_path / 'out' / 'email.jsonl'}", "path in the playbook",
    )
    (tmp_path / "out" / "email.jsonl").rmdir()
    (tmp_path / "out").rmdir()
    (tmp_path / "out").write_text("")  # a file where its folder goes
    assert_user_error(legato_cli("run", str(playbook), "-d", url, "--at", AT.isoformat()), 2, "cannot write the outbox file")
    import sqlalchemy as sa

    engine = connect(url)
    with engine.connect() as c:  # refused before anything was decided
        assert c.execute(sa.text("SELECT count(*) FROM cycles")).scalar_one() == 0
    engine.dispose()


def test_driver_errors_the_store_recognises() -> None:
    assert isinstance(store_error(sqlite3.OperationalError("database is locked"), "sqlite:///x.db"), StoreBusy)
    assert "is not a SQLite database" in str(store_error(sqlite3.DatabaseError("file is not a database"), "sqlite:///x.db"))
    assert "read-only" in str(store_error(sqlite3.OperationalError("attempt to write a readonly database"), "sqlite:///x.db"))
    import psycopg

    assert isinstance(store_error(psycopg.OperationalError("connection refused"), "postgresql+psycopg://u@h/d"), StoreUnreachable)
    assert isinstance(store_error(psycopg.errors.LockNotAvailable("canceling statement due to lock timeout")), StoreBusy)
    assert store_error(sqlite3.IntegrityError("UNIQUE constraint failed")) is None  # a bug keeps its traceback
    assert store_error(ValueError("x")) is None
    assert StoreBusy("x").transient and StoreUnreachable("x").transient and not StoreError("x").transient
