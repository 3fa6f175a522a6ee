"""``/review``: the review inbox. The queue filtered by reason, agent, kind, priority and age with
its totals; one item with why this customer, the message as they would get it (the e-mail's
HTML in a sandboxed frame, an SMS with its parts), the guardrails' findings marked in the text,
the escalation; approve (naming the content hash seen), edit (checked as one types, or with the
Check button), reject with a reason, escalate, resolve; and approving or rejecting every item a
filter matches after a confirmation that says how many and what it unlocks.

Every rule is :mod:`legato.service.review`'s, and behind it :mod:`legato.trust.review`'s: this
module parses a form, calls one service function under the signed-in key's name and shapes the
answer into a page. Reading needs ``read``; every POST needs ``review`` and the session's CSRF
token (:func:`legato.console.csrf.checked`), so a viewer sees the queue without a button and a
viewer's POST is refused with 403.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from legato.api.context import ApiContext, context
from legato.api.errors import STATUS_OF_KIND
from legato.api.security import Ability
from legato.console.auth import Session, signed_in
from legato.console.csrf import checked, form_of
from legato.console.render import page
from legato.deliver.render import Rendered
from legato.errors import Invalid, kind_of
from legato.guard.findings import layout
from legato.guard.message import as_message
from legato.guard.sms import count_segments
from legato.service import agents as agents_service
from legato.service import review
from legato.store.status import ReviewKind, ReviewStatus
from legato.trust.review.model import MAX_PRIORITY, REASON_CODES, ItemDetail, QueueFilter, QueueItem, ReviewConflict, ReviewError

router = APIRouter()

Reader = Annotated[Session, Depends(signed_in(Ability.READ))]
Reviewer = Annotated[Session, Depends(checked(Ability.REVIEW))]
Context = Annotated[ApiContext, Depends(context)]

PAGE_SIZE = 50
STATUSES = tuple(s.value for s in ReviewStatus) + ("all",)
KINDS = tuple(k.value for k in ReviewKind)

# What a reason means, in a marketer's words (the code is shown beside it; an unknown one is shown alone).
REASONS = {
    "trust_stage_0": "The agent is at stage 0: every message it proposes waits for a person.",
    "content_escalation": "A content guardrail asked for a person to look before it goes.",
    "audit_sample": "A sample of what the agent sent on its own, for a person to check after the fact.",
    "possible_opt_out": "The customer's reply may be an opt-out: a person decides.",
}
REJECT_REASONS = {
    "off_brand": "Off brand", "wrong_audience": "Wrong audience", "wrong_offer": "Wrong offer",
    "compliance": "Compliance", "timing": "Timing", "other": "Other",
}
assert set(REJECT_REASONS) == set(REASON_CODES)  # the owner's list; only the labels are ours
# A message a redirect carries back (``?done=approved&item=12``): a code, never the sentence.
DONE = {
    "approved": "Item {item} approved: its message is scheduled.",
    "rejected": "Item {item} rejected: it will not be sent.",
    "escalated": "Item {item} escalated.",
    "edited": "Item {item} edited and checked again: it needs an approval (its content hash changed).",
    "resolved": "Item {item} resolved.",
}


# --- the filter ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The queue's filter as the list's form gives it; carried along to an item and back."""

    status: str = "open"
    reason: str | None = None
    agent: str | None = None
    kind: str | None = None
    role: str | None = None
    min_priority: int | None = None
    older_than_hours: float | None = None

    @classmethod
    def of(cls, values: Any) -> Filters:
        """From a query string or form; an empty field is no filter, a bad one a clear error."""
        def text(name: str, longest: int = 128) -> str | None:
            value = (values.get(name) or "").strip()
            if len(value) > longest:
                raise Invalid(f"the {name} filter is longer than {longest} characters", hint="shorten it")
            return value or None

        status = text("status") or "open"
        if status not in STATUSES:
            raise Invalid(f"'{status}' is not a status of the queue", hint=f"choose one of {', '.join(STATUSES)}")
        kind = text("kind")
        if kind is not None and kind not in KINDS:
            raise Invalid(f"'{kind}' is not a kind of review item", hint=f"choose one of {', '.join(KINDS)}")
        priority = text("min_priority")
        hours = text("older_than_hours")
        try:
            min_priority = int(priority) if priority is not None else None
        except ValueError:
            raise Invalid(f"the minimum priority '{priority}' is not a whole number", hint=f"give 0 to {MAX_PRIORITY}") from None
        if min_priority is not None and not 0 <= min_priority <= MAX_PRIORITY:
            raise Invalid(f"the minimum priority {min_priority} is out of range", hint=f"give 0 to {MAX_PRIORITY}")
        try:
            older = float(hours) if hours is not None else None
        except ValueError:
            raise Invalid(f"the age '{hours}' is not a number of hours", hint="e.g. 24 for items waiting a day or more") from None
        if older is not None and not 0 <= older <= 100_000:
            raise Invalid(f"the age {older:g} hours is out of range", hint="give 0 to 100000 hours")
        return cls(status, text("reason", 64), text("agent"), kind, text("role", 64), min_priority, older)

    def where(self, now: Any, **changes: Any) -> QueueFilter:
        older = timedelta(hours=self.older_than_hours) if self.older_than_hours is not None else None
        values = dict(status=self.status, agent=self.agent, role=self.role, kind=self.kind, reason=self.reason,
                      min_priority=self.min_priority, older_than=older, now=now)
        return QueueFilter(**(values | changes))

    def pairs(self) -> list[tuple[str, str]]:
        out = [("status", self.status)] if self.status != "open" else []
        for name in ("reason", "agent", "kind", "role", "min_priority", "older_than_hours"):
            value = getattr(self, name)
            if value is not None:
                out.append((name, f"{value:g}" if isinstance(value, float) else str(value)))
        return out

    def query(self, **extra: Any) -> str:
        """The filter (and ``extra``) as a query string, '' when there is nothing to carry."""
        pairs = self.pairs() + [(k, str(v)) for k, v in extra.items() if v is not None]
        return ("?" + urlencode(pairs)) if pairs else ""

    @property
    def narrows(self) -> bool:
        """Acting on many items needs an agent or a reason (the owner refuses a bare queue)."""
        return self.agent is not None or self.reason is not None

    @property
    def active(self) -> bool:
        return bool(self.pairs())


