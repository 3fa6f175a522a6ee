"""Due dates of review items (the SLA per reason) and the expiry of those nobody handled in time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.monitor import metrics
from legato.deliver import outbox as outbox_writer
from legato.store.audit import Entry, record_many
from legato.store.schema import decisions, inbound_messages, review_items
from legato.store.status import DecisionStatus, InboundStatus, OutboxStatus, ReviewKind
from legato.trust.optout import POSSIBLE_OPT_OUT
from legato.trust.review import counts
from legato.trust.review.model import DEFAULT_SLA_HOURS, EXPIRED, OPEN, SLA_ACTOR, audit_subject


def due_at_for(reason: str, created_at: datetime, sla_hours: Mapping[str, float], default: float = DEFAULT_SLA_HOURS) -> datetime:
    """When an item raised for ``reason`` expires unsent: its SLA in hours, 48 by default.

    A reason with a qualifier (``value:honesty``) takes its own SLA if there is one, else
    that of its family (``value``), since SLA keys are plain identifiers.
    """
    family = reason.split(":", 1)[0]
    return created_at + timedelta(hours=float(sla_hours.get(reason, sla_hours.get(family, default))))


def assign_due_dates(connection: Connection, sla_hours: Mapping[str, float] | None = None) -> int:
    """Give every open item without a due date one, from its reason and creation time.

    Items of one cycle page share (reason, created_at), so this is one UPDATE per distinct
    pair, not per item. Returns how many items got a due date.
    """
    pairs = connection.execute(
        sa.select(review_items.c.reason, review_items.c.created_at)
        .where(review_items.c.status == OPEN, review_items.c.due_at.is_(None))
        .distinct()
    ).all()
    if not pairs:
        return 0
    result = connection.execute(
        sa.update(review_items)
        .where(
            review_items.c.status == OPEN,
            review_items.c.due_at.is_(None),
            review_items.c.reason == sa.bindparam("r"),
            review_items.c.created_at == sa.bindparam("c"),
        )
        .values(due_at=sa.bindparam("due")),
        [{"r": reason, "c": created, "due": due_at_for(reason, created, sla_hours or {})} for reason, created in pairs],
    )
    return int(result.rowcount or 0)


def expire_overdue(engine: Engine, now: datetime, *, sla_hours: Mapping[str, float] | None = None) -> int:
    """Expire every open item past its due date; nothing of it is sent. Returns how many.

    Items without a due date get one first (:func:`assign_due_dates`, with ``sla_hours``).
    Their decisions become "expired", any pending outbox row is cancelled, and each item
    gets an audit row. A conversation's inbound message is marked expired too: nobody
    answered in time, which the log records, and agents may contact the customer again.
    Meant to run once per cycle. A possible opt-out (``POSSIBLE_OPT_OUT``) does not expire.
    """
    with engine.begin() as connection:
        assign_due_dates(connection, sla_hours)
        expired = connection.execute(
            sa.update(review_items)
            # A reply that may be an opt-out is never decided by the clock: it stays open, and
            # marketing to the customer stays paused, until a person says what it was.
            .where(review_items.c.status == OPEN, review_items.c.due_at <= now, review_items.c.reason != POSSIBLE_OPT_OUT)
            .values(status=EXPIRED, decided_by=SLA_ACTOR, decided_at=now)
            .returning(
                review_items.c.id, review_items.c.kind, review_items.c.decision_id, review_items.c.inbound_message_id,
                review_items.c.agent_id, review_items.c.due_at, review_items.c.content_hash,
                review_items.c.assigned_role, review_items.c.reason, review_items.c.priority, review_items.c.status,
                review_items.c.created_at,
            )
        ).all()
        if not expired:
            return 0
        left: Counter[counts.Key] = Counter()
        for row in expired:  # RETURNING gives the new status: each item left its open key for the expired one
            left[counts.key_of(row, status=OPEN)] -= 1
            left[counts.key_of(row)] += 1
        counts.add(connection, left)
        keys = metrics.keys_for(connection, [row.decision_id for row in expired if row.decision_id is not None and row.kind == ReviewKind.DECISION])
        tally = metrics.Tally()
        for row in expired:
            if row.decision_id in keys:
                metrics.count_review(tally, keys[row.decision_id], row.created_at, row.status, now, 1)
        metrics.add(connection, tally)
        ids = [{"d": row.decision_id} for row in expired if row.decision_id is not None]
        if ids:
            outbox_writer.cancel_for_decisions(connection, [i["d"] for i in ids])
            connection.execute(
                sa.update(decisions)
                .where(decisions.c.id == sa.bindparam("d"), decisions.c.status != DecisionStatus.SENT, decisions.c.status != DecisionStatus.FAILED)
                .values(status=DecisionStatus.EXPIRED),
                ids,
            )
        messages = [{"m": row.inbound_message_id} for row in expired if row.inbound_message_id is not None]
        if messages:
            connection.execute(
                sa.update(inbound_messages).where(inbound_messages.c.id == sa.bindparam("m"), inbound_messages.c.status == InboundStatus.OPEN).values(status=InboundStatus.EXPIRED),
                messages,
            )
        record_many(
            connection,
            [
                Entry(now, SLA_ACTOR, "review_expired", "review_item", str(row.id), {**audit_subject(row), "due_at": row.due_at.isoformat()},
                      row.content_hash, row.content_hash)
                for row in expired
            ],
        )
        return len(expired)
