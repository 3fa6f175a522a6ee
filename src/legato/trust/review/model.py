"""What a review item is: its statuses and kinds, the error every review action raises, and
the two views of an item a reviewer reads (a queue line and the full detail)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from legato.errors import Conflict, Forbidden, Invalid, LegatoError, NotFound
from legato.guard.content import Finding
from legato.guard.redact import mask
from legato.store.status import ReviewKind, ReviewStatus

# Short names for the enum members (legato.store.status), which every writer uses.
OPEN, AUDIT, APPROVED = ReviewStatus.OPEN, ReviewStatus.AUDIT, ReviewStatus.APPROVED
REJECTED, EXPIRED, RESOLVED = ReviewStatus.REJECTED, ReviewStatus.EXPIRED, ReviewStatus.RESOLVED
STATUSES = tuple(s.value for s in ReviewStatus)
DECISION, CONVERSATION, FINDING = ReviewKind.DECISION, ReviewKind.CONVERSATION, ReviewKind.FINDING
KINDS = tuple(k.value for k in ReviewKind)
UNDECIDED = (OPEN, AUDIT)
REASON_CODES = ("off_brand", "wrong_audience", "wrong_offer", "compliance", "timing", "other")
DEFAULT_SLA_HOURS = 48.0
# A customer who wrote in waits for an answer: a day unless the playbook says otherwise.
CONVERSATION_SLA_HOURS = 24.0
# An escalated item moves above the stage-0 backlog (priority 50) and content escalations (70).
ESCALATION_STEP = 25
MAX_PRIORITY = 100
MAX_LIMIT = 1000
SLA_ACTOR = "sla"
LIST_HINT = "see the queue with `legato review list`"


class ReviewError(LegatoError):
    """A review action that cannot be done as asked; nothing was changed.

    Raised as one of the four kinds below, so a caller can map it without reading the text.
    """


class ReviewInvalid(ReviewError, Invalid):
    """The request is wrong for this item: an empty name, an unknown reason, an edit that fails the checks."""


class ReviewNotFound(ReviewError, NotFound):
    """There is no such review item."""


class ReviewConflict(ReviewError, Conflict):
    """The item's state refuses it: already decided, expired, changed since it was read."""


class ReviewForbidden(ReviewError, Forbidden):
    """Not this reviewer: self-approval of one's own edit when the playbook forbids it."""


@dataclass(frozen=True)
class QueueFilter:
    """Which items of the queue: every field that is set must hold.

    ``reason`` matches the reason itself or its family (``escalate`` matches
    ``escalate:high_value``); ``older_than`` keeps items created at least that long before
    ``now``; ``variant`` keeps decisions whose content hash is this one (what a reviewer saw
    in ``show``), the way to act on every item proposing one message.
    """

    status: str = OPEN
    agent: str | None = None
    role: str | None = None
    kind: str | None = None
    reason: str | None = None
    min_priority: int | None = None
    older_than: timedelta | None = None
    now: datetime | None = None
    variant: str | None = None

    def described(self) -> str:
        """The filter as the flags that give it, for hints and headers."""
        parts = [f"--status {self.status}"] if self.status != OPEN else []
        for flag, value in (("--agent", self.agent), ("--role", self.role), ("--kind", self.kind), ("--reason", self.reason),
                            ("--min-priority", self.min_priority), ("--variant", self.variant)):
            if value is not None:
                parts.append(f"{flag} {value}")
        if self.older_than is not None:
            parts.append(f"--older-than {self.older_than.total_seconds() / 3600:g}")
        return " ".join(parts)


@dataclass(frozen=True)
class QueuePage:
    """A page of the queue, how many items the filter matches in all (-1: not counted), and the cursor of the next page."""

    items: list[QueueItem]
    total: int
    next_cursor: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "next_cursor": self.next_cursor, "items": [item.to_dict() for item in self.items]}