# --- the message, marked -------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    text: str
    marks: tuple[int, ...]  # the findings (by number on the page) this piece of text is part of
    severity: str | None  # the most severe of them


_RANK = {"warn": 1, "escalate": 2, "block": 3}


def marked(text: str, findings: list[dict[str, Any]], whole: tuple[int, int] | None) -> list[Piece]:
    """``text`` cut where findings start and end, each piece with the findings it is part of.

    A finding of the copy (``in`` copy) is placed by its span; one of the variant (rendered for
    a stand-in customer) where its words first appear in this text. A finding about the whole
    body (something missing, such as the unsubscribe link) is listed, not marked.
    """
    places: list[tuple[int, int, int, str]] = []
    for number, finding in enumerate(findings, start=1):
        start, end = finding["span"]
        if finding.get("whole"):
            continue
        if finding.get("in") != "copy":
            excerpt = finding.get("excerpt") or ""
            at = text.find(excerpt) if excerpt else -1
            if at < 0:
                continue
            start, end = at, at + len(excerpt)
        if end <= start or (start, end) == whole or end - start > 400 or end > len(text):
            continue
        places.append((start, end, number, finding["severity"]))
    cuts = sorted({0, len(text), *(p[0] for p in places), *(p[1] for p in places)})
    pieces = []
    for start, end in zip(cuts, cuts[1:]):
        over = [p for p in places if p[0] <= start and end <= p[1]]
        severity = max((p[3] for p in over), key=lambda s: _RANK.get(s, 0)) if over else None
        pieces.append(Piece(text[start:end], tuple(p[2] for p in over), severity))
    return pieces


@dataclass(frozen=True)
class MessageView:
    """The message as the customer would get it: its checked text marked with the findings, the
    e-mail's HTML part (shown in a sandboxed frame), an SMS's parts."""

    channel: str
    pieces: list[Piece]
    html: str | None
    sms: Any  # legato.guard.sms.SmsSegments, for an SMS
    findings: list[dict[str, Any]]
    unmarked: list[int]  # findings about the whole message, or whose words are not in it

    @classmethod
    def of(cls, channel: str, content: dict[str, Any] | None, findings: list[dict[str, Any]]) -> MessageView | None:
        if content is None or content.get("body") is None:
            return None
        rendered = Rendered(subject=content.get("subject"), title=content.get("title"), body=content["body"], html=content.get("html"))
        message = as_message(channel, "marketing", rendered)  # the purpose does not move any text
        where = layout(message)
        pieces = marked(where.text, findings, where.body)
        placed = {n for piece in pieces for n in piece.marks}
        sms = count_segments(message.body) if channel == "sms" else None
        return cls(channel, pieces, rendered.html, sms, findings, [n for n in range(1, len(findings) + 1) if n not in placed])


# --- the list ------------------------------------------------------------------------------


