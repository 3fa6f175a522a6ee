"""The review queue's use cases: read it, and act on one item as a named person.

Whether the person who edited a message may also approve it is decided by
``legato.trust.review.actions.approve`` (the caller's word, else the decision's playbook
version and the given playbook); the faces pass the caller's word through.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from legato.guard.content import Finding
from legato.playbook.models import Playbook
from legato.trust import review
from legato.trust.review import ItemDetail, QueueItem


def queue(
    engine: Engine, *, status: str = "open", limit: int = 100, agent: str | None = None, role: str | None = None, kind: str | None = None
) -> list[QueueItem]:
    return review.list_items(engine, status=status, limit=limit, agent=agent, role=role, kind=kind)


def show(engine: Engine, item_id: int, *, playbook: Playbook | None = None, now: datetime | None = None) -> ItemDetail:
    return review.show_item(engine, item_id, playbook=playbook, now=now)


def approve(
    engine: Engine,
    item_id: int,
    reviewer: str,
    *,
    now: datetime,
    content_hash: str | None = None,
    playbook: Playbook | None = None,
    allow_self_approval: bool | None = None,
) -> QueueItem:
    return review.approve(
        engine, item_id, reviewer, content_hash=content_hash, now=now, playbook=playbook,
        # None: the decision's playbook version decides (and the given playbook's too).
        allow_self_approval=allow_self_approval,
    )


def edit(
    engine: Engine, item_id: int, reviewer: str, *, playbook: Playbook | None = None, now: datetime, subject: str | None = None, body: str | None = None
) -> tuple[QueueItem, list[Finding]]:
    return review.edit(engine, item_id, reviewer, playbook=playbook, subject=subject, body=body, now=now)


def reject(engine: Engine, item_id: int, reviewer: str, reason: str, *, now: datetime, note: str | None = None) -> QueueItem:
    return review.reject(engine, item_id, reviewer, reason, note=note, now=now)


def escalate(engine: Engine, item_id: int, reviewer: str, *, to_role: str, note: str, now: datetime) -> QueueItem:
    return review.escalate(engine, item_id, reviewer, to_role=to_role, note=note, now=now)


def resolve(engine: Engine, item_id: int, reviewer: str, *, note: str, now: datetime) -> QueueItem:
    return review.resolve(engine, item_id, reviewer, note=note, now=now)


def withdraw(engine: Engine, item_id: int, reviewer: str, *, now: datetime) -> QueueItem:
    return review.withdraw(engine, item_id, reviewer, now)
