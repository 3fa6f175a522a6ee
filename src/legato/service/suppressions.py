"""The do-not-contact list's use cases: add, remove (who and why, audited) and list.

The list and its one form of addresses and numbers are owned by :mod:`legato.guard.contact`;
this is the layer the CLI calls now and the HTTP API will call next.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from legato.guard.contact import SUPPRESSION_KINDS, UNDELIVERABLE, Suppression, add_suppression, list_entry, list_suppressions, remove_suppression

# What a person may list (``undeliverable`` entries come from hard bounces; a person may only take them off).
KINDS = SUPPRESSION_KINDS
LISTED_KINDS = (*SUPPRESSION_KINDS, UNDELIVERABLE)


def add(engine: Engine, kind: str, value: str, reason: str, *, by: str, now: datetime, country: str | None = None) -> str:
    return add_suppression(engine, kind, value, reason, now, country=country, by=by)


def add_entry(
    engine: Engine, kind: str, value: str, reason: str, *, by: str, now: datetime, country: str | None = None
) -> tuple[Suppression, bool]:
    """The entry as listed, and whether it is new (listed already: unchanged, its own reason kept)."""
    return list_entry(engine, kind, value, reason, now, country=country, by=by)


def remove(engine: Engine, kind: str, value: str, reason: str, *, by: str, now: datetime, country: str | None = None) -> Suppression:
    return remove_suppression(engine, kind, value, reason, by, now, country=country)


def listing(engine: Engine, *, kind: str | None = None, limit: int = 100) -> tuple[list[Suppression], int]:
    return list_suppressions(engine, kind=kind, limit=limit)
