"""The review queue's use cases: read it a page at a time, act on one item as a named
person, or on every item a filter matches, one item at a time.

Whether the person who edited a message may also approve it is decided by
``legato.trust.review.actions.approve`` (the caller's word, else the decision's playbook
version and the given playbook); the faces pass the caller's word through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from legato.guard.content import Finding
from legato.playbook.models import Playbook
from legato.trust import review
from legato.trust.review import ItemDetail, QueueItem
from legato.trust.review.actions import DraftCheck, Unlocked, unlocked_by
from legato.trust.review.actions import check_edit as _check_edit
from legato.trust.review.model import DECISION, QueueFilter, QueuePage, ReviewError, ReviewInvalid
from legato.trust.review.queue import breakdown, list_page, matching, neighbours

# Acting on more than this many items at once is refused: page through the filter instead.
BULK_LIMIT = 1000


@dataclass(frozen=True)
class Approval:
    """An approved item and what the approval unlocked at stage 1 (None: nothing beyond this message)."""

    item: QueueItem
    unlocked: Unlocked | None


@dataclass
class Bulk:
    """What acting on a filter did: the items done, and each item refused with why (nothing of it changed)."""

    done: list[QueueItem] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)
    unlocked: list[Unlocked] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": [item.to_dict() for item in self.done],
            "refused": [{"item": item, "why": why} for item, why in self.refused],
            "unlocked": [u.to_dict() for u in self.unlocked],
        }


def queue(
    engine: Engine, *, status: str = "open", limit: int = 100, agent: str | None = None, role: str | None = None, kind: str | None = None
) -> list[QueueItem]:
    return review.list_items(engine, status=status, limit=limit, agent=agent, role=role, kind=kind)


def page(engine: Engine, where: QueueFilter, *, limit: int = 100, after: str | None = None) -> QueuePage:
    return list_page(engine, where, limit=limit, after=after)


def around(engine: Engine, where: QueueFilter, item: QueueItem) -> tuple[int | None, int | None]:
    """The items before and after ``item`` in the filtered queue (working through it one by one)."""
    return neighbours(engine, where, item)


def totals(engine: Engine, status: str = "open") -> dict[str, dict[str, int]]:
    """The queue's items of ``status`` by reason, agent and kind (from the kept counts)."""
    return breakdown(engine, status)


def show(engine: Engine, item_id: int, *, playbook: Playbook | None = None, now: datetime | None = None) -> ItemDetail:
    return review.show_item(engine, item_id, playbook=playbook, now=now)


def approve(
    engine: Engine,
    item_id: int,
    reviewer: str,
    *,
    now: datetime,
    content_hash: str | None,
    playbook: Playbook | None = None,
    allow_self_approval: bool | None = None,
) -> Approval:
    done = review.approve(
        engine, item_id, reviewer, content_hash=content_hash, now=now, playbook=playbook,
        # None: the decision's playbook version decides (and the given playbook's too).
        allow_self_approval=allow_self_approval,
    )
    return Approval(done, unlocked_by(engine, done.id))


def approve_matching(
    engine: Engine,
    where: QueueFilter,
    reviewer: str,
    *,
    now: datetime,
    limit: int = BULK_LIMIT,
    playbook: Playbook | None = None,
    allow_self_approval: bool | None = None,
) -> Bulk:
    """Approve every decision the filter matches, each on its own.

    Each item is approved with the content hash it had when the filter was read and goes
    through every check one approval does (content, standing, self-approval), in its own
    transaction with its own audit row; an item that fails is listed with why and the rest
    go on. ``where.variant`` (a content hash from ``show``) limits it to one message.
    """
    result = Bulk()
    unlocked: dict[tuple[str, str | None, str | None], Unlocked] = {}
    for item in _decisions(engine, where, limit):
        try:
            done = review.approve(
                engine, item.id, reviewer, content_hash=item.content_hash, now=now, playbook=playbook, allow_self_approval=allow_self_approval
            )
        except ReviewError as error:
            result.refused.append((item.id, str(error)))
            continue
        result.done.append(done)
        if (u := unlocked_by(engine, done.id)) is not None:
            unlocked[(u.agent_id, u.creative_id, u.offer_id)] = u
    result.unlocked = list(unlocked.values())
    return result


