"""Segment's tracking API over real HTTP: Segment's own Python library and hand-written calls.

Each test runs on SQLite and PostgreSQL against uvicorn on loopback. The server's clock is
fixed at the shared world's ``AT`` while the library stamps calls with the real clock, so a
call lands at ``AT`` only if the clock skew is taken out as Segment documents.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import segment.analytics as analytics
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.api import ApiSettings
from legato.api.settings import UnknownCustomers
from legato.clock import FixedClock
from legato.service import keys
from legato.store.schema import consents, customers, events, identity_links, seen_messages, suppressions, traits
from legato.store.status import KeyRole
from tests.api.conftest import Served, playbook_text, serve
from tests.world import AT


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def segment_client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=basic(key), timeout=30)


@pytest.fixture
def shop(served: Served) -> Iterator[httpx.Client]:
    """Segment's way in: the ingest key as the Basic user name, an empty password."""
    with segment_client(served.url, served.keys["ingest"]) as client:
        yield client


@dataclass
class Strict:
    url: str
    engine: Engine
    key: str


@pytest.fixture
def strict(engine: Engine, tmp_path: Path) -> Iterator[Strict]:
    """Events for unknown customers refused; a playbook declaring first_name and a number attribute."""
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(playbook_text().replace("attributes: {tier: string}", "attributes: {tier: string, first_name: string, seats: number}"), encoding="utf-8")
    settings = ApiSettings(playbook=playbook, clock=FixedClock(AT), rate_limit=0, unknown_customers=UnknownCustomers.REJECT)
    key = keys.create(engine, "shop", KeyRole.INGEST, by="test", now=AT)[1]
    for url in serve(engine, settings):
        yield Strict(url, engine, key)


def rows(engine: Engine, table: sa.Table, *columns: str) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        chosen = [table.c[c] for c in columns]
        return [tuple(r) for r in connection.execute(sa.select(*chosen).order_by(*chosen))]


def customer(engine: Engine, id_: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        found = connection.execute(sa.select(customers).where(customers.c.id == id_)).mappings().first()
    return dict(found) if found else None


def event_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r) for r in connection.execute(sa.select(events).order_by(events.c.occurred_at, events.c.id)).mappings()]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- Segment's own library ----------------------------------------------------------------


def test_segments_python_library_lands_customers_and_events(served: Served) -> None:
    errors: list[Exception] = []
    client = analytics.Client(write_key=served.keys["ingest"], host=served.url, sync_mode=True, max_retries=0,
                              on_error=lambda error, batch: errors.append(error))
    client.identify("u1", {"email": "Ann@Example.com", "phone": "+1 415 555 0100", "country": "US", "tier": "gold",
                           "consent_email_marketing": "express", "consent_at": "2024-03-01T09:00:00Z"},
                    context={"timezone": "America/New_York"})
    client.track("u1", "Order Completed", {"order_id": "o1", "revenue": 42.5, "currency": "USD"}, message_id="m-order-1")
    client.page("u1", "Docs", "Getting started", {"url": "https://shop.example/docs"})
    client.screen("u1", "Checkout")
    client.group("u1", "acme", {"name": "Acme Inc"})
    client.track("u1", "Order Completed", {"order_id": "o1", "revenue": 42.5}, message_id="m-order-1")  # a retry
    client.track(anonymous_id="device-9", event="Product Viewed", properties={"sku": "A1"})
    client.alias("device-9", "u1")
    client.track(anonymous_id="device-9", event="Product Added", properties={"sku": "A1"})
    assert errors == []

    stored = customer(served.engine, "u1")
    assert stored is not None
    assert (stored["email"], stored["phone"], stored["country"], stored["time_zone"]) == ("ann@example.com", "+14155550100", "US", "America/New_York")
    assert stored["attributes"] == {"tier": "gold", "group_id": "acme"}
    assert rows(served.engine, consents, "customer_id", "channel", "purpose", "status", "source") == [
        ("u1", "email", "marketing", "granted", "segment:ingest-key:identify")
    ]
    found = event_rows(served.engine)
    # Each call's time is AT less the few milliseconds between the call and its sending: compared as a set.
    assert sorted((e["customer_id"], e["type"]) for e in found) == [
        ("device-9", "product_viewed"), ("u1", "product_added"), ("u1", "purchase"), ("u1", "visit"), ("u1", "visit"),
    ]
    purchase = next(e for e in found if e["type"] == "purchase")
    assert purchase["id"] == "m-order-1" and purchase["revenue"] == 42.5
    assert purchase["properties"] == {"order_id": "o1", "revenue": 42.5, "currency": "USD", "event": "Order Completed"}
    # The library's clock is today's, the server's is AT: the skew is taken out, to within a few seconds.
    for each in found:
        assert abs(each["occurred_at"] - AT) < timedelta(seconds=30), each
    assert rows(served.engine, traits, "customer_id", "purchase_count", "lifetime_spend") == [("device-9", 0, 0.0), ("u1", 1, 42.5)]
    assert rows(served.engine, identity_links, "alias", "customer_id", "source") == [("device-9", "u1", "alias")]


