"""Keys and roles over real HTTP: 401 without a key or with a wrong or revoked one, 403 for a role
the route does not admit, the Segment way (Basic, key as user name), and the rate limit's 429."""

from __future__ import annotations

import base64

import httpx
from sqlalchemy import Engine

from legato.api import ApiSettings
from legato.clock import FixedClock
from legato.service import keys
from legato.store.status import KeyRole
from tests.api.conftest import Served, serve
from tests.world import AT


def test_no_key_is_401_with_the_fix(served: Served) -> None:
    with served.client(None) as client:
        answer = client.get("/v1/agents")
    assert answer.status_code == 401
    assert answer.json()["error"]["kind"] == "unauthorized"
    assert "legato keys create" in answer.json()["error"]["hint"]
    assert "Bearer" in answer.headers["www-authenticate"]


def test_a_wrong_key_is_401(served: Served) -> None:
    with httpx.Client(timeout=30, base_url=served.url, headers={"Authorization": "Bearer lg_not-a-key"}) as client:
        assert client.get("/v1/agents").status_code == 401


def test_a_revoked_key_is_refused_from_the_next_request(served: Served) -> None:
    with served.client("viewer") as client:
        assert client.get("/v1/agents").status_code == 200
        keys.revoke(served.engine, "viewer-key", by="test", now=AT)
        answer = client.get("/v1/agents")
    assert answer.status_code == 401


def test_every_role_reads_but_ingest(served: Served) -> None:
    for role in ("viewer", "marketer", "reviewer", "admin"):
        with served.client(role) as client:
            assert client.get("/v1/agents").status_code == 200, role
    with served.client("ingest") as client:
        answer = client.get("/v1/agents")
    assert answer.status_code == 403
    assert "ingest" in answer.json()["error"]["message"]


def test_a_reviewer_may_not_promote(served: Served) -> None:
    with served.client("reviewer") as client:
        answer = client.post("/v1/agents/mailer/promote", json={"to_stage": 3})
    assert answer.status_code == 403
    assert answer.json()["error"]["hint"] == "this route admits admin keys"


def test_basic_auth_with_the_key_as_user_name(served: Served) -> None:
    token = base64.b64encode(f"{served.keys['viewer']}:".encode()).decode()
    with httpx.Client(timeout=30, base_url=served.url, headers={"Authorization": f"Basic {token}"}) as client:
        assert client.get("/v1/agents").status_code == 200


def test_the_rate_limit_answers_429_with_retry_after(engine: Engine) -> None:
    secret = keys.create(engine, "busy", KeyRole.VIEWER, by="test", now=AT)[1]
    for url in serve(engine, ApiSettings(clock=FixedClock(AT), rate_limit=0.01, burst=3)):
        with httpx.Client(timeout=30, base_url=url, headers={"Authorization": f"Bearer {secret}"}) as client:
            statuses = [client.get("/v1/agents").status_code for _ in range(5)]
            refused = client.get("/v1/agents")
    # 0.01 a second: no token comes back during the test, however slow the machine.
    assert statuses == [200, 200, 200, 429, 429]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_the_key_is_never_stored(engine: Engine) -> None:
    import sqlalchemy as sa

    _, secret = keys.create(engine, "someone", KeyRole.ADMIN, by="test", now=AT)
    with engine.connect() as connection:
        rows = [tuple(map(str, row)) for row in connection.execute(sa.text("SELECT * FROM api_keys"))]
    assert all(secret not in cell for row in rows for cell in row)
