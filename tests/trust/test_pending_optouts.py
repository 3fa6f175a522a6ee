"""An opt-out is never lost (issue 10, item 8): a locked or unreachable store waits, retries,
then keeps the "no" in a durable file that the cycle and the dispatcher honour.

The locks are real: a second process holds SQLite's ``BEGIN EXCLUSIVE`` or PostgreSQL's
``LOCK TABLE consents, inbound_messages IN ACCESS EXCLUSIVE MODE`` until the test lets go. No mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

import legato
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.store.ingest import import_customers
from legato.store.schema import audit_log, consents, inbound_messages, outbox
from legato.trust import pending_optouts
from legato.trust.inbound import apply_pending, receive
from legato.trust.pending_optouts import OptOutLost, OptOutSaved, OptOutsWaiting, PendingOptOut
from legato.validation import parse_playbook

from tests.world import AT, PLAYBOOK, load_customers

SRC = str(Path(legato.__file__).resolve().parents[1])
HOLD = """
import sys
url = sys.argv[1]
if url.startswith("sqlite"):
    import sqlite3
    held = sqlite3.connect(url.split("sqlite:///", 1)[1], isolation_level=None)
    held.execute("BEGIN EXCLUSIVE")
else:
    import psycopg
    held = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1))
    held.execute("LOCK TABLE consents, inbound_messages IN ACCESS EXCLUSIVE MODE")
print("locked", flush=True)
sys.stdin.readline()
"""


@contextmanager
def held(url: str) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the store's lock until the block ends."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        release(holder)


def release(holder: subprocess.Popen[str]) -> None:
    if holder.poll() is None:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def playbook_text() -> str:
    return PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Short waits, and the pending file in the test's folder (PostgreSQL's default is the user's state folder)."""
    monkeypatch.setenv("LEGATO_BUSY_TIMEOUT", "0.3")
    monkeypatch.setenv("LEGATO_OPTOUT_WAIT", "1.5")
    path = tmp_path / "pending-optouts.jsonl"
    monkeypatch.setenv(pending_optouts.PATH_VARIABLE, str(path))
    return path


