"""The review queue: what a person approves, edits, rejects, escalates, withdraws or resolves.

One queue holds three kinds of item (``review_items.kind``):

- ``decision``: a message an agent proposes (or sent, for an after-the-fact audit sample).
  It is approved, edited, rejected, escalated or withdrawn.
- ``conversation``: a customer's reply that needs a person (:mod:`legato.trust.inbound`).
  There is no message of ours to approve: a person answers the customer and *resolves* the
  item with a note; agents leave the customer alone while it is open.
- ``finding``: something about an agent a person must look at, such as a fairness audit
  breach (:mod:`legato.monitor.fairness`). It is resolved with a note too.

All kinds share priority, due dates (the SLA per reason; an item not handled in time
expires and that is recorded), assignment by role and escalation.

Each function is one transaction over an :class:`~sqlalchemy.Engine` and writes one
append-only ``audit_log`` row (entity ``review_item``) whose ``before_hash``/``after_hash``
are the content hashes, so the log shows which content each person acted on.

**The content hash** of a decision is :func:`legato.deliver.render.variant_hash` of its
creative and offer, before personalization; a reviewer's edit replaces the creative's
subject/title/body with templates kept in ``decisions.content_override`` and the hash is
recomputed over them. An approval names the hash the reviewer saw, so content that changed
in between (an edit by someone else) is never approved unseen.

**State changes are compare-and-set**: each one updates the item only if it is still in
the state that was read, and fails as a whole otherwise, so two reviewers acting on the same
item at once cannot both win. Every error is a :class:`ReviewError` naming the item and
leaves nothing changed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, Row

from legato.deliver.dispatch import customer_context, edited_creative, message_context, message_token
from legato.deliver.render import CreativeTemplate, RenderError, variant_hash
from legato.errors import LegatoError
from legato.guard.content import ContentChecker, Finding, Message, verdict
from legato.playbook.models import Creative, Playbook
from legato.store.schema import audit_log, customers, decisions, inbound_messages, outbox, review_items
from legato.trust.escalation import evidence_for_reason

OPEN, AUDIT, APPROVED, REJECTED, EXPIRED, RESOLVED = "open", "audit", "approved", "rejected", "expired", "resolved"
# "audit": a stage-2 sample shown to a person after the fact; its message was scheduled anyway.
# "resolved": a conversation or finding a person dealt with (there is nothing to approve).
STATUSES = (OPEN, AUDIT, APPROVED, REJECTED, EXPIRED, RESOLVED)
DECISION, CONVERSATION, FINDING = "decision", "conversation", "finding"
KINDS = (DECISION, CONVERSATION, FINDING)
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
PREVIEW_TOKEN = "preview"  # the unsubscribe token before the message has an outbox row
_LIST_HINT = "see the queue with `legato review list`"


class ReviewError(LegatoError):
    """A review action that cannot be done as asked; nothing was changed."""


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
    ``findings`` are the content checks on it. ``matches_playbook`` is False when the
    playbook's creative is no longer the one the decision was made with: what is rendered
    then is not what the hash stands for. A conversation has ``message`` (what the customer
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item.to_dict(),
            "decision": _jsonable(self.decision) if self.decision is not None else None,
            "message": _jsonable(self.message) if self.message is not None else None,
            "evidence": self.evidence,
            "content_hash": self.content_hash,
            "override": self.override,
            "content": self.content,
            "render_error": self.render_error,
            "findings": self.findings,
            "matches_playbook": self.matches_playbook,
            "outbox": _jsonable(self.outbox) if self.outbox else None,
            "history": [_jsonable(h) for h in self.history],
        }


# --- due dates ---------------------------------------------------------------------------


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


# --- reading -----------------------------------------------------------------------------

_ITEM_COLUMNS = (
    review_items.c.id,
    review_items.c.kind,
    review_items.c.decision_id,
    review_items.c.inbound_message_id,
    review_items.c.agent_id,
    sa.func.coalesce(decisions.c.customer_id, inbound_messages.c.customer_id).label("customer_id"),
    sa.func.coalesce(decisions.c.channel, inbound_messages.c.channel).label("channel"),
    decisions.c.creative_id,
    decisions.c.offer_id,
    decisions.c.send_at,
    review_items.c.reason,
    review_items.c.priority,
    review_items.c.status,
    review_items.c.created_at,
    review_items.c.due_at,
    review_items.c.assigned_role,
    review_items.c.decided_by,
    review_items.c.decided_at,
    review_items.c.content_hash,
    decisions.c.content_override.is_not(None).label("edited"),
    review_items.c.evidence,
)
_DECISION_FIELDS = ("id", "action", "decided_at", "propensity", "expected_value", "holdout", "findings", "route", "status", "approved_by")
_MESSAGE_FIELDS = ("id", "channel", "received_at", "text", "sentiment", "intents", "action", "status", "handled_by", "handled_at", "note")
# LEFT OUTER: an item has a decision, a message or neither. SQLite keeps the left table of an
# outer join as the outer loop, so the queue is still read off review_items' own index.
_FROM = review_items.outerjoin(decisions, decisions.c.id == review_items.c.decision_id).outerjoin(
    inbound_messages, inbound_messages.c.id == review_items.c.inbound_message_id
)


def queue_query(
    *, status: str = OPEN, limit: int = 100, agent: str | None = None, role: str | None = None, kind: str | None = None
) -> sa.Select[Any]:
    """The query behind :func:`list_items`: its order is the queue index's, so a page is read off it."""
    query = (
        sa.select(*_ITEM_COLUMNS)
        .select_from(_FROM)
        .order_by(review_items.c.priority.desc(), review_items.c.created_at, review_items.c.id)
        .limit(limit)
    )
    if status != "all":
        query = query.where(review_items.c.status == status)
    if agent is not None:
        query = query.where(review_items.c.agent_id == agent)
    if role is not None:
        query = query.where(review_items.c.assigned_role == role)
    if kind is not None:
        query = query.where(review_items.c.kind == kind)
    return query


