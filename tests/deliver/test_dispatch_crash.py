"""Dispatchers killed with SIGKILL, then run again: each message is delivered exactly once.

Real processes, real files, SQLite and PostgreSQL. A child process dispatches and is killed
(by itself at an exact point, or by this test at whatever point it has reached); a second
child dispatches again at the same instant. The dead dispatcher's claims are released at
once (it ran on this host and its process is gone), the messages it wrote but did not
record are recognised by their message id in the file, and a torn last line is repaired.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

import legato
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.store.ingest import import_customers
from legato.store.schema import decisions, outbox
from legato.validation import parse_playbook

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEND = AT + timedelta(hours=2)
CUSTOMERS = 24

PLAYBOOK = """
brand:
  name: Crash Co
  legal: {sender_name: Crash Co, postal_address: "3 Pier Rd", support_contact: "help@crash.example", unsubscribe_url: "https://crash.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
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

# The dispatcher process. Modes: "normal"; "kill-after-write N" (SIGKILL itself right after
# the transport's N-th write, before the result is recorded); "torn" (write half of the
# first message's line, then SIGKILL); "slow" (a pause after each write, for the test to kill).
CHILD = r'''
import os, signal, sys, time
from datetime import datetime
from pathlib import Path
from legato.clock import FixedClock
from legato.deliver.channels import FileTransport
from legato.deliver.dispatch import dispatch_due
from legato.store.db import connect
from legato.validation import load_playbook

url, folder, mode, arg, at = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), datetime.fromisoformat(sys.argv[5])
playbook = load_playbook(folder / "playbook.yaml")
inner = FileTransport(folder / "out/email.jsonl")

class Dying:
    writes = 0
    def send(self, messages):
        if mode == "torn":
            import json
            line = json.dumps(messages[0]).encode()
            with open(inner.path, "ab") as out:
                out.write(line[: len(line) // 2]); out.flush(); os.fsync(out.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        outcomes = inner.send(messages)
        Dying.writes += 1
        if mode == "kill-after-write" and Dying.writes == arg:
            os.kill(os.getpid(), signal.SIGKILL)  # written, fsynced, not recorded
        if mode == "slow":
            time.sleep(0.15)
        return outcomes

engine = connect(url)
report = dispatch_due(engine, playbook, FixedClock(at), {"email": Dying()}, chunk=4)
print(report.totals())
'''


def prepare(engine: Engine, folder: Path) -> None:
    (folder / "playbook.yaml").write_text(PLAYBOOK, encoding="utf-8")
    (folder / "child.py").write_text(CHILD, encoding="utf-8")
    ids = [f"c{i:03d}" for i in range(CUSTOMERS)]
    import_customers(engine, pa.table({"id": ids, "email": [f"{c}@crash.example" for c in ids], "time_zone": ["UTC"] * CUSTOMERS}), attribute_types={}, clock=FixedClock(AT))
    pb = parse_playbook(PLAYBOOK)
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, folder))
    assert report.agents["mailer"].scheduled == CUSTOMERS