def test_the_library_batches_calls_in_the_background(served: Served) -> None:
    errors: list[Exception] = []
    client = analytics.Client(write_key=served.keys["ingest"], host=served.url, upload_size=50, max_retries=0,
                              on_error=lambda error, batch: errors.append(error))
    for i in range(120):
        client.identify(f"b{i}", {"email": f"b{i}@example.com"})
        client.track(f"b{i}", "Signed Up", {"plan": "free"})
    client.flush()
    client.shutdown()
    assert errors == []
    assert len(rows(served.engine, customers, "id")) == 120
    assert {e["type"] for e in event_rows(served.engine)} == {"signed_up"}
    assert len(event_rows(served.engine)) == 120


# --- the calls, by hand -------------------------------------------------------------------


def test_one_call_answers_as_segment_does(shop: httpx.Client, served: Served) -> None:
    answer = shop.post("/v1/identify", json={"userId": "u1", "traits": {"email": "u1@example.com"}, "messageId": "m1"})
    assert answer.status_code == 200
    assert answer.json()["success"] is True
    assert (answer.json()["applied"], answer.json()["rejected"]) == (1, 0)
    assert customer(served.engine, "u1")["email"] == "u1@example.com"  # type: ignore[index]


def test_traits_map_onto_fields_consents_and_declared_attributes(strict: Strict) -> None:
    with segment_client(strict.url, strict.key) as client:
        answer = client.post("/v1/identify", json={
            "userId": 42,
            "traits": {
                "email": "x@example.com", "firstName": "Ann", "seats": "12", "Phone": "415 555 0100",
                "address": {"city": "Miami", "state": "FL", "country": "US"}, "id": "ignored",
                "consent_sms_marketing": True, "consent_sms_marketing_at": "2024-03-02T10:00:00Z", "plan": {"name": "pro"},
            },
            "context": {"timezone": "America/New_York", "ip": "203.0.113.9"},
        })
    assert answer.status_code == 200, answer.text
    stored = customer(strict.engine, "42")
    assert stored is not None
    assert (stored["email"], stored["phone"], stored["country"], stored["region"], stored["time_zone"]) == (
        "x@example.com", "+14155550100", "US", "FL", "America/New_York")
    assert stored["attributes"] == {"first_name": "Ann", "seats": 12.0, "address": {"city": "Miami", "state": "FL", "country": "US"}, "plan": {"name": "pro"}}
    assert rows(strict.engine, consents, "customer_id", "channel", "status", "kind") == [("42", "sms", "granted", "express")]


def test_clock_skew_is_corrected_with_sent_at(shop: httpx.Client, served: Served) -> None:
    ahead = AT + timedelta(hours=3)  # the client's clock runs 3 hours fast
    calls = [
        {"type": "track", "userId": "u1", "event": "a", "messageId": "skewed", "timestamp": iso(ahead - timedelta(minutes=10)), "sentAt": iso(ahead)},
        {"type": "track", "userId": "u1", "event": "b", "messageId": "plain", "timestamp": "2024-03-01T08:00:00Z"},
        {"type": "track", "userId": "u1", "event": "c", "messageId": "now"},
        {"type": "track", "userId": "u1", "event": "d", "messageId": "original", "originalTimestamp": iso(ahead - timedelta(minutes=5)),
         "timestamp": "2020-01-01T00:00:00Z"},
    ]
    answer = shop.post("/v1/batch", json={"batch": calls, "sentAt": iso(ahead)})
    assert answer.status_code == 200, answer.text
    when = {e["id"]: e["occurred_at"] for e in event_rows(served.engine)}
    assert when == {
        "skewed": AT - timedelta(minutes=10),
        # The batch's sentAt corrects calls that have none of their own.
        "plain": AT - (ahead - datetime(2024, 3, 1, 8, tzinfo=timezone.utc)),
        "now": AT,
        "original": AT - timedelta(minutes=5),
    }


