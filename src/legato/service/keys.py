"""API keys: create (the secret is shown once), list, revoke. ``legato keys`` is its face."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from legato.store import api_keys
from legato.store.api_keys import ApiKey
from legato.store.status import KeyRole


def create(engine: Engine, name: str, role: str | KeyRole, *, by: str, now: datetime) -> tuple[ApiKey, str]:
    chosen = role if isinstance(role, KeyRole) else api_keys.role_of(role)
    return api_keys.create(engine, name, chosen, by=by, now=now)


def find(engine: Engine, secret: str) -> ApiKey | None:
    """The live key this secret is (the console's sign-in), or None."""
    return api_keys.find(engine, secret)


def live(engine: Engine, key_id: int) -> ApiKey | None:
    """The live key with this id (a console session's, at each request), or None once revoked."""
    return api_keys.find_by_id(engine, key_id)


def list_keys(engine: Engine, *, include_revoked: bool = False) -> list[ApiKey]:
    return api_keys.list_keys(engine, include_revoked=include_revoked)


def revoke(engine: Engine, name: str, *, by: str, now: datetime) -> ApiKey:
    return api_keys.revoke(engine, name, by=by, now=now)
