"""/healthz and /readyz over real HTTP, and errors that never show a traceback."""

from __future__ import annotations

from tests.api.conftest import Served


def test_alive_and_ready(served: Served) -> None:
    with served.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["migrations"] == "current" and ready.json()["database"] == "reachable"


def test_openapi_31_and_docs(served: Served) -> None:
    with served.client(None) as client:
        spec = client.get("/openapi.json").json()
        docs = client.get("/docs")
    assert spec["openapi"].startswith("3.1")
    assert docs.status_code == 200


def test_unknown_route_and_malformed_json(served: Served) -> None:
    with served.client("marketer") as client:
        missing = client.get("/v1/nothing-here")
        broken = client.post("/v1/agents/mailer/pause", content=b"{not json", headers={"content-type": "application/json"})
        wrong = client.post("/v1/agents/mailer/pause", json={"reason": 5, "extra": 1})
        undecodable = client.post("/v1/agents/mailer/pause", content=b"\xff", headers={"content-type": "application/json"})
    assert missing.status_code == 404 and missing.json()["error"]["kind"] == "not_found"
    assert broken.status_code == 422 and "Traceback" not in broken.text
    assert wrong.status_code == 422
    assert wrong.json()["error"]["problems"][0]["field"] == "body.reason"
    assert undecodable.status_code == 422 and "UTF-8" in undecodable.json()["error"]["message"]


def test_a_body_over_the_limit_is_413(served: Served) -> None:
    with served.client("marketer") as client:
        answer = client.post("/v1/agents/mailer/pause", content=b'{"reason": "' + b"x" * 2_000_000 + b'"}',
                             headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["error"]["kind"] == "too_large"
    assert answer.json()["request_id"] == answer.headers["x-request-id"]  # refused before any route, still traceable
