"""The do-not-contact list's use cases: add, remove (who and why, audited) and list.

The list and its one form of addresses and numbers are owned by :mod:`legato.guard.contact`;
this is the layer the CLI calls now and the HTTP API will call next.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from legato.guard.contact import Suppression, add_suppression, list_suppressions, remove_suppression


def add(engine: Engine, kind: str, value: str, reason: str, *, by: str, now: datetime, country: str | None = None) -> str:
    return add_suppression(engine, kind, value, reason, now, country=country, by=by)


def remove(engine: Engine, kind: str, value: str, reason: str, *, by: str, now: datetime, country: str | None = None) -> Suppression:
    return remove_suppression(engine, kind, value, reason, by, now, country=country)


def listing(engine: Engine, *, kind: str | None = None, limit: int = 100) -> tuple[list[Suppression], int]:
    return list_suppressions(engine, kind=kind, limit=limit)