def reject_matching(
    engine: Engine, where: QueueFilter, reviewer: str, reason: str, *, now: datetime, note: str | None = None, limit: int = BULK_LIMIT
) -> Bulk:
    """Reject every decision the filter matches, each on its own (own transaction, own audit row)."""
    result = Bulk()
    for item in _decisions(engine, where, limit):
        try:
            result.done.append(review.reject(engine, item.id, reviewer, reason, note=note, now=now))
        except ReviewError as error:
            result.refused.append((item.id, str(error)))
    return result


@dataclass(frozen=True)
class VariantCount:
    """How many items of a bulk action propose one creative with one offer."""

    creative_id: str | None
    offer_id: str | None
    items: int

    def to_dict(self) -> dict[str, Any]:
        return {"creative_id": self.creative_id, "offer_id": self.offer_id, "items": self.items}


def variants(items: list[QueueItem]) -> list[VariantCount]:
    """What ``items`` propose, by creative and offer, most items first (a bulk action's preview)."""
    counted: dict[tuple[str | None, str | None], int] = {}
    for item in items:
        counted[(item.creative_id, item.offer_id)] = counted.get((item.creative_id, item.offer_id), 0) + 1
    return [VariantCount(creative, offer, n) for (creative, offer), n in sorted(counted.items(), key=lambda kv: -kv[1])]


def preview_matching(engine: Engine, where: QueueFilter, *, limit: int = BULK_LIMIT) -> list[QueueItem]:
    """What :func:`approve_matching` or :func:`reject_matching` would act on; changes nothing."""
    return _decisions(engine, where, limit)


def _decisions(engine: Engine, where: QueueFilter, limit: int) -> list[QueueItem]:
    if where.kind not in (None, DECISION):
        raise ReviewInvalid(f"only proposed messages are approved or rejected, not {where.kind} items", hint="resolve those one at a time")
    if not 1 <= limit <= BULK_LIMIT:
        raise ReviewInvalid(f"--limit {limit} is out of range", hint=f"act on 1 to {BULK_LIMIT} items at a time")
    if where.agent is None and where.reason is None and where.variant is None:
        raise ReviewInvalid(
            "acting on many items needs a filter that narrows the queue", hint="give --agent, --reason or --variant (a content hash from `show`)"
        )
    return matching(engine, QueueFilter(**{**where.__dict__, "kind": DECISION}), limit=limit)


def edit(
    engine: Engine, item_id: int, reviewer: str, *, playbook: Playbook | None = None, now: datetime, subject: str | None = None, body: str | None = None
) -> tuple[QueueItem, list[Finding]]:
    return review.edit(engine, item_id, reviewer, playbook=playbook, subject=subject, body=body, now=now)


def check_edit(engine: Engine, item_id: int, *, playbook: Playbook | None = None, subject: str | None = None, body: str | None = None) -> DraftCheck:
    """A draft of an edit checked as :func:`edit` would check it; nothing is saved (checking as one types)."""
    return _check_edit(engine, item_id, playbook=playbook, subject=subject, body=body)


def reject(engine: Engine, item_id: int, reviewer: str, reason: str, *, now: datetime, note: str | None = None) -> QueueItem:
    return review.reject(engine, item_id, reviewer, reason, note=note, now=now)


def escalate(engine: Engine, item_id: int, reviewer: str, *, to_role: str, note: str, now: datetime) -> QueueItem:
    return review.escalate(engine, item_id, reviewer, to_role=to_role, note=note, now=now)


def resolve(engine: Engine, item_id: int, reviewer: str, *, note: str, now: datetime) -> QueueItem:
    return review.resolve(engine, item_id, reviewer, note=note, now=now)


def withdraw(engine: Engine, item_id: int, reviewer: str, *, now: datetime) -> QueueItem:
    return review.withdraw(engine, item_id, reviewer, now)
