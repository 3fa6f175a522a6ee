"""Delivery callbacks over real HTTP: each report an event of its decision, bounces and complaints act at once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.store.schema import consents, events, outbox, suppressions
from tests.api.conftest import Served
from tests.world import AT, load_customers, playbook


def sent_messages(served: Served, folder: Path, n: int = 8) -> list[dict]:
    """The world's customers decided at AT and their e-mails dispatched two hours later."""
    load_customers(served.engine, n=n)
    pb = playbook()
    run_cycle(served.engine, pb, FixedClock(AT), transports(pb, folder))
    dispatch_due(served.engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, folder))
    return [json.loads(line) for line in (folder / "out" / "email.jsonl").read_text().splitlines()]


def test_bounce_and_complaint_callbacks_suppress_and_every_report_is_an_event(served: Served, tmp_path: Path) -> None:
    first, second, third, *_ = sent_messages(served, tmp_path)
    with served.client("ingest") as client:
        delivered = client.post("/v1/deliveries/events", json={"message_id": third["message_id"], "type": "delivered", "event_id": "esp-1"})
        assert delivered.status_code == 200, delivered.text
        assert delivered.json()["decision_id"] == third["decision_id"] and delivered.json()["new"] is True
        repeat = client.post("/v1/deliveries/events", json={"message_id": third["message_id"], "type": "delivered", "event_id": "esp-1"})
        assert repeat.status_code == 200 and repeat.json()["new"] is False
        bounced = client.post("/v1/deliveries/events", json={"message_id": first["message_id"], "type": "bounced", "reason": "550 5.1.1 unknown user"})
        assert bounced.status_code == 200 and bounced.json()["undeliverable"] == 1
        complained = client.post("/v1/deliveries/events", json={"message_id": second["message_id"], "type": "complained"})
        assert complained.status_code == 200 and (complained.json()["consents_revoked"], complained.json()["suppressed"]) == (1, 1)
        unknown = client.post("/v1/deliveries/events", json={"message_id": "no-such-message", "type": "delivered"})
        assert unknown.status_code == 404 and "no message" in unknown.json()["error"]["message"]
        both = client.post("/v1/deliveries/events", json={"message_id": "a", "provider_id": "b", "type": "delivered"})
        assert both.status_code == 422
        wrong = client.post("/v1/deliveries/events", json={"message_id": first["message_id"], "type": "exploded"})
        assert wrong.status_code == 422 and wrong.json()["error"]["problems"][0]["field"] == "body.type"
    with served.client("viewer") as client:
        assert client.post("/v1/deliveries/events", json={"message_id": first["message_id"], "type": "delivered"}).status_code == 403
    with served.engine.connect() as c:
        listed = set(c.execute(sa.select(suppressions.c.kind, suppressions.c.value)).all())
        revoked = c.execute(sa.select(consents.c.status).where(consents.c.customer_id == second["customer_id"], consents.c.channel == "email")).scalar_one()
        types = sorted(c.execute(sa.select(events.c.type)).scalars())
        statuses = dict(c.execute(sa.select(outbox.c.message_id, outbox.c.status)).all())
    assert listed == {("undeliverable", first["to"]), ("email", second["to"])} and revoked == "revoked"
    assert types == ["bounce", "complaint", "delivered"]
    assert statuses[first["message_id"]] == "sent"  # what was sent stays sent: the report is an event beside it


def test_a_returned_bounce_email_is_recorded(served: Served, tmp_path: Path) -> None:
    from tests.mail_reports import arf, dsn

    first, second, *_ = sent_messages(served, tmp_path, n=3)
    with served.client("ingest") as client:
        bounced = client.post("/v1/deliveries/returned-mail", content=dsn(first["message_id"], "failed", "5.1.1", "550 user unknown"),
                              headers={"Content-Type": "message/rfc822"})
        assert bounced.status_code == 200, bounced.text
        assert [(r["event_type"], r["undeliverable"]) for r in bounced.json()["recorded"]] == [("bounce", 1)]
        complained = client.post("/v1/deliveries/returned-mail", content=arf(second["message_id"]), headers={"Content-Type": "message/rfc822"})
        assert [(r["event_type"], r["suppressed"]) for r in complained.json()["recorded"]] == [("complaint", 1)]
        other = client.post("/v1/deliveries/returned-mail", content=b"Subject: hi\r\n\r\nhello\r\n", headers={"Content-Type": "message/rfc822"})
        assert other.status_code == 422 and "not a delivery or feedback report" in other.json()["error"]["message"]