def test_a_repeated_message_id_changes_nothing(shop: httpx.Client, served: Served) -> None:
    first = shop.post("/v1/identify", json={"userId": "u1", "messageId": "m1", "traits": {"email": "first@example.com"}})
    later = shop.post("/v1/identify", json={"userId": "u1", "messageId": "m2", "traits": {"email": "second@example.com"}})
    replay = shop.post("/v1/identify", json={"userId": "u1", "messageId": "m1", "traits": {"email": "first@example.com"}})
    assert (first.status_code, later.status_code, replay.status_code) == (200, 200, 200)
    assert replay.json()["duplicates"] == 1 and replay.json()["applied"] == 0
    # The replay of an older identify did not overwrite the newer one.
    assert customer(served.engine, "u1")["email"] == "second@example.com"  # type: ignore[index]
    track = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 10}, "messageId": "t1"}
    shop.post("/v1/track", json=track)
    again = shop.post("/v1/batch", json={"batch": [track | {"type": "track"}, track | {"type": "track"}]})
    assert again.json()["duplicates"] == 2
    assert rows(served.engine, traits, "customer_id", "purchase_count", "lifetime_spend") == [("u1", 1, 10.0)]
    assert rows(served.engine, seen_messages, "message_id", "type") == [("m1", "identify"), ("m2", "identify")]


def test_a_refused_call_can_be_sent_again_fixed(shop: httpx.Client, served: Served) -> None:
    refused = shop.post("/v1/identify", json={"userId": "u1", "messageId": "m1", "traits": {"email": "not an address"}})
    assert refused.status_code == 422
    assert refused.json()["error"]["problems"][0]["field"] == "body.traits.email"
    assert rows(served.engine, customers, "id") == [] and rows(served.engine, seen_messages, "message_id") == []
    fixed = shop.post("/v1/identify", json={"userId": "u1", "messageId": "m1", "traits": {"email": "u1@example.com"}})
    assert fixed.status_code == 200 and fixed.json()["applied"] == 1
    assert customer(served.engine, "u1")["email"] == "u1@example.com"  # type: ignore[index]


def test_a_batch_refuses_bad_calls_whole_and_applies_the_others(shop: httpx.Client, served: Served) -> None:
    batch = [
        {"type": "identify", "userId": "ok", "traits": {"email": "ok@example.com"}},
        {"type": "identify", "userId": "bad", "traits": {"email": "ok2@example.com", "country": "France"}},
        {"type": "track", "event": "Clicked"},  # no userId nor anonymousId
        {"type": "track", "userId": "ok", "event": "Order Completed", "properties": {"revenue": -4}},
        {"type": "track", "userId": "ok", "event": "Order Completed", "properties": {"total": 30}, "messageId": "o1"},
        {"type": "identify", "userId": "ok", "traits": {"consent_newsletter": "yes"}},
    ]
    answer = shop.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 207, answer.text
    found = answer.json()
    assert found["success"] is False
    assert (found["applied"], found["rejected"]) == (2, 4)
    assert [(e["index"], e["field"]) for e in found["errors"]] == [
        (1, "body.batch.1.traits.country"), (2, "body.batch.2.userId"), (3, "body.batch.3.properties.revenue"), (5, "body.batch.5.traits.consent_newsletter"),
    ]
    assert rows(served.engine, customers, "id", "email") == [("ok", "ok@example.com")]
    assert [(e["id"], e["type"], e["revenue"]) for e in event_rows(served.engine)] == [("o1", "purchase", 30.0)]


def test_unknown_customers_are_refused_when_configured(strict: Strict) -> None:
    with segment_client(strict.url, strict.key) as client:
        alone = client.post("/v1/track", json={"userId": "stranger", "event": "Signed Up"})
        # Identified in the same batch, before or after the track: the customer is known.
        both = client.post("/v1/batch", json={"batch": [
            {"type": "track", "userId": "new", "event": "Signed Up", "messageId": "t1"},
            {"type": "identify", "userId": "new", "traits": {"email": "new@example.com"}},
        ]})
    assert alone.status_code == 422
    problem = alone.json()["error"]["problems"][0]
    assert problem["field"] == "body.userId" and "unknown customer 'stranger'" in problem["reason"]
    assert both.status_code == 200, both.text
    assert rows(strict.engine, customers, "id") == [("new",)]
    assert [e["id"] for e in event_rows(strict.engine)] == ["t1"]


