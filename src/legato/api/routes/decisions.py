"""Decisions over HTTP: search by customer, agent, status, route and time, a page at a time, and
one decision with why this customer.

Each decision comes with its why: the policy's propensity and expected value, holdout and
global control, the guardrails' reasons, the route and the status, its review item and its
message, and its outcome once settled (:mod:`legato.monitor.decisions` reads them). Pages are
by cursor, newest first; there is no total, since a count over every decision of a busy
store costs far more than the page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import AwareDatetime, BaseModel, Field

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.routes.review import Why
from legato.api.security import Ability, Caller, allow
# Outcome is the reader's own dataclass: Pydantic reads and documents it as it is, so its fields are written once.
from legato.monitor.decisions import DecisionFilter, DecisionView, Outcome
from legato.service import decisions
from legato.store.status import DecisionStatus, OutboxStatus, ReviewStatus, Route

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])

DecisionId = Path(..., ge=1, le=2**31 - 1, description="The decision's number")


class Review(BaseModel):
    item_id: int
    status: ReviewStatus
    reason: str
    priority: int
    decided_by: str | None
    decided_at: datetime | None


class Delivery(BaseModel):
    message_id: str
    status: OutboxStatus
    send_at: datetime
    sent_at: datetime | None
    attempts: int
    error: str | None


class Decision(BaseModel):
    """One decision with its why."""

    id: int
    cycle_id: int
    agent_id: str
    customer_id: str
    decided_at: datetime
    action: str = Field(description="creative/offer/window, or nothing")
    offer_id: str | None
    creative_id: str | None
    channel: str | None
    send_at: datetime | None
    propensity: float = Field(description="The probability the policy chose this action with")
    expected_value: float | None = Field(description="The policy's score of the action chosen")
    holdout: bool = Field(description="Held out by the agent: no message, kept to measure lift")
    control: bool = Field(description="In the global control group: no marketing from any agent")
    findings: list[str] = Field(description="The guardrails' reasons recorded with the decision (consent, suppression, ...)")
    reasons: list[str] = Field(description="Every reason it was routed so: its findings, then its review item's reason")
    route: Route = Field(description="What the cycle decided; never changes")
    status: DecisionStatus = Field(description="Where it stands now")
    content_hash: str | None
    approved_by: str | None
    edited: bool
    playbook_version: int | None
    review: Review | None
    delivery: Delivery | None = Field(description="Its message in the outbox, if it has one")
    outcome: Outcome | None = Field(description="What came of it, once its attribution window closed")

    @classmethod
    def of(cls, view: DecisionView) -> Decision:
        return cls.model_validate(view.to_dict())


class DecisionPage(BaseModel):
    items: list[Decision]
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null on the last page")


class DecisionDetail(BaseModel):
    decision: Decision
    why: Why | None = Field(description="Why this customer: the audience and the values of the fields it reads")


Reader = Annotated[Caller, Depends(allow(Ability.READ))]
Context = Annotated[ApiContext, Depends(context)]


@router.get("", response_model=DecisionPage, summary="Decisions by customer, agent, status, route and time, newest first")
def search_decisions(
    caller: Reader,
    ctx: Context,
    customer: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    agent: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    status: DecisionStatus | None = None,
    route: Route | None = None,
    since: Annotated[AwareDatetime | None, Query(description="Decided at or after (with a time zone)")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Decided before (with a time zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=decisions.MAX_LIMIT)] = 100,
    after: Annotated[str | None, Query(min_length=1, max_length=64, description="The next_cursor of the previous page")] = None,
) -> DecisionPage:
    where = DecisionFilter(customer=customer, agent=agent, status=status, route=route, since=since, until=until)
    page = decisions.search(ctx.engine, where, limit=limit, after=after)
    return DecisionPage(items=[Decision.of(view) for view in page.items], next_cursor=page.next_cursor)


@router.get("/{decision_id}", response_model=DecisionDetail, responses=documented(404), summary="One decision and why this customer")
def show_decision(caller: Reader, ctx: Context, decision_id: int = DecisionId) -> DecisionDetail:
    detail = decisions.explain(ctx.engine, decision_id, now=ctx.now(), playbook=ctx.playbook_or_none())
    return DecisionDetail(decision=Decision.of(detail.decision), why=Why.model_validate(detail.why) if detail.why else None)