@router.get("/review")
def inbox(request: Request, session: Reader, ctx: Context) -> Response:
    filters = Filters.of(request.query_params)
    after = request.query_params.get("after") or None
    found = review.page(ctx.engine, filters.where(ctx.now()), limit=PAGE_SIZE, after=after)
    totals = review.totals(ctx.engine, filters.status if filters.status != "all" else "open")  # "all": the open ones
    return page(
        request, "review_list.html", title="Review inbox", filters=filters, items=found.items, total=found.total,
        next_cursor=found.next_cursor, after=after, totals=totals, reasons=REASONS, statuses=STATUSES, kinds=KINDS,
        now=ctx.now(), what=what,
    )


def what(item: QueueItem) -> str:
    """One line on what an item is about (the CLI's list says the same)."""
    evidence = item.evidence or {}
    if item.kind == ReviewKind.CONVERSATION:
        return f"{item.channel or ''} reply: {evidence.get('excerpt', '')}"[:80]
    if item.kind == ReviewKind.FINDING:
        return f"finding: {evidence.get('attribute', '')} {evidence.get('period', '')}".strip()
    return f"{item.channel or ''} · {item.creative_id or ''}" + (f" · {item.offer_id}" if item.offer_id else "") + (" (edited)" if item.edited else "")


# --- one item ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Why an action was not done, shown on the item's page above everything (nothing changed)."""

    title: str
    message: str
    hint: str | None


def _problem(error: ReviewError) -> Problem:
    if isinstance(error, ReviewConflict) and "content changed since you looked" in error.message:
        return Problem("This message changed since you opened it",
                       "Someone edited it after you loaded the page, so your approval was not recorded. The page now shows "
                       "the message as it stands, with its new content hash: review it again before you approve.", None)
    titles = {"conflict": "Not done: the item changed", "forbidden": "Not allowed", "invalid": "Not done", "not_found": "No such item"}
    return Problem(titles.get(kind_of(error), "Not done"), error.message, error.hint)


def _item_page(request: Request, ctx: ApiContext, item_id: int, filters: Filters, *, status_code: int = 200,
               problem: Problem | None = None, draft: Any = None, typed: dict[str, str] | None = None) -> Response:
    detail = review.show(ctx.engine, item_id, playbook=ctx.playbook_or_none(), now=ctx.now())
    before, after = review.around(ctx.engine, filters.where(ctx.now()), detail.item)
    item = detail.item
    view = MessageView.of(item.channel or "", detail.content, detail.findings) if item.channel else None
    draft_view = _draft_view(item.channel or "", draft) if draft is not None else None
    template = detail.template or {}
    done = request.query_params.get("done")
    notice = DONE[done].format(item=request.query_params.get("item", item.id)) if done in DONE else None
    return page(
        request, "review_item.html", status_code=status_code, title=f"Review item {item.id}", d=detail, item=item, view=view,
        filters=filters, before=before, after=after, problem=problem, notice=notice, draft=draft, draft_view=draft_view,
        typed=typed or {"subject": template.get("subject") or "", "body": template.get("body") or ""},
        reasons=REASONS, reject_reasons=REJECT_REASONS, can_decide=_decidable(detail), can_edit=_editable(detail),
        can_resolve=item.kind != ReviewKind.DECISION and item.status == ReviewStatus.OPEN,
        can_escalate=item.status in (ReviewStatus.OPEN, ReviewStatus.AUDIT), now=ctx.now(),
    )


def _decidable(detail: ItemDetail) -> bool:
    return detail.item.kind == ReviewKind.DECISION and detail.item.status in (ReviewStatus.OPEN, ReviewStatus.AUDIT)


def _editable(detail: ItemDetail) -> bool:
    sent = (detail.outbox or {}).get("status") in ("sent", "dead", "claimed")
    return (detail.item.kind == ReviewKind.DECISION and detail.item.status in (ReviewStatus.OPEN, ReviewStatus.APPROVED)
            and detail.template is not None and not sent)


@router.get("/review/{item_id:int}")
def item_page(item_id: int, request: Request, session: Reader, ctx: Context) -> Response:
    return _item_page(request, ctx, item_id, Filters.of(request.query_params))


async def _posted(request: Request) -> tuple[dict[str, str], Filters]:
    form = await form_of(request)
    return form, Filters.of(form)


def _onward(ctx: ApiContext, filters: Filters, item: QueueItem, done: str) -> Response:
    """After an item is decided: the next one of the filtered queue (else the one before, else the list)."""
    before, after = review.around(ctx.engine, filters.where(ctx.now()), item)
    following = after or before
    target = f"/review/{following}" if following is not None else "/review"
    return RedirectResponse(target + filters.query(done=done, item=item.id), status_code=303)