def test_unknown_customers_are_created_by_default(shop: httpx.Client, served: Served) -> None:
    answer = shop.post("/v1/track", json={"anonymousId": "device-1", "event": "Product Viewed"})
    assert answer.status_code == 200
    assert answer.json()["customers_created"] == 1
    assert rows(served.engine, customers, "id") == [("device-1",)]
    assert rows(served.engine, traits, "customer_id", "purchase_count") == [("device-1", 0)]


def test_a_call_with_both_ids_links_the_device_to_the_user(shop: httpx.Client, served: Served) -> None:
    shop.post("/v1/identify", json={"userId": "u1", "anonymousId": "device-1", "traits": {"email": "u1@example.com"}})
    shop.post("/v1/page", json={"anonymousId": "device-1", "name": "Home", "messageId": "p1"})
    shop.post("/v1/identify", json={"userId": "u2", "anonymousId": "device-1"})  # another login on the device
    shop.post("/v1/page", json={"anonymousId": "device-1", "name": "Home", "messageId": "p2"})
    shop.post("/v1/alias", json={"previousId": "device-1", "userId": "u2"})
    shop.post("/v1/screen", json={"anonymousId": "device-1", "name": "Cart", "messageId": "s1"})
    assert [(e["id"], e["customer_id"], e["type"]) for e in sorted(event_rows(served.engine), key=lambda e: e["id"])] == [
        ("p1", "u1", "visit"), ("p2", "u1", "visit"), ("s1", "u2", "visit"),
    ]
    assert rows(served.engine, customers, "id") == [("u1",), ("u2",)]


def test_a_revocation_is_not_undone_by_an_identify_without_a_dated_grant(shop: httpx.Client, served: Served) -> None:
    shop.post("/v1/identify", json={"userId": "u1", "traits": {"email": "u1@example.com", "consent_email_marketing": "yes", "consent_at": "2024-03-01T00:00:00Z"}})
    stop = shop.post("/v1/track", json={"userId": "u1", "event": "Unsubscribed", "properties": {"channel": "email"}, "timestamp": "2024-03-02T00:00:00Z"})
    assert stop.status_code == 200
    undated = shop.post("/v1/identify", json={"userId": "u1", "traits": {"consent_email_marketing": True, "tier": "gold"}})
    assert undated.status_code == 200
    assert undated.json()["not_regranted"][0]["field"] == "body.traits.consent_email_marketing"
    assert rows(served.engine, consents, "customer_id", "channel", "status") == [("u1", "email", "revoked")]
    assert customer(served.engine, "u1")["attributes"] == {"tier": "gold"}  # type: ignore[index]
    dated = shop.post("/v1/identify", json={"userId": "u1", "traits": {"consent_email_marketing": "express", "consent_email_marketing_at": "2024-03-03T00:00:00Z"}})
    assert dated.json()["not_regranted"] == []
    assert rows(served.engine, consents, "customer_id", "channel", "status") == [("u1", "email", "granted")]


def test_semantic_events_become_legato_types(shop: httpx.Client, served: Served) -> None:
    shop.post("/v1/identify", json={"userId": "u1", "traits": {"email": "u1@example.com"}})
    batch = [
        {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"revenue": 50, "total": 60}, "messageId": "buy"},
        {"type": "track", "userId": "u1", "event": "Order Refunded", "properties": {"total": 20}, "messageId": "refund"},
        {"type": "track", "userId": "u1", "event": "Email Opened", "messageId": "open"},
        {"type": "track", "userId": "u1", "event": "Email Link Clicked", "properties": {"decision_id": 999}, "messageId": "click"},
        {"type": "track", "userId": "u1", "event": "Email Bounced", "messageId": "bounce"},
        {"type": "track", "userId": "u1", "event": "Signed Up", "messageId": "signup"},
        {"type": "page", "userId": "u1", "name": "Home", "messageId": "page"},
    ]
    answer = shop.post("/v1/batch", json={"batch": batch})
    assert answer.status_code == 207, answer.text
    # A decision_id must name a decision Legato made for the customer.
    assert [(e["index"], e["field"]) for e in answer.json()["errors"]] == [(3, "body.batch.3.properties.decision_id")]
    found = {e["id"]: (e["type"], e["revenue"]) for e in event_rows(served.engine)}
    assert found == {"buy": ("purchase", 50.0), "refund": ("refund", -20.0), "open": ("open", None), "bounce": ("bounce", None),
                     "signup": ("signed_up", None), "page": ("visit", None)}
    assert rows(served.engine, suppressions, "kind", "value") == [("undeliverable", "u1@example.com")]


