"""Reading the queue: a page of items in queue order, and one item with all a reviewer needs."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, Row

from legato.audience.facts import facts_of
from legato.deliver.render import RenderError
from legato.deliver.tokens import message_token, ring_for
from legato.guard.standing import standing_now
from legato.playbook.models import Playbook
from legato.store.schema import audit_log, customers, decisions, inbound_messages, outbox, review_counts, review_items
from legato.trust.review import counts
from legato.trust.escalation import evidence_for_reason
from legato.trust.review.message import PREVIEW_TOKEN, current_creative, decision_playbook, finding_views, playbook_hash, render_and_check
from legato.trust.review.model import (
    KINDS,
    LIST_HINT,
    MAX_LIMIT,
    OPEN,
    STATUSES,
    UNDECIDED,
    ItemDetail,
    QueueFilter,
    QueueItem,
    QueuePage,
    ReviewInvalid,
    ReviewNotFound,
    ReviewError,
    masked_evidence,
    masked_text,
    queue_item,
)

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
    where = QueueFilter(status=status, agent=agent, role=role, kind=kind)
    return _ordered(sa.select(*_ITEM_COLUMNS).select_from(_FROM).where(*_clauses(where))).limit(limit)


def _ordered(query: sa.Select[Any]) -> sa.Select[Any]:
    return query.order_by(review_items.c.priority.desc(), review_items.c.created_at, review_items.c.id)


def _clauses(where: QueueFilter, table: sa.Table = review_items) -> list[sa.ColumnElement[bool]]:
    """The filter as SQL conditions (checked by :func:`_valid` first) on ``table``: the items, or
    their counts (:mod:`legato.trust.review.counts`, same column names) for what they keep."""
    clauses: list[sa.ColumnElement[bool]] = []
    if where.status != "all":
        clauses.append(table.c.status == where.status)
    for name, value in (("agent_id", where.agent), ("assigned_role", where.role), ("kind", where.kind), ("content_hash", where.variant)):
        if value is not None:
            clauses.append(table.c[name] == value)
    if where.reason is not None:
        clauses.append(sa.or_(table.c.reason == where.reason, table.c.reason.like(f"{_escaped(where.reason)}:%", escape="\\")))
    if where.min_priority is not None:
        clauses.append(table.c.priority >= where.min_priority)
    if where.older_than is not None:
        clauses.append(table.c.created_at <= (where.now or datetime.now(timezone.utc)) - where.older_than)
    return clauses


def _counted(where: QueueFilter) -> bool:
    """Whether the filter's total is kept in the counts: all it filters on is part of their key."""
    return where.older_than is None and where.variant is None


