"""The one writer of policy versions: two writers never take the same number (issue 9).

Real processes on real databases (SQLite and PostgreSQL). Before, the cycle and the
rollback each read ``max(version)`` and then inserted ``max + 1``: two writers in between
each other's read and insert took the same number and the second failed on the key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy import Engine, inspect

from legato.decide.versions import list_versions, roll_back, save_version
from legato.store.schema import agents, policy_states

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)

# A writer in its own interpreter: nothing shared with the test but the database. It saves
# COUNT versions, one transaction each, after a line on stdin says go; with HOLD it keeps
# its (first) transaction open after saving, says "saved", and commits on the next line.
WRITER = """
import json, os, sys
from datetime import datetime, timezone
from legato.decide.versions import save_version
from legato.store.db import connect

url, count, hold = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "hold"
engine = connect(url, migrate=False)
at = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
sys.stdin.readline()
taken = []
for i in range(count):
    with engine.begin() as c:
        taken.append(save_version(c, "mailer", "beta_thompson", {"writer": os.getpid(), "i": i}, at))
        if hold:
            print("saved", flush=True)
            sys.stdin.readline()
print(json.dumps(taken), flush=True)
"""


def writer(url: str, count: int, hold: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, str(count), "hold" if hold else "go"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], line: str = "") -> list[int]:
    out, err = process.communicate(line, timeout=120)
    assert process.returncode == 0, err
    return list(json.loads(out.strip().splitlines()[-1]))


def with_agent(engine: Engine, agent_id: str = "mailer") -> None:
    with engine.begin() as c:
        c.execute(sa.insert(agents).values(id=agent_id, trust_stage=2, status="active", updated_at=AT))


def stored(engine: Engine) -> list[int]:
    with engine.connect() as c:
        return list(c.execute(sa.select(policy_states.c.version).order_by(policy_states.c.version)).scalars())


def test_agent_and_version_are_the_tables_key(engine: Engine) -> None:
    """What makes a taken number untakeable: the migrated schema's key on both databases."""
    assert inspect(engine).get_pk_constraint("policy_states")["constrained_columns"] == ["agent_id", "version"]


def test_two_processes_saving_at_once_take_distinct_numbers_and_neither_fails(engine: Engine, database_url: str) -> None:
    with_agent(engine)
    writers = [writer(database_url, 25) for _ in range(2)]
    for process in writers:  # both are ready and wait on stdin; go at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    taken = [version for process in writers for version in finish(process)]
    assert sorted(taken) == list(range(1, 51))
    assert stored(engine) == list(range(1, 51))


def test_a_writer_waiting_on_an_uncommitted_version_takes_the_next_number(engine: Engine, database_url: str) -> None:
    """The first writer holds version 1 uncommitted while the second saves: the second waits,
    finds 1 taken and takes 2 (before: the second failed on the key)."""
    with_agent(engine)
    first = writer(database_url, 1, hold=True)
    assert first.stdin is not None and first.stdout is not None
    first.stdin.write("go\n")
    first.stdin.flush()
    assert first.stdout.readline().strip() == "saved"
    second = writer(database_url, 1)
    assert second.stdin is not None
    second.stdin.write("go\n")
    second.stdin.flush()
    if engine.dialect.name == "postgresql":
        # Let the first commit only once the second is seen waiting for its row.
        waiting = sa.text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"
        )
        with engine.connect() as c:
            for _ in range(6000):
                if c.execute(waiting).scalar_one():
                    break
                c.execute(sa.text("SELECT pg_sleep(0.01)"))
                c.rollback()
            else:
                raise AssertionError("the second writer never waited for the first")
    # (SQLite: the second waits for the write lock, or comes after; either way it must take 2.)
    assert finish(first, "commit\n") == [1]
    assert finish(second) == [2]
    assert stored(engine) == [1, 2]


def test_a_rollback_saves_through_the_same_writer(engine: Engine) -> None:
    with_agent(engine)
    with engine.begin() as c:
        for i in range(3):
            save_version(c, "mailer", "beta_thompson", {"n_updates": i}, AT)
    restored = roll_back(engine, "mailer", 1, "ana", "bad feed", AT)
    assert (restored.version, restored.restored_from, restored.updates) == (4, 1, 0)
    assert [v.version for v in list_versions(engine, "mailer")] == [4, 3, 2, 1]