def child(database_url: str, folder: Path, mode: str, arg: int = 0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(legato.__file__).resolve().parents[1])}
    return subprocess.Popen(
        [sys.executable, str(folder / "child.py"), database_url, str(folder), mode, str(arg), SEND.isoformat()],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def delivered_once(engine: Engine, folder: Path) -> None:
    """Every message in the file exactly once, and recorded sent (its decision too)."""
    raw = (folder / "out/email.jsonl").read_text(encoding="utf-8")
    written = [json.loads(line) for line in raw.splitlines()]
    ids = [m["message_id"] for m in written]
    assert len(ids) == CUSTOMERS and len(set(ids)) == CUSTOMERS, f"{len(ids)} lines, {len(set(ids))} distinct"
    with engine.connect() as c:
        rows = c.execute(sa.select(outbox.c.message_id, outbox.c.status, decisions.c.status.label("d")).join(decisions, decisions.c.id == outbox.c.decision_id)).all()
    assert {r.message_id for r in rows} == set(ids)
    assert {(r.status, r.d) for r in rows} == {("sent", "sent")}


def test_killed_between_the_transports_write_and_the_record_then_rerun_delivers_each_message_once(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    prepare(engine, tmp_path)
    code, _, err = finish(child(database_url, tmp_path, "kill-after-write", 2))
    assert code == -signal.SIGKILL, err
    with engine.connect() as c:
        counts = dict(c.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all())
    assert counts == {"sent": 4, "claimed": 4, "pending": CUSTOMERS - 8}  # batch 1 recorded, batch 2 written only
    assert len((tmp_path / "out/email.jsonl").read_text().splitlines()) == 8
    code, out, err = finish(child(database_url, tmp_path, "normal"))
    assert code == 0, err
    assert "'sent': 20" in out  # the 4 written before the kill are recognised, 16 more written
    delivered_once(engine, tmp_path)


def test_killed_at_whatever_point_dispatch_had_reached_then_rerun_delivers_each_message_once(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    prepare(engine, tmp_path)
    process = child(database_url, tmp_path, "slow")
    path = tmp_path / "out/email.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not path.exists() or len(path.read_bytes().splitlines()) < 9):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    code, _, err = finish(process)
    assert code == -signal.SIGKILL, err
    assert 9 <= len(path.read_bytes().splitlines()) < CUSTOMERS
    code, _, err = finish(child(database_url, tmp_path, "normal"))
    assert code == 0, err
    delivered_once(engine, tmp_path)


def test_killed_in_the_middle_of_writing_a_line_then_rerun_repairs_the_file_and_delivers_each_once(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    prepare(engine, tmp_path)
    code, _, _ = finish(child(database_url, tmp_path, "kill-after-write", 1))  # one batch in the file
    assert code == -signal.SIGKILL
    code, _, _ = finish(child(database_url, tmp_path, "torn"))  # then half a line, and dead
    assert code == -signal.SIGKILL
    raw = (tmp_path / "out/email.jsonl").read_bytes()
    assert not raw.endswith(b"\n")  # torn
    for _ in range(2):  # every later run works, not only the first
        code, out, err = finish(child(database_url, tmp_path, "normal"))
        assert code == 0, err
    delivered_once(engine, tmp_path)


def test_the_cli_reports_sent_retry_and_dead(engine: Engine, database_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from legato.cli.app import app

    prepare(engine, tmp_path)
    with engine.begin() as c:  # one message's customer vanishes from the store's point of view: no address
        c.execute(sa.text("UPDATE customers SET email = NULL WHERE id = 'c000'"))
    result = CliRunner().invoke(app, ["dispatch", str(tmp_path / "playbook.yaml"), "--database", database_url, "--at", SEND.isoformat()])
    assert result.exit_code == 0, result.output
    assert f"dispatch: {CUSTOMERS - 1} sent, 0 to retry, 1 dead" in result.output
    assert "no_contact_point:email" in result.output
    again = CliRunner().invoke(app, ["dispatch", str(tmp_path / "playbook.yaml"), "--database", database_url, "--at", SEND.isoformat(), "--json"])
    data: dict[str, Any] = json.loads(again.stdout)
    assert (data["sent"], data["retry"], data["dead"]) == (0, 0, 0)


def test_two_dispatchers_at_once_never_claim_the_same_message(engine: Engine, database_url: str, tmp_path: Path) -> None:
    """Two real processes dispatch the same outbox at the same time: every message is
    claimed by one of them, once (one attempt each), and written once."""
    prepare(engine, tmp_path)
    first, second = child(database_url, tmp_path, "slow"), child(database_url, tmp_path, "slow")
    results = [finish(first), finish(second)]
    assert [code for code, _, _ in results] == [0, 0], [err for _, _, err in results]
    delivered_once(engine, tmp_path)
    with engine.connect() as c:
        assert set(c.execute(sa.select(outbox.c.attempts)).scalars()) == {1}
    sent = [eval(out.strip().splitlines()[-1])["sent"] for _, out, _ in results]  # noqa: S307 - our own child's dict
    assert sum(sent) == CUSTOMERS