def filter_total(connection: Connection, where: QueueFilter) -> int:
    """How many items ``where`` matches: from the counts when they keep it (a few rows, however
    long the queue), else counted over the items (time in proportion to the items matched)."""
    if _counted(where):
        return counts.total(connection, _clauses(where, review_counts))
    return int(connection.execute(sa.select(sa.func.count()).select_from(review_items).where(*_clauses(where))).scalar_one())


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _valid(where: QueueFilter, limit: int) -> None:
    if where.status != "all" and where.status not in STATUSES:
        raise ReviewInvalid(f"unknown review status '{where.status}'", hint=f"use one of {', '.join(STATUSES)} or all")
    if where.kind is not None and where.kind not in KINDS:
        raise ReviewInvalid(f"unknown kind of review item '{where.kind}'", hint=f"use one of {', '.join(KINDS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ReviewInvalid(f"limit {limit} is out of range", hint=f"ask for 1 to {MAX_LIMIT} items at a time")
    if where.older_than is not None and where.older_than.total_seconds() < 0:
        raise ReviewInvalid("--older-than is negative", hint="give an age in hours, e.g. --older-than 24")


def list_items(
    engine: Engine, *, status: str = OPEN, limit: int = 100, agent: str | None = None, role: str | None = None, kind: str | None = None
) -> list[QueueItem]:
    """The queue, highest priority first, then oldest first (``status="all"`` for every item).

    The order is the index ``ix_review_items_queue`` (status, priority DESC, created_at, id),
    so the first page is read straight off it however long the queue is.
    """
    return list_page(engine, QueueFilter(status=status, agent=agent, role=role, kind=kind), limit=limit, count=False).items


def list_page(engine: Engine, where: QueueFilter, *, limit: int = 100, after: str | None = None, count: bool = True) -> QueuePage:
    """One page of the queue in queue order, the filter's total, and the next page's cursor.

    Paging is by key, not offset: the cursor is the last item's place in the queue order
    (priority, created, id), so items decided while a reviewer pages do not shift the next
    page, and a page costs the same however deep it is.
    """
    _valid(where, limit)
    clauses = _clauses(where)
    query = _ordered(sa.select(*_ITEM_COLUMNS).select_from(_FROM).where(*clauses))
    if after is not None:
        priority, created, last = _cursor(after)
        query = query.where(
            sa.or_(
                review_items.c.priority < priority,
                sa.and_(review_items.c.priority == priority, review_items.c.created_at > created),
                sa.and_(review_items.c.priority == priority, review_items.c.created_at == created, review_items.c.id > last),
            )
        )
    with engine.connect() as connection:
        rows = connection.execute(query.limit(limit + 1)).all()
        # The total comes from the counts the writers keep (counts.py): counting a million open
        # items took 120 ms, seconds with a filter the queue's index does not lead with.
        total = filter_total(connection, where) if count else -1
    items = [queue_item(row) for row in rows[:limit]]
    more = len(rows) > limit
    return QueuePage(items, total, _cursor_of(items[-1]) if more and items else None)


def matching(engine: Engine, where: QueueFilter, *, limit: int = MAX_LIMIT) -> list[QueueItem]:
    """Every item the filter matches, in queue order, up to ``limit`` (for acting on many at once)."""
    _valid(where, limit)
    with engine.connect() as connection:
        rows = connection.execute(_ordered(sa.select(*_ITEM_COLUMNS).select_from(_FROM).where(*_clauses(where))).limit(limit))
        return [queue_item(row) for row in rows]


def neighbours(engine: Engine, where: QueueFilter, item: QueueItem) -> tuple[int | None, int | None]:
    """The items just before and just after ``item`` in queue order among those ``where``
    matches (None at either end): a reviewer working through a filtered queue one item at a
    time. ``item`` need not match ``where``.

    Each side is read off the queue's index by key, in two seeks: the same priority first
    (its created/id range), else the nearest other priority. One OR of the three conditions
    is not a range SQLite can seek to: it scanned the queue from its far end (57 ms for an
    item near the top of 100,000).
    """
    _valid(where, 1)
    created = item.created_at if item.created_at.tzinfo else item.created_at.replace(tzinfo=timezone.utc)
    p, c, i = review_items.c.priority, review_items.c.created_at, review_items.c.id
    clauses = _clauses(where)
    same = p == item.priority
    with engine.connect() as connection:
        def first(*conditions: sa.ColumnElement[bool], order: tuple[Any, ...]) -> int | None:
            return connection.execute(sa.select(i).where(*clauses, *conditions).order_by(*order).limit(1)).scalar_one_or_none()

        after = first(same, c >= created, sa.or_(c > created, i > item.id), order=(c, i))
        if after is None:
            after = first(p < item.priority, order=(p.desc(), c, i))
        before = first(same, c <= created, sa.or_(c < created, i < item.id), order=(c.desc(), i.desc()))
        if before is None:
            before = first(p > item.priority, order=(p.asc(), c.desc(), i.desc()))
    return before, after


def breakdown(engine: Engine, status: str = OPEN) -> dict[str, dict[str, int]]:
    """How many items of ``status`` there are by reason, agent and kind, from the counts the
    writers keep (a few rows however long the queue is): a queue's totals at a glance."""
    if status not in STATUSES:
        raise ReviewInvalid(f"unknown review status '{status}'", hint=f"use one of {', '.join(STATUSES)}")
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as connection:
        for name, column in (("reason", "reason"), ("agent", "agent_id"), ("kind", "kind")):
            rows = counts.by(connection, (column,), review_counts.c.status == status)
            found[name] = {str(key[0]) if key[0] is not None else "": n for key, n in sorted(rows.items(), key=lambda kv: (-kv[1], str(kv[0][0])))}
    return found


def _cursor_of(item: QueueItem) -> str:
    created = item.created_at if item.created_at.tzinfo else item.created_at.replace(tzinfo=timezone.utc)
    micros = (created - _EPOCH) // timedelta(microseconds=1)
    return f"{item.priority}.{micros}.{item.id}"


def _cursor(text: str) -> tuple[int, datetime, int]:
    try:
        priority, micros, last = (int(part) for part in text.split("."))
        if not (abs(priority) < 2**31 and abs(last) < 2**31):  # what an INTEGER column holds (PostgreSQL: 32 bits)
            raise ValueError(text)
        return priority, _EPOCH + timedelta(microseconds=micros), last
    except (ValueError, OverflowError):  # OverflowError: a time past the calendar's end
        raise ReviewInvalid(f"'{text}' is not a page cursor", hint="use the --after value the previous page printed") from None


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def show_item(engine: Engine, item_id: int, *, playbook: Playbook | None = None, now: datetime | None = None) -> ItemDetail:
    """One item with its decision (or the customer's message), its history and evidence.

    A decision's message is rendered and checked as the dispatcher would (the one check of
    :mod:`legato.guard.message`), from the playbook version the decision was made with;
    ``standing`` says whether the customer could be sent it at ``now`` (default: the wall
    clock), by the rules of ``playbook`` if given, else of that version; and a decision
    escalated by a company value shows the value's statement. ``playbook`` (the file)
    renders only decisions made before versions were stored; for the others it is compared
    with the decision's version (``matches_playbook``).
    """
    now = now or datetime.now(timezone.utc)
    with engine.connect() as connection:
        row = load_row(connection, item_id)
        source = decision_playbook(connection, row, playbook)
        customer = connection.execute(
            sa.select(customers.c.id, customers.c.email, customers.c.phone, customers.c.attributes).where(
                customers.c.id == row.customer_id
            )
        ).first() if row.customer_id is not None else None
        sent = connection.execute(
            sa.select(outbox.c.message_id, outbox.c.status, outbox.c.send_at, outbox.c.sent_at).where(outbox.c.decision_id == row.decision_id)
        ).first() if row.decision_id is not None else None
        history = connection.execute(
            sa.select(audit_log.c.at, audit_log.c.actor, audit_log.c.action, audit_log.c.detail, audit_log.c.before_hash, audit_log.c.after_hash)
            .where(audit_log.c.entity == "review_item", audit_log.c.entity_id == str(item_id))
            .order_by(audit_log.c.id)
        ).all()
    content = render_error = matches = standing = template = None
    findings: list[dict[str, Any]] = []
    if source is not None and row.creative_id is not None:
        against = playbook if playbook is not None else source
        matches = row.content_override is not None or playbook_hash(against, row) == row.content_hash
        try:
            creative = current_creative(source, row)
            check = render_and_check(source, creative, row, customer, message_token(sent.message_id, row.customer_id, ring_for(engine)) if sent else PREVIEW_TOKEN)
            rendered = check.rendered
            if rendered is not None:
                # html: the e-mail's HTML part, when its creative has one (the body is the text part).
                content = {"subject": rendered.subject, "title": rendered.title, "body": rendered.body, "html": rendered.html}
            render_error = check.render_error
            # Variant findings index into the variant rendered for a stand-in customer, those of
            # the copy into the message shown (``content``); "in" says which, "excerpt" what they point at.
            findings = finding_views(check)
            template = {"subject": creative.subject, "title": creative.title, "body": creative.body}
            with engine.connect() as connection:
                standing = standing_now(connection, (playbook or source).guardrails, row.customer_id, row.channel, creative.purpose, now)
        except (RenderError, ReviewError) as exc:
            render_error = str(exc.message if isinstance(exc, ReviewError) else exc)
    decision: dict[str, Any] | None = None
    if row.decision_id is not None:
        decision = {name: getattr(row, f"d_{name}") for name in _DECISION_FIELDS}
        decision |= {name: getattr(row, name) for name in ("agent_id", "customer_id", "offer_id", "creative_id", "channel", "send_at")}
    message = {name: getattr(row, f"m_{name}") for name in _MESSAGE_FIELDS} if row.inbound_message_id is not None else None
    if message is not None:  # stored before replies were masked on the way in: masked when shown
        message["text"] = masked_text(message["text"])
        if isinstance(message["intents"], Mapping) and "evidence" in message["intents"]:
            message["intents"] = {**message["intents"], "evidence": masked_text(message["intents"]["evidence"])}
    evidence = masked_evidence(row.evidence)
    if evidence is None and source is not None:
        evidence = evidence_for_reason(source, row.reason)
    why = None
    if source is not None and row.decision_id is not None and row.customer_id is not None:
        with engine.connect() as connection:
            why = why_chosen(connection, source, row, now)
    return ItemDetail(
        item=queue_item(row),
        decision=decision,
        content_hash=row.content_hash,
        override=row.content_override,
        content=content,
        render_error=render_error,
        findings=findings,
        matches_playbook=matches,
        outbox=dict(sent._mapping) if sent else None,
        history=[_masked_history(dict(h._mapping)) for h in history],
        message=message,
        evidence=evidence,
        standing=standing,
        why=why,
        template=template,
    )


def why_chosen(connection: Connection, playbook: Playbook, row: Row[Any], now: datetime) -> dict[str, Any] | None:
    """Why the agent chose this customer: its audience and the values of the fields it reads;
    for an escalation, the rule that sent it to a person and the customer fields that rule reads.

    Only those fields are read (:mod:`legato.audience.facts`): no more personal data than the
    choice needs. Values are the customer's now; the decision's own numbers are in ``decision``.
    """
    agent = next((a for a in playbook.agents if a.id == row.agent_id), None)
    if agent is None:
        return None
    why: dict[str, Any] = {"audience": agent.audience, "facts": facts_of(connection, playbook, agent.audience, row.customer_id, now)}
    family, _, rule_reason = row.reason.partition(":")
    rule = next((r for r in agent.escalation if r.reason == (rule_reason if family == "escalate" else row.reason)), None)
    if rule is not None:
        why["escalation"] = {"rule": rule.reason, "when": rule.when, "facts": facts_of(connection, playbook, rule.when, row.customer_id, now)}
    return why


def _masked_history(entry: dict[str, Any]) -> dict[str, Any]:
    detail = entry.get("detail")
    if isinstance(detail, Mapping):
        entry["detail"] = {key: masked_text(value) if key in ("evidence", "excerpt", "text", "phrases") else value for key, value in detail.items()}
    return entry


def load_row(connection: Connection, item_id: int, *, lock: bool = False) -> Row[Any]:
    query = sa.select(
        *_ITEM_COLUMNS,
        decisions.c.content_override,
        decisions.c.playbook_version_id,
        *(decisions.c[name].label(f"d_{name}") for name in _DECISION_FIELDS),
        *(inbound_messages.c[name].label(f"m_{name}") for name in _MESSAGE_FIELDS),
    ).select_from(_FROM).where(review_items.c.id == item_id)
    if lock:  # PostgreSQL: a second reviewer waits here, then sees the first one's outcome
        query = query.with_for_update(of=review_items)
    row = connection.execute(query).first()
    if row is None:
        raise ReviewNotFound(f"there is no review item {item_id}", hint=LIST_HINT)
    return row


def waiting_by_reason(connection: Connection) -> dict[tuple[str, str], int]:
    """Items still waiting for a person, by (status, reason): the queue's size as /metrics shows it.

    Open and audit items only, read from the counts (:mod:`legato.trust.review.counts`), so a
    scrape costs the same however long the queue is.
    """
    found = counts.by(connection, ("status", "reason"), review_counts.c.status.in_([str(s) for s in UNDECIDED]))
    return {(str(status), str(reason)): n for (status, reason), n in found.items()}
