"""Every route states its role and checks it: the same questions asked of every route there is.

Routes are read from the routers the app includes, so a route added later is asked too:
it must name exactly one ability (``security.allow``); over real HTTP it answers 401 without
a key and 403 to every role the ability does not admit; its OpenAPI operation lists the
roles. Reads are also asked with each admitted role, which must not be refused.

The links a message carries (unsubscribe, open pixel, click redirect) take no key: the
message's signed token authenticates them. They are listed here by name, must say so
(``security.token_authenticated``, ``x-auth`` in the spec), and refuse a request without a
valid token (400) whatever key it carries.
"""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute

from legato.api.routes import ROUTERS
from legato.api.security import ROLES, ability_of, is_token_authenticated, signature_of
from legato.store.status import KeyRole
from tests.api.conftest import Served

OPEN = {"/healthz", "/readyz"}  # what answers without a key, on purpose
# Providers' webhooks: no key of ours, authenticated by the provider's signature of the request.
SIGNED = {"/v1/twilio/inbound": "twilio", "/v1/twilio/status": "twilio"}
TOKEN_AUTHENTICATED = {"/v1/unsubscribe", "/v1/open", "/v1/click"}  # a message's signed token, not a key


def _routes() -> list[APIRoute]:
    return [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]


def _filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_names_one_ability() -> None:
    for route in _routes():
        abilities = ability_of(route)
        if route.path in OPEN:
            continue
        if route.path in TOKEN_AUTHENTICATED or is_token_authenticated(route):
            assert route.path in TOKEN_AUTHENTICATED and is_token_authenticated(route) and not abilities, route.path
            continue
        if route.path in SIGNED:
            assert abilities == [] and signature_of(route) == SIGNED[route.path], f"{route.path}: authenticated by {SIGNED[route.path]}'s signature only"
            continue
        assert signature_of(route) is None, f"{route.path} is signature-authenticated but not listed in SIGNED"
        assert route.path.startswith("/v1/"), f"{route.path}: API routes are versioned under /v1"
        assert len(abilities) == 1, f"{sorted(route.methods)} {route.path} demands {abilities}: every route names exactly one ability"


def test_the_spec_states_each_routes_roles(served: Served) -> None:
    with served.client(None) as client:
        spec = client.get("/openapi.json").json()
    for route in _routes():
        if route.path in OPEN:
            continue
        if route.path in TOKEN_AUTHENTICATED:
            for method in route.methods:
                operation = spec["paths"][route.path][method.lower()]
                assert operation.get("x-auth") == "message-token" and "x-roles" not in operation, route.path
            continue
        for method in route.methods:
            operation = spec["paths"][route.path][method.lower()]
            if route.path in SIGNED:
                assert operation.get("x-signed-by") == SIGNED[route.path] and "x-roles" not in operation, route.path
                continue
            assert operation.get("x-roles") == sorted(r.value for r in ROLES[ability_of(route)[0]]), route.path


def test_every_route_refuses_no_key_and_each_role_it_does_not_admit(served: Served) -> None:
    asked = 0
    for route in _routes():
        if route.path in OPEN or route.path in TOKEN_AUTHENTICATED:
            continue
        path = _filled(route.path)
        if route.path in SIGNED:
            # No key opens it, whatever its role: without the provider's signature it is refused.
            for role in (None, *KeyRole):
                with served.client(role.value if role else None) as client:
                    refused = client.post(path, data={"From": "+14155550123", "Body": "STOP"})
                assert refused.status_code in (403, 404), f"POST {route.path} unsigned with {role}: {refused.status_code}"
            continue
        admitted = ROLES[ability_of(route)[0]]
        for method in route.methods:
            with httpx.Client(base_url=served.url, timeout=30) as client:
                bare = client.request(method, path)
            assert bare.status_code == 401, f"{method} {route.path} without a key: {bare.status_code}"
            for role in KeyRole:
                with served.client(role.value) as client:
                    if role not in admitted:
                        refused = client.request(method, path, json={})
                        assert refused.status_code == 403, f"{method} {route.path} with a {role.value} key: {refused.status_code}"
                        assert refused.json()["error"]["kind"] == "forbidden"
                    elif method == "GET":
                        # Streamed, and closed after the status line: a stream (/v1/stream) never ends by itself.
                        with client.stream(method, path) as allowed:
                            assert allowed.status_code not in (401, 403), f"{method} {route.path} refused a {role.value} key"
                            assert allowed.status_code < 500, f"{method} {route.path}: {allowed.status_code}"
            asked += 1
    assert asked >= 6


def test_the_links_a_message_carries_refuse_a_missing_or_forged_token_whatever_the_key(served: Served) -> None:
    routes = {(method, route.path) for route in _routes() if route.path in TOKEN_AUTHENTICATED for method in route.methods}
    assert {path for _, path in routes} == TOKEN_AUTHENTICATED
    forged = "mfrgg." + "a" * 26
    for role in (None, "admin"):
        with served.client(role, follow_redirects=False) as client:
            for method, path in sorted(routes):
                for token in ("", forged):
                    answer = client.request(method, path, params={"t": token, "u": "https://evil.example", "s": "a" * 26},
                                            data={"List-Unsubscribe": "One-Click"} if method == "POST" else None)
                    assert answer.status_code == 400, f"{method} {path} with token {token!r} and key {role}: {answer.status_code}"
