"""Delivery reports (delivered, failed, bounced, complained, opened, clicked) become events of the
message's decision, once, and bounces and complaints act on consent and the lists at once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.errors import Invalid, NotFound
from legato.service import deliveries
from legato.service.deliveries import Delivery
from legato.store.schema import consents, events, outbox, suppressions
from tests.mail_reports import arf, dsn
from tests.world import AT, load_customers, playbook

LATER = AT + timedelta(hours=2)


def _sent(engine: Engine, tmp_path: Path, n: int = 8) -> list[dict]:
    load_customers(engine, n=n)
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    dispatch_due(engine, pb, FixedClock(LATER), transports(pb, tmp_path))
    return [json.loads(line) for line in (tmp_path / "out" / "email.jsonl").read_text().splitlines()]


def test_each_report_is_an_event_of_its_decision_once(engine: Engine, tmp_path: Path) -> None:
    first, second, third, *_ = _sent(engine, tmp_path)
    done = deliveries.record(engine, Delivery("delivered", message_id=first["message_id"], source="smtp"), now=LATER)
    assert done.new and done.event_type == "delivered" and done.decision_id == first["decision_id"]
    again = deliveries.record(engine, Delivery("delivered", message_id=first["message_id"], source="smtp"), now=LATER + timedelta(minutes=1))
    assert not again.new and again.event_id == done.event_id  # a callback delivered twice: the same event
    opened = deliveries.record(engine, Delivery("opened", message_id=first["message_id"], source="pixel"), now=LATER)
    click = Delivery("clicked", message_id=first["message_id"], url="https://shop.example/boots", source="link")
    assert deliveries.record(engine, click, now=LATER).new and not deliveries.record(engine, click, now=LATER).new
    other = Delivery("clicked", message_id=first["message_id"], url="https://shop.example/hats", source="link")
    assert deliveries.record(engine, other, now=LATER).new  # another link of the message is another click
    failed = deliveries.record(engine, Delivery("failed", message_id=second["message_id"], reason="550 no"), now=LATER)
    assert failed.event_type == "delivery_failed"
    with engine.connect() as c:
        stored = c.execute(sa.select(events.c.type, events.c.customer_id, events.c.properties).order_by(events.c.id)).all()
    assert sorted(r.type for r in stored) == ["click", "click", "delivered", "delivery_failed", "open"]
    for row in stored:
        props = row.properties if isinstance(row.properties, dict) else json.loads(row.properties)
        message = first if row.customer_id == first["customer_id"] else second
        assert props["decision_id"] == str(message["decision_id"]) and props["message_id"] == message["message_id"]
    assert opened.consents_revoked == opened.undeliverable == opened.cancelled == 0
    # Named by the provider's id the outbox recorded when it was sent.
    with engine.connect() as c:
        provider = c.execute(sa.select(outbox.c.provider_id).where(outbox.c.message_id == third["message_id"])).scalar_one()
    if provider:
        assert deliveries.record(engine, Delivery("delivered", provider_id=provider), now=LATER).message_id == third["message_id"]


def test_a_hard_bounce_lists_the_address_and_a_complaint_revokes_and_suppresses(engine: Engine, tmp_path: Path) -> None:
    first, second, third, *_ = _sent(engine, tmp_path)
    soft = deliveries.record(engine, Delivery("bounced", message_id=third["message_id"], bounce="soft", reason="452 mailbox full"), now=LATER)
    assert soft.new and soft.undeliverable == 0
    hard = deliveries.record(engine, Delivery("bounced", message_id=first["message_id"], reason="550 5.1.1 no such user"), now=LATER)
    assert hard.undeliverable == 1
    complaint = deliveries.record(engine, Delivery("complained", message_id=second["message_id"], source="fbl"), now=LATER)
    assert (complaint.consents_revoked, complaint.suppressed) == (1, 1)
    repeat = deliveries.record(engine, Delivery("complained", message_id=second["message_id"], source="fbl"), now=LATER + timedelta(hours=1))
    assert not repeat.new and (repeat.consents_revoked, repeat.suppressed) == (0, 0)
    with engine.connect() as c:
        listed = set(c.execute(sa.select(suppressions.c.kind, suppressions.c.value)).all())
        status = c.execute(sa.select(consents.c.status).where(consents.c.customer_id == second["customer_id"], consents.c.channel == "email")).scalar_one()
    assert listed == {("undeliverable", first["to"]), ("email", second["to"])} and status == "revoked"


def test_a_report_about_no_message_or_with_a_wrong_value_writes_nothing(engine: Engine, tmp_path: Path) -> None:
    first, *_ = _sent(engine, tmp_path, n=2)
    with pytest.raises(NotFound, match="no message"):
        deliveries.record(engine, Delivery("delivered", message_id="nope"), now=LATER)
    with pytest.raises(Invalid, match="not a delivery report"):
        deliveries.record(engine, Delivery("exploded", message_id=first["message_id"]), now=LATER)
    with pytest.raises(Invalid, match="kind of bounce"):
        deliveries.record(engine, Delivery("bounced", message_id=first["message_id"], bounce="medium"), now=LATER)
    with pytest.raises(Invalid, match="url"):
        deliveries.record(engine, Delivery("clicked", message_id=first["message_id"]), now=LATER)
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 0


# PostgreSQL only: SQLite writes one transaction at a time, so two reports cannot collide there.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_same_report_twice_at_once_is_one_event(engine: Engine, tmp_path: Path) -> None:
    import threading
    import time

    (first,) = _sent(engine, tmp_path, n=2)
    report = Delivery("delivered", message_id=first["message_id"], event_id="esp-42")
    holder = engine.connect()
    began = holder.begin()
    mine = deliveries.record(holder, report, now=LATER)  # written, not committed: the other waits on its id
    answers: list[deliveries.Recorded] = []
    other = threading.Thread(target=lambda: answers.append(deliveries.record(engine, report, now=LATER)))
    other.start()
    deadline = time.monotonic() + 30
    with engine.connect() as watch:
        while not watch.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).scalar_one():
            assert time.monotonic() < deadline and other.is_alive(), "the second report never waited for the first"
            time.sleep(0.05)
    began.commit()
    holder.close()
    other.join(30)
    assert mine.new and answers and not answers[0].new and answers[0].event_id == mine.event_id
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(events)).scalar_one() == 1


def test_bounce_and_feedback_loop_emails_are_reports_of_the_message_they_quote(engine: Engine, tmp_path: Path) -> None:
    first, second, third, *_ = _sent(engine, tmp_path)
    hard = deliveries.record_report_email(engine, dsn(first["message_id"], "failed", "5.1.1", "550 5.1.1 <someone>: user unknown"), now=LATER)
    assert [(r.event_type, r.message_id, r.undeliverable) for r in hard] == [("bounce", first["message_id"], 1)]
    soft = deliveries.from_report_email(dsn(third["message_id"], "failed", "4.2.2", "452 mailbox full"))
    assert [(d.report, d.bounce) for d in soft] == [("bounced", "soft")]
    assert deliveries.from_report_email(dsn(third["message_id"], "delayed", "4.4.1", "timeout")) == []
    complaint = deliveries.record_report_email(engine, arf(second["message_id"]), now=LATER)
    assert [(r.event_type, r.consents_revoked, r.suppressed) for r in complaint] == [("complaint", 1, 1)]
    with pytest.raises(Invalid, match="not a delivery or feedback report"):
        deliveries.from_report_email(b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n")


def test_legato_inbound_returned_mail_reads_a_bounce_from_standard_input(engine: Engine, database_url: str, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from legato.cli.app import app

    (first,) = _sent(engine, tmp_path, n=2)
    bounce = dsn(first["message_id"], "failed", "5.1.1", "550 5.1.1 user unknown")
    done = CliRunner().invoke(app, ["inbound", "returned-mail", "-", "-d", database_url, "--json"], input=bounce)
    assert done.exit_code == 0, done.output
    (recorded,) = json.loads(done.stdout)["recorded"]
    assert (recorded["event_type"], recorded["decision_id"], recorded["undeliverable"]) == ("bounce", first["decision_id"], 1)
    refused = CliRunner().invoke(app, ["inbound", "returned-mail", "-", "-d", database_url], input=b"Subject: hi\r\n\r\nhello\r\n")
    assert refused.exit_code == 2 and "not a delivery or feedback report" in refused.output
