"""Consent per customer over real HTTP: read with its history, changed with a source under the
key's name, and what the one consent owner refuses (a revocation undone by anything but an
express consent dated after it: 409 with why, nothing written)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.store.schema import audit_log, consent_history, outbox
from tests.api.conftest import Served
from tests.world import AT, load_customers, playbook

CONSENTS = "/v1/customers/c001/consents"


def _history_rows(served: Served) -> int:
    with served.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.count()).select_from(consent_history)).scalar_one())


def test_a_customers_consent_with_its_history(served: Served) -> None:
    load_customers(served.engine)
    with served.client("viewer") as client:
        answer = client.get(CONSENTS)
        none = client.get("/v1/customers/c005/consents")
        unknown = client.get("/v1/customers/nobody/consents")
    assert answer.status_code == 200, answer.text
    (email,) = answer.json()["consents"]
    assert (email["channel"], email["purpose"], email["status"], email["kind"]) == ("email", "marketing", "granted", "express")
    (imported,) = email["history"]
    assert imported["source"].startswith("import") and imported["recorded_by"] is None
    assert none.json() == {"customer_id": "c005", "consents": []}
    assert unknown.status_code == 404 and unknown.json()["error"]["message"] == "unknown customer 'nobody'"
    assert "import the customer first" in unknown.json()["error"]["hint"]


def test_a_revocation_under_the_keys_name_cancels_what_waits_to_go(served: Served, tmp_path: Path) -> None:
    load_customers(served.engine)
    pb = playbook()
    run_cycle(served.engine, pb, FixedClock(AT), transports(pb, tmp_path))  # messages for 09:00 wait in the outbox
    with served.client("marketer") as client:
        answer = client.post(CONSENTS, json={"channel": "email", "status": "revoked", "source": "phone call, ticket 123"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["outcome"], body["cancelled_messages"]) == ("written", 1)
    assert (body["consent"]["status"], body["consent"]["source"], body["consent"]["stated_at"]) == ("revoked", "phone call, ticket 123", AT.isoformat().replace("+00:00", "Z"))
    assert [h["status"] for h in body["consent"]["history"]] == ["granted", "revoked"]
    assert body["consent"]["history"][-1]["recorded_by"] == "marketer-key"
    with served.engine.connect() as connection:
        statuses = connection.execute(sa.select(outbox.c.status).where(outbox.c.customer_id == "c001")).scalars().all()
        (actor,) = connection.execute(sa.select(audit_log.c.actor).where(audit_log.c.action == "consent_changed")).scalars().all()
    assert statuses == ["cancelled"] and actor == "marketer-key"


def test_a_revocation_is_undone_only_by_an_express_consent_dated_after_it(served: Served) -> None:
    load_customers(served.engine)
    served.clock.set(AT + timedelta(days=2))
    with served.client("marketer") as client:
        client.post(CONSENTS, json={"channel": "email", "status": "revoked", "source": "reply STOP", "stated_at": AT.isoformat()})
        before = _history_rows(served)
        implied = client.post(CONSENTS, json={"channel": "email", "status": "granted", "kind": "implied", "source": "bought boots"})
        undated = client.post(CONSENTS, json={"channel": "email", "status": "granted", "source": "web form"})
        older = client.post(CONSENTS, json={"channel": "email", "status": "granted", "source": "web form",
                                            "stated_at": (AT - timedelta(hours=1)).isoformat()})
        assert _history_rows(served) == before  # nothing written by a refusal
        regranted = client.post(CONSENTS, json={"channel": "email", "status": "granted", "source": "web form, double opt-in",
                                                "stated_at": (AT + timedelta(days=1)).isoformat()})
    for refused, why in ((implied, "an implied consent does not undo the revocation of 2024-03-04 08:00 UTC"),
                         (undated, "the grant has no date (stated_at)"),
                         (older, "the grant is dated 2024-03-04 07:00 UTC, not after the revocation")):
        assert refused.status_code == 409, refused.text
        assert why in refused.json()["error"]["message"]
        assert "express" in refused.json()["error"]["hint"] and "stated_at" in refused.json()["error"]["hint"]
    assert regranted.status_code == 200 and regranted.json()["outcome"] == "written"
    assert regranted.json()["consent"]["status"] == "granted"


def test_an_older_statement_changes_nothing_and_says_why(served: Served) -> None:
    load_customers(served.engine)
    with served.client("marketer") as client:
        client.post(CONSENTS, json={"channel": "sms", "status": "granted", "source": "shop counter", "stated_at": AT.isoformat()})
        older = client.post(CONSENTS, json={"channel": "sms", "status": "revoked", "source": "old letter",
                                            "stated_at": (AT - timedelta(days=30)).isoformat()})
    assert older.status_code == 200
    assert older.json()["outcome"] == "kept"
    assert older.json()["reason"] == "the customer gave an express consent after this revocation; that consent stands"
    assert older.json()["consent"]["status"] == "granted"


def test_what_cannot_be_recorded_is_422_naming_the_field(served: Served) -> None:
    load_customers(served.engine)
    with served.client("marketer") as client:
        future = client.post(CONSENTS, json={"channel": "email", "status": "granted", "source": "x", "stated_at": (AT + timedelta(days=1)).isoformat()})
        channel = client.post(CONSENTS, json={"channel": "fax", "status": "granted", "source": "x"})
        sourceless = client.post(CONSENTS, json={"channel": "email", "status": "granted"})
        unknown = client.post("/v1/customers/nobody/consents", json={"channel": "email", "status": "revoked", "source": "x"})
    assert future.status_code == 422 and future.json()["error"]["message"].startswith("stated_at (2024-03-05")
    assert channel.status_code == 422 and channel.json()["error"]["problems"][0]["field"] == "body.channel"
    assert sourceless.status_code == 422 and sourceless.json()["error"]["problems"][0]["field"] == "body.source"
    assert unknown.status_code == 404


def test_only_keys_that_steer_change_consent(served: Served) -> None:
    load_customers(served.engine)
    for role in ("viewer", "reviewer", "ingest"):
        with served.client(role) as client:
            assert client.post(CONSENTS, json={"channel": "email", "status": "revoked", "source": "x"}).status_code == 403, role
    with served.client("viewer") as client:
        assert client.get(CONSENTS).json()["consents"][0]["status"] == "granted"
