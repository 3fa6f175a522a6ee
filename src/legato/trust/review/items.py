"""The one writer that puts items into the review queue.

The cycle (proposals and audit samples, a page at a time), replies that need a person
(:mod:`legato.trust.inbound`) and fairness findings (:mod:`legato.monitor.fairness`) all
open items here, so every item gets the same checks (what a kind must point at, which
statuses an item may start in) and the same due date rule (the SLA per reason; a
conversation's default is a day).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.bulk import insert_many
from legato.store.schema import review_items
from legato.store.status import ReviewKind, ReviewStatus
from legato.trust.review import counts
from legato.trust.review.due import due_at_for
from legato.trust.review.model import CONVERSATION_SLA_HOURS, DEFAULT_SLA_HOURS


@dataclass(frozen=True)
class NewItem:
    """An item to open: a conversation (``inbound_message_id``) or a finding (neither id)."""

    kind: ReviewKind
    reason: str
    priority: int
    created_at: datetime
    agent_id: str | None = None
    inbound_message_id: int | None = None
    assigned_role: str | None = None
    evidence: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DecisionItem:
    """A proposal a person must see (``open``) or a sent message sampled for an audit (``audit``)."""

    decision_id: int
    agent_id: str
    reason: str
    priority: int
    status: ReviewStatus
    content_hash: str | None
    evidence: Mapping[str, Any] | None = None


def open_item(connection: Connection, item: NewItem, sla_hours: Mapping[str, float]) -> int:
    """Queue one conversation or finding, due by its reason's SLA; returns its id."""
    if item.kind == ReviewKind.DECISION:
        raise ValueError("decisions are queued with open_decision_items, with their content hash")
    if (item.kind == ReviewKind.CONVERSATION) != (item.inbound_message_id is not None):
        raise ValueError(f"a {item.kind.value} item {'needs' if item.kind == ReviewKind.CONVERSATION else 'has no'} inbound message")
    default = CONVERSATION_SLA_HOURS if item.kind == ReviewKind.CONVERSATION else DEFAULT_SLA_HOURS
    values = {
        "kind": item.kind, "decision_id": None, "inbound_message_id": item.inbound_message_id, "agent_id": item.agent_id,
        "reason": item.reason, "priority": item.priority, "status": ReviewStatus.OPEN, "created_at": item.created_at,
        "due_at": due_at_for(item.reason, item.created_at, sla_hours, default=default),
        "assigned_role": item.assigned_role, "evidence": dict(item.evidence) if item.evidence is not None else None,
    }
    item_id = int(connection.execute(sa.insert(review_items).values(**values).returning(review_items.c.id)).scalar_one())
    counts.entered(connection, [counts.key_of(values)])
    return item_id


def open_decision_items(connection: Connection, items: Sequence[DecisionItem], now: datetime, sla_hours: Mapping[str, float]) -> None:
    """Queue a page of decisions in one bulk insert; an open item is due by its reason's SLA.

    An audit sample went out already, so it has no due date.
    """
    if not items:
        return
    for item in items:
        if item.status not in (ReviewStatus.OPEN, ReviewStatus.AUDIT):
            raise ValueError(f"a decision enters the queue open or as an audit sample, not {item.status}")
    due = {reason: due_at_for(reason, now, sla_hours) for reason in {item.reason for item in items}}
    rows = [
        (
            item.decision_id, ReviewKind.DECISION.value, item.agent_id, item.reason, item.priority, ReviewStatus(item.status).value, now,
            due[item.reason] if item.status == ReviewStatus.OPEN else None,
            item.content_hash, json.dumps(item.evidence) if item.evidence is not None else None,
        )
        for item in items
    ]
    insert_many(
        connection, review_items,
        ["decision_id", "kind", "agent_id", "reason", "priority", "status", "created_at", "due_at", "content_hash", "evidence"], rows,
    )
    counts.entered(connection, ((item.status, ReviewKind.DECISION, item.agent_id, None, item.reason, item.priority) for item in items))