def _failed(request: Request, ctx: ApiContext, item_id: int, filters: Filters, error: ReviewError, **more: Any) -> Response:
    return _item_page(request, ctx, item_id, filters, status_code=STATUS_OF_KIND[kind_of(error)], problem=_problem(error), **more)


@router.post("/review/{item_id:int}/approve")
async def approve(item_id: int, request: Request, session: Reviewer, ctx: Context) -> Response:
    form, filters = await _posted(request)
    try:
        done = review.approve(ctx.engine, item_id, session.name, now=ctx.now(), content_hash=form.get("content_hash") or None,
                              playbook=ctx.playbook_or_none())
    except ReviewError as error:
        return _failed(request, ctx, item_id, filters, error)
    return _onward(ctx, filters, done.item, "approved")


@router.post("/review/{item_id:int}/reject")
async def reject(item_id: int, request: Request, session: Reviewer, ctx: Context) -> Response:
    form, filters = await _posted(request)
    try:
        done = review.reject(ctx.engine, item_id, session.name, form.get("reason", ""), note=(form.get("note") or "").strip() or None, now=ctx.now())
    except ReviewError as error:
        return _failed(request, ctx, item_id, filters, error)
    return _onward(ctx, filters, done, "rejected")


@router.post("/review/{item_id:int}/escalate")
async def escalate(item_id: int, request: Request, session: Reviewer, ctx: Context) -> Response:
    form, filters = await _posted(request)
    try:
        review.escalate(ctx.engine, item_id, session.name, to_role=form.get("to_role", ""), note=form.get("note", ""), now=ctx.now())
    except ReviewError as error:
        return _failed(request, ctx, item_id, filters, error)
    return RedirectResponse(f"/review/{item_id}" + filters.query(done="escalated", item=item_id), status_code=303)


@router.post("/review/{item_id:int}/resolve")
async def resolve(item_id: int, request: Request, session: Reviewer, ctx: Context) -> Response:
    form, filters = await _posted(request)
    try:
        done = review.resolve(ctx.engine, item_id, session.name, note=form.get("note", ""), now=ctx.now())
    except ReviewError as error:
        return _failed(request, ctx, item_id, filters, error)
    return _onward(ctx, filters, done, "resolved")


def _typed(form: dict[str, str]) -> tuple[str | None, str | None]:
    """The editor's subject and body; a field left as it was, or absent, is not part of the edit."""
    subject = form.get("subject")
    body = form.get("body")
    return (subject if subject not in (None, "") else None), (body.replace("\r\n", "\n") if body not in (None, "") else None)


@router.post("/review/{item_id:int}/edit")
async def edit(item_id: int, request: Request, session: Reviewer, ctx: Context) -> Response:
    """Save an edit (``do=save``), or only check the draft (``do=check``: the button that works without JavaScript)."""
    form, filters = await _posted(request)
    subject, body = _typed(form)
    typed = {"subject": form.get("subject", ""), "body": form.get("body", "")}
    detail = review.show(ctx.engine, item_id, playbook=ctx.playbook_or_none(), now=ctx.now())
    template = detail.template or {}
    # Only what the reviewer changed is edited: an untouched subject stays the creative's template.
    if subject is not None and subject == template.get("subject"):
        subject = None
    if body is not None and body == template.get("body"):
        body = None
    if form.get("do") == "check":
        try:
            draft = review.check_edit(ctx.engine, item_id, playbook=ctx.playbook_or_none(), subject=subject, body=body)
        except ReviewError as error:
            return _failed(request, ctx, item_id, filters, error, typed=typed)
        return _item_page(request, ctx, item_id, filters, draft=draft, typed=typed)
    try:
        review.edit(ctx.engine, item_id, session.name, playbook=ctx.playbook_or_none(), now=ctx.now(), subject=subject, body=body)
    except ReviewError as error:
        draft = None
        if subject is not None or body is not None:
            try:
                draft = review.check_edit(ctx.engine, item_id, playbook=ctx.playbook_or_none(), subject=subject, body=body)
            except ReviewError:
                draft = None
        if draft is not None and draft.verdict == "block":
            blocked = Problem("Not saved: a guardrail blocks this edit", "The findings are marked under the editor; change those words and save again.", None)
            return _item_page(request, ctx, item_id, filters, status_code=422, problem=blocked, draft=draft, typed=typed)
        return _failed(request, ctx, item_id, filters, error, draft=draft, typed=typed)
    return RedirectResponse(f"/review/{item_id}" + filters.query(done="edited", item=item_id), status_code=303)


