"""The check of one message over real HTTP: a text on a channel, a creative of the playbook in
force, and what is refused (both at once, an e-mail without its subject, a creative that is not there)."""

from __future__ import annotations

from sqlalchemy import Engine

from legato.api import ApiSettings
from legato.clock import FixedClock
from legato.service import keys
from legato.store.status import KeyRole
from tests.api.conftest import Served, serve
from tests.world import AT


def test_a_first_sms_without_its_brand_and_stop_wording_is_blocked(served: Served) -> None:
    with served.client("viewer") as client:
        answer = client.post("/v1/checks/message", json={"channel": "sms", "text": "New boots are in, come and see"})
        fine = client.post("/v1/checks/message", json={"channel": "sms", "text": "Test Co: new boots are in. Reply STOP to opt out."})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["verdict"] == "block" and body["channel"] == "sms" and body["purpose"] == "marketing"
    blocking = [f for f in body["findings"] if f["severity"] == "block"]
    assert blocking and all(f["reason"] for f in blocking)
    for finding in body["findings"]:
        assert finding["excerpt"] == body["checked_text"][finding["start"]:finding["end"]]
    assert fine.status_code == 200 and fine.json()["verdict"] != "block"


def test_an_email_needs_its_subject_line(served: Served) -> None:
    with served.client("viewer") as client:
        answer = client.post("/v1/checks/message", json={"channel": "email", "text": "Hello there"})
        transactional = client.post("/v1/checks/message", json={
            "channel": "email", "purpose": "transactional", "text": "Subject: Your order\n\nThanks for your order; it ships tomorrow."})
    assert answer.status_code == 422
    assert "must start with a 'Subject:' line" in answer.json()["error"]["message"]
    assert answer.json()["error"]["hint"].startswith("write 'Subject: ...' as the first line")
    assert transactional.status_code == 200 and transactional.json()["verdict"] == "ok"


def test_a_creative_of_the_playbook_in_force_is_checked_as_the_cycle_does(served: Served) -> None:
    with served.client("viewer") as client:
        answer = client.post("/v1/checks/message", json={"creative": "hello"})
        unknown = client.post("/v1/checks/message", json={"creative": "goodbye"})
        offer = client.post("/v1/checks/message", json={"creative": "hello", "offer": "half_price"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["channel"] == "email" and answer.json()["verdict"] in ("ok", "warn")
    assert unknown.status_code == 422
    assert unknown.json()["error"]["message"] == "creative 'goodbye' is not in the playbook"
    assert unknown.json()["error"]["hint"] == "creatives: hello"
    assert offer.status_code == 422 and offer.json()["error"]["hint"] == "offers: none"


def test_a_creative_or_a_text_never_both_and_never_neither(served: Served) -> None:
    with served.client("viewer") as client:
        both = client.post("/v1/checks/message", json={"creative": "hello", "channel": "sms", "text": "Hi"})
        neither = client.post("/v1/checks/message", json={"text": "Hi"})
        channel = client.post("/v1/checks/message", json={"channel": "fax", "text": "Hi"})
        extra = client.post("/v1/checks/message", json={"channel": "sms", "text": "Hi", "tone": "warm"})
    assert both.status_code == 422 and "give creative alone" in both.json()["error"]["problems"][0]["reason"]
    assert neither.status_code == 422 and "give text and channel" in neither.json()["error"]["problems"][0]["reason"]
    assert channel.status_code == 422 and channel.json()["error"]["problems"][0]["field"] == "body.channel"
    assert extra.status_code == 422 and extra.json()["error"]["problems"][0]["field"] == "body.tone"


def test_without_a_playbook_a_text_is_checked_with_the_defaults_and_a_creative_is_409(engine: Engine) -> None:
    secret = keys.create(engine, "viewer", KeyRole.VIEWER, by="test", now=AT)[1]
    for url in serve(engine, ApiSettings(clock=FixedClock(AT), rate_limit=0)):
        import httpx

        with httpx.Client(timeout=30, base_url=url, headers={"Authorization": f"Bearer {secret}"}) as client:
            text = client.post("/v1/checks/message", json={"channel": "sms", "text": "New boots are in"})
            creative = client.post("/v1/checks/message", json={"creative": "hello"})
    assert text.status_code == 200 and text.json()["verdict"] == "block"
    assert creative.status_code == 409
    assert creative.json()["error"]["hint"].startswith("start legato serve with --playbook FILE")


def test_checks_are_for_keys_that_read(served: Served) -> None:
    with served.client("ingest") as client:
        assert client.post("/v1/checks/message", json={"channel": "sms", "text": "Hi"}).status_code == 403
