"""Dispatchers SIGKILLed while handing e-mails to a real SMTP server, then run again.

No SMTP server deduplicates, so a message the server took just before the kill, whose
result was never recorded, may arrive twice. The hand-over protocol bounds that to one
message per open connection and names each one in doubt (``in_doubt_at``, the report), and
the channel's ``in_doubt`` decides: resent (at least once) or held for a person. Messages
never handed over are simply sent. Real processes, a real server (aiosmtpd on loopback),
SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

import legato
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.store.ingest import import_customers
from legato.store.schema import decisions, outbox
from legato.validation import parse_playbook
from tests.smtp_box import Mailbox, each_arrived_once_or_in_doubt

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEND = AT + timedelta(hours=2)

PLAYBOOK = """
brand:
  name: Crash Mail
  legal: {sender_name: Crash Mail, postal_address: "3 Pier Rd", support_contact: "help@crash.example", unsubscribe_url: "https://crash.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: smtp, host: 127.0.0.1, port: PORT, connections: CONNECTIONS, in_doubt: IN_DOUBT}
creatives:
  - {id: hello, channel: email, subject: "Hi", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: grow
    audience: "true"
    actions: {creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""

# A dispatcher that SIGKILLs itself right after the server accepted its N-th message, before
# the result is recorded: the worst instant for a provider that does not deduplicate.
CHILD = r'''
import os, signal, sys
from datetime import datetime
from pathlib import Path
from legato.clock import FixedClock
from legato.deliver import smtp
from legato.deliver.dispatch import dispatch_due, transports
from legato.store.db import connect
from legato.validation import load_playbook

url, folder, kill_after, at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), datetime.fromisoformat(sys.argv[4])
accepted = 0
send_one = smtp.SmtpLane.send_one

def dying(self, message):
    global accepted
    outcome = send_one(self, message)
    accepted += outcome.delivered
    if accepted == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return outcome

smtp.SmtpLane.send_one = dying
playbook = load_playbook(folder / "playbook.yaml")
report = dispatch_due(connect(url), playbook, FixedClock(at), transports(playbook, folder), chunk=int(sys.argv[5]))
print(report.totals())
'''


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(legato.__file__).resolve().parents[1])}


def prepare(engine: Engine, folder: Path, port: int, customers: int, *, connections: int = 1, in_doubt: str = "resend") -> None:
    text = PLAYBOOK.replace("PORT", str(port)).replace("CONNECTIONS", str(connections)).replace("IN_DOUBT", in_doubt)
    (folder / "playbook.yaml").write_text(text, encoding="utf-8")
    (folder / "child.py").write_text(CHILD, encoding="utf-8")
    ids = [f"c{i:05d}" for i in range(customers)]
    import_customers(engine, pa.table({"id": ids, "email": [f"{c}@crash.example" for c in ids], "time_zone": ["UTC"] * customers}), attribute_types={}, clock=FixedClock(AT))
    playbook = parse_playbook(text)
    report = run_cycle(engine, playbook, FixedClock(AT), transports(playbook, folder))
    assert report.agents["mailer"].scheduled == customers


def run(args: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(args, env=env(), capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def legato_dispatch(folder: Path, database_url: str) -> subprocess.Popen[str]:
    """``legato dispatch`` as a user runs it, in a process of its own."""
    return subprocess.Popen(
        [sys.executable, "-c", "from legato.cli.app import main; main()", "dispatch", str(folder / "playbook.yaml"),
         "--database", database_url, "--at", SEND.isoformat(), "--json"],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def outbox_rows(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return c.execute(
            sa.select(outbox.c.message_id, outbox.c.customer_id, outbox.c.status, outbox.c.in_doubt_at, outbox.c.handed_over_at, decisions.c.status.label("decision"))
            .join(decisions, decisions.c.id == outbox.c.decision_id)
        ).all()


@pytest.mark.parametrize("in_doubt", ["resend", "hold"])
def test_killed_right_after_the_server_took_a_message_that_one_message_is_in_doubt_and_resent_or_held(
    engine: Engine, database_url: str, tmp_path: Path, in_doubt: str
) -> None:
    with Mailbox() as box:
        prepare(engine, tmp_path, box.port, 12, in_doubt=in_doubt)
        code, _, err = run([sys.executable, str(tmp_path / "child.py"), database_url, str(tmp_path), "5", SEND.isoformat(), "4"])
        assert code == -signal.SIGKILL, err
        assert len(box.received) == 5
        rows = outbox_rows(engine)
        # Batch 1 (4 messages) recorded one by one; the 5th accepted, marked handed over, no result.
        assert Counter(r.status for r in rows) == {"sent": 4, "claimed": 4, "pending": 4}
        marked = [r for r in rows if r.handed_over_at is not None]
        assert len(marked) == 1 and marked[0].status == "claimed"
        (doubt,) = marked

        code, out, err = run([sys.executable, str(tmp_path / "child.py"), database_url, str(tmp_path), "0", SEND.isoformat(), "4"])
        assert code == 0, err
        ids = box.message_ids()
        rows = {r.message_id: r for r in outbox_rows(engine)}
        key = f"<{doubt.message_id}@crash.example>"
        assert set(ids) == {f"<{m}@crash.example>" for m in rows}  # every message reached the server
        recorded_in_doubt = {m for m, r in rows.items() if r.in_doubt_at is not None}
        assert recorded_in_doubt == {doubt.message_id}
        if in_doubt == "resend":
            assert ids[key] == 2 and sum(ids.values()) == 13  # the one in doubt twice, the others once
            assert {(r.status, r.decision) for r in rows.values()} == {("sent", "sent")}
        else:
            assert ids[key] == 1 and sum(ids.values()) == 12  # held: not sent again
            assert rows[doubt.message_id].status == "in_doubt" and rows[doubt.message_id].decision == "scheduled"
            assert Counter(r.status for r in rows.values()) == {"sent": 11, "in_doubt": 1}
            # A person looks it up (it is in the relay's log, say) and records it delivered.
            from typer.testing import CliRunner

            from legato.cli.app import app

            listed = CliRunner().invoke(app, ["outbox", "in-doubt", "-d", database_url, "--json"])
            assert listed.exit_code == 0, listed.output
            assert [m["message_id"] for m in json.loads(listed.stdout)["in_doubt"]] == [doubt.message_id]
            unnamed = CliRunner().invoke(app, ["outbox", "resolve", doubt.message_id, "--delivered", "-d", database_url])
            assert unnamed.exit_code != 0 and "--by NAME" in unnamed.output
            done = CliRunner().invoke(app, ["outbox", "resolve", doubt.message_id, "--delivered", "--by", "ana", "--reason", "in the relay's log", "-d", database_url])
            assert done.exit_code == 0 and "1 message recorded sent" in done.output, done.output
            assert {(r.status, r.decision) for r in outbox_rows(engine)} == {("sent", "sent")}
        # The 3 never handed over of batch 2 and the last batch are simply sent (and the resent one).
        assert f"'sent': {8 if in_doubt == 'resend' else 7}" in out


def test_legato_dispatch_killed_mid_batch_of_10000_emails_then_rerun_every_email_arrives_duplicates_in_doubt(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """The issue's test: 10,000 e-mails, `legato dispatch` SIGKILLed mid-batch and run again
    (real processes), four connections, on each store. Every decision's e-mail reached the
    server; the e-mails that arrived twice are at most the connections open at the kill, and
    each is recorded in doubt."""
    total, connections = 10_000, 4
    with Mailbox() as box:
        prepare(engine, tmp_path, box.port, total, connections=connections)
        process = legato_dispatch(tmp_path, database_url)
        deadline = time.monotonic() + 240
        while len(box.received) < 2_500 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        _, err = process.communicate(timeout=60)
        assert process.returncode == -signal.SIGKILL, err
        at_kill = len(box.received)
        assert 2_500 <= at_kill < total
        recorded_before = sum(r.status == "sent" for r in outbox_rows(engine))
        rerun = legato_dispatch(tmp_path, database_url)
        out, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
        report = json.loads(out)
        ids = box.message_ids()
        recipients = Counter(r.rcpt_tos[0] for r in box.received)
    # Every decision's e-mail reached the server; each that arrived twice is recorded in doubt.
    in_doubt = each_arrived_once_or_in_doubt(outbox_rows(engine), ids, recipients, total, connections)
    assert report["in_doubt"]["found"] == len(in_doubt) and report["in_doubt"]["held"] == 0
    assert report["sent"] == total - recorded_before  # the rerun sent the rest, the ones in doubt again
