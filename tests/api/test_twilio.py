"""Twilio's webhooks on a real `legato serve`: texts coming in and status callbacks, signed.

A Twilio-like server on 127.0.0.1 (tests/twilio_server.py) takes the texts the dispatcher
sends and posts, as Twilio does, the status callbacks and the customers' replies to the
served Legato, each signed with X-Twilio-Signature. Done-when of issue 13: "STOP through the
inbound webhook: the next text to that number is impossible", on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.api import ApiSettings
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers
from legato.store.schema import audit_log, consent_history, consents, decisions, events, inbound_messages, outbox, suppressions
from legato.validation import parse_playbook
from tests.api.conftest import serve
from tests.twilio_server import ACCOUNT, TOKEN, TOKEN_ENV, TwilioServer, playbook_text, post_signed

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
NUMBERS = {"t0": "+14155550170", "t1": "+14155550171", "t2": "+14155550172"}



@dataclass
class World:
    url: str
    engine: Engine
    clock: FixedClock
    playbook: Playbook
    twilio: TwilioServer
    folder: Path

    def round(self, day: int) -> None:
        """A cycle at 08:00 of ``day`` and the dispatcher at 10:00."""
        start = AT + timedelta(days=day)
        run_cycle(self.engine, self.playbook, FixedClock(start), transports(self.playbook, self.folder))
        self.dispatch(start + timedelta(hours=2))

    def dispatch(self, at: datetime) -> None:
        report = dispatch_due(self.engine, self.playbook, FixedClock(at), transports(self.playbook, self.folder))
        assert report.totals()["retry"] == 0, report.retry_errors

    def sent_to(self, number: str) -> list[dict[str, str]]:
        return [m for m in self.twilio.accepted if m["To"] == number]


@pytest.fixture
def world(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    path = tmp_path / "playbook.yaml"
    clock = FixedClock(AT)
    table = pa.table({"id": list(NUMBERS), "phone": list(NUMBERS.values()), "time_zone": ["UTC"] * 3, "consent_sms_marketing": ["express"] * 3})
    import_customers(engine, table, clock=clock)
    with TwilioServer() as twilio:
        for url in serve(engine, ApiSettings(playbook=path, clock=clock, rate_limit=0)):
            # The served app reads its playbook at its first request: written once its address is known.
            text = playbook_text(twilio.url, f"{url}/v1/twilio/status")
            path.write_text(text, encoding="utf-8")
            yield World(url, engine, clock, parse_playbook(text), twilio, tmp_path)


def _count(engine: Engine, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one())


def _consent(engine: Engine, customer: str) -> str:
    with engine.connect() as connection:
        return str(connection.execute(sa.select(consents.c.status).where(consents.c.customer_id == customer, consents.c.channel == "sms")).scalar_one())


def test_stop_through_the_inbound_webhook_makes_the_next_text_to_that_number_impossible(world: World) -> None:
    world.round(0)
    assert all(len(world.sent_to(n)) == 1 for n in NUMBERS.values())
    world.clock.set(AT + timedelta(days=1, hours=1))
    run_cycle(world.engine, world.playbook, FixedClock(AT + timedelta(days=1)), transports(world.playbook, world.folder))
    assert _count(world.engine, outbox, outbox.c.customer_id == "t2", outbox.c.status == "pending") == 1
    inbound = f"{world.url}/v1/twilio/inbound"

    # A forged STOP (signed with another token) is refused and changes nothing.
    forged = world.twilio.inbound(inbound, NUMBERS["t2"], "STOP", token="not-the-token")
    assert forged.status_code == 403 and forged.json()["error"]["kind"] == "forbidden"
    unsigned = httpx.post(timeout=30, url=inbound, data={"From": NUMBERS["t2"], "To": "+14155550100", "Body": "STOP", "AccountSid": ACCOUNT})
    assert unsigned.status_code == 403
    assert _consent(world.engine, "t2") == "granted" and _count(world.engine, inbound_messages) == 0

    stop = world.twilio.inbound(inbound, NUMBERS["t2"], "STOP")
    assert stop.status_code == 200 and stop.headers["content-type"].startswith("application/xml")
    assert stop.text.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Message>Text Co: you are unsubscribed')
    assert _consent(world.engine, "t2") == "revoked"
    # What was decided before the STOP is not sent, and nothing decided after it is either.
    world.dispatch(AT + timedelta(days=1, hours=2))
    world.round(2)
    assert len(world.sent_to(NUMBERS["t2"])) == 1, "no text reached the number after STOP"
    assert len(world.sent_to(NUMBERS["t0"])) == 3  # the others were texted on each day


def test_help_is_answered_through_the_channel_and_a_reply_is_recorded(world: World) -> None:
    inbound = f"{world.url}/v1/twilio/inbound"
    helped = world.twilio.inbound(inbound, NUMBERS["t0"], "HELP")
    assert helped.status_code == 200 and "Msg &amp; data rates may apply" in helped.text and "help@text.example" in helped.text
    thanks = world.twilio.inbound(inbound, NUMBERS["t1"], "thanks, see you saturday")
    assert thanks.text.endswith("<Response></Response>")
    # A WhatsApp message (whatsapp: in From) to a playbook that has no WhatsApp channel is named, not recorded as a text.
    whatsapp = world.twilio.inbound(inbound, "whatsapp:" + NUMBERS["t1"], "hi", to="whatsapp:+14155550100")
    assert whatsapp.status_code == 422 and "whatsapp" in whatsapp.json()["error"]["message"]
    with world.engine.connect() as connection:
        rows = connection.execute(sa.select(inbound_messages.c.customer_id, inbound_messages.c.action, inbound_messages.c.channel)).all()
    assert sorted(tuple(r) for r in rows) == [("t0", "helped", "sms"), ("t1", "recorded", "sms")]


def test_stop_from_a_number_no_customer_has_lists_the_number(world: World) -> None:
    answer = world.twilio.inbound(f"{world.url}/v1/twilio/inbound", "+14155550999", "stop")
    assert answer.status_code == 200 and "no more marketing" in answer.text
    assert _count(world.engine, suppressions, suppressions.c.kind == "phone", suppressions.c.value == "+14155550999") == 1


def test_status_callbacks_are_events_of_the_decision_and_a_dead_number_is_undeliverable(world: World) -> None:
    world.round(0)
    delivered, dead, failed = (world.sent_to(NUMBERS[c])[0]["sid"] for c in ("t0", "t1", "t2"))
    first = world.twilio.report(delivered, "delivered")
    assert first.status_code == 200 and first.json()["event_type"] == "delivered" and first.json()["new"]
    assert world.twilio.report(delivered, "delivered").json()["new"] is False  # a callback delivered twice counts once
    assert world.twilio.report(delivered, "sent").json() == {
        "recorded": False, "event_id": None, "event_type": None, "new": False, "decision_id": None, "delivery": None}
    assert world.twilio.report(dead, "undelivered", 30006).json()["event_type"] == "bounce"
    assert world.twilio.report(failed, "failed", 30008).json()["event_type"] == "delivery_failed"
    # A forged callback changes nothing.
    assert world.twilio.report(failed, "undelivered", 30005, token="not-the-token").status_code == 403
    with world.engine.connect() as connection:
        stored = {(r.customer_id, r.type, str(r.properties["decision_id"])) for r in connection.execute(sa.select(events))}
        decided = {r.customer_id: str(r.decision_id) for r in connection.execute(sa.select(outbox.c.customer_id, outbox.c.decision_id))}
        listed = set(connection.execute(sa.select(suppressions.c.value).where(suppressions.c.kind == "undeliverable")).scalars())
    assert stored == {("t0", "delivered", decided["t0"]), ("t1", "bounce", decided["t1"]), ("t2", "delivery_failed", decided["t2"])}
    assert listed == {NUMBERS["t1"]}
    # The number that does not exist gets nothing more; the others do.
    world.round(1)
    assert [len(world.sent_to(NUMBERS[c])) for c in ("t0", "t1", "t2")] == [2, 1, 2]


def test_a_callback_signed_for_another_url_is_refused(world: World) -> None:
    world.round(0)
    sent = world.sent_to(NUMBERS["t0"])[0]
    params = {"MessageSid": sent["sid"], "MessageStatus": "undelivered", "ErrorCode": "30005", "AccountSid": ACCOUNT}
    # Signed for another message's URL: the message id in the URL is part of what is signed.
    other = world.sent_to(NUMBERS["t1"])[0]["StatusCallback"]
    forged = httpx.post(timeout=30, url=sent["StatusCallback"], data=params, headers={"X-Twilio-Signature": post_signature(other, params)})
    assert forged.status_code == 403
    assert _count(world.engine, events) == 0 and _count(world.engine, suppressions) == 0
    assert post_signed(sent["StatusCallback"], params, TOKEN).json()["event_type"] == "bounce"


def post_signature(url: str, params: dict[str, str]) -> str:
    from tests.twilio_server import twilio_signature

    return twilio_signature(TOKEN, url, params)


def _message(engine: Engine, customer: str) -> sa.Row:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(outbox.c.status, outbox.c.delivery, outbox.c.error, decisions.c.status.label("decision"))
            .join(decisions, decisions.c.id == outbox.c.decision_id)
            .where(outbox.c.customer_id == customer)
            .order_by(outbox.c.id)
        ).all()[0]


def _undeliverable(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(sa.select(suppressions.c.value).where(suppressions.c.kind == "undeliverable")).scalars())


def test_a_failed_text_is_recorded_on_its_message_and_decision_and_callbacks_never_take_it_back(world: World) -> None:
    world.round(0)
    reached, off, stopped = (world.sent_to(NUMBERS[c])[0]["sid"] for c in ("t0", "t1", "t2"))
    # Delivered, then a late failure (out of order): an event, and the message stays delivered.
    assert world.twilio.report(reached, "delivered").json()["delivery"] == "delivered"
    late = world.twilio.report(reached, "failed", 30008).json()
    assert late["new"] and late["event_type"] == "delivery_failed" and late["delivery"] == "delivered"
    assert tuple(_message(world.engine, "t0")) == ("sent", "delivered", None, "sent")
    # Undelivered with 30003 (a handset switched off): the message and its decision failed, the number kept.
    answer = world.twilio.report(off, "undelivered", 30003).json()
    assert answer["event_type"] == "delivery_failed" and answer["delivery"] == "failed"
    row = _message(world.engine, "t1")
    assert (row.status, row.delivery, row.decision) == ("sent", "failed", "failed") and "30003" in row.error
    # A sent and a delivered arriving after it change nothing (they are history, not news).
    assert world.twilio.report(off, "sent").json()["recorded"] is False
    assert world.twilio.report(off, "delivered").json()["delivery"] == "failed"
    assert tuple(_message(world.engine, "t1"))[1:] == ("failed", row.error, "failed")
    # 21610: the customer texted STOP to the provider: a hard bounce, the number listed.
    assert world.twilio.report(stopped, "failed", 21610).json()["event_type"] == "bounce"
    assert _message(world.engine, "t2").decision == "failed"
    assert _undeliverable(world.engine) == {NUMBERS["t2"]}
    world.round(1)
    assert [len(world.sent_to(NUMBERS[c])) for c in ("t0", "t1", "t2")] == [2, 2, 1]


def test_a_number_the_provider_refuses_when_the_text_is_created_is_listed_undeliverable(world: World) -> None:
    world.twilio.plan(400, code=21610, message="Attempt to send to unsubscribed recipient")
    world.round(0)
    refused = next(c for c in NUMBERS if not world.sent_to(NUMBERS[c]))
    row = _message(world.engine, refused)
    assert (row.status, row.decision) == ("dead", "failed") and "21610" in row.error
    assert _undeliverable(world.engine) == {NUMBERS[refused]}
    world.round(1)
    assert not world.sent_to(NUMBERS[refused]) and all(len(world.sent_to(NUMBERS[c])) == 2 for c in NUMBERS if c != refused)


def _at_once(count: int, post: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """``count`` real HTTP requests released together (Twilio retrying while the first is handled)."""
    start = threading.Barrier(count)

    def one(_: int) -> httpx.Response:
        start.wait()
        return post()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def _audited(engine: Engine, action: str) -> int:
    return _count(engine, audit_log, audit_log.c.action == action)


def test_a_text_delivered_again_is_handled_once_even_when_both_arrive_at_once(world: World) -> None:
    inbound = f"{world.url}/v1/twilio/inbound"
    # Twilio retries a HELP it saw no answer to: answered once.
    helped = [world.twilio.inbound(inbound, NUMBERS["t0"], "HELP", sid="SM" + "1" * 32) for _ in range(2)]
    assert "Msg &amp; data rates may apply" in helped[0].text and helped[1].text.endswith("<Response></Response>")
    # A STOP delivered four times at once: one revocation, one record, one confirmation.
    stops = _at_once(4, lambda: world.twilio.inbound(inbound, NUMBERS["t1"], "STOP", sid="SM" + "2" * 32))
    assert [r.status_code for r in stops] == [200] * 4
    assert sorted("you are unsubscribed" in r.text for r in stops) == [False, False, False, True]
    assert _consent(world.engine, "t1") == "revoked"
    with world.engine.connect() as connection:
        revocations = connection.execute(sa.select(sa.func.count()).select_from(consent_history).where(
            consent_history.c.customer_id == "t1", consent_history.c.status == "revoked")).scalar_one()
    assert revocations == 1 and _audited(world.engine, "inbound_opted_out") == 1
    # A reply from a number no customer has, delivered twice at once: one HELP.
    unknown = _at_once(2, lambda: world.twilio.inbound(inbound, "+14155550999", "help", sid="SM" + "3" * 32))
    assert sorted("Msg &amp; data rates may apply" in r.text for r in unknown) == [False, True]
    # A new text (another MessageSid) with the same words is a new message.
    assert "Msg &amp; data rates may apply" in world.twilio.inbound(inbound, NUMBERS["t0"], "HELP").text
    assert sorted(_count(world.engine, inbound_messages, inbound_messages.c.customer_id == c) for c in NUMBERS) == [0, 1, 2]


def test_a_status_callback_delivered_twice_at_once_acts_once(world: World) -> None:
    world.round(0)
    sid = world.sent_to(NUMBERS["t1"])[0]["sid"]
    answers = _at_once(4, lambda: world.twilio.report(sid, "undelivered", 30005))
    assert [a.status_code for a in answers] == [200] * 4 and sorted(a.json()["new"] for a in answers) == [False, False, False, True]
    assert {a.json()["event_id"] for a in answers} == {answers[0].json()["event_id"]}
    assert _count(world.engine, events) == 1 and _audited(world.engine, "delivery_bounced") == 1
    assert _undeliverable(world.engine) == {NUMBERS["t1"]} and _message(world.engine, "t1").decision == "failed"
