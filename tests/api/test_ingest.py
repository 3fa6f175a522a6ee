"""Legato's own ingest over real HTTP: customers and events, one or a batch, through the importer.

Each test runs on SQLite and PostgreSQL against uvicorn on loopback. A refused record is named
by its index and field and written not at all; the others are written (207); a body where
every record is refused writes nothing (422).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.api import ApiSettings
from legato.api.settings import UnknownCustomers
from legato.clock import FixedClock
from legato.service import keys
from legato.store.schema import consents, customers, events, traits
from legato.store.status import KeyRole
from tests.api.conftest import Served, playbook_text, serve
from tests.world import AT


@dataclass
class Strict:
    url: str
    engine: Engine
    key: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30)


@pytest.fixture
def strict(engine: Engine, tmp_path: Path) -> Iterator[Strict]:
    """A server that refuses events for unknown customers, with a playbook declaring a number attribute."""
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(playbook_text().replace("attributes: {tier: string}", "attributes: {tier: string, age: number}"), encoding="utf-8")
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


# --- customers ----------------------------------------------------------------------------


def test_one_customer_lands_with_its_fields_attributes_and_consent(served: Served) -> None:
    body = {
        "id": "u1", "email": " Ann@Example.COM ", "phone": "+1 415 555 0100", "country": "us", "time_zone": "America/New_York",
        "consent_email_marketing": "express", "consent_email_marketing_at": "2024-03-01T09:00:00Z", "attributes": {"tier": "gold", "plan": {"seats": 3}},
    }
    with served.client("ingest") as client:
        answer = client.post("/v1/customers", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"warnings": []} == {
        "status": "accepted", "received": 1, "inserted": 1, "updated": 0, "unchanged": 0, "rejected": 0,
        "errors": [], "warnings": [], "not_regranted": [],
    }
    stored = customer(served.engine, "u1")
    assert stored is not None
    assert (stored["email"], stored["phone"], stored["country"], stored["time_zone"]) == ("ann@example.com", "+14155550100", "US", "America/New_York")
    assert stored["attributes"] == {"tier": "gold", "plan": {"seats": 3}}
    assert rows(served.engine, consents, "customer_id", "channel", "purpose", "status", "kind", "source") == [
        ("u1", "email", "marketing", "granted", "express", "api:ingest-key")
    ]
    assert rows(served.engine, traits, "customer_id", "purchase_count") == [("u1", 0)]


def test_sending_the_same_customer_again_changes_nothing(served: Served) -> None:
    body = {"batch": [{"id": "u1", "email": "a@example.com"}, {"id": "u2"}]}
    with served.client("ingest") as client:
        assert client.post("/v1/customers/batch", json=body).json()["inserted"] == 2
        before = customer(served.engine, "u1")
        again = client.post("/v1/customers/batch", json=body).json()
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert customer(served.engine, "u1") == before


def test_a_batch_refuses_the_bad_records_whole_and_writes_the_others(served: Served) -> None:
    body = {"batch": [
        {"id": "ok1", "email": "ok1@example.com"},
        {"id": "bad1", "email": "not an address", "attributes": {"tier": "gold"}},
        {"id": "ok2", "country": "FR"},
        {"id": "bad2", "country": "France", "time_zone": "Mars/Olympus"},
    ]}
    with served.client("ingest") as client:
        answer = client.post("/v1/customers/batch", json=body)
    assert answer.status_code == 207, answer.text
    found = answer.json()
    assert (found["status"], found["inserted"], found["rejected"]) == ("partial", 2, 2)
    assert sorted((e["index"], e["field"]) for e in found["errors"]) == [
        (1, "body.batch.1.email"), (3, "body.batch.3.country"), (3, "body.batch.3.time_zone"),
    ]
    assert any("not an email address" in e["reason"] for e in found["errors"])
    # Nothing half-written: the refused records' good fields are not stored either.
    assert rows(served.engine, customers, "id") == [("ok1",), ("ok2",)]


def test_every_record_refused_is_422_and_writes_nothing(served: Served) -> None:
    with served.client("ingest") as client:
        answer = client.post("/v1/customers/batch", json={"batch": [{"id": "a", "country": "USA"}, {"id": "b", "email": "@"}]})
        single = client.post("/v1/customers", json={"id": "c", "consent_sms_marketing": "maybe"})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert "nothing was written" in error["message"]
    assert [p["field"] for p in error["problems"]] == ["body.batch.0.country", "body.batch.1.email"]
    assert single.status_code == 422
    assert single.json()["error"]["problems"][0]["field"] == "body.consent_sms_marketing"
    assert "express, implied, revoked, yes or no" in single.json()["error"]["problems"][0]["reason"]
    assert rows(served.engine, customers, "id") == []


def test_unknown_fields_wrong_types_and_malformed_json_are_422_with_the_field(served: Served) -> None:
    with served.client("ingest") as client:
        unknown = client.post("/v1/customers/batch", json={"batch": [{"id": "a"}, {"id": "b", "emial": "b@example.com"}]})
        wrong = client.post("/v1/customers", json={"id": 17})
        malformed = client.post("/v1/customers", content=b'{"id": "a",', headers={"content-type": "application/json"})
        field_as_attribute = client.post("/v1/customers", json={"id": "a", "attributes": {"email": "a@example.com"}})
        empty = client.post("/v1/customers/batch", json={"batch": []})
    assert unknown.status_code == 422
    assert [(p["field"], p["reason"]) for p in unknown.json()["error"]["problems"]] == [("body.batch.1.emial", "Extra inputs are not permitted")]
    assert wrong.status_code == 422 and wrong.json()["error"]["problems"][0]["field"] == "body.id"
    assert malformed.status_code == 422 and "JSON" in malformed.json()["error"]["message"]
    assert field_as_attribute.status_code == 422
    assert "is a customer field" in field_as_attribute.json()["error"]["problems"][0]["reason"]
    assert empty.status_code == 422
    assert rows(served.engine, customers, "id") == []


def test_declared_attributes_are_checked_and_lookalikes_warned(strict: Strict) -> None:
    body = {"batch": [{"id": "a", "attributes": {"age": 41, "timezone": "Europe/Paris"}}, {"id": "b", "attributes": {"age": "forty"}}]}
    with strict.client() as client:
        answer = client.post("/v1/customers/batch", json=body)
    assert answer.status_code == 207
    found = answer.json()
    assert found["errors"] == [{"index": 1, "field": "body.batch.1.attributes.age", "reason": "'forty' is not a number"}]
    assert found["warnings"] == ["attributes.timezone looks like time_zone but was kept as an attribute; send it as time_zone"]
    assert customer(strict.engine, "a")["attributes"] == {"age": 41.0, "timezone": "Europe/Paris"}  # type: ignore[index]


def test_a_revocation_is_not_undone_by_an_undated_grant(served: Served) -> None:
    with served.client("ingest") as client:
        client.post("/v1/customers", json={"id": "u1", "email": "u1@example.com", "consent_email_marketing": "revoked", "consent_at": "2024-03-01T00:00:00Z"})
        answer = client.post("/v1/customers", json={"id": "u1", "consent_email_marketing": "yes", "attributes": {"tier": "gold"}})
    assert answer.status_code == 200
    assert answer.json()["not_regranted"][0]["field"] == "body.consent_email_marketing"
    assert rows(served.engine, consents, "customer_id", "status") == [("u1", "revoked")]
    assert customer(served.engine, "u1")["attributes"] == {"tier": "gold"}  # type: ignore[index]


def test_a_consent_dated_in_the_future_is_refused(served: Served) -> None:
    with served.client("ingest") as client:
        answer = client.post("/v1/customers", json={"id": "u1", "consent_email_marketing": "yes", "consent_at": "2030-01-01T00:00:00Z"})
    assert answer.status_code == 422
    assert answer.json()["error"]["problems"][0]["field"] == "body.consent_at"


def test_only_ingest_and_admin_keys_send(served: Served) -> None:
    for role, status in (("viewer", 403), ("marketer", 403), ("reviewer", 403), ("ingest", 200), ("admin", 200)):
        with served.client(role) as client:
            assert client.post("/v1/customers", json={"id": f"by-{role}"}).status_code == status, role


def test_a_body_over_the_limit_is_413(served: Served) -> None:
    batch = [{"id": f"c{i}", "attributes": {"note": "x" * 1000}} for i in range(1100)]
    with served.client("ingest") as client:
        answer = client.post("/v1/customers/batch", json={"batch": batch})
    assert answer.status_code == 413
    assert answer.json()["error"]["kind"] == "too_large"
    assert rows(served.engine, customers, "id") == []


# --- events -------------------------------------------------------------------------------


def event(id_: str, customer_id: str = "u1", **fields: Any) -> dict[str, Any]:
    return {"id": id_, "customer_id": customer_id, "type": "purchase", "occurred_at": "2024-03-01T10:00:00Z", "revenue": 20.0} | fields


def test_events_land_and_count_towards_traits(served: Served) -> None:
    with served.client("ingest") as client:
        client.post("/v1/customers", json={"id": "u1"})
        one = client.post("/v1/events", json=event("e1", properties={"sku": "A1", "items": [1, 2]}))
        batch = client.post("/v1/events/batch", json={"batch": [event("e2"), event("e3", type="visit", revenue=None), event("e4", type="refund", revenue=5)]})
    assert one.status_code == 200 and one.json()["inserted"] == 1
    assert batch.status_code == 200 and batch.json()["inserted"] == 3
    assert rows(served.engine, events, "id", "type", "revenue") == [("e1", "purchase", 20.0), ("e2", "purchase", 20.0), ("e3", "visit", None), ("e4", "refund", -5.0)]
    with served.engine.connect() as connection:
        props = connection.execute(sa.select(events.c.properties).where(events.c.id == "e1")).scalar_one()
    assert props == {"sku": "A1", "items": [1, 2]}
    assert rows(served.engine, traits, "customer_id", "purchase_count", "lifetime_spend") == [("u1", 2, 35.0)]


def test_an_event_sent_twice_is_stored_once(served: Served) -> None:
    with served.client("ingest") as client:
        client.post("/v1/customers", json={"id": "u1"})
        client.post("/v1/events", json=event("e1"))
        again = client.post("/v1/events", json=event("e1"))
    assert again.status_code == 200
    assert (again.json()["inserted"], again.json()["unchanged"]) == (0, 1)
    assert rows(served.engine, traits, "customer_id", "purchase_count") == [("u1", 1)]


def test_bad_events_are_named_by_index_and_field(served: Served) -> None:
    batch = [event("e0"), event("e1"), event("e2", revenue=-3), event("e3", occurred_at="yesterday"), event("e4", type="Bought It!"), event("e1")]
    with served.client("ingest") as client:
        client.post("/v1/customers", json={"id": "u1"})
        answer = client.post("/v1/events/batch", json={"batch": batch})
    assert answer.status_code == 207, answer.text
    found = answer.json()
    assert sorted(e["field"] for e in found["errors"]) == [
        "body.batch.2.revenue", "body.batch.3.occurred_at", "body.batch.4.type", "body.batch.5.id",
    ]
    assert "first seen at row 1" in next(e["reason"] for e in found["errors"] if e["index"] == 5)
    assert rows(served.engine, events, "id") == [("e0",), ("e1",)]


def test_events_for_unknown_customers_are_refused_when_configured(strict: Strict) -> None:
    with strict.client() as client:
        client.post("/v1/customers", json={"id": "known"})
        answer = client.post("/v1/events/batch", json={"batch": [event("e1", "known"), event("e2", "stranger")]})
        alone = client.post("/v1/events", json=event("e3", "stranger"))
    assert answer.status_code == 207
    assert answer.json()["errors"] == [{"index": 1, "field": "body.batch.1.customer_id", "reason": "unknown customer 'stranger'; import customers first"}]
    assert alone.status_code == 422
    assert rows(strict.engine, customers, "id") == [("known",)]
    assert rows(strict.engine, events, "id") == [("e1",)]


def test_events_for_unknown_customers_create_them_by_default(served: Served) -> None:
    with served.client("ingest") as client:
        answer = client.post("/v1/events/batch", json={"batch": [event("e1", "new1"), event("e2", "new1"), event("e3", "new2", occurred_at="never")]})
    assert answer.status_code == 207
    assert answer.json()["customers_created"] == 1
    # The refused event's customer is not created: nothing of a refused record is written.
    assert rows(served.engine, customers, "id") == [("new1",)]
    assert rows(served.engine, traits, "customer_id", "purchase_count") == [("new1", 2)]


def test_an_unsubscribe_event_revokes_consent(served: Served) -> None:
    with served.client("ingest") as client:
        client.post("/v1/customers", json={"id": "u1", "email": "u1@example.com", "consent_email_marketing": "yes", "consent_at": "2024-03-01T00:00:00Z"})
        answer = client.post("/v1/events", json=event("e1", type="unsubscribe", revenue=None, channel="email", occurred_at="2024-03-02T00:00:00Z"))
    assert answer.status_code == 200
    assert answer.json()["consents_revoked"] == 1
    assert rows(served.engine, consents, "customer_id", "status") == [("u1", "revoked")]


def test_a_property_named_like_a_field_is_422(served: Served) -> None:
    with served.client("ingest") as client:
        answer = client.post("/v1/events", json=event("e1", properties={"revenue": 3}))
    assert answer.status_code == 422
    assert answer.json()["error"]["problems"][0]["field"] == "body.properties"
