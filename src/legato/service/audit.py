"""The audit log read back: who did what, to which thing, when, a page at a time.

The log has one writer (:mod:`legato.store.audit`); every face that shows it (the web
console's audit page) calls these. What a customer wrote, quoted in a row's evidence (a
reply that escalated), is masked as the review queue masks it: the log keeps what was
recorded, a reader sees no more personal data than the review inbox shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from sqlalchemy import Engine

from legato.errors import Invalid
from legato.store import audit
from legato.store.audit import AuditFilter, Logged
from legato.trust.review.model import masked_evidence, masked_text

MAX_LIMIT = 500

__all__ = ["AuditFilter", "AuditPage", "Logged", "search", "kinds"]


@dataclass(frozen=True)
class AuditPage:
    items: list[Logged]
    next_before: int | None  # pass as ``before`` for the next (older) page; None on the last


@dataclass(frozen=True)
class Kinds:
    """What a filter can choose from: every action and every kind of entity in the log."""

    actions: list[str]
    entities: list[str]


def search(engine: Engine, where: AuditFilter, *, limit: int = 50, before: int | None = None) -> AuditPage:
    """One page of the rows ``where`` matches, newest first, and the next page's cursor."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit {limit} is out of range", hint=f"ask for 1 to {MAX_LIMIT} audit rows at a time")
    if before is not None and not 1 <= before < 2**31:
        raise Invalid(f"'{before}' is not a page cursor", hint="use the next page link the previous page gave")
    with engine.connect() as connection:
        rows = audit.entries(connection, where, limit=limit + 1, before=before)
    items = [_masked(row) for row in rows[:limit]]
    return AuditPage(items, items[-1].id if len(rows) > limit else None)


def kinds(engine: Engine) -> Kinds:
    with engine.connect() as connection:
        return Kinds(audit.actions(connection), audit.entity_kinds(connection))


CUSTOMER_TEXT = ("excerpt", "text", "phrases")  # what a customer wrote, where a row quotes it (as the review history masks it)


def _masked(row: Logged) -> Logged:
    if not any(key in row.detail for key in ("evidence", *CUSTOMER_TEXT)):
        return row
    detail = {key: masked_text(value) if key in CUSTOMER_TEXT else value for key, value in row.detail.items()}
    if "evidence" in detail:
        evidence = detail["evidence"]
        detail["evidence"] = masked_evidence(evidence) if isinstance(evidence, Mapping) else masked_text(evidence)
    return replace(row, detail=detail)
