"""Signing in to the console with an API key, and the session that follows.

A person signs in with one of the API's keys (``legato keys create --name ana --role reviewer``);
the console never asks for the key again. The session is a **signed cookie** (HMAC-SHA256 over
its JSON): the key's id, name and role, when it was issued, when it was last used, and its CSRF
token. Nothing of the key's secret is in it. Why a signed cookie rather than rows in the store:
no migration, and several server processes (``--workers``) share a session through the secret
alone. What a server-side session would give, ending it from the server, is had by asking the
store at every request whether the key is still live (one indexed lookup by id, as every API
request asks by hash): revoking the key ends every session signed in with it.

Limits: a session ends after :data:`IDLE` without a request (idle) and :data:`LIFETIME` after
sign-in whatever happens (absolute); either sends the person back to ``/sign-in``. The cookie is
``HttpOnly``, ``SameSite=Strict``, ``Secure`` when the request came over https, and expires with
the absolute limit.

The secret is ``$LEGATO_CONSOLE_SECRET`` when set (set it for sessions that outlive a restart);
otherwise one made at start (``legato serve --workers`` makes one in the parent and hands it to
every worker through that variable).

Roles are the API's (:data:`legato.api.security.ROLES`): :func:`signed_in` takes an
:class:`~legato.api.security.Ability`, exactly as a route's ``allow`` does, so a viewer who
cannot approve over the API cannot approve here either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from legato.api.security import ROLES, Ability
from legato.store.status import KeyRole

COOKIE = "legato_console"
SECRET_VARIABLE = "LEGATO_CONSOLE_SECRET"
IDLE = float(os.environ.get("LEGATO_CONSOLE_IDLE_SECONDS", 30 * 60))  # seconds without a request
LIFETIME = float(os.environ.get("LEGATO_CONSOLE_LIFETIME_SECONDS", 12 * 3600))  # seconds from sign-in
REFRESH = 60.0  # the cookie's "last used" is rewritten at most once a minute


@dataclass(frozen=True)
class Session:
    """Who is signed in: the key's id, name (the audit log's actor) and role; and the session's facts."""

    key_id: int
    name: str
    role: KeyRole
    issued: float  # Unix time of sign-in
    seen: float  # Unix time of the last request
    csrf: str  # this session's token for every form

    def may(self, ability: Ability) -> bool:
        return self.role in ROLES[ability]

    def payload(self) -> dict[str, Any]:
        return {"k": self.key_id, "n": self.name, "r": self.role.value, "i": self.issued, "s": self.seen, "c": self.csrf}


# Why a person is asked to sign in, by the code the sign-in page is sent (``/sign-in?why=idle``):
# a code, not the sentence, so nobody can make the page say what they like through a link.
WHY = {
    "none": "Sign in with your API key to use the console.",
    "idle": "Your session ended after a while without use. Sign in again.",
    "lifetime": "Your session reached its time limit. Sign in again.",
    "revoked": "The key you signed in with was revoked. Sign in with a live key.",
    "signed_out": "You are signed out.",
}


class NotSignedIn(Exception):
    """No session, or one that expired or whose key was revoked: the console answers with the sign-in page."""

    def __init__(self, why: str) -> None:
        super().__init__(WHY[why])
        self.why = why  # a key of WHY


class Refused(Exception):
    """Signed in, but the role lacks the ability: the console answers 403 with a page that says so."""

    def __init__(self, session: Session, ability: Ability) -> None:
        super().__init__(ability.value)
        self.session, self.ability = session, ability


def secret_of(app_state: Any) -> bytes:
    found = getattr(app_state, "console_secret", None)
    if found is None:
        given = os.environ.get(SECRET_VARIABLE)
        found = app_state.console_secret = (given.encode("utf-8") if given else secrets.token_bytes(32))
    return found


def seal(secret: bytes, session: Session) -> str:
    """The cookie's value: the session's JSON, base64url, a dot, its HMAC-SHA256."""
    body = base64.urlsafe_b64encode(json.dumps(session.payload(), separators=(",", ":")).encode("utf-8")).rstrip(b"=")
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    return (body + b"." + base64.urlsafe_b64encode(mac).rstrip(b"=")).decode("ascii")


def unseal(secret: bytes, value: str) -> Session | None:
    """The session a cookie holds, or None when it is not one this server signed."""
    body, dot, mac = value.encode("ascii", "replace").partition(b".")
    if not dot:
        return None
    expected = base64.urlsafe_b64encode(hmac.new(secret, body, hashlib.sha256).digest()).rstrip(b"=")
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        return Session(int(data["k"]), str(data["n"]), KeyRole(data["r"]), float(data["i"]), float(data["s"]), str(data["c"]))
    except (ValueError, KeyError, TypeError):
        return None


def new_session(key_id: int, name: str, role: KeyRole, *, now: float | None = None) -> Session:
    at = time.time() if now is None else now
    return Session(key_id, name, role, at, at, secrets.token_urlsafe(24))


def expired(session: Session, now: float) -> str | None:
    """Why the session is over (a key of :data:`WHY`), or None while it holds."""
    if now - session.issued > LIFETIME:
        return "lifetime"
    if now - session.seen > IDLE:
        return "idle"
    return None


def current(request: Request) -> Session:
    """The request's session, checked: signed by us, not expired, its key still live. Cached on the request."""
    found = getattr(request.state, "console_session", None)
    if found is not None:
        return found
    value = request.cookies.get(COOKIE)
    if not value:
        raise NotSignedIn("none")
    session = unseal(secret_of(request.app.state), value)
    if session is None:
        raise NotSignedIn("none")
    now = time.time()
    why = expired(session, now)
    if why is not None:
        raise NotSignedIn(why)
    from legato.service import keys

    key = keys.live(request.app.state.context.engine, session.key_id)
    if key is None:
        raise NotSignedIn("revoked")
    if now - session.seen >= REFRESH:
        session = Session(session.key_id, session.name, session.role, session.issued, now, session.csrf)
        request.state.console_refresh = session  # headers.py writes the refreshed cookie on the answer
    request.state.console_session = session
    return session


def optional(request: Request) -> Session | None:
    """The session if there is a valid one (the sign-in page, the layout), else None."""
    try:
        return current(request)
    except NotSignedIn:
        return None


def signed_in(ability: Ability = Ability.READ):  # type: ignore[no-untyped-def]
    """The dependency of a console page: the session, or the sign-in page (not signed in, expired)
    or a 403 page (the role lacks ``ability``)."""

    def dependency(request: Request) -> Session:
        session = current(request)
        if not session.may(ability):
            raise Refused(session, ability)
        request.app.state.limiter.take(request, _caller(session))
        return session

    dependency.__name__ = f"signed_in_{ability.value}"
    return dependency


def _caller(session: Session) -> Any:
    from legato.api.security import Caller

    return Caller(session.key_id, session.name, session.role)


def secure(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def cookie_options(request: Request, session: Session | None = None) -> dict[str, Any]:
    """The session cookie's attributes: HttpOnly, SameSite=Strict, Secure over https, expiring
    with the session's absolute limit."""
    left = LIFETIME if session is None else max(1.0, LIFETIME - (time.time() - session.issued))
    return {"httponly": True, "samesite": "strict", "secure": secure(request), "path": "/", "max_age": int(left)}
