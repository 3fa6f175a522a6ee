"""A webhook dispatcher killed with SIGKILL mid-run, then run again: every message reaches the
receiver, each under its one webhook-id, and the receiver (which deduplicates, as
``standardwebhooks`` receivers are told to) takes each once.

Real processes on SQLite and PostgreSQL; the receiver verifies every signature. The first
dispatcher is killed while a batch's requests are on the wire (the batch's results are
recorded only after the whole batch went), so the messages it posted but had not recorded
are posted again by the second one, under the same ids: duplicates at the receiver are at
most one batch, and none is taken twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

import legato
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.store.schema import decisions, outbox
from legato.validation import parse_playbook

from tests.deliver.receivers import WebhookReceiver, new_secret
from tests.deliver.test_dispatch import AT, SEND, customers
from tests.deliver.test_webhook import PLAYBOOK

MESSAGES = 1_200
CHUNK = 500  # the child's batch: the most a killed dispatcher can have posted without recording

CHILD = r"""
import sys
from datetime import datetime
from pathlib import Path
from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.store.db import connect
from legato.validation import load_playbook

url, folder, at, chunk = sys.argv[1], Path(sys.argv[2]), datetime.fromisoformat(sys.argv[3]), int(sys.argv[4])
playbook = load_playbook(folder / "playbook.yaml")
report = dispatch_due(connect(url), playbook, FixedClock(at), transports(playbook, folder), chunk=chunk)
print(report.totals())
"""


def child(database_url: str, folder: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(legato.__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, str(folder / "child.py"), database_url, str(folder), SEND.isoformat(), str(CHUNK)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_killed_mid_run_then_rerun_every_webhook_reaches_the_receiver_and_each_is_taken_once(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    customers(engine, {f"c{i:04d}": "" for i in range(MESSAGES)})
    with WebhookReceiver(secret).running() as receiver:
        text = PLAYBOOK.replace("URL", receiver.url)
        (tmp_path / "playbook.yaml").write_text(text)
        (tmp_path / "child.py").write_text(CHILD)
        pb = parse_playbook(text)
        run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
        first = child(database_url, tmp_path)
        try:
            deadline = time.monotonic() + 120
            while len(receiver.unique) < 100:  # some of the first batch posted, its record not yet written
                assert first.poll() is None, first.communicate()
                assert time.monotonic() < deadline, "the first dispatcher posted nothing in 2 minutes"
                time.sleep(0.005)
            first.send_signal(signal.SIGKILL)
        finally:
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        killed_at = len(receiver.unique)
        assert killed_at < MESSAGES  # killed mid-run
        second = child(database_url, tmp_path)
        out, err = second.communicate(timeout=300)
        assert second.returncode == 0, err
    with engine.connect() as c:
        ids = set(c.execute(sa.select(outbox.c.message_id)).scalars())
        assert dict(c.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()) == {"sent": MESSAGES}
        assert dict(c.execute(sa.select(decisions.c.status, sa.func.count()).group_by(decisions.c.status)).all()) == {"sent": MESSAGES}
    assert receiver.rejected == 0 and set(receiver.unique) == ids  # every message reached the receiver, signed
    posted_twice = sum(receiver.seen.values()) - len(receiver.seen)
    assert posted_twice <= CHUNK and max(receiver.seen.values()) <= 2  # at most the batch in flight, each at most once more