@router.post("/review/{item_id:int}/check")
async def check_draft(item_id: int, request: Request, session: Reviewer, ctx: Context) -> Response:
    """The draft checked as the edit would be, as a fragment ``review.js`` puts under the editor."""
    form = await form_of(request)
    subject, body = _typed(form)
    try:
        draft = review.check_edit(ctx.engine, item_id, playbook=ctx.playbook_or_none(), subject=subject, body=body)
        detail_channel = review.show(ctx.engine, item_id, playbook=ctx.playbook_or_none(), now=ctx.now()).item.channel or ""
    except ReviewError as error:
        return page(request, "review_draft.html", status_code=STATUS_OF_KIND[kind_of(error)], draft=None, draft_view=None,
                    problem=_problem(error))
    return page(request, "review_draft.html", draft=draft, draft_view=_draft_view(detail_channel, draft), problem=None)


def _draft_view(channel: str, draft: Any) -> MessageView | None:
    return MessageView.of(channel, draft.content, draft.findings)


# --- many items at once ----------------------------------------------------------------------


@dataclass(frozen=True)
class BulkPlan:
    """What approving or rejecting a filter's items would do, read before anything is changed."""

    action: str
    items: list[QueueItem]
    total: int  # how many open proposed messages the filter matches in all (only BULK_LIMIT are acted on)
    channels: list[tuple[str, int]]
    variants: list[Any]
    agents: list[tuple[str, int, int]]  # agent, its trust stage, items of it here
    assisted: list[str]  # agents at stage 1: an approval lets them send that variant unreviewed


def _plan(ctx: ApiContext, filters: Filters, action: str) -> BulkPlan:
    where = filters.where(ctx.now(), kind=ReviewKind.DECISION.value, status=ReviewStatus.OPEN.value)
    items = review.preview_matching(ctx.engine, where, limit=review.BULK_LIMIT)
    total = review.page(ctx.engine, where, limit=1).total
    stages = {a.id: a.trust_stage for a in agents_service.list_agents(ctx.engine)}
    by_agent = Counter(item.agent_id or "" for item in items)
    agents = [(agent, stages.get(agent, -1), n) for agent, n in by_agent.most_common()]
    return BulkPlan(
        action, items, max(total, len(items)), Counter(item.channel or "?" for item in items).most_common(), review.variants(items), agents,
        [agent for agent, stage, _ in agents if stage == 1],
    )


def _bulk_filters(values: Any) -> Filters:
    filters = Filters.of(values)
    if filters.status != "open" or filters.kind not in (None, ReviewKind.DECISION.value):
        raise Invalid("only open proposed messages are approved or rejected together",
                      hint="filter the open queue (kind: proposed messages) and try again")
    if not filters.narrows:
        raise Invalid("acting on many items needs a filter that narrows the queue", hint="choose an agent or a reason first")
    return filters


@router.get("/review/bulk")
def bulk_confirm(request: Request, session: Annotated[Session, Depends(signed_in(Ability.REVIEW))], ctx: Context) -> Response:
    action = request.query_params.get("action", "")
    if action not in ("approve", "reject"):
        raise Invalid(f"'{action}' is not something done to many items", hint="approve or reject")
    filters = _bulk_filters(request.query_params)
    return page(request, "review_bulk.html", title=f"{action.capitalize()} {filters.agent or filters.reason}", filters=filters,
                plan=_plan(ctx, filters, action), limit=review.BULK_LIMIT, reject_reasons=REJECT_REASONS, result=None)


@router.post("/review/bulk")
async def bulk_do(request: Request, session: Reviewer, ctx: Context) -> Response:
    form = await form_of(request)
    action = form.get("action", "")
    if action not in ("approve", "reject"):
        raise Invalid(f"'{action}' is not something done to many items", hint="approve or reject")
    filters = _bulk_filters(form)
    where = filters.where(ctx.now(), kind=ReviewKind.DECISION.value)
    if action == "approve":
        result = review.approve_matching(ctx.engine, where, session.name, now=ctx.now(), playbook=ctx.playbook_or_none())
    else:
        result = review.reject_matching(ctx.engine, where, session.name, form.get("because", ""), now=ctx.now(),
                                        note=(form.get("note") or "").strip() or None)
    channels = Counter(item.channel or "?" for item in result.done).most_common()
    return page(request, "review_bulk.html", title=f"{action.capitalize()}d", filters=filters, plan=None, result=result,
                action=action, channels=channels, limit=review.BULK_LIMIT, reject_reasons=REJECT_REASONS)
