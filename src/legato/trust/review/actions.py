"""Acting on review items: approve, edit, reject, escalate, resolve, withdraw.

Each action is one transaction, compare-and-set on the item's status and content hash, and
writes one audit row naming the content hash the person acted on.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, Row

from legato.monitor import metrics
from legato.deliver import outbox as outbox_writer
from legato.deliver.render import variant_hash
from legato.guard.standing import explain, standing_now
from legato.guard.content import Finding
from legato.guard.message import MessageCheck
from legato.playbook.models import Creative, Playbook
from legato.store.audit import record
from legato.store.schema import agents, customers, decisions, inbound_messages, outbox, review_items
from legato.store.status import DecisionStatus, InboundStatus, OutboxStatus
from legato.trust.ladder import Stage
from legato.trust.optout import POSSIBLE_OPT_OUT
from legato.trust.review import counts
from legato.trust.review.message import PREVIEW_TOKEN, checked, current_creative, decision_playbook, finding_views, original_hash, render_and_check
from legato.trust.review.model import (
    APPROVED,
    AUDIT,
    CONVERSATION,
    DECISION,
    ESCALATION_STEP,
    LIST_HINT,
    MAX_PRIORITY,
    OPEN,
    REASON_CODES,
    REJECTED,
    RESOLVED,
    UNDECIDED,
    QueueItem,
    ReviewConflict,
    ReviewForbidden,
    ReviewInvalid,
    audit_subject,
    finding_dict,
    person_name,
    queue_item,
)
from legato.trust.review.queue import load_row


def approve(
    engine: Engine,
    item_id: int,
    reviewer: str,
    *,
    content_hash: str | None,
    now: datetime,
    allow_self_approval: bool | None = None,
    playbook: Playbook | None = None,
) -> QueueItem:
    """Approve the content the reviewer saw: the message is scheduled (pending in the outbox).

    ``content_hash`` is the hash shown with the item, and it is required: an approval names
    what was seen, so content that changed since (or was never looked at) is refused. It goes out at the decision's send time, or now if that has passed.
    With ``allow_self_approval=False`` the person who last edited the content cannot approve
    it; left ``None``, the playbook's ``review.allow_self_approval`` decides: the decision's
    version's and, if a ``playbook`` is given, its too (self-approval needs both to allow it).
    The message goes through the one check first, rendered from the decision's playbook
    version (``playbook`` only for a decision made before versions were stored) and bound to
    the item's hash, and the customer's standing (suppression list, contact point, consent)
    is asked as the dispatcher will ask it, by the rules of ``playbook`` if given, else of
    the version: a message that could not be sent is not approved.
    """
    reviewer = person_name(reviewer, "reviewer")
    with engine.begin() as connection:
        row = load_row(connection, item_id, lock=True)
        _require_decision(row, "approve")
        version = decision_playbook(connection, row, None)
        if allow_self_approval is None:
            allow_self_approval = all(p.review.allow_self_approval for p in (version, playbook) if p is not None)
        _require_actionable(row, now, "approve", allow=UNDECIDED)
        if not content_hash:
            raise ReviewInvalid(
                f"review item {item_id}: an approval names the content hash you reviewed",
                hint=f"see the message and its hash with `legato review show {item_id}`, then approve with --hash HASH",
            )
        if content_hash != row.content_hash:
            raise ReviewConflict(
                f"review item {item_id}: content changed since you looked; review again",
                hint=f"show it again with `legato review show {item_id}`; it is now {row.content_hash}",
            )
        source = version or playbook
        if source is not None and row.creative_id is not None:
            _require_sendable(connection, source, playbook or source, row, now)
        edited_by = (row.content_override or {}).get("edited_by")
        if not allow_self_approval and edited_by == reviewer:
            raise ReviewForbidden(
                f"review item {item_id}: {reviewer} edited this content and cannot also approve it",
                hint="self-approval is off in the playbook; ask another reviewer to approve it",
            )
        _transition(connection, row, UNDECIDED, status=APPROVED, decided_by=reviewer, decided_at=now)
        live = connection.execute(
            sa.select(outbox.c.status).where(outbox.c.decision_id == row.decision_id)
        ).scalar_one_or_none()
        if live in (None, OutboxStatus.CANCELLED):
            send_at = max(row.send_at, now) if row.send_at is not None else now
            # Withdrawn earlier: the decision keeps its one outbox row (and its message id).
            outbox_writer.schedule_message(connection, row.decision_id, row.customer_id, row.channel, send_at)
            connection.execute(
                sa.update(decisions).where(decisions.c.id == row.decision_id).values(status=DecisionStatus.SCHEDULED, approved_by=reviewer)
            )
        else:
            # Already on its way (an after-the-fact audit sample): the approval is recorded only.
            connection.execute(sa.update(decisions).where(decisions.c.id == row.decision_id).values(approved_by=reviewer))
        _audit(connection, now, reviewer, "review_approved", row, {"send": live in (None, OutboxStatus.CANCELLED)}, row.content_hash, row.content_hash)
        return queue_item(load_row(connection, item_id))


def _require_sendable(connection: Connection, playbook: Playbook, rules: Playbook, row: Row[Any], now: datetime) -> None:
    """Refuse to approve what the dispatcher would refuse to send: the message from
    ``playbook`` (the decision's version), the standing by the ``rules`` in force."""
    creative = current_creative(playbook, row)
    if variant_hash(creative, row.offer_id) != row.content_hash:
        raise ReviewConflict(
            f"review item {row.id}: the playbook's creative '{row.creative_id}' is not the one this decision was made with",
            hint="approve with the playbook the agent ran on, or reject the item and let the agent decide again",
        )
    customer = connection.execute(
        sa.select(customers.c.id, customers.c.email, customers.c.phone, customers.c.attributes).where(customers.c.id == row.customer_id)
    ).first()
    check = render_and_check(playbook, creative, row, customer, PREVIEW_TOKEN)
    if check.render_error is not None or check.verdict == "block":
        rules = ", ".join(check.blocking_rules) or str(check.render_error)
        raise ReviewForbidden(
            f"review item {row.id}: the content guardrails block this message ({rules})",
            hint=f"see the findings with `legato review show {row.id}`; edit it or reject it",
        )
    standing = standing_now(connection, rules.guardrails, row.customer_id, row.channel, creative.purpose, now)
    if standing is not None:
        raise ReviewForbidden(
            f"review item {row.id}: the message cannot be sent now: {explain(standing)} ({standing})",
            hint=f"reject it: `legato review reject {row.id} --reason other --reviewer NAME`",
        )


def edit(
    engine: Engine,
    item_id: int,
    reviewer: str,
    *,
    playbook: Playbook | None = None,
    subject: str | None = None,
    body: str | None = None,
    now: datetime,
) -> tuple[QueueItem, list[Finding]]:
    """Replace the message's subject and/or body, after the content guardrails pass it.

    The edit is a template rendered with the same context as the creative (``{{ customer.id }}``,
    ``{{ unsubscribe_url }}``...), from the decision's playbook version (``playbook`` only
    for decisions made before versions were stored). A "block" verdict refuses it and saves
    nothing; other findings are returned and audited. The content hash changes, so an
    approval given before is withdrawn (its pending message cancelled) and the item is open again.
    """
    reviewer = person_name(reviewer, "reviewer")
    if subject is None and body is None:
        raise ReviewInvalid(f"review item {item_id}: nothing to edit", hint="give a new subject, a new body, or both")
    if body is not None and not body.strip():
        raise ReviewInvalid(f"review item {item_id}: the body cannot be empty", hint="give the full text of the message")
    with engine.begin() as connection:
        row = load_row(connection, item_id, lock=True)
        _require_decision(row, "edit")
        _require_actionable(row, now, "edit", allow={OPEN, APPROVED})
        sent = _outbox_status(connection, row)
        if sent in (OutboxStatus.SENT, OutboxStatus.DEAD, OutboxStatus.CLAIMED):
            state = "being sent" if sent == OutboxStatus.CLAIMED else sent
            raise ReviewConflict(f"review item {item_id}: the message was already {state}; it can no longer be edited", hint=LIST_HINT)
        edited, check = _edited(connection, row, playbook, subject, body)
        findings = list(check.findings)
        if check.render_error is not None or any(f.family == "template" for f in findings):
            problem = check.render_error or "; ".join(f.reason for f in findings if f.family == "template")
            raise ReviewInvalid(
                f"review item {item_id}: the edit cannot be rendered: {problem}",
                hint="an edit is a template: use {{ customer.id }}, {{ offer.value }}, {{ unsubscribe_url }}... as in the creatives",
            ) from None
        if check.verdict == "block":
            lines = "; ".join(f"{f.rule}: {f.reason}" for f in findings if f.severity == "block")
            raise ReviewInvalid(
                f"review item {item_id}: the content guardrails block this edit: {lines}",
                hint="change the text and edit again; nothing was saved",
            )
        new_hash = variant_hash(edited, row.offer_id)
        if new_hash == row.content_hash:
            raise ReviewInvalid(f"review item {item_id}: the edit changes nothing", hint="the content is already exactly this")
        override = {
            "subject": edited.subject, "title": edited.title, "body": edited.body,
            "edited_by": reviewer, "edited_at": now.isoformat(), "original_hash": original_hash(row),
        }
        invalidated = row.status == APPROVED
        _transition(connection, row, {row.status}, status=OPEN, decided_by=None, decided_at=None, content_hash=new_hash)
        if invalidated and sent in (OutboxStatus.PENDING, OutboxStatus.RETRY):
            outbox_writer.cancel_for_decisions(connection, [row.decision_id])
        values: dict[str, Any] = {"content_override": override, "content_hash": new_hash}
        if invalidated:
            values |= {"status": DecisionStatus.QUEUED, "approved_by": None}
        connection.execute(sa.update(decisions).where(decisions.c.id == row.decision_id).values(**values))
        detail = {
            "subject": subject, "body": body, "findings": [finding_dict(f) for f in findings],
            "approval_withdrawn_from": row.decided_by if invalidated else None,
        }
        _audit(connection, now, reviewer, "review_edited", row, detail, row.content_hash, new_hash)
        return queue_item(load_row(connection, item_id)), findings


def _edited(connection: Connection, row: Row[Any], playbook: Playbook | None, subject: str | None, body: str | None) -> tuple[Creative, MessageCheck]:
    """The item's creative with the new subject and/or body, rendered for its customer and
    checked (the one check of a message), from the decision's playbook version."""
    if row.creative_id is None:
        raise ReviewInvalid(f"review item {row.id} proposes no message", hint="only messages can be edited")
    source = decision_playbook(connection, row, playbook)
    if source is None:
        raise ReviewInvalid(
            f"review item {row.id}: its decision was made before playbook versions were stored",
            hint="give the playbook the agent ran on: --playbook FILE",
        )
    base = current_creative(source, row)
    if row.content_override is None and variant_hash(base, row.offer_id) != row.content_hash:
        raise ReviewConflict(
            f"review item {row.id}: the playbook's creative '{row.creative_id}' is not the one this decision was made with",
            hint="edit with the playbook the agent ran on, or reject the item and let the agent decide again",
        )
    if subject is not None and base.channel.value != "email":
        raise ReviewInvalid(f"review item {row.id}: {base.channel.value} messages have no subject", hint="edit the body only")
    edited = base.model_copy(update={k: v for k, v in (("subject", subject), ("body", body)) if v is not None})
    customer = connection.execute(
        sa.select(customers.c.id, customers.c.email, customers.c.phone, customers.c.attributes).where(customers.c.id == row.customer_id)
    ).first()
    return edited, render_and_check(source, edited, row, customer, PREVIEW_TOKEN)


@dataclass(frozen=True)
class DraftCheck:
    """An edit checked as :func:`edit` would check it, nothing saved: the message as this
    customer would get it (``content``: subject, title, body; None when it does not render),
    its checked text (what the copy's findings index), every finding with the words it points
    at (:func:`legato.trust.review.message.finding_views`), the verdict ("block": ``edit``
    refuses it), and the content hash it would have."""

    content: dict[str, str | None] | None
    text: str | None
    findings: list[dict[str, Any]]
    verdict: str
    render_error: str | None
    content_hash: str
    changed: bool  # False: the draft is the content as it stands (an edit would change nothing)


def check_edit(engine: Engine, item_id: int, *, playbook: Playbook | None = None, subject: str | None = None, body: str | None = None) -> DraftCheck:
    """A draft of an edit checked as :func:`edit` checks it, without saving anything (a reviewer
    checking as they type). Refused as ``edit`` refuses it for what the draft itself cannot
    change: not a proposed message, a creative the decision was not made with."""
    with engine.connect() as connection:
        row = load_row(connection, item_id)
        _require_decision(row, "edit")
        edited, check = _edited(connection, row, playbook, subject, body)
    rendered = check.rendered
    content = {"subject": rendered.subject, "title": rendered.title, "body": rendered.body, "html": rendered.html} if rendered else None
    new_hash = variant_hash(edited, row.offer_id)
    return DraftCheck(content, checked(check, rendered), finding_views(check), check.verdict, check.render_error, new_hash, new_hash != row.content_hash)


def reject(engine: Engine, item_id: int, reviewer: str, reason_code: str, *, note: str | None = None, now: datetime) -> QueueItem:
    """Refuse the proposal: it is never sent. The reason goes to the audit log for learning.

    An audit sample (already scheduled) is stopped if its message is still pending; if it
    was sent, the rejection is recorded for the track record and the decision stays "sent".
    """
    reviewer = person_name(reviewer, "reviewer")
    if reason_code not in REASON_CODES:
        raise ReviewInvalid(f"'{reason_code}' is not a rejection reason", hint=f"use one of {', '.join(REASON_CODES)}")
    with engine.begin() as connection:
        row = load_row(connection, item_id, lock=True)
        _require_decision(row, "reject")
        _require_actionable(row, now, "reject", allow=UNDECIDED)
        _transition(connection, row, UNDECIDED, status=REJECTED, decided_by=reviewer, decided_at=now)
        stopped = outbox_writer.cancel_for_decisions(connection, [row.decision_id])
        connection.execute(
            sa.update(decisions)
            .where(decisions.c.id == row.decision_id, decisions.c.status.not_in((DecisionStatus.SENT, DecisionStatus.FAILED)))
            .values(status=DecisionStatus.REJECTED)
        )
        detail = {"reason": reason_code, "note": note, "after_the_fact": row.status == AUDIT, "stopped_message": bool(stopped)}
        _audit(connection, now, reviewer, "review_rejected", row, detail, row.content_hash, row.content_hash)
        return queue_item(load_row(connection, item_id))


def escalate(engine: Engine, item_id: int, reviewer: str, *, to_role: str, note: str, now: datetime) -> QueueItem:
    """Hand the item to another role, raising its priority so it is looked at sooner."""
    reviewer = person_name(reviewer, "reviewer")
    to_role = person_name(to_role, "role")
    if not note or not note.strip():
        raise ReviewInvalid(f"review item {item_id}: an escalation needs a note", hint="say what the other role should look at")
    with engine.begin() as connection:
        row = load_row(connection, item_id, lock=True)
        _require_actionable(row, now, "escalate", allow=UNDECIDED)
        priority = min(MAX_PRIORITY, row.priority + ESCALATION_STEP)
        _transition(connection, row, UNDECIDED, priority=priority, assigned_role=to_role)
        detail = {"to_role": to_role, "from_role": row.assigned_role, "note": note, "priority": [row.priority, priority]}
        _audit(connection, now, reviewer, "review_escalated", row, detail, row.content_hash, row.content_hash)
        return queue_item(load_row(connection, item_id))


def resolve(engine: Engine, item_id: int, reviewer: str, *, note: str, now: datetime) -> QueueItem:
    """Close a conversation or finding a person dealt with; the note says how.

    A conversation's inbound message is marked resolved with the same note, and from then
    on agents may contact the customer again.
    """
    reviewer = person_name(reviewer, "reviewer")
    if not note or not note.strip():
        raise ReviewInvalid(f"review item {item_id}: resolving needs a note", hint="say how it was handled: --note \"called back, refund issued\"")
    note = note.strip()
    with engine.begin() as connection:
        row = load_row(connection, item_id, lock=True)
        if row.kind == DECISION:
            raise ReviewInvalid(
                f"review item {item_id} is a proposed message: approve or reject it, there is nothing to resolve",
                hint=f"`legato review approve {item_id} --hash HASH --reviewer NAME` or `legato review reject {item_id} --reason CODE --reviewer NAME`",
            )
        _require_actionable(row, now, "resolve")
        _transition(connection, row, {OPEN}, status=RESOLVED, decided_by=reviewer, decided_at=now)
        if row.inbound_message_id is not None:
            connection.execute(
                sa.update(inbound_messages)
                .where(inbound_messages.c.id == row.inbound_message_id)
                .values(status=InboundStatus.RESOLVED, handled_by=reviewer, handled_at=now, note=note)
            )
        _audit(connection, now, reviewer, "review_resolved", row, {"note": note}, row.content_hash, row.content_hash)
        return queue_item(load_row(connection, item_id))


def withdraw(engine: Engine, item_id: int, reviewer: str, now: datetime) -> QueueItem:
    """Take back an approval before the message is sent: it is cancelled and the item is open again."""
    reviewer = person_name(reviewer, "reviewer")
    with engine.begin() as connection:
        row = load_row(connection, item_id, lock=True)
        _require_decision(row, "withdraw")
        if row.status != APPROVED:
            raise ReviewConflict(f"review item {item_id} is {row.status}, not approved; there is nothing to withdraw", hint=LIST_HINT)
        cancelled = outbox_writer.cancel_for_decisions(connection, [row.decision_id])
        if not cancelled:
            state = _outbox_status(connection, row) or "not scheduled"
            raise ReviewConflict(
                f"review item {item_id}: the message is already {state}; an approval can only be withdrawn before it is sent",
                hint="nothing was changed",
            )
        _transition(connection, row, {APPROVED}, status=OPEN, decided_by=None, decided_at=None)
        connection.execute(sa.update(decisions).where(decisions.c.id == row.decision_id).values(status=DecisionStatus.QUEUED, approved_by=None))
        _audit(connection, now, reviewer, "review_withdrawn", row, {"approved_by": row.decided_by}, row.content_hash, row.content_hash)
        return queue_item(load_row(connection, item_id))


def _require_decision(row: Row[Any], verb: str) -> None:
    """Approve, edit, reject and withdraw act on a proposed message; other kinds have none."""
    if row.kind == DECISION:
        return
    what = "a customer's reply" if row.kind == CONVERSATION else "a finding about an agent"
    raise ReviewInvalid(
        f"cannot {verb} review item {row.id}: it is {what}, not a proposed message",
        hint=f"once it is dealt with: `legato review resolve {row.id} --note \"how\" --reviewer NAME`; "
        f"or hand it on: `legato review escalate {row.id} --to-role ROLE --note ... --reviewer NAME`",
    )


def _require_actionable(row: Row[Any], now: datetime, verb: str, allow: Collection[str] = (OPEN,)) -> None:
    if row.status not in allow:
        if row.status == AUDIT:
            raise ReviewConflict(
                f"cannot {verb} review item {row.id}: it is an after-the-fact audit sample, its message was scheduled without review",
                hint=f"approve it, or reject it to stop the message if it has not gone yet: `legato review reject {row.id} --reason ...`",
            )
        by = f" by {row.decided_by}" if row.decided_by else ""
        when = f" at {row.decided_at:%Y-%m-%d %H:%M} UTC" if row.decided_at else ""
        raise ReviewConflict(f"cannot {verb} review item {row.id}: it is already {row.status}{by}{when}", hint=LIST_HINT)
    # A possible opt-out does not expire (see due.py): a person may decide it however late.
    if row.status == OPEN and row.due_at is not None and row.due_at <= now and row.reason != POSSIBLE_OPT_OUT:
        if row.kind != DECISION:
            raise ReviewConflict(
                f"cannot {verb} review item {row.id}: it expired unhandled at {row.due_at:%Y-%m-%d %H:%M} UTC",
                hint="the expiry is recorded in the audit log; a customer who writes again, or a breach that persists, is queued again",
            )
        raise ReviewConflict(
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
        raise ReviewConflict(f"review item {row.id} changed while you were acting on it; review again", hint=f"legato review show {row.id}")
    counts.moved(connection, counts.key_of(row), counts.key_of(row, **values))
    metrics.count_review_transition(
        connection, row.decision_id, row.kind, row.created_at,
        (row.status, row.decided_at), (values.get("status", row.status), values.get("decided_at", row.decided_at)),
    )


def _outbox_status(connection: Connection, row: Row[Any]) -> str | None:
    return connection.execute(sa.select(outbox.c.status).where(outbox.c.decision_id == row.decision_id)).scalar_one_or_none()


def _audit(
    connection: Connection, at: datetime, actor: str, action: str, row: Row[Any], detail: dict[str, Any], before: str | None, after: str | None
) -> None:
    record(connection, at, actor, action, "review_item", str(row.id), {**audit_subject(row), **detail}, before_hash=before, after_hash=after)


@dataclass(frozen=True)
class Unlocked:
    """What one approval lets an agent at stage 1 send unreviewed from its next cycle on.

    Stage 1 remembers approved variants (creative and offer, by content hash): once a person
    approved one as it stands, later sends of it skip the queue unless a risk limit or an
    escalation rule catches them. ``last_cycle`` is how many customers the agent's latest
    cycle proposed this variant to (the best guess of how many the next one will reach);
    ``still_open`` how many of those wait in the queue now, each still needing its own decision.
    """

    agent_id: str
    creative_id: str | None
    offer_id: str | None
    last_cycle: int
    still_open: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unlocked_by(engine: Engine, item_id: int) -> Unlocked | None:
    """What approving ``item_id`` unlocked (None when it unlocks nothing: not stage 1, or an edited message)."""
    with engine.connect() as connection:
        row = load_row(connection, item_id)
        if row.kind != DECISION or row.status != APPROVED or row.content_override is not None or row.content_hash is None:
            return None
        stage = connection.execute(sa.select(agents.c.trust_stage).where(agents.c.id == row.agent_id)).scalar_one_or_none()
        if stage != Stage.ASSISTED:
            return None
        cycle = connection.execute(
            sa.select(sa.func.max(decisions.c.cycle_id)).where(decisions.c.agent_id == row.agent_id, decisions.c.content_hash == row.content_hash)
        ).scalar_one()
        same = sa.and_(decisions.c.agent_id == row.agent_id, decisions.c.cycle_id == cycle, decisions.c.content_hash == row.content_hash)
        proposed = connection.execute(
            sa.select(sa.func.count()).select_from(decisions).where(same, decisions.c.route == DecisionStatus.QUEUED)
        ).scalar_one()
        still_open = connection.execute(
            sa.select(sa.func.count()).select_from(review_items.join(decisions, decisions.c.id == review_items.c.decision_id))
            .where(same, review_items.c.status == OPEN, review_items.c.id != item_id)
        ).scalar_one()
    return Unlocked(row.agent_id, row.creative_id, row.offer_id, int(proposed), int(still_open))
