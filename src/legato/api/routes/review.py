"""The review queue over HTTP: list (totals, filters, pages by cursor), show, approve, edit,
reject, escalate, resolve, withdraw, and acting on every item a filter matches.

The reviewer is the key's name (``Caller.name``, the audit log's actor), never a field of
the request. Every rule is :mod:`legato.service.review`'s (and behind it
:mod:`legato.trust.review`'s): an approval names the content hash the reviewer saw and a
changed hash is 409; self-approval, the content checks and the customer's standing are
decided there, with the playbook this server runs (``legato serve --playbook``) given as
the CLI's ``--playbook`` is. Reading needs ``read``; acting needs ``review``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.service import review
from legato.store.status import DecisionStatus, InboundStatus, OutboxStatus, ReviewKind, ReviewStatus
from legato.trust.review.model import MAX_LIMIT, REASON_CODES, ItemDetail, QueueFilter, QueueItem, finding_dict

router = APIRouter(prefix="/v1/review", tags=["review"])

ItemId = Path(..., ge=1, le=2**31 - 1, description="The review item's number (from the list)")

# The status filter: one status, or every item (the CLI's --status all).
StatusFilter = StrEnum("StatusFilter", {**{s.name: s.value for s in ReviewStatus}, "ALL": "all"})  # type: ignore[misc]
# A rejection's reason code: the owner's list (legato.trust.review.model.REASON_CODES).
RejectReason = StrEnum("RejectReason", {code.upper(): code for code in REASON_CODES})  # type: ignore[misc]

Text = Annotated[str, Field(min_length=1, max_length=500)]
Name = Annotated[str, Field(min_length=1, max_length=64)]
AgentName = Annotated[str, Field(min_length=1, max_length=128)]
Hash = Annotated[str, Field(min_length=1, max_length=64, description="A content hash, as `show` gives it")]


# --- what the queue holds -----------------------------------------------------------------


class ReviewItem(BaseModel):
    """One item as the list shows it: what it is about, why it is here, and where it stands."""

    id: int
    kind: ReviewKind
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
    status: ReviewStatus
    created_at: datetime
    due_at: datetime | None
    assigned_role: str | None
    decided_by: str | None
    decided_at: datetime | None
    content_hash: str | None
    edited: bool
    evidence: dict[str, Any] | None

    @classmethod
    def of(cls, item: QueueItem) -> ReviewItem:
        return cls.model_validate(item, from_attributes=True)


class ReviewPage(BaseModel):
    total: int = Field(description="How many items the filter matches in all, not only on this page")
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null on the last page")
    items: list[ReviewItem]


class Decision(BaseModel):
    """The decision an item proposes, with the numbers it was made on."""

    id: int
    agent_id: str
    customer_id: str
    action: str
    decided_at: datetime
    propensity: float
    expected_value: float | None
    holdout: bool
    findings: list[str] = Field(description="The guardrails' reasons recorded with the decision")
    route: DecisionStatus
    status: DecisionStatus
    approved_by: str | None
    offer_id: str | None
    creative_id: str | None
    channel: str | None
    send_at: datetime | None


class Content(BaseModel):
    subject: str | None
    title: str | None
    body: str | None


class ContentFinding(BaseModel):
    rule: str
    family: str
    severity: str
    span: list[int] = Field(description="[start, end) in the text the finding is in")
    reason: str
    in_: str | None = Field(None, alias="in", description="variant (the message for a stand-in customer) or copy (this customer's)")

    model_config = {"populate_by_name": True}


class Outbox(BaseModel):
    message_id: str
    status: OutboxStatus
    send_at: datetime
    sent_at: datetime | None


class HistoryEntry(BaseModel):
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]
    before_hash: str | None
    after_hash: str | None


class Message(BaseModel):
    """What the customer wrote (a conversation item), personal data masked."""

    id: int
    channel: str
    received_at: datetime
    text: str
    sentiment: float
    intents: Any
    action: str
    status: InboundStatus
    handled_by: str | None
    handled_at: datetime | None
    note: str | None


class Escalation(BaseModel):
    rule: str
    when: str
    facts: dict[str, Any]


class Why(BaseModel):
    """Why this customer: the audience and the values of the fields it reads (nothing more)."""

    audience: str
    facts: dict[str, Any]
    escalation: Escalation | None = None


class Override(BaseModel):
    subject: str | None = None
    title: str | None = None
    body: str | None = None
    edited_by: str | None = None
    edited_at: str | None = None
    original_hash: str | None = None


class ReviewDetail(BaseModel):
    """One item with all a reviewer needs: the message as it would go out, its checks and hash, why this customer."""

    item: ReviewItem
    why: Why | None
    decision: Decision | None
    message: Message | None
    evidence: dict[str, Any] | None
    content_hash: str | None = Field(description="What an approval must name")
    override: Override | None
    content: Content | None = Field(description="The message rendered for this customer, as the dispatcher would send it")
    render_error: str | None
    findings: list[ContentFinding]
    matches_playbook: bool | None = Field(description="False: the server's playbook holds another creative; shown is the decision's own")
    outbox: Outbox | None
    history: list[HistoryEntry]
    standing: str | None = Field(description="Why the customer could not be sent it now (null: they could)")

    @classmethod
    def of(cls, detail: ItemDetail) -> ReviewDetail:
        return cls.model_validate({**detail.__dict__, "item": ReviewItem.of(detail.item)})


# --- acting on one item -------------------------------------------------------------------


class Body(BaseModel):
    """A request body: a field this route does not know is refused (422), never ignored."""

    model_config = ConfigDict(extra="forbid")


class Approve(Body):
    content_hash: Hash = Field(description="The content hash you reviewed (from show); another one is 409")


class Unlocked(BaseModel):
    """Stage 1: what the agent may now send unreviewed from its next cycle on."""

    agent_id: str
    creative_id: str | None
    offer_id: str | None
    last_cycle: int = Field(description="Customers its latest cycle proposed this variant to")
    still_open: int = Field(description="How many of those still wait in the queue")


class Approval(BaseModel):
    item: ReviewItem
    unlocked: Unlocked | None


class Edit(Body):
    subject: str | None = Field(None, min_length=1, max_length=998, description="New subject (e-mail), a template like the creatives")
    body: str | None = Field(None, min_length=1, max_length=100_000, description="New body, a template like the creatives")


class Edited(BaseModel):
    item: ReviewItem = Field(description="Open again, with its new content hash: it needs an approval")
    findings: list[ContentFinding]


class Reject(Body):
    reason: RejectReason  # type: ignore[valid-type]
    note: Text | None = None


class Escalate(Body):
    to_role: Name = Field(description="The role that should decide, e.g. legal")
    note: Text = Field(description="What they should look at")


class Resolve(Body):
    note: Text = Field(description="How it was handled")


# --- acting on many -----------------------------------------------------------------------


class Matching(Body):
    """Which open proposed messages: agent, reason or variant is required (the owner says so)."""

    agent: AgentName | None = None
    reason: Name | None = Field(None, description="The reason, or its family (escalate matches escalate:high_value)")
    variant: Hash | None = None
    min_priority: int | None = Field(None, ge=0, le=100)
    older_than_hours: float | None = Field(None, ge=0, le=100_000)
    role: Name | None = None
    limit: int = Field(review.BULK_LIMIT, ge=1, le=review.BULK_LIMIT)

    def where(self, now: datetime) -> QueueFilter:
        return QueueFilter(
            status=ReviewStatus.OPEN, agent=self.agent, role=self.role, kind=ReviewKind.DECISION, reason=self.reason,
            min_priority=self.min_priority, older_than=_hours(self.older_than_hours), now=now, variant=self.variant,
        )


class RejectMatching(Matching):
    because: RejectReason  # type: ignore[valid-type]
    note: Text | None = None


class Refused(BaseModel):
    item: int
    why: str


class BulkResult(BaseModel):
    """Each item done on its own (own transaction, own audit row); each refused one with why (nothing of it changed)."""

    done: list[ReviewItem]
    refused: list[Refused]
    unlocked: list[Unlocked]


class Variant(BaseModel):
    creative_id: str | None
    offer_id: str | None
    items: int


class Preview(BaseModel):
    """What approve-all or reject-all would act on; nothing changed."""

    items: list[ReviewItem]
    variants: list[Variant] = Field(description="How many of them propose each creative and offer, most first")


def _hours(hours: float | None) -> timedelta | None:
    return timedelta(hours=hours) if hours is not None else None


Reader = Annotated[Caller, Depends(allow(Ability.READ))]
Reviewer = Annotated[Caller, Depends(allow(Ability.REVIEW))]
Context = Annotated[ApiContext, Depends(context)]


@router.get("/items", response_model=ReviewPage, summary="The queue, highest priority first, then oldest, a page at a time")
def list_items(
    caller: Reader,
    ctx: Context,
    status: Annotated[StatusFilter, Query(description="One status, or all")] = StatusFilter.OPEN,  # type: ignore[valid-type]
    agent: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    role: Annotated[str | None, Query(min_length=1, max_length=64, description="Only items escalated to this role")] = None,
    kind: ReviewKind | None = None,
    reason: Annotated[str | None, Query(min_length=1, max_length=64, description="This reason, or its family")] = None,
    min_priority: Annotated[int | None, Query(ge=0, le=100)] = None,
    older_than_hours: Annotated[float | None, Query(ge=0, le=100_000, description="Only items created at least this long ago")] = None,
    variant: Annotated[str | None, Query(min_length=1, max_length=64, description="Only decisions proposing this content hash")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    after: Annotated[str | None, Query(min_length=1, max_length=80, description="The next_cursor of the previous page")] = None,
) -> ReviewPage:
    where = QueueFilter(status=status.value, agent=agent, role=role, kind=kind, reason=reason, min_priority=min_priority,
                        older_than=_hours(older_than_hours), now=ctx.now(), variant=variant)
    page = review.page(ctx.engine, where, limit=limit, after=after)
    return ReviewPage(total=page.total, next_cursor=page.next_cursor, items=[ReviewItem.of(item) for item in page.items])


@router.get("/items/{item_id}", response_model=ReviewDetail, responses=documented(404),
            summary="One item: the message as it would go out, its checks, its content hash, why this customer")
def show_item(caller: Reader, ctx: Context, item_id: int = ItemId) -> ReviewDetail:
    return ReviewDetail.of(review.show(ctx.engine, item_id, playbook=ctx.playbook_or_none(), now=ctx.now()))


@router.post("/items/{item_id}/approve", response_model=Approval, responses=documented(404, 409),
             summary="Approve the content you reviewed (its hash); its message is scheduled")
def approve_item(body: Approve, caller: Reviewer, ctx: Context, item_id: int = ItemId) -> Approval:
    done = review.approve(ctx.engine, item_id, caller.name, now=ctx.now(), content_hash=body.content_hash, playbook=ctx.playbook_or_none())
    return Approval(item=ReviewItem.of(done.item), unlocked=Unlocked(**done.unlocked.to_dict()) if done.unlocked else None)


@router.post("/items/{item_id}/edit", response_model=Edited, responses=documented(404, 409),
             summary="Edit the message; the guardrails run again and it needs a new approval")
def edit_item(body: Edit, caller: Reviewer, ctx: Context, item_id: int = ItemId) -> Edited:
    item, findings = review.edit(ctx.engine, item_id, caller.name, playbook=ctx.playbook_or_none(), now=ctx.now(),
                                 subject=body.subject, body=body.body)
    return Edited(item=ReviewItem.of(item), findings=[ContentFinding(**finding_dict(f)) for f in findings])


@router.post("/items/{item_id}/reject", response_model=ReviewItem, responses=documented(404, 409),
             summary="Reject: never sent; the reason is kept for learning")
def reject_item(body: Reject, caller: Reviewer, ctx: Context, item_id: int = ItemId) -> ReviewItem:
    return ReviewItem.of(review.reject(ctx.engine, item_id, caller.name, body.reason.value, note=body.note, now=ctx.now()))


@router.post("/items/{item_id}/escalate", response_model=ReviewItem, responses=documented(404, 409),
             summary="Hand the item to another role; it moves up the queue")
def escalate_item(body: Escalate, caller: Reviewer, ctx: Context, item_id: int = ItemId) -> ReviewItem:
    return ReviewItem.of(review.escalate(ctx.engine, item_id, caller.name, to_role=body.to_role, note=body.note, now=ctx.now()))


@router.post("/items/{item_id}/resolve", response_model=ReviewItem, responses=documented(404, 409),
             summary="Close a customer's reply or a finding a person dealt with")
def resolve_item(body: Resolve, caller: Reviewer, ctx: Context, item_id: int = ItemId) -> ReviewItem:
    return ReviewItem.of(review.resolve(ctx.engine, item_id, caller.name, note=body.note, now=ctx.now()))


@router.post("/items/{item_id}/withdraw", response_model=ReviewItem, responses=documented(404, 409),
             summary="Take back an approval before the message is sent; the item is open again")
def withdraw_item(caller: Reviewer, ctx: Context, item_id: int = ItemId) -> ReviewItem:
    return ReviewItem.of(review.withdraw(ctx.engine, item_id, caller.name, now=ctx.now()))


@router.get("/matching", response_model=Preview, summary="What approve-all or reject-all would act on (changes nothing)")
def preview_matching(body: Annotated[Matching, Query()], caller: Reader, ctx: Context) -> Preview:
    items = review.preview_matching(ctx.engine, body.where(ctx.now()), limit=body.limit)
    return Preview(items=[ReviewItem.of(item) for item in items], variants=[Variant(**v.to_dict()) for v in review.variants(items)])


@router.post("/approve-all", response_model=BulkResult, summary="Approve every open proposed message a filter matches, each on its own")
def approve_all(body: Matching, caller: Reviewer, ctx: Context) -> BulkResult:
    done = review.approve_matching(ctx.engine, body.where(ctx.now()), caller.name, now=ctx.now(), limit=body.limit, playbook=ctx.playbook_or_none())
    return _bulk(done)


@router.post("/reject-all", response_model=BulkResult, summary="Reject every open proposed message a filter matches, each on its own")
def reject_all(body: RejectMatching, caller: Reviewer, ctx: Context) -> BulkResult:
    done = review.reject_matching(ctx.engine, body.where(ctx.now()), caller.name, body.because.value, now=ctx.now(), note=body.note, limit=body.limit)
    return _bulk(done)


def _bulk(done: review.Bulk) -> BulkResult:
    return BulkResult(
        done=[ReviewItem.of(item) for item in done.done],
        refused=[Refused(item=item, why=why) for item, why in done.refused],
        unlocked=[Unlocked(**u.to_dict()) for u in done.unlocked],
    )
