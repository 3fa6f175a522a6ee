"""The issue's test, on the real clock: the SMTP server stopped for a minute mid-run while
`legato worker` (a real process) sends a few hundred e-mails, then started again on the same
port. Delayed, none lost, none twice: every message arrived exactly once (by Message-ID and
by recipient), none dead, the outbox all sent.

The server stops as a relay restarted on purpose does (``Mailbox.stop(graceful=True)``: 421
to new mail for half a second, so the message whose data came is answered), then refuses
connections for 60 real seconds. A server cut mid-answer is the in-doubt case, tested with
SIGKILLs in ``test_smtp_crash.py``. While it is away every attempt fails as ``unreachable``,
so each message is tried again within :func:`legato.deliver.outbox.reconnect_cap` (10 s this
early) instead of the doubling schedule's minutes: when the server returns, no message waits
longer than that, which the test reads from the outbox at that instant.

SQLite only: the test is a real minute and a half; on PostgreSQL it would double that, and
the retry path it drives is the outbox's on both stores (``test_smtp.py`` runs the simulated
clock's version on both).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

import legato
from legato.clock import SystemClock, as_utc
from legato.deliver.outbox import reconnect_cap
from legato.store.db import connect
from legato.store.ingest import import_customers
from legato.store.schema import decisions, outbox
from tests.schedules import slot_just_passed
from tests.smtp_box import Mailbox

TOTAL, CONNECTIONS, BEFORE_THE_STOP, OUTAGE = 300, 4, 100, 60.0

PLAYBOOK = """
brand:
  name: Outage Mail
  legal: {sender_name: Outage Mail, postal_address: "3 Pier Rd", support_contact: "help@outage.example", unsubscribe_url: "https://outage.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: smtp, host: 127.0.0.1, port: PORT, connections: CONNECTIONS, timeout: 5}
creatives:
  - {id: hello, channel: email, subject: "Hi", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: grow
    audience: "true"
    schedule: SCHEDULE
    actions: {creatives: [hello], send_windows: ["00:00-23:59"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


def worker(folder: Path, database_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(legato.__file__).resolve().parents[1])}
    log = (folder / "worker.log").open("w", encoding="utf-8")  # a file, not a pipe: a minute of log lines must not fill it
    return subprocess.Popen(
        [sys.executable, "-c", "from legato.cli.app import main; main()", "worker", "--playbook", str(folder / "playbook.yaml"),
         "--database", database_url, "--poll", "0.2"],
        env=env, stdout=subprocess.DEVNULL, stderr=log, text=True,
    )


def rows(engine: Any) -> list[Any]:
    with engine.connect() as c:
        return c.execute(
            sa.select(outbox.c.message_id, outbox.c.customer_id, outbox.c.status, outbox.c.attempts, outbox.c.error, outbox.c.send_at,
                      outbox.c.next_attempt_at, outbox.c.in_doubt_at, decisions.c.status.label("decision"))
            .join(decisions, decisions.c.id == outbox.c.decision_id)
        ).all()


def wait_for(what: Any, seconds: float, process: subprocess.Popen[str]) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if what():
            return True
        time.sleep(0.2)
    return bool(what())


def test_the_smtp_server_stopped_for_a_minute_mid_run_delays_the_mail_none_lost_none_twice(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'legato.db'}"
    engine = connect(database_url)
    stopped, back = threading.Event(), threading.Event()
    box = Mailbox()

    at_stop: list[int] = []

    def away_for_a_minute() -> None:
        box.stop(graceful=True)  # the messages whose session began before it still arrive
        at_stop.append(len(box.received))
        stopped.set()
        time.sleep(OUTAGE)
        box.start()  # the same port
        back.set()

    box.after = (BEFORE_THE_STOP, away_for_a_minute)
    box.start()
    process: subprocess.Popen[str] | None = None
    try:
        text = PLAYBOOK.replace("PORT", str(box.port)).replace("CONNECTIONS", str(CONNECTIONS)).replace("SCHEDULE", slot_just_passed())
        (tmp_path / "playbook.yaml").write_text(text, encoding="utf-8")
        ids = [f"c{i:04d}" for i in range(TOTAL)]
        import_customers(engine, pa.table({"id": ids, "email": [f"{c}@outage.example" for c in ids], "time_zone": ["UTC"] * TOTAL}),
                         attribute_types={}, clock=SystemClock())
        process = worker(tmp_path, database_url)
        assert wait_for(stopped.is_set, 60, process), (tmp_path / "worker.log").read_text()
        away_since = time.monotonic()
        # Mid-run: part went, the rest waits to be retried, and nothing is given up on.
        assert wait_for(lambda: len(rows(engine)) == TOTAL and any(r.status == "retry" for r in rows(engine)), 20, process)
        time.sleep(max(0.0, away_since + OUTAGE - 10 - time.monotonic()))  # near the end of the minute, the server still away
        assert BEFORE_THE_STOP <= at_stop[0] < BEFORE_THE_STOP + CONNECTIONS
        assert not back.is_set() and len(box.received) == at_stop[0]  # nothing arrived while it was away
        during = rows(engine)
        assert {r.status for r in during} <= {"sent", "retry", "claimed"} and sum(r.status == "sent" for r in during) == at_stop[0]
        waiting = [r for r in during if r.status == "retry"]
        assert waiting and min(r.attempts for r in waiting) >= 2  # tried again and again during the minute, none dead
        assert all(any(why in r.error for why in ("cannot reach the SMTP server", "421", "went away")) for r in waiting), {r.error for r in waiting}
        assert back.wait(30), "the server was not started again"
        returned = datetime.now(timezone.utc)
        waiting = [r for r in rows(engine) if r.status == "retry"]
        # Capped retries: when the server returns, no message waits longer than the reconnect cap.
        for r in waiting:
            assert as_utc(r.next_attempt_at) - returned <= reconnect_cap(returned - as_utc(r.send_at)), r
        assert wait_for(lambda: sum(r.status == "sent" for r in rows(engine)) == TOTAL, 60, process), Counter(r.status for r in rows(engine))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, (tmp_path / "worker.log").read_text()
        received = box.message_ids()
        recipients = Counter(r.rcpt_tos[0] for r in box.received)
    finally:
        if process is not None and process.poll() is None:
            process.kill()
        box.stop()
    found = rows(engine)
    engine.dispose()
    assert len(found) == TOTAL and {(r.status, r.decision) for r in found} == {("sent", "sent")}  # none dead, the outbox all sent
    assert all(r.in_doubt_at is None for r in found)
    # Every message arrived exactly once: by Message-ID and by recipient.
    assert received == Counter({f"<{r.message_id}@outage.example>": 1 for r in found})
    assert recipients == Counter({f"{r.customer_id}@outage.example": 1 for r in found})
    assert max(r.attempts for r in found) >= 3  # delayed: the minute cost attempts, not messages