def decided(engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Eight customers; a cycle at 08:00 schedules their e-mails for 09:00 (c001 among them)."""
    load_customers(engine, n=8)
    pb = parse_playbook(playbook_text())
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.connect() as c:
        assert c.execute(sa.select(outbox.c.status).where(outbox.c.customer_id == "c001")).scalar_one() == "pending"
    return pb


def sent_to(tmp_path: Path) -> list[str]:
    path = tmp_path / "out" / "email.jsonl"
    return [json.loads(line)["customer_id"] for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_a_stop_the_locked_store_cannot_take_is_kept_and_no_marketing_goes_until_it_is_written(
    engine: Engine, database_url: str, tmp_path: Path, quick: Path
) -> None:
    pb = decided(engine, tmp_path)
    with held(database_url) as holder:
        started = time.monotonic()
        with pytest.raises(OptOutSaved) as failed:
            receive(engine, pb, "c001", "email", "STOP", AT + timedelta(minutes=30))
        assert time.monotonic() - started >= 1.5  # it waited and retried before giving up
        assert str(quick) in str(failed.value) and "no marketing goes out until it is written" in str(failed.value)
        (kept,) = pending_optouts.pending(quick)
        assert (kept.customer_id, kept.channels, kept.text) == ("c001", ["email"], "STOP")
        # While it waits in the file and the store still cannot take it, nothing is sent.
        with pytest.raises(OptOutsWaiting, match="1 opt-out"):
            dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))
        release(holder)
    report = dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))
    assert "c001" not in sent_to(tmp_path) and sum(report.sent.values()) == len(sent_to(tmp_path)) > 0
    with engine.connect() as c:
        revoked = c.execute(sa.select(consents.c.status, consents.c.recorded_at).where(consents.c.customer_id == "c001")).one()
        assert revoked.status == "revoked" and revoked.recorded_at == AT + timedelta(minutes=30)  # from when it was received
        assert c.execute(sa.select(outbox.c.status).where(outbox.c.customer_id == "c001")).scalar_one() == "cancelled"
        assert c.execute(sa.select(inbound_messages.c.action).where(inbound_messages.c.customer_id == "c001")).scalar_one() == "opted_out"
        applied = c.execute(sa.select(audit_log.c.entity_id).where(audit_log.c.action == pending_optouts.APPLIED_ACTION)).scalars().all()
    assert applied == [kept.id] and pending_optouts.pending(quick) == []


def test_the_stop_is_written_when_the_lock_goes_within_the_wait(engine: Engine, database_url: str, tmp_path: Path, quick: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pb = decided(engine, tmp_path)
    monkeypatch.setenv("LEGATO_OPTOUT_WAIT", "20")
    with held(database_url) as holder:
        import threading

        threading.Timer(1.0, release, (holder,)).start()
        handled = receive(engine, pb, "c001", "email", "STOP", AT + timedelta(minutes=30))
    assert handled.action == "opted_out" and not quick.exists()
    with engine.connect() as c:
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == "c001")).scalar_one() == "revoked"


def test_an_opt_out_in_the_file_stops_the_dispatcher_and_the_cycle(engine: Engine, tmp_path: Path, quick: Path) -> None:
    """A long-running process: the file gains an opt-out after it started; its next batch honours it."""
    pb = decided(engine, tmp_path)
    entry = PendingOptOut(customer_id="c002", channel="sms", channels=["email", "sms"], received_at=(AT + timedelta(minutes=5)).isoformat(), text="no more emails")
    pending_optouts.save(quick, entry)
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))
    assert "c002" not in sent_to(tmp_path) and "c001" in sent_to(tmp_path)
    later = run_cycle(engine, pb, FixedClock(AT + timedelta(days=4)), transports(pb, tmp_path))
    assert later.agents["mailer"].suppressed["consent_revoked:email"] == 2  # c000 from the import, c002 from the file
    # Written once: a marker lost in a crash after the commit does not write it twice.
    lines = quick.read_text().splitlines()
    quick.write_text("\n".join(line for line in lines if '"applied"' not in line) + "\n")
    pending_optouts._settled.clear()
    assert apply_pending(engine, entry) == "already"


def test_a_newer_explicit_consent_stands_and_an_unknown_customer_is_recorded(engine: Engine, tmp_path: Path, quick: Path) -> None:
    load_customers(engine, n=4)  # express consents, recorded at AT with no date of their own
    # c001 gave its express consent at AT (dated): newer than the opt-out, so it stands.
    import_customers(engine, pa.table({"id": ["c001"], "consent_email_marketing": ["express"], "consent_email_marketing_at": [AT.isoformat()]}), clock=FixedClock(AT))
    old = PendingOptOut(customer_id="c001", channel="email", channels=["email"], received_at=(AT - timedelta(days=1)).isoformat(), text="stop")
    # c002's consent has no date: it cannot be shown to be newer than the opt-out, which wins (guard.consent.change).
    undated = PendingOptOut(customer_id="c002", channel="email", channels=["email"], received_at=(AT - timedelta(days=1)).isoformat(), text="stop")
    nobody = PendingOptOut(customer_id="nobody", channel="email", channels=["email"], received_at=AT.isoformat(), text="stop")
    assert apply_pending(engine, old) == "revoked" and apply_pending(engine, nobody) == "unknown_customer"
    assert apply_pending(engine, undated) == "revoked"
    with engine.connect() as c:
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == "c001")).scalar_one() == "granted"
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == "c002")).scalar_one() == "revoked"
        rejected = c.execute(sa.select(audit_log.c.entity_id).where(audit_log.c.action == pending_optouts.REJECTED_ACTION)).scalars().all()
    assert rejected == [nobody.id]


def test_a_torn_line_is_skipped_and_the_next_opt_out_starts_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    first = PendingOptOut(customer_id="a", channel="sms", channels=["sms"], received_at=AT.isoformat(), text="stop")
    pending_optouts.save(path, first)
    with path.open("a") as out:
        out.write('{"opt_out": {"customer_id": "b", "chan')  # a crash mid-write
    second = PendingOptOut(customer_id="c", channel="sms", channels=["sms"], received_at=AT.isoformat(), text="stop")
    pending_optouts.save(path, second)
    assert [e.customer_id for e in pending_optouts.pending(path)] == ["a", "c"]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_when_neither_the_store_nor_the_file_can_take_it_the_command_says_it_is_not_recorded(
    engine: Engine, database_url: str, tmp_path: Path, quick: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pb = decided(engine, tmp_path)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(pending_optouts.PATH_VARIABLE, str(tmp_path / "a-file" / "pending.jsonl"))
    monkeypatch.setenv("LEGATO_OPTOUT_WAIT", "0.5")
    with held(database_url), pytest.raises(OptOutLost, match="it is NOT recorded"):
        receive(engine, pb, "c001", "email", "STOP", AT + timedelta(minutes=30))


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from legato.cli.app import main; main()", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200", **env},
    )


def test_the_cli_on_a_locked_sqlite_database(tmp_path: Path) -> None:
    """`legato inbound receive --text STOP` on a database another process holds: exit 6, no
    traceback, the file beside the database; `legato run` then sends nothing until it can write it."""
    from legato.store.db import connect

    database = tmp_path / "legato.db"
    url = f"sqlite:///{database}"
    engine = connect(url)
    load_customers(engine, n=8)
    engine.dispose()
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(playbook_text())
    env = {"LEGATO_BUSY_TIMEOUT": "0.3", "LEGATO_OPTOUT_WAIT": "1", pending_optouts.PATH_VARIABLE: ""}  # "": the default, beside the database
    assert cli("run", str(playbook), "-d", url, "--at", AT.isoformat(), "--json", env=env).returncode == 0
    with held(url) as holder:
        stop = cli("inbound", "receive", str(playbook), "--customer", "c001", "--channel", "email", "--text", "STOP", "-d", url, env=env)
        assert stop.returncode == 6, stop.stderr
        assert "Traceback" not in stop.stderr + stop.stdout
        beside = tmp_path / "legato.db.pending-optouts.jsonl"
        assert f"it is kept in {beside}" in " ".join(stop.stderr.split()) and beside.exists()
        blocked = cli("run", str(playbook), "-d", url, "--at", (AT + timedelta(hours=2)).isoformat(), env=env)
        assert blocked.returncode == 6 and "Traceback" not in blocked.stderr and "locked" in blocked.stderr
        assert sent_to(tmp_path) == []
        waiting = cli("inbound", "pending", "-d", url, env=env)
        assert waiting.returncode == 6 and "waiting: customer c001" in waiting.stdout
        release(holder)
    done = cli("run", str(playbook), "-d", url, "--at", (AT + timedelta(hours=2)).isoformat(), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert "c001" not in sent_to(tmp_path) and len(sent_to(tmp_path)) > 0
    assert cli("inbound", "pending", "-d", url, env=env).stdout.startswith("no opt-out waits")


def test_a_stop_from_an_unknown_customer_on_a_locked_store_is_refused_not_kept(engine: Engine, database_url: str, tmp_path: Path, quick: Path) -> None:
    from legato.errors import NotFound

    pb = decided(engine, tmp_path)
    with held(database_url), pytest.raises(NotFound, match="unknown customer 'nobody'"):
        receive(engine, pb, "nobody", "email", "STOP", AT + timedelta(minutes=30))
    assert not quick.exists()


def test_a_stop_while_the_database_cannot_be_reached_is_kept_and_written_by_the_next_command(engine: Engine, database_url: str, tmp_path: Path) -> None:
    """PostgreSQL down when the STOP comes (even `connect` fails): kept in the file, exit 6;
    the next command that reaches a store writes it there."""
    load_customers(engine, n=8)
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(playbook_text())
    kept = tmp_path / "pending.jsonl"
    env = {"LEGATO_OPTOUT_WAIT": "1", pending_optouts.PATH_VARIABLE: str(kept)}
    down = "postgresql+psycopg://nobody@127.0.0.1:1/nowhere"
    stop = cli("inbound", "receive", str(playbook), "--customer", "c003", "--channel", "email", "--text", "unsubscribe", "-d", down, env=env)
    assert stop.returncode == 6 and "Traceback" not in stop.stderr, stop.stderr
    assert "cannot reach the database" in stop.stderr and f"it is kept in {kept}" in " ".join(stop.stderr.split())
    hello = cli("inbound", "receive", str(playbook), "--customer", "c003", "--text", "thanks!", "-d", down, env=env)
    assert hello.returncode == 6 and "cannot reach the database" in hello.stderr  # only an opt-out is kept
    assert [e.customer_id for e in pending_optouts.pending(kept)] == ["c003"]
    written = cli("inbound", "pending", "-d", database_url, env=env)
    assert written.returncode == 0 and "written: customer c003 opted out of email" in written.stdout, written.stderr
    with engine.connect() as c:
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == "c003")).scalar_one() == "revoked"


def test_an_unsubscribe_link_waits_for_the_lock_and_is_written(engine: Engine, database_url: str, tmp_path: Path, quick: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The link's opt-out retries like a reply's (it is not kept in the file: its caller retries)."""
    import threading

    from legato.deliver.tokens import message_token, ring_for
    from legato.trust.inbound import unsubscribe

    pb = decided(engine, tmp_path)
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))
    with engine.connect() as c:
        message_id = c.execute(sa.select(outbox.c.message_id).where(outbox.c.customer_id == "c001")).scalar_one()
    token = message_token(message_id, "c001", ring_for(engine))
    monkeypatch.setenv("LEGATO_OPTOUT_WAIT", "20")
    with held(database_url) as holder:
        threading.Timer(1.0, release, (holder,)).start()
        done = unsubscribe(engine, token, AT + timedelta(hours=3))
    assert (done.customer_id, done.channel) == ("c001", "email") and not quick.exists()
    with engine.connect() as c:
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == "c001")).scalar_one() == "revoked"


def test_a_reply_that_may_be_an_opt_out_is_kept_too_and_then_waits_for_a_person(engine: Engine, database_url: str, tmp_path: Path, quick: Path) -> None:
    from legato.trust.review import list_items

    pb = decided(engine, tmp_path)
    with held(database_url), pytest.raises(OptOutSaved, match="which may be an opt-out"):
        receive(engine, pb, "c001", "email", "too many emails", AT + timedelta(minutes=30))
    (kept,) = pending_optouts.pending(quick)
    assert kept.channels == [] and kept.escalate[0]["reason"] == "possible_opt_out"
    dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))
    assert "c001" not in sent_to(tmp_path) and len(sent_to(tmp_path)) > 0
    (waiting,) = list_items(engine, kind="conversation")
    assert (waiting.customer_id, waiting.reason, waiting.priority) == ("c001", "possible_opt_out", 85)
    with engine.connect() as c:  # consent untouched: a person decides
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == "c001")).scalar_one() == "granted"
