"""The outbox lifecycle on both databases: pending → claimed → sent | retry | dead.

Defects this file holds fixed (issue 10, item 3): a message whose template failed for one
customer (``{{ 1000 // customer.spend }}`` with spend 0) stopped all dispatch, for good;
one failing channel rolled back every other channel's batch; a torn last line in a JSON
Lines outbox made every later run crash; and the dispatcher sent to a customer whose reply
that may be an opt-out waited for a person.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver import outbox as outbox_writer
from legato.deliver.channels import FileTransport, Outcome, Transport, permanent, transient
from legato.deliver.dispatch import dispatch_due, transports
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers
from legato.store.schema import decisions, outbox
from legato.trust.inbound import receive
from legato.trust.review.actions import resolve
from legato.validation import parse_playbook

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEND = AT + timedelta(hours=2)  # the send window opens at 09:00 UTC

PLAYBOOK = """
brand:
  name: Life Co
  legal: {sender_name: Life Co, postal_address: "2 Quay St", support_contact: "help@life.example", unsubscribe_url: "https://life.example/u"}
attributes: {spend: number}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
  sms: {kind: file, path: out/sms.jsonl}
creatives:
  - {id: mail, channel: email, subject: "Points", body: "BODY"}
  - {id: text, channel: sms, body: "Life Co: new arrivals this week. Reply STOP to opt out."}
