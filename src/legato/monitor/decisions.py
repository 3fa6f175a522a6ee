"""What agents decided, and why: a search over every decision, a page at a time, and one decision explained.

A decision carries the numbers it was made on (the policy's propensity and expected value),
whether the customer was held out (the agent's holdout) or in the global control group
(route ``control``), the guardrails' reasons recorded with it (``findings``: consent,
suppression, holdout reachability...), what the cycle routed it to (``route``, which never
changes) and where it stands now (``status``), the offer, creative, channel and send time
it chose, its review item if a person was asked (reason, status, who decided), its message's
outbox state, and once its attribution window closed, its outcome. :func:`explain` adds why
this customer: the agent's audience and the customer's values of the fields it reads
(:func:`legato.trust.review.queue.why_chosen`), no other personal data.

**Order and pages.** Newest first: by ``decided_at`` descending, then ``id`` descending (a
cycle decides every customer at one instant, so the id orders a cycle's decisions). Pages
are by key, never by offset: the cursor is the last decision's (decided_at, id), so
decisions written while someone pages (a cycle running) neither shift nor repeat the next
page, and a deep page costs what the first does. The indexes lead with each filter and end
with (decided_at, id) — ``ix_decisions_agent_time``, ``ix_decisions_customer_time``,
``ix_decisions_time`` (migration 0018) — so a page is read straight off one of them; a
status filter alone is checked along ``ix_decisions_time``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.errors import Invalid, NotFound
from legato.playbook.models import Playbook
from legato.store.playbook_versions import Versions
from legato.store.schema import decisions, outbox, review_items
from legato.store.status import DecisionStatus, Route

MAX_LIMIT = 1000
SEARCH_HINT = "search decisions by customer, agent, status or time"


@dataclass(frozen=True)
class DecisionFilter:
    """Which decisions: every field that is set must hold. ``since`` is inclusive, ``until`` exclusive."""

    customer: str | None = None
    agent: str | None = None
    status: DecisionStatus | None = None
    route: Route | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Review:
    """The review item of a decision a person was asked about."""

    item_id: int
    status: str
    reason: str
    priority: int
    decided_by: str | None
    decided_at: datetime | None


@dataclass(frozen=True)
class Delivery:
    """The decision's message in the outbox."""

    message_id: str
    status: str
    send_at: datetime
    sent_at: datetime | None
    attempts: int
    error: str | None


@dataclass(frozen=True)
class Outcome:
    """What came of the decision once its attribution window closed (``legato.learn.attribution``)."""

    settled_at: datetime
    reward: float | None
    visited: bool | None
    purchased: bool | None
    revenue: float | None
    opened: bool | None
    clicked: bool | None
    unsubscribed: bool | None
    complained: bool | None


@dataclass(frozen=True)
class DecisionView:
    id: int
    cycle_id: int
    agent_id: str
    customer_id: str
    decided_at: datetime
    action: str
    offer_id: str | None
    creative_id: str | None
    channel: str | None
    send_at: datetime | None
    propensity: float
    expected_value: float | None
    holdout: bool
    control: bool
    findings: list[str]
    route: str
    status: str
    content_hash: str | None
    approved_by: str | None
    edited: bool
    playbook_version: int | None
    review: Review | None
    delivery: Delivery | None
    outcome: Outcome | None

    @property
    def reasons(self) -> list[str]:
        """Every reason the decision was routed as it was: its guardrail findings, then its review reason."""
        return [*self.findings, *([self.review.reason] if self.review is not None else [])]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"reasons": self.reasons}


@dataclass(frozen=True)
class DecisionPage:
    items: list[DecisionView]
    next_cursor: str | None


@dataclass(frozen=True)
class DecisionDetail:
    decision: DecisionView
    why: dict[str, Any] | None  # the audience and the customer's values of the fields it reads (None: the agent is not in its playbook)


_OUTCOME = ("reward", "visited", "purchased", "revenue", "opened", "clicked", "unsubscribed", "complained")
_COLUMNS = (
    decisions.c.id, decisions.c.cycle_id, decisions.c.agent_id, decisions.c.customer_id, decisions.c.decided_at, decisions.c.action,
    decisions.c.offer_id, decisions.c.creative_id, decisions.c.channel, decisions.c.send_at, decisions.c.propensity,
    decisions.c.expected_value, decisions.c.holdout, decisions.c.findings, decisions.c.route, decisions.c.status,
    decisions.c.content_hash, decisions.c.approved_by, decisions.c.content_override.is_not(None).label("edited"),
    decisions.c.playbook_version_id, decisions.c.settled_at, *(decisions.c[name] for name in _OUTCOME),
    review_items.c.id.label("r_id"), review_items.c.status.label("r_status"), review_items.c.reason.label("r_reason"),
    review_items.c.priority.label("r_priority"), review_items.c.decided_by.label("r_decided_by"), review_items.c.decided_at.label("r_decided_at"),
    outbox.c.message_id.label("o_message_id"), outbox.c.status.label("o_status"), outbox.c.send_at.label("o_send_at"),
    outbox.c.sent_at.label("o_sent_at"), outbox.c.attempts.label("o_attempts"), outbox.c.error.label("o_error"),
)
# LEFT OUTER: most decisions have neither a review item nor a message. Each join is by a
# unique column, and the outer loop stays on decisions (read off the filter's index).
_FROM = decisions.outerjoin(review_items, review_items.c.decision_id == decisions.c.id).outerjoin(outbox, outbox.c.decision_id == decisions.c.id)


