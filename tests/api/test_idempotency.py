"""Idempotency-Key over real HTTP: the same request answered once, another request with the key refused,
a key still being answered (or whose server died answering it) refused with 409, keys per API key, 24 hours."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from legato.api.idempotency import Records, request_hash
from legato.store import api_keys
from legato.store.schema import audit_log, idempotency_records
from legato.trust import agent_state
from tests.api.conftest import Served
from tests.world import AT

PAUSE = "/v1/agents/mailer/pause"


def make_agent(served: Served) -> None:
    with served.engine.begin() as connection:
        agent_state.create(connection, "mailer", 2, AT)


def pauses(served: Served) -> int:
    with served.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action == "agent_paused")).scalar_one()


def test_the_same_request_again_gets_the_first_answer_and_is_done_once(served: Served) -> None:
    make_agent(served)
    with served.client("marketer") as client:
        first = client.post(PAUSE, json={"reason": "launch week"}, headers={"Idempotency-Key": "pause-1"})
        # The same data, keys in another order and other spacing: the same request.
        again = client.post(PAUSE, content=b'{ "reason" :  "launch week" }', headers={"Idempotency-Key": "pause-1", "content-type": "application/json"})
        plain = client.post(PAUSE, json={"reason": "launch week"})  # no key: the route runs, and the agent is already paused
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json() and again.headers["content-type"] == "application/json"
    assert again.headers["x-request-id"] != first.headers["x-request-id"]
    assert pauses(served) == 1
    assert plain.status_code == 409


def test_the_same_key_with_another_body_is_422(served: Served) -> None:
    make_agent(served)
    with served.client("marketer") as client:
        client.post(PAUSE, json={"reason": "launch week"}, headers={"Idempotency-Key": "pause-1"})
        other = client.post(PAUSE, json={"reason": "another reason"}, headers={"Idempotency-Key": "pause-1"})
        elsewhere = client.post("/v1/agents/mailer/resume", headers={"Idempotency-Key": "pause-1"})
    assert other.status_code == 422
    problem = other.json()["error"]["problems"][0]
    assert (problem["field"], problem["reason"]) == ("header.Idempotency-Key", "used with another request")
    assert "new key" in other.json()["error"]["hint"] and other.json()["request_id"] == other.headers["x-request-id"]
    assert elsewhere.status_code == 422
    assert pauses(served) == 1


def test_a_refusal_is_kept_too(served: Served) -> None:
    with served.client("marketer") as client:
        first = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "k"})
        make_agent(served)
        again = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "k"})
    assert first.status_code == 404
    assert again.status_code == 404 and again.headers["idempotent-replayed"] == "true"
    assert pauses(served) == 0


def test_a_key_still_being_answered_is_409(served: Served) -> None:
    """The claim (a row without a status) is what a first request holds while its route runs, and
    what stays if the server died between the work and its record: either way, no second run."""
    make_agent(served)
    key = api_keys.find(served.engine, served.keys["marketer"])
    assert key is not None
    body = json.dumps({"reason": "x"}).encode()
    hashed = request_hash("POST", PAUSE, b"", body, "application/json")
    assert Records(served.engine).claim(key.id, "busy", hashed, AT) is None
    with served.client("marketer") as client:
        answer = client.post(PAUSE, content=body, headers={"Idempotency-Key": "busy", "content-type": "application/json"})
    assert answer.status_code == 409 and answer.headers["retry-after"] == "1"
    assert "no answer yet" in answer.json()["error"]["message"]
    assert "new key" in answer.json()["error"]["hint"]
    assert pauses(served) == 0


def test_keys_belong_to_one_api_key(served: Served) -> None:
    make_agent(served)
    with served.client("marketer") as marketer, served.client("admin") as admin:
        marketer.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "same"})
        other = admin.post("/v1/agents/mailer/resume", headers={"Idempotency-Key": "same"})
    assert other.status_code == 200 and "idempotent-replayed" not in other.headers


def test_a_refusal_before_the_route_releases_the_key(served: Served) -> None:
    make_agent(served)
    with served.client("reviewer") as client:
        refused = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "r1"})
        again = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "r1"})
    assert refused.status_code == 403 and again.status_code == 403 and "idempotent-replayed" not in again.headers
    with served.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(idempotency_records)).scalar_one() == 0


def test_records_last_24_hours(served: Served) -> None:
    make_agent(served)
    with served.client("marketer") as client:
        client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "day"})
        client.post("/v1/agents/mailer/resume")
        served.clock.set(AT + timedelta(hours=23))
        within = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "day"})
        served.clock.set(AT + timedelta(hours=25))
        after = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "day"})
    assert within.headers.get("idempotent-replayed") == "true"
    assert after.status_code == 200 and "idempotent-replayed" not in after.headers
    assert pauses(served) == 2


def test_a_malformed_key_is_422(served: Served) -> None:
    with served.client("marketer") as client:
        answer = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "has spaces"})
        empty = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": ""})
    assert answer.status_code == 422 and answer.json()["error"]["problems"][0]["field"] == "header.Idempotency-Key"
    assert empty.status_code == 422


def test_no_key_or_a_wrong_one_is_the_route_s_401(served: Served) -> None:
    with served.client(None) as client:
        answer = client.post(PAUSE, json={"reason": "x"}, headers={"Idempotency-Key": "k", "Authorization": "Bearer lg_wrong"})
    assert answer.status_code == 401


def test_the_spec_documents_the_header_on_every_state_changing_operation(served: Served) -> None:
    with served.client(None) as client:
        spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            names = [p["name"] for p in operation.get("parameters", [])]
            if method in ("post", "put", "patch", "delete"):
                assert "Idempotency-Key" in names and "409" in operation["responses"], (method, path)
            else:
                assert "Idempotency-Key" not in names