agents:
  - id: mailer
    objective: grow
    audience: "AUDIENCE_MAIL"
    actions: {creatives: [mail], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
  - id: texter
    objective: grow
    audience: "AUDIENCE_TEXT"
    actions: {creatives: [text], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""
BODY = "Hello {{ customer.id }}, that is {{ 1000 // customer.spend }} points per euro. Unsubscribe: {{ unsubscribe_url }} Life Co, {{ brand.postal_address }}"


def playbook(*, texts: bool = False) -> Playbook:
    text = PLAYBOOK.replace('"BODY"', json.dumps(BODY))
    text = text.replace("AUDIENCE_MAIL", "spend < 2.5" if texts else "true").replace("AUDIENCE_TEXT", "spend >= 2.5" if texts else "false")
    return parse_playbook(text)


def load(engine: Engine, spend: dict[str, float], *, phone: bool = False) -> None:
    ids = list(spend)
    table: dict[str, list[Any]] = {
        "id": ids,
        "email": [f"{c}@people.example" for c in ids],
        "time_zone": ["UTC"] * len(ids),
        "consent_email_marketing": ["express"] * len(ids),
        "spend": list(spend.values()),
    }
    if phone:
        table["phone"] = [f"+1212555{i:04d}" for i in range(len(ids))]
        table["consent_sms_marketing"] = ["express"] * len(ids)
    import_customers(engine, pa.table(table), attribute_types={"spend": "number"}, clock=FixedClock(AT))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def states(engine: Engine) -> dict[str, tuple[str, str, int, str | None]]:
    """customer -> (outbox status, decision status, attempts, error)."""
    with engine.connect() as c:
        rows = c.execute(
            sa.select(outbox.c.customer_id, outbox.c.status, decisions.c.status.label("decision"), outbox.c.attempts, outbox.c.error)
            .join(decisions, decisions.c.id == outbox.c.decision_id)
        ).all()
    return {r.customer_id: (r.status, r.decision, r.attempts, r.error) for r in rows}


class Flaky:
    """A transport in front of a file: fails transiently (or permanently) for the messages of
    the customers named, the first ``times`` times each is offered; delivers the others."""

    def __init__(self, inner: Transport, customers: set[str], *, times: int = 1, permanent_error: bool = False) -> None:
        self.inner, self.customers, self.times, self.permanent = inner, customers, times, permanent_error
        self.offered: dict[str, int] = {}

    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        go, refused = [], []
        for m in messages:
            n = self.offered[m["customer_id"]] = self.offered.get(m["customer_id"], 0) + 1
            if m["customer_id"] in self.customers and n <= self.times:
                refused.append(permanent(m["message_id"], "550 mailbox unavailable") if self.permanent else transient(m["message_id"], "421 try again later"))
            else:
                go.append(m)
        return refused + self.inner.send(go)


class Broken:
    """A transport whose whole batch raises (a channel's provider is down)."""

    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        raise ConnectionError("the SMS gateway does not answer")


def test_a_template_that_fails_for_one_customer_fails_alone_and_the_others_are_sent(engine: Engine, tmp_path: Path) -> None:
    """The issue's case: ``{{ 1000 // customer.spend }}`` with spend 0 stopped all dispatch,
    permanently (every run crashed on the same message). Now that message is dead, with its
    reason, its decision failed, and the others go out; a second run has nothing left to do."""
    load(engine, {"a": 10.0, "b": 0.0, "c": 20.0, "d": 4.0})
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    report = dispatch_due(engine, pb, FixedClock(SEND), transports(pb, tmp_path))
    assert report.totals() == {"sent": 3, "retry": 0, "dead": 1}
    assert len(report.errors) == 1 and "ZeroDivisionError" in report.errors[0]
    assert sorted(m["customer_id"] for m in lines(tmp_path / "out/email.jsonl")) == ["a", "c", "d"]
    now = states(engine)
    assert now["b"][:2] == ("dead", "failed") and "cannot be rendered for this customer" in str(now["b"][3])
    assert {k: v[:2] for k, v in now.items() if k != "b"} == {k: ("sent", "sent") for k in "acd"}
    again = dispatch_due(engine, pb, FixedClock(SEND + timedelta(hours=1)), transports(pb, tmp_path))
    assert again.totals() == {"sent": 0, "retry": 0, "dead": 0} and len(lines(tmp_path / "out/email.jsonl")) == 3


def test_a_transient_error_waits_with_exponential_backoff_and_jitter_then_is_sent(engine: Engine, tmp_path: Path) -> None:
    load(engine, {"a": 1.0, "b": 2.0, "c": 3.0})
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    flaky = Flaky(FileTransport(tmp_path / "out/email.jsonl"), {"b"}, times=2)
    clock = FixedClock(SEND)
    first = dispatch_due(engine, pb, clock, {"email": flaky}, rng=random.Random(1))
    assert first.totals() == {"sent": 2, "retry": 1, "dead": 0} and "421 try again later" in first.retry_errors[0]
    status, decision, attempts, error = states(engine)["b"]
    assert (status, decision, attempts, error) == ("retry", "scheduled", 1, "421 try again later")
    with engine.connect() as c:
        next_at = c.execute(sa.select(outbox.c.next_attempt_at).where(outbox.c.customer_id == "b")).scalar_one()
    base = outbox_writer.BACKOFF_BASE
    assert SEND + base / 2 <= next_at <= SEND + base  # the first wait: half to all of the base
    # Not due again before its next attempt, whoever dispatches.
    assert dispatch_due(engine, pb, clock, {"email": flaky}).totals() == {"sent": 0, "retry": 0, "dead": 0}
    clock.set(next_at)
    second = dispatch_due(engine, pb, clock, {"email": flaky}, rng=random.Random(2))
    assert second.totals() == {"sent": 0, "retry": 1, "dead": 0}
    with engine.connect() as c:
        later = c.execute(sa.select(outbox.c.next_attempt_at).where(outbox.c.customer_id == "b")).scalar_one()
    assert next_at + base <= later <= next_at + 2 * base  # the second wait doubles
    clock.set(later)
    third = dispatch_due(engine, pb, clock, {"email": flaky})
    assert third.totals() == {"sent": 1, "retry": 0, "dead": 0}
    assert states(engine)["b"][:3] == ("sent", "sent", 3)
    assert sorted(m["customer_id"] for m in lines(tmp_path / "out/email.jsonl")) == ["a", "b", "c"]


def test_the_jitter_spreads_messages_that_failed_together() -> None:
    rng = random.Random(7)
    waits = {outbox_writer.backoff(3, rng) for _ in range(50)}
    assert len(waits) > 40
    assert all(outbox_writer.BACKOFF_BASE * 2 <= w <= outbox_writer.BACKOFF_BASE * 4 for w in waits)
    assert outbox_writer.backoff(40, rng) <= outbox_writer.BACKOFF_CAP


def test_an_unreachable_servers_retries_are_capped_by_how_long_the_message_has_waited() -> None:
    rng = random.Random(11)
    floor = outbox_writer.RECONNECT_FLOOR
    assert outbox_writer.reconnect_cap(timedelta(0)) == floor == outbox_writer.reconnect_cap(timedelta(seconds=30))
    assert outbox_writer.reconnect_cap(timedelta(hours=2)) == timedelta(minutes=30)  # a quarter of the wait so far
    waits = [outbox_writer.backoff(6, rng, cap=floor) for _ in range(50)]  # the plain sixth wait: 16-32 min
    assert all(floor / 2 <= w <= floor for w in waits) and len(set(waits)) > 40  # capped, and still jittered
    assert outbox_writer.backoff(1, rng, cap=timedelta(hours=1)) <= outbox_writer.BACKOFF_BASE  # a cap never lengthens a wait


def test_a_message_that_keeps_failing_is_dead_once_it_is_older_than_its_channels_give_up_time(engine: Engine, tmp_path: Path) -> None:
    """Retried while younger than ``give_up_after`` (default 24 h after its send time), however
    many attempts that takes; the attempt at that age is its last, and it is dead with the reason."""
    load(engine, {"a": 1.0, "b": 2.0})
    pb = playbook()
    assert pb.channels[next(iter(pb.channels))].give_up == outbox_writer.GIVE_UP_AFTER == timedelta(hours=24)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    flaky = Flaky(FileTransport(tmp_path / "out/email.jsonl"), {"b"}, times=100)
    totals = []
    for at in [SEND + timedelta(hours=h) for h in (0, 2, 4, 6)] + [SEND + timedelta(hours=24)]:
        totals.append(dispatch_due(engine, pb, FixedClock(at), {"email": flaky}).totals())
        with engine.connect() as c:  # never due again later than the give-up time
            next_at = c.execute(sa.select(outbox.c.next_attempt_at).where(outbox.c.customer_id == "b")).scalar_one()
        assert next_at is None or next_at <= SEND + timedelta(hours=24)
    assert totals[0] == {"sent": 1, "retry": 1, "dead": 0}
    assert totals[1:-1] == [{"sent": 0, "retry": 1, "dead": 0}] * 3
    assert totals[-1] == {"sent": 0, "retry": 0, "dead": 1}
    status, decision, attempts, error = states(engine)["b"]
    assert (status, decision, attempts) == ("dead", "failed", 5)
    assert "421 try again later" in str(error) and "not delivered within 24 h of its send time, giving up" in str(error)


def test_the_last_attempt_is_at_the_give_up_time_not_after_it(engine: Engine, tmp_path: Path) -> None:
    load(engine, {"a": 1.0})
    text = PLAYBOOK.replace('"BODY"', json.dumps(BODY)).replace("AUDIENCE_MAIL", "true").replace("AUDIENCE_TEXT", "false")
    pb = parse_playbook(text.replace("path: out/email.jsonl}", "path: out/email.jsonl, give_up_after: 90m}"))
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    flaky = Flaky(FileTransport(tmp_path / "out/email.jsonl"), {"a"}, times=100)
    with engine.connect() as c:
        at = due = c.execute(sa.select(outbox.c.send_at)).scalar_one()
    for _ in range(20):  # each attempt at its next_attempt_at
        dispatch_due(engine, pb, FixedClock(at), {"email": flaky}, rng=random.Random(3))
        with engine.connect() as c:
            status, next_at = c.execute(sa.select(outbox.c.status, outbox.c.next_attempt_at)).one()
        if status == "dead":
            break
        assert next_at <= due + timedelta(minutes=90)
        at = next_at
    assert status == "dead" and at == due + timedelta(minutes=90)  # backoff 1, 2, 4, ... min, the last one cut to the deadline
    assert "not delivered within 90 min" in str(states(engine)["a"][3])


def test_a_permanent_error_is_dead_at_once_with_the_providers_reason(engine: Engine, tmp_path: Path) -> None:
    load(engine, {"a": 1.0, "b": 2.0})
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    flaky = Flaky(FileTransport(tmp_path / "out/email.jsonl"), {"a"}, permanent_error=True)
    report = dispatch_due(engine, pb, FixedClock(SEND), {"email": flaky})
    assert report.totals() == {"sent": 1, "retry": 0, "dead": 1}
    status, decision, _, error = states(engine)["a"]
    assert (status, decision) == ("dead", "failed") and "550 mailbox unavailable" in str(error)


def test_one_failing_channel_does_not_undo_the_other_channels_sends(engine: Engine, tmp_path: Path) -> None:
    """Before, the transports were written inside the transaction that marked the messages
    sent: the SMS gateway failing rolled back the e-mails' marks too (and they had been
    written). Now the e-mails are sent and recorded; the texts wait for their next attempt."""
    load(engine, {"a": 1.0, "b": 2.0, "m": 3.0, "n": 4.0}, phone=True)
    pb = playbook(texts=True)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    sinks = transports(pb, tmp_path)
    report = dispatch_due(engine, pb, FixedClock(SEND), {"email": sinks["email"], "sms": Broken()})
    assert (report.sent["mailer"], report.retry["texter"], report.dead["texter"]) == (2, 2, 0)
    assert all("the SMS gateway does not answer" in e for e in report.retry_errors)
    assert {k: v[:2] for k, v in states(engine).items()} == {
        "a": ("sent", "sent"), "b": ("sent", "sent"), "m": ("retry", "scheduled"), "n": ("retry", "scheduled"),
    }
    later = dispatch_due(engine, pb, FixedClock(SEND + outbox_writer.BACKOFF_BASE), sinks)
    assert later.totals() == {"sent": 2, "retry": 0, "dead": 0}
    assert sorted(m["customer_id"] for m in lines(tmp_path / "out/sms.jsonl")) == ["m", "n"]
    assert len(lines(tmp_path / "out/email.jsonl")) == 2


def test_a_torn_last_line_does_not_stop_dispatch_and_each_message_is_written_once(engine: Engine, tmp_path: Path) -> None:
    """A crash in the middle of writing left half a line at the end of the file; every later
    run crashed reading it. Now the torn line is cut off (its message was never recorded as
    sent) and that message is written again whole; ids already in the file are still skipped."""
    load(engine, {"a": 1.0, "b": 2.0, "c": 3.0})
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    path = tmp_path / "out/email.jsonl"
    dispatch_due(engine, pb, FixedClock(SEND), transports(pb, tmp_path))
    whole = path.read_bytes().splitlines(keepends=True)
    assert len(whole) == 3
    # As if the dispatcher died writing c's line (after a's and b's were written, none recorded).
    path.write_bytes(whole[0] + whole[1] + whole[2][: len(whole[2]) // 2])
    with engine.begin() as c:
        outbox_writer_reset(c)
    report = dispatch_due(engine, pb, FixedClock(SEND), transports(pb, tmp_path))
    assert report.totals() == {"sent": 3, "retry": 0, "dead": 0}
    written = lines(path)  # every line parses again
    assert sorted(m["customer_id"] for m in written) == ["a", "b", "c"]
    assert len({m["message_id"] for m in written}) == 3


def outbox_writer_reset(connection: Any) -> None:
    """Every message back to pending, as if no result had been recorded (a test's doing)."""
    connection.execute(sa.update(outbox).values(status="pending", sent_at=None))
    connection.execute(sa.update(decisions).where(decisions.c.status == "sent").values(status="scheduled"))


def test_the_file_transport_repairs_a_torn_line_and_completes_an_unterminated_one(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    first = json.dumps({"message_id": "m1", "body": "héllo"}).encode()
    path.write_bytes(first + b"\n" + json.dumps({"message_id": "m2", "body": "é"}).encode()[:-4])  # cut inside "é"
    outcomes = FileTransport(path).send([{"message_id": "m1"}, {"message_id": "m2", "body": "again"}])
    assert [o.delivered for o in outcomes] == [True, True]
    assert [json.loads(line)["message_id"] for line in path.read_text(encoding="utf-8").splitlines()] == ["m1", "m2"]
    # A whole message that lost only its newline is kept (it was delivered) and not written again.
    path.write_bytes(first + b"\n" + json.dumps({"message_id": "m3"}).encode())
    FileTransport(path).send([{"message_id": "m3"}, {"message_id": "m4"}])
    assert [json.loads(line)["message_id"] for line in path.read_text(encoding="utf-8").splitlines()] == ["m1", "m3", "m4"]


def test_a_claim_whose_dispatcher_died_is_claimed_again_once_its_lease_lapses(engine: Engine, tmp_path: Path) -> None:
    load(engine, {"a": 1.0, "b": 2.0})
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.begin() as c:  # a dispatcher on another host claims both, then dies
        claimed = outbox_writer.claim(c, "elsewhere:4242:deadbeef", SEND, 100)
    assert len(claimed) == 2 and {v[0] for v in states(engine).values()} == {"claimed"}
    held = dispatch_due(engine, pb, FixedClock(SEND + outbox_writer.LEASE - timedelta(seconds=1)), transports(pb, tmp_path))
    assert held.totals() == {"sent": 0, "retry": 0, "dead": 0}  # its lease still holds
    after = dispatch_due(engine, pb, FixedClock(SEND + outbox_writer.LEASE), transports(pb, tmp_path))
    assert after.totals() == {"sent": 2, "retry": 0, "dead": 0}
    assert {k: v[:3] for k, v in states(engine).items()} == {"a": ("sent", "sent", 2), "b": ("sent", "sent", 2)}


def test_a_late_result_of_a_dispatcher_that_lost_its_claim_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    load(engine, {"a": 1.0})
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.begin() as c:
        [row] = outbox_writer.claim(c, "elsewhere:1:slow", SEND, 10)
    with engine.begin() as c:  # the lease lapsed; another dispatcher took the message
        assert outbox_writer.claim(c, "elsewhere:2:next", SEND + outbox_writer.LEASE, 10) == [row]
    with engine.begin() as c:  # the slow one wakes up and reports a transient error
        outbox_writer.record_transient(c, "elsewhere:1:slow", [{"o_id": row, "attempts": 1, "error": "timeout"}], SEND)
    with engine.connect() as c:
        assert c.execute(sa.select(outbox.c.status, outbox.c.claimed_by)).one() == ("claimed", "elsewhere:2:next")


def test_a_message_whose_dispatcher_always_dies_is_dead_after_its_last_attempt(engine: Engine, tmp_path: Path) -> None:
    load(engine, {"a": 1.0, "b": 2.0})
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    at = SEND
    for i in range(outbox_writer.MAX_ATTEMPTS):
        with engine.begin() as c:
            outbox_writer.claim(c, f"elsewhere:{i}:x", at, 1)  # the oldest message, every time
        at += outbox_writer.LEASE
    report = dispatch_due(engine, pb, FixedClock(at), transports(pb, tmp_path))
    assert report.totals() == {"sent": 1, "retry": 0, "dead": 0}
    dead = [v for v in states(engine).values() if v[0] == "dead"]
    assert len(dead) == 1 and dead[0][1] == "failed" and "each one's dispatcher stopped" in str(dead[0][3])


def test_no_message_reaches_a_customer_whose_possible_opt_out_waits_for_a_person(engine: Engine, tmp_path: Path) -> None:
    """The dispatcher asks the one standing check (legato.guard.standing), which now knows
    an open ``possible_opt_out`` item: marketing to that customer pauses until it is decided."""
    load(engine, {"a": 1.0, "b": 2.0})
    pb = playbook()
    handled = receive(engine, pb, "a", "email", "you send too many emails", AT)
    assert handled.reason == "possible_opt_out" and handled.review_item_id is not None
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))  # the cycle leaves "a" alone
    assert set(states(engine)) == {"b"}
    with engine.begin() as c:  # a message for "a" reaches the outbox anyway (say, approved earlier)
        decision = c.execute(sa.select(decisions.c.id).where(decisions.c.customer_id == "a")).scalar_one()
        outbox_writer.schedule_message(c, decision, "a", "email", SEND)
        c.execute(sa.update(decisions).where(decisions.c.id == decision).values(status="scheduled", creative_id="mail", channel="email"))
    report = dispatch_due(engine, pb, FixedClock(SEND), transports(pb, tmp_path))
    assert report.totals() == {"sent": 1, "retry": 0, "dead": 1}
    assert "possible_opt_out" in report.errors[0] and "waits for a person" in report.errors[0]
    assert [m["customer_id"] for m in lines(tmp_path / "out/email.jsonl")] == ["b"]
    resolve(engine, handled.review_item_id, "ana", note="not an opt-out: asked for fewer", now=SEND)
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=1)), transports(pb, tmp_path))
    dispatch_due(engine, pb, FixedClock(SEND + timedelta(days=1)), transports(pb, tmp_path))
    assert sorted(m["customer_id"] for m in lines(tmp_path / "out/email.jsonl")) == ["a", "b", "b"]