@dataclass(frozen=True)
class QueueItem:
    """One review item with the facts a reviewer scans a list by.

    ``decision_id`` is set for decisions, ``inbound_message_id`` for conversations; a finding
    has neither (and no customer). ``agent_id`` is the proposing agent, for a conversation
    the agent whose message the customer last received (if any), for a finding the agent it
    is about. ``evidence`` is what made the item: the reply's excerpt, sentiment, intents and
    matched rule; a finding's numbers.
    """

    id: int
    kind: str
    decision_id: int | None
    inbound_message_id: int | None
    agent_id: str | None
    customer_id: str | None
    channel: str | None
    creative_id: str | None
    offer_id: str | None
    send_at: datetime | None
    reason: str
    priority: int
    status: str
    created_at: datetime
    due_at: datetime | None
    assigned_role: str | None
    decided_by: str | None
    decided_at: datetime | None
    content_hash: str | None
    edited: bool
    evidence: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ItemDetail:
    """Everything a reviewer needs to decide on one item.

    ``content`` is the message rendered for this customer exactly as the dispatcher would
    (same context; the unsubscribe token is a preview until the item is approved) and
    ``findings`` are the one check's findings on it (:mod:`legato.guard.message`): the
    variant's, and what this customer's copy adds. ``standing`` is why the customer could
    not be sent it now (suppression list, contact point, consent), None when they could.
    The message is rendered from the playbook version the decision was made with (stored by
    its cycle), so it is what the hash stands for and what will be sent, whatever playbook
    file is given. ``matches_playbook`` says whether a given playbook file still holds the
    same creative (False: the file changed since; what is shown and sent is still the
    decision's own); without a file, whether the decision's version does. A conversation has ``message`` (what the customer
    wrote) and no decision; a finding has neither. ``evidence`` is the item's own, or for a
    decision escalated by a company value, the value's statement from the playbook.
    """

    item: QueueItem
    decision: dict[str, Any] | None
    content_hash: str | None
    override: dict[str, Any] | None
    content: dict[str, str | None] | None
    render_error: str | None
    findings: list[dict[str, Any]]
    matches_playbook: bool | None
    outbox: dict[str, Any] | None
    history: list[dict[str, Any]]
    message: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None
    standing: str | None = None
    why: dict[str, Any] | None = None  # the audience and the customer's values of the fields it reads (queue.why_chosen)
    # The message's templates as they stand (the creative, or a reviewer's edit of it): what an editor starts from.
    template: dict[str, str | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item.to_dict(),
            "why": self.why,
            "decision": jsonable(self.decision) if self.decision is not None else None,
            "message": jsonable(self.message) if self.message is not None else None,
            "evidence": self.evidence,
            "content_hash": self.content_hash,
            "override": self.override,
            "content": self.content,
            "render_error": self.render_error,
            "findings": self.findings,
            "matches_playbook": self.matches_playbook,
            "outbox": jsonable(self.outbox) if self.outbox else None,
            "history": [jsonable(h) for h in self.history],
            "standing": self.standing,
        }


def audit_subject(row: Any) -> dict[str, Any]:
    """What an audit row of the item names. Only decisions count in their agent's track record
    (read by ``detail.agent``), so a conversation or finding names its agent otherwise."""
    if row.kind == DECISION:
        return {"agent": row.agent_id, "decision": row.decision_id}
    return {"kind": row.kind, "about_agent": row.agent_id, "inbound_message": row.inbound_message_id}


def queue_item(row: Row[Any]) -> QueueItem:
    values = {name: getattr(row, name) for name in QueueItem.__dataclass_fields__}
    return QueueItem(**values | {"edited": bool(values["edited"]), "evidence": masked_evidence(values["evidence"])})


# What a customer wrote, in an item's evidence: masked when shown, for items stored before
# replies were masked on the way in (masking what is already masked changes nothing).
CUSTOMER_TEXT = ("excerpt", "phrases")


def masked_evidence(evidence: Any) -> Any:
    if not isinstance(evidence, Mapping) or not any(key in evidence for key in CUSTOMER_TEXT):
        return evidence
    return {key: masked_text(value) if key in CUSTOMER_TEXT else value for key, value in evidence.items()}


def masked_text(value: Any) -> Any:
    """A customer's text (or a list of pieces of it) with personal data masked (:mod:`legato.guard.redact`)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [mask(v) if isinstance(v, str) else v for v in value]
    return value


def finding_dict(finding: Finding) -> dict[str, Any]:
    return {"rule": finding.rule, "family": finding.family, "severity": finding.severity, "span": list(finding.span), "reason": finding.reason}


def person_name(value: str, what: str) -> str:
    if not value or not value.strip():
        raise ReviewInvalid(f"the {what} name is empty", hint=f"say who acts: --{what} NAME")
    return value.strip()


def jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
