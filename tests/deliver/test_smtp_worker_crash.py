"""The issue's SIGKILL test for `legato worker`: 10,000 e-mails to a real SMTP server (aiosmtpd on
loopback), the worker SIGKILLed mid-batch and a new worker started. Every decision's e-mail
reached the server (by Message-ID and by recipient); those that arrived twice are at most the
connections open at the kill, each recorded in doubt. On SQLite and PostgreSQL; `legato
dispatch`'s twin is ``test_smtp_crash.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

import legato
from legato.clock import SystemClock
from legato.store.ingest import import_customers
from legato.store.schema import cycles, decisions, outbox
from tests.schedules import slot_just_passed
from tests.smtp_box import Mailbox, each_arrived_once_or_in_doubt

TOTAL, CONNECTIONS = 10_000, 4

# The first worker runs the slot's cycle (a daily slot that has just passed: due at once, not again for a day)
# and sends; the second finds the slot run and sends the rest. The worker's clock is real.
PLAYBOOK = """
brand:
  name: Crash Mail
  legal: {sender_name: Crash Mail, postal_address: "3 Pier Rd", support_contact: "help@crash.example", unsubscribe_url: "https://crash.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: smtp, host: 127.0.0.1, port: PORT, connections: CONNECTIONS}
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
    return subprocess.Popen(
        [sys.executable, "-c", "from legato.cli.app import main; main()", "worker", "--playbook", str(folder / "playbook.yaml"),
         "--database", database_url, "--poll", "0.2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def rows(engine: Any) -> list[Any]:
    with engine.connect() as c:
        return c.execute(
            sa.select(outbox.c.message_id, outbox.c.customer_id, outbox.c.status, outbox.c.in_doubt_at, decisions.c.status.label("decision"))
            .join(decisions, decisions.c.id == outbox.c.decision_id)
        ).all()


def test_legato_worker_killed_mid_batch_of_10000_emails_then_restarted_every_email_arrives_duplicates_in_doubt(
    engine: Any, database_url: str, tmp_path: Path
) -> None:
    with Mailbox() as box:
        text = PLAYBOOK.replace("PORT", str(box.port)).replace("CONNECTIONS", str(CONNECTIONS)).replace("SCHEDULE", slot_just_passed())
        (tmp_path / "playbook.yaml").write_text(text, encoding="utf-8")
        ids = [f"c{i:05d}" for i in range(TOTAL)]
        import_customers(engine, pa.table({"id": ids, "email": [f"{c}@crash.example" for c in ids], "time_zone": ["UTC"] * TOTAL}),
                         attribute_types={}, clock=SystemClock())
        first = worker(tmp_path, database_url)
        deadline = time.monotonic() + 240
        while len(box.received) < 2_500 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        _, err = first.communicate(timeout=60)
        assert first.returncode == -signal.SIGKILL, err
        assert 2_500 <= len(box.received) < TOTAL
        second = worker(tmp_path, database_url)
        deadline = time.monotonic() + 240
        while sum(r.status == "sent" for r in rows(engine)) < TOTAL and time.monotonic() < deadline and second.poll() is None:
            time.sleep(0.2)
        second.send_signal(signal.SIGTERM)
        _, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        received = box.message_ids()
        recipients = Counter(r.rcpt_tos[0] for r in box.received)
    found = rows(engine)
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(cycles)).scalar_one() == 1  # the restart did not run the slot again
    each_arrived_once_or_in_doubt(found, received, recipients, TOTAL, CONNECTIONS)