def test_a_message_on_a_revoked_channel_is_not_sent(engine: Engine, tmp_path: Path) -> None:
    """Consent revoked after the decision, on this channel only: the consent rule at send
    time (through guard.standing) stops that message; the others go."""
    load(engine, {"a": 1.0, "b": 2.0})
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    import_customers(engine, pa.table({"id": ["a"], "consent_email_marketing": ["revoked"]}), clock=FixedClock(AT + timedelta(minutes=5)))
    report = dispatch_due(engine, pb, FixedClock(SEND), transports(pb, tmp_path))
    assert report.totals() == {"sent": 1, "retry": 0, "dead": 1} and "consent_revoked:email" in report.errors[0]
    assert [m["customer_id"] for m in lines(tmp_path / "out/email.jsonl")] == ["b"]


def test_migration_0013_makes_failed_messages_dead_and_constrains_the_new_statuses(blank_database_url: str) -> None:
    from alembic import command
    from sqlalchemy.exc import IntegrityError

    from legato.store.db import alembic_config

    engine = sa.create_engine(blank_database_url)
    config = alembic_config(engine)
    command.upgrade(config, "0012")
    stamp = {"at": AT}
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO cycles (id, at, started_at, status) VALUES (1, :at, :at, 'finished')"), stamp)
        for i, status in enumerate(("pending", "sent", "failed", "cancelled"), 1):
            c.execute(sa.text(
                "INSERT INTO decisions (id, cycle_id, agent_id, customer_id, decided_at, action, propensity, holdout, findings, route, status) "
                f"VALUES ({i}, 1, 'a', 'c{i}', :at, 'x', 1.0, false, '[]', 'scheduled', 'scheduled')"
            ), stamp)
            c.execute(sa.text(
                "INSERT INTO outbox (message_id, decision_id, customer_id, channel, send_at, status, attempts, error) "
                f"VALUES ('m{i}', {i}, 'c{i}', 'email', :at, '{status}', 1, 'why')"
            ), stamp)
    command.upgrade(config, "head")
    with engine.begin() as c:
        assert dict(c.execute(sa.text("SELECT message_id, status FROM outbox")).all()) == {"m1": "pending", "m2": "sent", "m3": "dead", "m4": "cancelled"}
        c.execute(sa.text("UPDATE outbox SET status = 'claimed', claimed_by = 'w', lease_expires_at = :at WHERE message_id = 'm1'"), stamp)
        c.execute(sa.text("UPDATE outbox SET status = 'retry', next_attempt_at = :at WHERE message_id = 'm4'"), stamp)
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(sa.text("UPDATE outbox SET status = 'failed' WHERE message_id = 'm1'"))
    indexes = {i["name"] for i in sa.inspect(engine).get_indexes("outbox")}
    assert {"ix_outbox_status_next_attempt", "ix_outbox_status_send", "ix_outbox_customer_send"} <= indexes
    command.downgrade(config, "0012")
    with engine.connect() as c:
        assert dict(c.execute(sa.text("SELECT message_id, status FROM outbox")).all()) == {"m1": "pending", "m2": "sent", "m3": "failed", "m4": "pending"}
    engine.dispose()