# --- bad input ------------------------------------------------------------------------------


def test_size_limits_are_segments(shop: httpx.Client, served: Served) -> None:
    big = {"userId": "u1", "event": "Big", "properties": {"blob": "x" * 40_000}}
    one = shop.post("/v1/track", json=big)
    assert one.status_code == 413 and one.json()["error"]["kind"] == "too_large"
    in_batch = shop.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u1", "event": "Small"}, big | {"type": "track"}]})
    assert in_batch.status_code == 400
    assert "body.batch.1" in in_batch.json()["error"]["message"] and "32 KB" in in_batch.json()["error"]["message"]
    many = shop.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u", "event": "e"}] * 2501})
    assert many.status_code == 400 and "2,500" in many.json()["error"]["message"]
    huge = shop.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u1", "event": "Mid", "properties": {"blob": "x" * 30_000}}] * 20})
    assert huge.status_code == 413
    assert event_rows(served.engine) == [] and rows(served.engine, customers, "id") == []


def test_malformed_bodies_are_422_with_the_field(shop: httpx.Client, served: Served) -> None:
    malformed = shop.post("/v1/batch", content=b'{"batch": [', headers={"content-type": "application/json"})
    assert malformed.status_code == 422 and "JSON" in malformed.json()["error"]["message"]
    wrong = shop.post("/v1/identify", json={"userId": ["u1"], "traits": "gold"})
    assert wrong.status_code == 422
    assert {p["field"].split(".")[1] for p in wrong.json()["error"]["problems"]} == {"userId", "traits"}
    untyped = shop.post("/v1/batch", json={"batch": [{"userId": "u1", "event": "x"}]})
    assert untyped.status_code == 422 and untyped.json()["error"]["problems"][0]["field"] == "body.batch.0"
    no_event = shop.post("/v1/track", json={"userId": "u1"})
    assert no_event.status_code == 422 and no_event.json()["error"]["problems"][0]["field"] == "body.event"
    late = shop.post("/v1/track", json={"userId": "u1", "event": "x", "timestamp": "yesterday"})
    assert late.status_code == 422 and late.json()["error"]["problems"][0]["field"] == "body.timestamp"
    nobody = shop.post("/v1/identify", json={"traits": {"email": "a@example.com"}})
    assert nobody.status_code == 422 and "userId or an anonymousId" in nobody.json()["error"]["problems"][0]["reason"]
    assert rows(served.engine, customers, "id") == [] and event_rows(served.engine) == []


def test_fields_outside_the_spec_are_ignored_and_named(shop: httpx.Client, served: Served) -> None:
    answer = shop.post("/v1/batch", json={"writeKey": "x", "batch": [{"type": "identify", "userid": "u1", "anonymousId": "d1", "_metadata": {}}]})
    assert answer.status_code == 200
    assert answer.json()["warnings"] == ["body.batch.0.userid is not a field of Segment's spec and was ignored (did you mean userId?)"]
    assert rows(served.engine, customers, "id") == [("d1",)]


def test_only_ingest_and_admin_keys_send_calls(served: Served) -> None:
    for role, status in (("viewer", 403), ("reviewer", 403), ("marketer", 403), ("ingest", 200), ("admin", 200)):
        with segment_client(served.url, served.keys[role]) as client:
            assert client.post("/v1/track", json={"userId": "u1", "event": "e"}).status_code == status, role
    with httpx.Client(timeout=30, base_url=served.url, headers=basic("lg_wrong")) as client:
        assert client.post("/v1/track", json={"userId": "u1", "event": "e"}).status_code == 401


def test_a_sent_at_far_from_its_timestamp_is_refused_not_a_500(shop: httpx.Client, served: Served) -> None:
    answer = shop.post("/v1/track", json={"userId": "u1", "event": "x", "timestamp": "0236-01-01T00:00:00Z", "sentAt": "4247-01-01T00:00:00Z"})
    assert answer.status_code == 422
    assert answer.json()["error"]["problems"][0]["field"] == "body.sentAt"
    assert event_rows(served.engine) == []
