"""The suppression list over real HTTP: listed in its one form under the key's name, listed twice
without change, taken off with a reason (404 when it is not there), and read by every role that reads."""

from __future__ import annotations

import sqlalchemy as sa

from legato.store.schema import audit_log
from tests.api.conftest import Served


def _audit(served: Served, action: str) -> list[tuple[str, str, dict[str, object]]]:
    with served.engine.connect() as connection:
        rows = connection.execute(sa.select(audit_log.c.actor, audit_log.c.entity_id, audit_log.c.detail).where(audit_log.c.action == action))
        return [(r.actor, r.entity_id, r.detail) for r in rows]


def test_a_number_is_listed_in_its_one_form_under_the_keys_name(served: Served) -> None:
    with served.client("marketer") as client:
        first = client.post("/v1/suppressions", json={"kind": "phone", "value": "+1 (415) 555-0100", "reason": "national do-not-call registry"})
        again = client.post("/v1/suppressions", json={"kind": "phone", "value": "4155550100", "country": "US", "reason": "asked twice"})
    assert first.status_code == 201, first.text
    assert (first.json()["value"], first.json()["added"]) == ("+14155550100", True)
    assert again.status_code == 200
    assert (again.json()["added"], again.json()["reason"]) == (False, "national do-not-call registry")
    assert _audit(served, "suppression_added") == [("marketer-key", "phone:+14155550100", {"reason": "national do-not-call registry"})]


def test_the_list_newest_first_with_its_total(served: Served) -> None:
    with served.client("admin") as client:
        for value in ("a@example.com", "B@Example.com", "c@example.com"):
            client.post("/v1/suppressions", json={"kind": "email", "value": value, "reason": "asked"})
        client.post("/v1/suppressions", json={"kind": "customer", "value": "c001", "reason": "legal hold"})
    with served.client("viewer") as client:
        emails = client.get("/v1/suppressions", params={"kind": "email", "limit": 2})
        everything = client.get("/v1/suppressions")
        wrong = client.get("/v1/suppressions", params={"kind": "fax"})
    assert emails.status_code == 200
    assert emails.json()["total"] == 3 and len(emails.json()["entries"]) == 2
    assert {e["value"] for e in everything.json()["entries"]} == {"a@example.com", "b@example.com", "c@example.com", "c001"}
    assert wrong.status_code == 422 and wrong.json()["error"]["problems"][0]["field"] == "query.kind"


def test_taking_an_entry_off_needs_a_reason_and_is_audited(served: Served) -> None:
    with served.client("marketer") as client:
        client.post("/v1/suppressions", json={"kind": "phone", "value": "+14155550100", "reason": "registry"})
        unexplained = client.delete("/v1/suppressions/phone/+14155550100")
        removed = client.delete("/v1/suppressions/phone/+1 415 555 0100", params={"reason": "added by mistake, ticket 123"})
        missing = client.delete("/v1/suppressions/phone/+14155550100", params={"reason": "again"})
    assert unexplained.status_code == 422 and unexplained.json()["error"]["problems"][0]["field"] == "query.reason"
    assert removed.status_code == 200, removed.text
    assert (removed.json()["value"], removed.json()["reason"]) == ("+14155550100", "registry")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "phone +14155550100 is not on the suppression list"
    ((actor, entity, detail),) = _audit(served, "suppression_removed")
    assert (actor, entity, detail["reason"]) == ("marketer-key", "phone:+14155550100", "added by mistake, ticket 123")


def test_what_cannot_be_listed_is_422_with_the_fix(served: Served) -> None:
    with served.client("marketer") as client:
        number = client.post("/v1/suppressions", json={"kind": "phone", "value": "not a number", "reason": "x"})
        undeliverable = client.post("/v1/suppressions", json={"kind": "undeliverable", "value": "a@example.com", "reason": "x"})
        blank = client.post("/v1/suppressions", json={"kind": "email", "value": "a@example.com", "reason": ""})
    assert number.status_code == 422 and number.json()["error"]["hint"]
    assert undeliverable.status_code == 422 and undeliverable.json()["error"]["problems"][0]["field"] == "body.kind"
    assert blank.status_code == 422 and blank.json()["error"]["problems"][0]["field"] == "body.reason"


def test_only_keys_that_steer_change_the_list(served: Served) -> None:
    for role in ("viewer", "reviewer", "ingest"):
        with served.client(role) as client:
            added = client.post("/v1/suppressions", json={"kind": "customer", "value": "c001", "reason": "x"})
            removed = client.delete("/v1/suppressions/customer/c001", params={"reason": "x"})
        assert (added.status_code, removed.status_code) == (403, 403), role
    with served.client("viewer") as client:
        assert client.get("/v1/suppressions").json() == {"total": 0, "entries": []}
