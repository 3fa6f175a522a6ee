"""Who is calling and what their key's role lets them do.

Every route names one :class:`Ability`; :data:`ROLES` is the one table of which roles have
it. A route declares it with ``Depends(allow(Ability.X))``, which finds the key (``Bearer``,
or HTTP Basic with the key as user name and an empty password, as Segment's libraries send
their write key), refuses a missing, wrong or revoked key (401) and a role without the
ability (403), applies the key's rate limit (429), and gives the route a :class:`Caller`.
A person's name in the audit log is the key's name, never a field of the request.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPBasic, HTTPBearer

from legato.api.context import context
from legato.api.errors import ApiError
from legato.store import api_keys
from legato.store.status import KeyRole


class Ability(StrEnum):
    READ = "read"  # see agents, decisions, the queue, reports, checks
    STEER = "steer"  # pause, resume and demote agents; run cycles; upload playbooks; suppress; change consent
    REVIEW = "review"  # act on review items, under the key's name
    GOVERN = "govern"  # promote an agent up the trust ladder (more autonomy)
    INGEST = "ingest"  # send customers and events in


ROLES: dict[Ability, frozenset[KeyRole]] = {
    Ability.READ: frozenset({KeyRole.VIEWER, KeyRole.MARKETER, KeyRole.REVIEWER, KeyRole.ADMIN}),
    Ability.STEER: frozenset({KeyRole.MARKETER, KeyRole.ADMIN}),
    Ability.REVIEW: frozenset({KeyRole.REVIEWER, KeyRole.ADMIN}),
    Ability.GOVERN: frozenset({KeyRole.ADMIN}),
    Ability.INGEST: frozenset({KeyRole.INGEST, KeyRole.ADMIN}),
}


@dataclass(frozen=True)
class Caller:
    key_id: int
    name: str  # the person or system the key was made for: the audit log's actor
    role: KeyRole


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer lg_...` (legato keys create).")
_basic = HTTPBasic(auto_error=False, description="Segment's way: the ingest key as user name, an empty password.")


def presented_key(request: Request) -> str | None:
    """The key in the Authorization header, Bearer or Basic (key as user name)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        user, _, _password = decoded.partition(":")
        return user or None
    return None


def authenticate(request: Request) -> Caller:
    secret = presented_key(request)
    if secret is None:
        raise ApiError(401, "unauthorized", "no API key", hint="send Authorization: Bearer KEY (legato keys create makes one)",
                       headers={"WWW-Authenticate": 'Bearer, Basic realm="legato"'})
    found = api_keys.find(context(request).engine, secret)
    if found is None:
        raise ApiError(401, "unauthorized", "the API key is unknown or revoked", hint="check the key, or ask an admin for a new one (legato keys create)",
                       headers={"WWW-Authenticate": 'Bearer, Basic realm="legato"'})
    caller = Caller(found.id, found.name, found.role)
    request.state.caller = caller
    return caller


def allow(ability: Ability):  # type: ignore[no-untyped-def]
    """The dependency of a route that needs ``ability``: the caller, or a 401/403/429 refusal."""
    admitted = ROLES[ability]

    def dependency(request: Request, _b: object = Depends(_bearer), _s: object = Depends(_basic)) -> Caller:
        caller = authenticate(request)
        if caller.role not in admitted:
            raise ApiError(
                403, "forbidden", f"a {caller.role.value} key may not {ability.value} here",
                hint="this route admits " + ", ".join(sorted(r.value for r in admitted)) + " keys",
            )
        request.app.state.limiter.take(request, caller)
        return caller

    dependency.__name__ = f"allow_{ability.value}"
    dependency.ability = ability  # type: ignore[attr-defined]  # read by ability_of: the spec states each route's roles
    return dependency


def token_authenticated(request: Request) -> None:
    """The dependency of a route a customer reaches from a message, with no key: the link's
    signed per-message token authenticates it (the route verifies it and refuses what fails;
    :mod:`legato.api.routes.links`). Marks the route so the conformance test and the spec know."""


token_authenticated.token_authenticated = True  # type: ignore[attr-defined]


def is_token_authenticated(route: Any) -> bool:
    """Whether a route is reached by a message's signed token instead of a key."""
    return any(getattr(d.call, "token_authenticated", False) for d in route.dependant.dependencies)


def ability_of(route: Any) -> list[Ability]:
    """The abilities a route's dependencies demand (one, for every route that needs a key)."""
    found: list[Ability] = []
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        ability = getattr(dependant.call, "ability", None)
        if ability is not None:
            found.append(ability)
        pending.extend(dependant.dependencies)
    return found


def signed_by(provider: str, check: Any) -> Any:
    """Mark ``check`` (a dependency that verifies a provider's signature on the request and
    refuses a bad one with 403) as what authenticates its route instead of an API key: the
    provider's webhooks (Twilio's messages and status callbacks) carry no key of ours."""
    check.signature = provider  # read by signature_of: the conformance test and the spec know such routes
    return check


def signature_of(route: Any) -> str | None:
    """The provider whose signature authenticates a route (:func:`signed_by`), or None."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        provider = getattr(dependant.call, "signature", None)
        if provider is not None:
            return str(provider)
        pending.extend(dependant.dependencies)
    return None


def state_roles(router: Any) -> None:
    """Write each route's roles into its OpenAPI operation (``x-roles`` and its description);
    a route a provider's signature authenticates says so (``x-signed-by``)."""
    from fastapi.routing import APIRoute

    for route in router.routes:
        if not isinstance(route, APIRoute):
            continue
        if is_token_authenticated(route):
            route.openapi_extra = {**(route.openapi_extra or {}), "x-auth": "message-token", "security": []}
            line = "No key: the message's signed token in the link authenticates it."
            route.description = f"{route.description}\n\n{line}" if route.description else line
            continue
        abilities = ability_of(route)
        provider = signature_of(route)
        if provider is not None and not abilities:
            route.openapi_extra = {**(route.openapi_extra or {}), "x-signed-by": provider}
            line = f"No API key: the request must carry {provider}'s signature of it, made with the channel's auth token (403 otherwise)."
            route.description = f"{route.description}\n\n{line}" if route.description else line
            continue
        if not abilities:
            continue
        roles = sorted({role.value for ability in abilities for role in ROLES[ability]})
        route.openapi_extra = {**(route.openapi_extra or {}), "x-roles": roles}
        line = "Keys: " + ", ".join(roles) + "."
        route.description = f"{route.description}\n\n{line}" if route.description else line