def search(engine: Engine, where: DecisionFilter, *, limit: int = 100, after: str | None = None) -> DecisionPage:
    """One page of the decisions ``where`` matches, newest first, and the next page's cursor."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit {limit} is out of range", hint=f"ask for 1 to {MAX_LIMIT} decisions at a time")
    try:  # a bound at the edge of the calendar cannot be moved to UTC: say so rather than fail
        where = DecisionFilter(**{**where.__dict__, **{k: _utc(getattr(where, k)) for k in ("since", "until")}})
    except OverflowError:
        raise Invalid("a time bound is out of range", hint="give since and until between the years 1 and 9999") from None
    if where.since is not None and where.until is not None and where.until <= where.since:
        raise Invalid("the time range is empty: until is not after since", hint="give since before until")
    query = sa.select(*_COLUMNS).select_from(_FROM).where(*_clauses(where))
    if after is not None:
        at, last = _cursor(after)
        query = query.where(sa.or_(decisions.c.decided_at < at, sa.and_(decisions.c.decided_at == at, decisions.c.id < last)))
    query = query.order_by(decisions.c.decided_at.desc(), decisions.c.id.desc()).limit(limit + 1)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    items = [_view(row) for row in rows[:limit]]
    return DecisionPage(items, _cursor_of(items[-1]) if len(rows) > limit and items else None)


def explain(engine: Engine, decision_id: int, *, now: datetime, playbook: Playbook | None = None) -> DecisionDetail:
    """One decision and why this customer, read with the playbook the decision was made with
    (``playbook``, the one in force, only for a decision made before versions were stored)."""
    from legato.trust.review.queue import why_chosen

    with engine.connect() as connection:
        row = connection.execute(sa.select(*_COLUMNS).select_from(_FROM).where(decisions.c.id == decision_id)).first()
        if row is None:
            raise NotFound(f"there is no decision {decision_id}", hint=SEARCH_HINT)
        view = _view(row)
        source = Versions().for_decision(connection, view.playbook_version, playbook)
        subject = SimpleNamespace(agent_id=view.agent_id, customer_id=view.customer_id, reason=view.review.reason if view.review else "")
        why = why_chosen(connection, source, subject, now) if source is not None else None  # type: ignore[arg-type]
    return DecisionDetail(view, why)


def _clauses(where: DecisionFilter) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    for column, value in ((decisions.c.customer_id, where.customer), (decisions.c.agent_id, where.agent),
                          (decisions.c.status, where.status), (decisions.c.route, where.route)):
        if value is not None:
            clauses.append(column == value)
    if where.since is not None:
        clauses.append(decisions.c.decided_at >= where.since)
    if where.until is not None:
        clauses.append(decisions.c.decided_at < where.until)
    return clauses


def _view(row: Any) -> DecisionView:
    review = Review(row.r_id, row.r_status, row.r_reason, row.r_priority, row.r_decided_by, row.r_decided_at) if row.r_id is not None else None
    delivery = (
        Delivery(row.o_message_id, row.o_status, row.o_send_at, row.o_sent_at, int(row.o_attempts or 0), row.o_error)
        if row.o_message_id is not None else None
    )
    outcome = Outcome(row.settled_at, *(getattr(row, name) for name in _OUTCOME)) if row.settled_at is not None else None
    return DecisionView(
        id=row.id, cycle_id=row.cycle_id, agent_id=row.agent_id, customer_id=row.customer_id, decided_at=row.decided_at,
        action=row.action, offer_id=row.offer_id, creative_id=row.creative_id, channel=row.channel, send_at=row.send_at,
        propensity=row.propensity, expected_value=row.expected_value, holdout=bool(row.holdout), control=row.route == Route.CONTROL,
        findings=[str(f) for f in row.findings or []], route=row.route, status=row.status, content_hash=row.content_hash,
        approved_by=row.approved_by, edited=bool(row.edited), playbook_version=row.playbook_version_id,
        review=review, delivery=delivery, outcome=outcome,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise Invalid(f"the time {value.isoformat()} has no time zone", hint="give an offset, e.g. 2024-03-04T08:00:00Z")
    return value.astimezone(timezone.utc)


def _cursor_of(view: DecisionView) -> str:
    at = view.decided_at if view.decided_at.tzinfo else view.decided_at.replace(tzinfo=timezone.utc)
    return f"{(at - _EPOCH) // timedelta(microseconds=1)}.{view.id}"


def _cursor(text: str) -> tuple[datetime, int]:
    try:
        micros, last = (int(part) for part in text.split("."))
        if abs(last) >= 2**31:  # what an INTEGER column holds (PostgreSQL: 32 bits)
            raise ValueError(text)
        return _EPOCH + timedelta(microseconds=micros), last
    except (ValueError, OverflowError):
        raise Invalid(f"'{text}' is not a page cursor", hint="use the next_cursor the previous page gave") from None
