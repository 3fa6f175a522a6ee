"""Every status column's values, one ``StrEnum`` per column, and the CHECK each column carries.

A member is a ``str``, so it binds to SQL as its value on SQLite and PostgreSQL alike and
compares equal to the text read back. Writers use the members; migrations 0011, 0013 and 0016 keep a CHECK
built from the same members (:func:`check`), so a value spelled any other way is refused by
the database itself.

A decision's ``route`` is what the cycle decided for it and never changes; its ``status``
starts at the same value and moves on (a queued proposal is approved and scheduled, a
scheduled message is sent). Both use one spelling: a route is the status a decision was
written with (:class:`Route` is that subset of :class:`DecisionStatus`).
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.sql.naming import conv


class DecisionStatus(StrEnum):
    NOTHING = "nothing"  # the policy chose to do nothing, or the customer was not worth contacting
    HOLDOUT = "holdout"  # the agent's own holdout: no message, kept for lift
    CONTROL = "control"  # the global control group: no marketing from any agent
    GATED = "gated"  # the uplift gate predicted too little uplift
    SUPPRESSED = "suppressed"  # a guardrail, the budget or reachability stopped the message
    QUEUED = "queued"  # waiting for a person in the review queue
    SCHEDULED = "scheduled"  # pending in the outbox
    SENT = "sent"
    FAILED = "failed"  # the dispatcher could not send it, or its provider reported it undelivered (the outbox row says why)
    REJECTED = "rejected"  # a reviewer refused it
    EXPIRED = "expired"  # nobody reviewed it in time


class Route(StrEnum):
    """What the cycle decided: the first status of every decision, in the same spelling."""

    NOTHING = DecisionStatus.NOTHING.value
    HOLDOUT = DecisionStatus.HOLDOUT.value
    CONTROL = DecisionStatus.CONTROL.value
    GATED = DecisionStatus.GATED.value
    SUPPRESSED = DecisionStatus.SUPPRESSED.value
    QUEUED = DecisionStatus.QUEUED.value  # stage 0, an escalation, or a stage-2 audit sample's proposal
    SCHEDULED = DecisionStatus.SCHEDULED.value


class OutboxStatus(StrEnum):
    """A message's life in the outbox (:mod:`legato.deliver.outbox` is its one writer):
    pending → claimed (a dispatcher's lease) → sent | retry (a transient error; due again
    later) | dead (a permanent error, or too many attempts; the reason is kept) | in doubt
    (a crash or a lost answer came between handing it to a provider that does not
    deduplicate and learning whether it took it; the channel's ``in_doubt: hold`` keeps it
    for a person). Pending and retrying messages can still be cancelled; a claimed one is on
    its way."""

    PENDING = "pending"  # due at send_at
    CLAIMED = "claimed"  # a dispatcher holds it until lease_expires_at (then anyone may claim it again)
    SENT = "sent"
    RETRY = "retry"  # an attempt failed for a passing reason: due again at next_attempt_at
    DEAD = "dead"  # never sent: a permanent error or the last attempt failed (error says why)
    CANCELLED = "cancelled"  # rejected, withdrawn, expired or opted out before it left
    IN_DOUBT = "in_doubt"  # handed over, answer unknown, held for a person (in_doubt: hold)


class DeliveryStatus(StrEnum):
    """What the provider reported about a message after it took it (``outbox.delivery``; NULL
    until a report comes; :func:`legato.deliver.outbox.record_delivery` is its one writer).
    A report never takes a message back: the first of delivered and failed stands (callbacks
    arrive out of order, and a late one is history, not news), and opened may follow delivered."""

    DELIVERED = "delivered"  # it reached the handset, the mailbox, the device
    OPENED = "opened"  # it reached the person: read (WhatsApp), the open pixel, a click
    FAILED = "failed"  # the provider could not deliver it: failed, undelivered, a hard bounce (error says why)


class ReviewStatus(StrEnum):
    OPEN = "open"
    AUDIT = "audit"  # a stage-2 sample shown to a person after the fact; its message was scheduled anyway
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    RESOLVED = "resolved"  # a conversation or finding a person dealt with (there is nothing to approve)


class ReviewKind(StrEnum):
    DECISION = "decision"  # a proposed message
    CONVERSATION = "conversation"  # a customer's reply that needs a person
    FINDING = "finding"  # something about an agent, such as a fairness breach


class InboundStatus(StrEnum):
    OPEN = "open"  # waiting for a person
    RESOLVED = "resolved"
    EXPIRED = "expired"  # nobody answered in time
    CLOSED = "closed"  # handled automatically (STOP, HELP, nothing to do)


class CycleStatus(StrEnum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


class AlertStatus(StrEnum):
    OPEN = "open"  # the incident is going on; one row per incident while open
    CLEARED = "cleared"  # it ended (a person resumed the agent; the series came back)


class AlertKind(StrEnum):
    STOP_LOSS = "stop_loss"  # a stop-loss rule paused the agent
    ANOMALY = "anomaly"  # a KPI series left its expected range


class AlertDeliveryStatus(StrEnum):
    PENDING = "pending"  # not tried yet, or failed for a passing reason and waiting for its next try
    SENDING = "sending"  # claimed by a deliverer (until its lease ends: then in doubt, sent again)
    SENT = "sent"  # the destination accepted it: never sent there again
    FAILED = "failed"  # refused for good, or still failing at give_up_after: a person looks


class AlertPhase(StrEnum):
    OPENED = "opened"  # the incident's alert
    CLEARED = "cleared"  # its follow-up: the incident ended


class AgentStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


class KeyRole(StrEnum):
    """What an API key may do (``legato.api.security`` maps each route to the roles it admits)."""

    VIEWER = "viewer"  # reads everything, changes nothing
    MARKETER = "marketer"  # steers: pauses, resumes, demotes agents; runs cycles; uploads playbooks; suppresses
    REVIEWER = "reviewer"  # reads, and acts on the review queue under the key's name
    ADMIN = "admin"  # everything a person may do, promotion on the trust ladder included
    INGEST = "ingest"  # only sends customers and events in (a Segment write key)


# (table, column) -> its enum: what migrations 0011/0013/0016 constrain and the conformance test reads.
COLUMNS: dict[tuple[str, str], type[StrEnum]] = {
    ("decisions", "status"): DecisionStatus,
    ("decisions", "route"): Route,
    ("outbox", "status"): OutboxStatus,
    ("outbox", "delivery"): DeliveryStatus,
    ("review_items", "status"): ReviewStatus,
    ("review_items", "kind"): ReviewKind,
    ("inbound_messages", "status"): InboundStatus,
    ("cycles", "status"): CycleStatus,
    ("agents", "status"): AgentStatus,
    ("api_keys", "role"): KeyRole,
    ("alerts", "status"): AlertStatus,
    ("alerts", "kind"): AlertKind,
    ("alert_deliveries", "status"): AlertDeliveryStatus,
    ("alert_deliveries", "phase"): AlertPhase,
}


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in enum)


def check_name(table: str, column: str) -> str:
    return f"ck_{table}_{column}"


def one_of(column: str, allowed: tuple[str, ...]) -> str:
    """A CHECK condition: ``column`` holds one of ``allowed``.

    Written as ``a = 'x' OR a = 'y'``, not ``a IN ('x', 'y')``: SQLite builds a temporary
    table for an IN list each time a statement runs, which cost about 1.6 µs per row and per
    CHECK on every insert (0.45 s of a 100,000-customer cycle); the OR chain costs nothing
    measurable. PostgreSQL treats both alike.
    """
    return "(" + " OR ".join(f"{column} = {value!r}" for value in allowed) + ")"


def check_sql(column: str, enum: type[StrEnum]) -> str:
    """The CHECK's condition: the column holds one of the enum's values."""
    return one_of(column, values(enum))


def check(table: str, column: str) -> sa.CheckConstraint:
    """The named CHECK constraint of one status column (schema and migration share it)."""
    # conv(): the name is final, the metadata's naming convention must not prefix it again.
    return sa.CheckConstraint(check_sql(column, COLUMNS[(table, column)]), name=conv(check_name(table, column)))
