"""The one writer of API keys: create one (its secret shown once), revoke one, and find the
key a request presents.

A key is ``lg_`` and 40 random URL-safe characters (240 bits), so a plain SHA-256 of it is
as safe to store as a slow password hash and far cheaper to check on every request: nobody
can guess such a key from its hash, and there is no short password to brute-force. The
secret itself is never stored or logged; ``prefix`` (its first characters) tells keys
apart in lists.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from legato.errors import Conflict, Invalid, NotFound
from legato.store import audit
from legato.store.schema import api_keys
from legato.store.status import KeyRole

KEY_PREFIX = "lg_"
SHOWN = 10  # characters of a key kept as its prefix: lg_ and 7 random ones
NAME_LIMIT = 128


@dataclass(frozen=True)
class ApiKey:
    """A key as stored: never the secret."""

    id: int
    name: str
    role: KeyRole
    prefix: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    @property
    def live(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "role": self.role.value, "prefix": self.prefix,
            "created_at": self.created_at.isoformat(), "created_by": self.created_by,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _key(row: Any) -> ApiKey:
    return ApiKey(row.id, row.name, KeyRole(row.role), row.prefix, row.created_at, row.created_by, row.revoked_at)


def role_of(text: str) -> KeyRole:
    try:
        return KeyRole(text)
    except ValueError:
        raise Invalid(f"'{text}' is not a role", hint="use one of: " + ", ".join(r.value for r in KeyRole)) from None


def create(engine: Engine, name: str, role: KeyRole, *, by: str, now: datetime) -> tuple[ApiKey, str]:
    """A new key and its secret, which is not kept and cannot be shown again."""
    name = name.strip()
    if not name or len(name) > NAME_LIMIT or any(ch.isspace() and ch != " " for ch in name):
        raise Invalid(f"the key name {name!r} must be 1 to {NAME_LIMIT} characters on one line", hint="name the key after the person or system that uses it")
    secret = KEY_PREFIX + secrets.token_urlsafe(30)
    with engine.begin() as connection:
        try:
            key_id = connection.execute(
                sa.insert(api_keys)
                .values(name=name, role=role.value, prefix=secret[:SHOWN], hash=digest(secret), created_at=now, created_by=by)
                .returning(api_keys.c.id)
            ).scalar_one()
        except IntegrityError:
            raise Conflict(f"a live key named {name!r} exists", hint=f"revoke it first (legato keys revoke {name}) or choose another name") from None
        audit.record(connection, now, by, "key_created", "api_key", str(key_id), {"name": name, "role": role.value})
        row = connection.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one()
    return _key(row), secret


def list_keys(engine: Engine, *, include_revoked: bool = False) -> list[ApiKey]:
    query = sa.select(api_keys).order_by(api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    with engine.connect() as connection:
        return [_key(row) for row in connection.execute(query)]


def revoke(engine: Engine, name: str, *, by: str, now: datetime) -> ApiKey:
    """Revoke the live key of that name; it is refused from the next request on."""
    with engine.begin() as connection:
        row = connection.execute(sa.select(api_keys).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))).first()
        if row is None:
            raise NotFound(f"no live key named {name!r}", hint="legato keys list shows the live keys")
        connection.execute(sa.update(api_keys).where(api_keys.c.id == row.id).values(revoked_at=now))
        audit.record(connection, now, by, "key_revoked", "api_key", str(row.id), {"name": name, "role": row.role})
        row = connection.execute(sa.select(api_keys).where(api_keys.c.id == row.id)).one()
    return _key(row)


# Built once: every request asks it, and building a statement and its cache key each time cost
# more than the indexed lookup itself.
_LIVE_BY_HASH = sa.select(api_keys).where(api_keys.c.hash == sa.bindparam("hash"), api_keys.c.revoked_at.is_(None))


def find(engine: Engine, secret: str) -> ApiKey | None:
    """The live key this secret is, or None (unknown, malformed or revoked).

    Asked of the store on every request (no cache), so a key revoked by any process is refused
    from the next request on."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 128:
        return None
    with engine.connect() as connection:
        row = connection.execute(_LIVE_BY_HASH, {"hash": digest(secret)}).first()
    return _key(row) if row is not None else None


_LIVE_BY_ID = sa.select(api_keys).where(api_keys.c.id == sa.bindparam("key_id"), api_keys.c.revoked_at.is_(None))


def find_by_id(engine: Engine, key_id: int) -> ApiKey | None:
    """The live key with this id, or None (revoked or gone): a console session names its key by id
    and asks at every request, so revoking the key ends its sessions too."""
    with engine.connect() as connection:
        row = connection.execute(_LIVE_BY_ID, {"key_id": key_id}).first()
    return _key(row) if row is not None else None