def list_items(
    engine: Engine, *, status: str = OPEN, limit: int = 100, agent: str | None = None, role: str | None = None, kind: str | None = None
) -> list[QueueItem]:
    """The queue, highest priority first, then oldest first (``status="all"`` for every item).

    The order is the index ``ix_review_items_queue`` (status, priority DESC, created_at, id),
    so the first page is read straight off it however long the queue is.
    """
    if status != "all" and status not in STATUSES:
        raise ReviewError(f"unknown review status '{status}'", hint=f"use one of {', '.join(STATUSES)} or all")
    if kind is not None and kind not in KINDS:
        raise ReviewError(f"unknown kind of review item '{kind}'", hint=f"use one of {', '.join(KINDS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ReviewError(f"limit {limit} is out of range", hint=f"ask for 1 to {MAX_LIMIT} items at a time")
    query = queue_query(status=status, limit=limit, agent=agent, role=role, kind=kind)
    with engine.connect() as connection:
        return [_item(row) for row in connection.execute(query)]


def show_item(engine: Engine, item_id: int, *, playbook: Playbook | None = None) -> ItemDetail:
    """One item with its decision (or the customer's message), its history and evidence.

    Given the playbook, a decision's message is rendered as it would be sent, and a decision
    escalated by a company value shows the value's statement.
    """
    with engine.connect() as connection:
        row = _load(connection, item_id)
        customer = connection.execute(
            sa.select(customers.c.id, customers.c.email, customers.c.phone, customers.c.attributes).where(
                customers.c.id == row.customer_id
            )
        ).first() if row.customer_id is not None else None
        sent = connection.execute(
            sa.select(outbox.c.id, outbox.c.status, outbox.c.send_at, outbox.c.sent_at).where(outbox.c.decision_id == row.decision_id)
        ).first() if row.decision_id is not None else None
        history = connection.execute(
            sa.select(audit_log.c.at, audit_log.c.actor, audit_log.c.action, audit_log.c.detail, audit_log.c.before_hash, audit_log.c.after_hash)
            .where(audit_log.c.entity == "review_item", audit_log.c.entity_id == str(item_id))
            .order_by(audit_log.c.id)
        ).all()
    content = render_error = matches = None
    findings: list[dict[str, Any]] = []
    if playbook is not None and row.creative_id is not None:
        matches = row.content_override is not None or _playbook_hash(playbook, row) == row.content_hash
        try:
            creative = _current_creative(playbook, row)
            rendered, found = _render_and_check(playbook, creative, row, customer, message_token(sent.id, row.customer_id) if sent else PREVIEW_TOKEN)
            content = {"subject": rendered.subject, "title": rendered.title, "body": rendered.body}
            findings = [_finding(f) for f in found]
        except (RenderError, ReviewError) as exc:
            render_error = str(exc.message if isinstance(exc, ReviewError) else exc)
    decision: dict[str, Any] | None = None
    if row.decision_id is not None:
        decision = {name: getattr(row, f"d_{name}") for name in _DECISION_FIELDS}
        decision |= {name: getattr(row, name) for name in ("agent_id", "customer_id", "offer_id", "creative_id", "channel", "send_at")}
    message = {name: getattr(row, f"m_{name}") for name in _MESSAGE_FIELDS} if row.inbound_message_id is not None else None
    evidence = row.evidence
    if evidence is None and playbook is not None:
        evidence = evidence_for_reason(playbook, row.reason)
    return ItemDetail(
        item=_item(row),
        decision=decision,
        content_hash=row.content_hash,
        override=row.content_override,
        content=content,
        render_error=render_error,
        findings=findings,
        matches_playbook=matches,
        outbox=dict(sent._mapping) if sent else None,
        history=[dict(h._mapping) for h in history],
        message=message,
        evidence=evidence,
    )


# --- acting --------------------------------------------------------------------------------


def approve(
    engine: Engine,
    item_id: int,
    reviewer: str,
    *,
    content_hash: str | None = None,
    now: datetime,
    allow_self_approval: bool = True,
) -> QueueItem:
    """Approve the content the reviewer saw: the message is scheduled (pending in the outbox).

    ``content_hash`` is the hash shown with the item; if the content changed since, the
    approval is refused. It goes out at the decision's send time, or now if that has passed.
    With ``allow_self_approval=False`` the person who last edited the content cannot approve it.
    """
    reviewer = _name(reviewer, "reviewer")
    with engine.begin() as connection:
        row = _load(connection, item_id, lock=True)
        _require_decision(row, "approve")
        _require_actionable(row, now, "approve", allow=UNDECIDED)
        if content_hash is not None and content_hash != row.content_hash:
            raise ReviewError(
                f"review item {item_id}: content changed since you looked; review again",
                hint=f"show it again with `legato review show {item_id}`; it is now {row.content_hash}",
            )
        edited_by = (row.content_override or {}).get("edited_by")
        if not allow_self_approval and edited_by == reviewer:
            raise ReviewError(
                f"review item {item_id}: {reviewer} edited this content and cannot also approve it",
                hint="self-approval is off in the playbook; ask another reviewer to approve it",
            )
        _transition(connection, row, UNDECIDED, status=APPROVED, decided_by=reviewer, decided_at=now)
        live = connection.execute(
            sa.select(outbox.c.status).where(outbox.c.decision_id == row.decision_id)
        ).scalar_one_or_none()
        if live in (None, "cancelled"):
            send_at = max(row.send_at, now) if row.send_at is not None else now
            if live is None:
                connection.execute(
                    sa.insert(outbox).values(
                        decision_id=row.decision_id, customer_id=row.customer_id, channel=row.channel,
                        send_at=send_at, status="pending", attempts=0,
                    )
                )
            else:  # withdrawn earlier: the decision keeps its one outbox row
                connection.execute(
                    sa.update(outbox)
                    .where(outbox.c.decision_id == row.decision_id)
                    .values(status="pending", send_at=send_at, sent_at=None, error=None)
                )
            connection.execute(
                sa.update(decisions).where(decisions.c.id == row.decision_id).values(status="scheduled", approved_by=reviewer)
            )
        else:
            # Already on its way (an after-the-fact audit sample): the approval is recorded only.
            connection.execute(sa.update(decisions).where(decisions.c.id == row.decision_id).values(approved_by=reviewer))
        _audit(connection, now, reviewer, "review_approved", row, {"send": live in (None, "cancelled")}, row.content_hash, row.content_hash)
        return _item(_load(connection, item_id))


def edit(
    engine: Engine,
    item_id: int,
    reviewer: str,
    *,
    playbook: Playbook,
    subject: str | None = None,
    body: str | None = None,
    now: datetime,
) -> tuple[QueueItem, list[Finding]]:
    """Replace the message's subject and/or body, after the content guardrails pass it.

    The edit is a template rendered with the same context as the creative (``{{ customer.id }}``,
    ``{{ unsubscribe_url }}``...). A "block" verdict refuses it and saves nothing; other
    findings are returned and audited. The content hash changes, so an approval given before
    is withdrawn (its pending message cancelled) and the item is open again.
    """
    reviewer = _name(reviewer, "reviewer")
    if subject is None and body is None:
        raise ReviewError(f"review item {item_id}: nothing to edit", hint="give a new subject, a new body, or both")
    if body is not None and not body.strip():
        raise ReviewError(f"review item {item_id}: the body cannot be empty", hint="give the full text of the message")
    with engine.begin() as connection:
        row = _load(connection, item_id, lock=True)
        _require_decision(row, "edit")
        _require_actionable(row, now, "edit", allow={OPEN, APPROVED})
        sent = _outbox_status(connection, row)
        if sent in ("sent", "failed"):
            raise ReviewError(f"review item {item_id}: the message was already {sent}; it can no longer be edited", hint=_LIST_HINT)
        if row.creative_id is None:
            raise ReviewError(f"review item {item_id} proposes no message", hint="only messages can be edited")
        base = _current_creative(playbook, row)
        if row.content_override is None and variant_hash(base, row.offer_id) != row.content_hash:
            raise ReviewError(
                f"review item {item_id}: the playbook's creative '{row.creative_id}' is not the one this decision was made with",
                hint="edit with the playbook the agent ran on, or reject the item and let the agent decide again",
            )
        if subject is not None and base.channel.value != "email":
            raise ReviewError(f"review item {item_id}: {base.channel.value} messages have no subject", hint="edit the body only")
        edited = base.model_copy(update={k: v for k, v in (("subject", subject), ("body", body)) if v is not None})
        customer = connection.execute(
            sa.select(customers.c.id, customers.c.email, customers.c.phone, customers.c.attributes).where(customers.c.id == row.customer_id)
        ).first()
        try:
            _, findings = _render_and_check(playbook, edited, row, customer, PREVIEW_TOKEN)
        except RenderError as exc:
            raise ReviewError(
                f"review item {item_id}: the edit cannot be rendered: {exc}",
                hint="an edit is a template: use {{ customer.id }}, {{ offer.value }}, {{ unsubscribe_url }}... as in the creatives",
            ) from None
        if verdict(findings) == "block":
            lines = "; ".join(f"{f.rule}: {f.reason}" for f in findings if f.severity == "block")
            raise ReviewError(
                f"review item {item_id}: the content guardrails block this edit: {lines}",
                hint="change the text and edit again; nothing was saved",
            )
        new_hash = variant_hash(edited, row.offer_id)
        if new_hash == row.content_hash:
            raise ReviewError(f"review item {item_id}: the edit changes nothing", hint="the content is already exactly this")
        override = {
            "subject": edited.subject, "title": edited.title, "body": edited.body,
            "edited_by": reviewer, "edited_at": now.isoformat(), "original_hash": _original_hash(row),
        }
        invalidated = row.status == APPROVED
        _transition(connection, row, {row.status}, status=OPEN, decided_by=None, decided_at=None, content_hash=new_hash)
        if invalidated and sent == "pending":
            connection.execute(sa.update(outbox).where(outbox.c.decision_id == row.decision_id, outbox.c.status == "pending").values(status="cancelled"))
        values: dict[str, Any] = {"content_override": override, "content_hash": new_hash}
        if invalidated:
            values |= {"status": "queued", "approved_by": None}
        connection.execute(sa.update(decisions).where(decisions.c.id == row.decision_id).values(**values))
        detail = {
            "subject": subject, "body": body, "findings": [_finding(f) for f in findings],
            "approval_withdrawn_from": row.decided_by if invalidated else None,
        }
        _audit(connection, now, reviewer, "review_edited", row, detail, row.content_hash, new_hash)
        return _item(_load(connection, item_id)), findings


def reject(engine: Engine, item_id: int, reviewer: str, reason_code: str, *, note: str | None = None, now: datetime) -> QueueItem:
    """Refuse the proposal: it is never sent. The reason goes to the audit log for learning.

    An audit sample (already scheduled) is stopped if its message is still pending; if it
    was sent, the rejection is recorded for the track record and the decision stays "sent".
    """
    reviewer = _name(reviewer, "reviewer")
    if reason_code not in REASON_CODES:
        raise ReviewError(f"'{reason_code}' is not a rejection reason", hint=f"use one of {', '.join(REASON_CODES)}")
    with engine.begin() as connection:
        row = _load(connection, item_id, lock=True)
        _require_decision(row, "reject")
        _require_actionable(row, now, "reject", allow=UNDECIDED)
        _transition(connection, row, UNDECIDED, status=REJECTED, decided_by=reviewer, decided_at=now)
        stopped = connection.execute(
            sa.update(outbox).where(outbox.c.decision_id == row.decision_id, outbox.c.status == "pending").values(status="cancelled")
        ).rowcount
        connection.execute(
            sa.update(decisions)
            .where(decisions.c.id == row.decision_id, decisions.c.status != "sent", decisions.c.status != "failed")
            .values(status="rejected")
        )
        detail = {"reason": reason_code, "note": note, "after_the_fact": row.status == AUDIT, "stopped_message": bool(stopped)}
        _audit(connection, now, reviewer, "review_rejected", row, detail, row.content_hash, row.content_hash)
        return _item(_load(connection, item_id))


def escalate(engine: Engine, item_id: int, reviewer: str, *, to_role: str, note: str, now: datetime) -> QueueItem:
    """Hand the item to another role, raising its priority so it is looked at sooner."""
    reviewer = _name(reviewer, "reviewer")
    to_role = _name(to_role, "role")
    if not note or not note.strip():
        raise ReviewError(f"review item {item_id}: an escalation needs a note", hint="say what the other role should look at")
    with engine.begin() as connection:
        row = _load(connection, item_id, lock=True)
        _require_actionable(row, now, "escalate", allow=UNDECIDED)
        priority = min(MAX_PRIORITY, row.priority + ESCALATION_STEP)
        _transition(connection, row, UNDECIDED, priority=priority, assigned_role=to_role)
        detail = {"to_role": to_role, "from_role": row.assigned_role, "note": note, "priority": [row.priority, priority]}
        _audit(connection, now, reviewer, "review_escalated", row, detail, row.content_hash, row.content_hash)
        return _item(_load(connection, item_id))


def resolve(engine: Engine, item_id: int, reviewer: str, *, note: str, now: datetime) -> QueueItem:
    """Close a conversation or finding a person dealt with; the note says how.

    A conversation's inbound message is marked resolved with the same note, and from then
    on agents may contact the customer again.
    """
    reviewer = _name(reviewer, "reviewer")
    if not note or not note.strip():
        raise ReviewError(f"review item {item_id}: resolving needs a note", hint="say how it was handled: --note \"called back, refund issued\"")
    note = note.strip()
    with engine.begin() as connection:
        row = _load(connection, item_id, lock=True)
        if row.kind == DECISION:
            raise ReviewError(
                f"review item {item_id} is a proposed message: approve or reject it, there is nothing to resolve",
                hint=f"`legato review approve {item_id} --reviewer NAME` or `legato review reject {item_id} --reason CODE --reviewer NAME`",
            )
        _require_actionable(row, now, "resolve")
        _transition(connection, row, {OPEN}, status=RESOLVED, decided_by=reviewer, decided_at=now)
        if row.inbound_message_id is not None:
            connection.execute(
                sa.update(inbound_messages)
                .where(inbound_messages.c.id == row.inbound_message_id)
                .values(status=RESOLVED, handled_by=reviewer, handled_at=now, note=note)
            )
        _audit(connection, now, reviewer, "review_resolved", row, {"note": note}, row.content_hash, row.content_hash)
        return _item(_load(connection, item_id))


def withdraw(engine: Engine, item_id: int, reviewer: str, now: datetime) -> QueueItem:
    """Take back an approval before the message is sent: it is cancelled and the item is open again."""
    reviewer = _name(reviewer, "reviewer")
    with engine.begin() as connection:
        row = _load(connection, item_id, lock=True)
        _require_decision(row, "withdraw")
        if row.status != APPROVED:
            raise ReviewError(f"review item {item_id} is {row.status}, not approved; there is nothing to withdraw", hint=_LIST_HINT)
        cancelled = connection.execute(
            sa.update(outbox).where(outbox.c.decision_id == row.decision_id, outbox.c.status == "pending").values(status="cancelled")
        ).rowcount
        if not cancelled:
            state = _outbox_status(connection, row) or "not scheduled"
            raise ReviewError(
                f"review item {item_id}: the message is already {state}; an approval can only be withdrawn before it is sent",
                hint="nothing was changed",
            )
        _transition(connection, row, {APPROVED}, status=OPEN, decided_by=None, decided_at=None)
        connection.execute(sa.update(decisions).where(decisions.c.id == row.decision_id).values(status="queued", approved_by=None))
        _audit(connection, now, reviewer, "review_withdrawn", row, {"approved_by": row.decided_by}, row.content_hash, row.content_hash)
        return _item(_load(connection, item_id))


def expire_overdue(engine: Engine, now: datetime, *, sla_hours: Mapping[str, float] | None = None) -> int:
    """Expire every open item past its due date; nothing of it is sent. Returns how many.

    Items without a due date get one first (:func:`assign_due_dates`, with ``sla_hours``).
    Their decisions become "expired", any pending outbox row is cancelled, and each item
    gets an audit row. A conversation's inbound message is marked expired too: nobody
    answered in time, which the log records, and agents may contact the customer again.
    Meant to run once per cycle.
    """
    with engine.begin() as connection:
        assign_due_dates(connection, sla_hours)
        expired = connection.execute(
            sa.update(review_items)
            .where(review_items.c.status == OPEN, review_items.c.due_at <= now)
            .values(status=EXPIRED, decided_by=SLA_ACTOR, decided_at=now)
            .returning(
                review_items.c.id, review_items.c.kind, review_items.c.decision_id, review_items.c.inbound_message_id,
                review_items.c.agent_id, review_items.c.due_at, review_items.c.content_hash,
            )
        ).all()
        if not expired:
            return 0
        ids = [{"d": row.decision_id} for row in expired if row.decision_id is not None]
        if ids:
            connection.execute(
                sa.update(outbox).where(outbox.c.decision_id == sa.bindparam("d"), outbox.c.status == "pending").values(status="cancelled"), ids
            )
            connection.execute(
                sa.update(decisions)
                .where(decisions.c.id == sa.bindparam("d"), decisions.c.status != "sent", decisions.c.status != "failed")
                .values(status="expired"),
                ids,
            )
        messages = [{"m": row.inbound_message_id} for row in expired if row.inbound_message_id is not None]
        if messages:
            connection.execute(
                sa.update(inbound_messages).where(inbound_messages.c.id == sa.bindparam("m"), inbound_messages.c.status == OPEN).values(status=EXPIRED),
                messages,
            )
        connection.execute(
            sa.insert(audit_log),
            [
                {
                    "at": now, "actor": SLA_ACTOR, "action": "review_expired", "entity": "review_item", "entity_id": str(row.id),
                    "detail": {**_subject(row), "due_at": row.due_at.isoformat()},
                    "before_hash": row.content_hash, "after_hash": row.content_hash,
                }
                for row in expired
            ],
        )
        return len(expired)


# --- helpers -------------------------------------------------------------------------------


def _load(connection: Connection, item_id: int, *, lock: bool = False) -> Row[Any]:
    query = sa.select(
        *_ITEM_COLUMNS,
        decisions.c.content_override,
        *(decisions.c[name].label(f"d_{name}") for name in _DECISION_FIELDS),
        *(inbound_messages.c[name].label(f"m_{name}") for name in _MESSAGE_FIELDS),
    ).select_from(_FROM).where(review_items.c.id == item_id)
    if lock:  # PostgreSQL: a second reviewer waits here, then sees the first one's outcome
        query = query.with_for_update(of=review_items)
    row = connection.execute(query).first()
    if row is None:
        raise ReviewError(f"there is no review item {item_id}", hint=_LIST_HINT)
    return row


def _require_decision(row: Row[Any], verb: str) -> None:
    """Approve, edit, reject and withdraw act on a proposed message; other kinds have none."""
    if row.kind == DECISION:
        return
    what = "a customer's reply" if row.kind == CONVERSATION else "a finding about an agent"
    raise ReviewError(
        f"cannot {verb} review item {row.id}: it is {what}, not a proposed message",
        hint=f"once it is dealt with: `legato review resolve {row.id} --note \"how\" --reviewer NAME`; "
        f"or hand it on: `legato review escalate {row.id} --to-role ROLE --note ... --reviewer NAME`",
    )


def _require_actionable(row: Row[Any], now: datetime, verb: str, allow: Collection[str] = (OPEN,)) -> None:
    if row.status not in allow:
        if row.status == AUDIT:
            raise ReviewError(
                f"cannot {verb} review item {row.id}: it is an after-the-fact audit sample, its message was scheduled without review",
                hint=f"approve it, or reject it to stop the message if it has not gone yet: `legato review reject {row.id} --reason ...`",
            )
        by = f" by {row.decided_by}" if row.decided_by else ""
        when = f" at {row.decided_at:%Y-%m-%d %H:%M} UTC" if row.decided_at else ""
        raise ReviewError(f"cannot {verb} review item {row.id}: it is already {row.status}{by}{when}", hint=_LIST_HINT)
    if row.status == OPEN and row.due_at is not None and row.due_at <= now:
        if row.kind != DECISION:
            raise ReviewError(
                f"cannot {verb} review item {row.id}: it expired unhandled at {row.due_at:%Y-%m-%d %H:%M} UTC",
                hint="the expiry is recorded in the audit log; a customer who writes again, or a breach that persists, is queued again",
            )
        raise ReviewError(
            f"cannot {verb} review item {row.id}: it expired at {row.due_at:%Y-%m-%d %H:%M} UTC and will not be sent",
            hint="expired items stay unsent; the agent proposes again in a later cycle",
        )


def _transition(connection: Connection, row: Row[Any], expected: Collection[str], **values: Any) -> None:
    """Change the item only if nobody changed it since it was read (status and content)."""
    changed = connection.execute(
        sa.update(review_items)
        .where(
            review_items.c.id == row.id,
            review_items.c.status.in_(expected),
            review_items.c.content_hash.is_(None) if row.content_hash is None else review_items.c.content_hash == row.content_hash,
        )
        .values(**values)
    ).rowcount
    if changed != 1:
        raise ReviewError(f"review item {row.id} changed while you were acting on it; review again", hint=f"legato review show {row.id}")


def _outbox_status(connection: Connection, row: Row[Any]) -> str | None:
    return connection.execute(sa.select(outbox.c.status).where(outbox.c.decision_id == row.decision_id)).scalar_one_or_none()


def _current_creative(playbook: Playbook, row: Row[Any]) -> Creative:
    creative = next((c for c in playbook.creatives if c.id == row.creative_id), None)
    if creative is None:
        raise ReviewError(
            f"review item {row.id}: the playbook has no creative '{row.creative_id}'",
            hint="use the playbook the agent ran on (--playbook)",
        )
    return edited_creative(creative, row.content_override) if row.content_override else creative


def _playbook_hash(playbook: Playbook, row: Row[Any]) -> str | None:
    creative = next((c for c in playbook.creatives if c.id == row.creative_id), None)
    return variant_hash(creative, row.offer_id) if creative else None


def _original_hash(row: Row[Any]) -> str | None:
    return (row.content_override or {}).get("original_hash", row.content_hash)


def _render_and_check(playbook: Playbook, creative: Creative, row: Row[Any], customer: Row[Any] | None, token: str) -> tuple[Any, list[Finding]]:
    """Render as the dispatcher does, then run the content checks the dispatcher runs."""
    if customer is None:
        raise ReviewError(f"review item {row.id}: customer '{row.customer_id}' is no longer in the store", hint="reject the item")
    offers = {o.id: o for o in playbook.offers}
    if row.offer_id is not None and row.offer_id not in offers:
        raise ReviewError(f"review item {row.id}: the playbook has no offer '{row.offer_id}'", hint="use the playbook the agent ran on")
    person = customer_context(customer.id, customer.email, customer.phone, customer.attributes)
    rendered = CreativeTemplate(creative).render(message_context(playbook, person, offers.get(row.offer_id or ""), token))
    channel = creative.channel.value
    findings = ContentChecker.for_playbook(playbook).check(
        Message(channel=channel, body=rendered.body, subject=rendered.subject, title=rendered.title),
        offer_id=row.offer_id,
        # As the engine checks variants: fit to be the first SMS to a number (the strictest rules).
        first_sms=channel in ("sms", "whatsapp"),
        allowed_personal=[v for v in (customer.email, customer.phone) if v],
    )
    return rendered, findings


def _audit(
    connection: Connection, at: datetime, actor: str, action: str, row: Row[Any], detail: dict[str, Any], before: str | None, after: str | None
) -> None:
    connection.execute(
        sa.insert(audit_log).values(
            at=at, actor=actor, action=action, entity="review_item", entity_id=str(row.id),
            detail={**_subject(row), **detail}, before_hash=before, after_hash=after,
        )
    )


def _subject(row: Any) -> dict[str, Any]:
    """What an audit row of the item names. Only decisions count in their agent's track record
    (read by ``detail.agent``), so a conversation or finding names its agent otherwise."""
    if row.kind == DECISION:
        return {"agent": row.agent_id, "decision": row.decision_id}
    return {"kind": row.kind, "about_agent": row.agent_id, "inbound_message": row.inbound_message_id}


def _item(row: Row[Any]) -> QueueItem:
    values = {name: getattr(row, name) for name in QueueItem.__dataclass_fields__}
    return QueueItem(**values | {"edited": bool(values["edited"])})


def _finding(finding: Finding) -> dict[str, Any]:
    return {"rule": finding.rule, "family": finding.family, "severity": finding.severity, "span": list(finding.span), "reason": finding.reason}


def _name(value: str, what: str) -> str:
    if not value or not value.strip():
        raise ReviewError(f"the {what} name is empty", hint=f"say who acts: --{what} NAME")
    return value.strip()


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in values.items()}
