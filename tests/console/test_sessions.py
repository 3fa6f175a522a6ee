"""The console's session cookie, its limits and where a sign-in may lead: the pieces under the browser tests."""

from __future__ import annotations

import base64
import json

import pytest

from legato.console.auth import IDLE, LIFETIME, Session, expired, new_session, seal, unseal
from legato.console.headers import is_console_path
from legato.console.pages.sign_in import safe_next
from legato.store.status import KeyRole

SECRET = b"s" * 32


def test_a_sealed_session_reads_back_and_a_changed_one_does_not() -> None:
    session = new_session(7, "ana", KeyRole.REVIEWER, now=1_000_000.0)
    value = seal(SECRET, session)
    assert unseal(SECRET, value) == session
    assert unseal(b"another secret", value) is None
    body, _, mac = value.partition(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data["r"] = "admin"  # a reviewer making itself an admin
    forged = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode() + "." + mac
    assert unseal(SECRET, forged) is None
    assert unseal(SECRET, "no-dot") is None and unseal(SECRET, "") is None and unseal(SECRET, "a.b") is None
    assert "lg_" not in value and session.csrf not in ("", None)


def test_a_session_ends_idle_or_at_its_lifetime() -> None:
    at = 2_000_000.0
    fresh = Session(1, "ana", KeyRole.VIEWER, at, at, "t")
    assert expired(fresh, at + IDLE - 1) is None
    assert expired(fresh, at + IDLE + 1) == "idle"
    busy = Session(1, "ana", KeyRole.VIEWER, at, at + LIFETIME, "t")  # used a second ago, but signed in too long ago
    assert expired(busy, at + LIFETIME + 1) == "lifetime"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "evil", "/sign-out", "", None])
def test_a_sign_in_leads_only_to_a_console_page(target: str | None) -> None:
    assert safe_next(target) == "/"


def test_a_sign_in_keeps_a_console_page_to_go_back_to() -> None:
    assert safe_next("/agents/welcome_email?done=paused") == "/agents/welcome_email?done=paused"


def test_the_api_keeps_its_own_answers() -> None:
    assert all(is_console_path(p) for p in ("/", "/agents", "/review/3", "/static/console.css", "/sign-in"))
    assert not any(is_console_path(p) for p in ("/v1/agents", "/docs", "/openapi.json", "/metrics", "/healthz", "/readyz", "/redoc"))
