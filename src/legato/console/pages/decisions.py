"""The console's decisions and audit pages: search what agents decided, open one to see why,
and read the audit log.

``/decisions`` searches by customer, agent, status, route and time, newest first, a page at a
time by cursor (``legato.service.decisions``, what ``GET /v1/decisions`` calls); a decision's
page shows why it was made (the policy's scores, holdout and global control, the guardrails'
reasons, the route and where it stands now), its review item, its message and its outcome,
and why this customer: the audience and the values of the fields it reads, no other personal
data (the API's ``/v1/decisions/{id}`` shows the same). ``/audit`` pages the audit log
(``legato.service.audit``), filtered by action, kind of entity, agent and actor.

The search form is a GET form, so a search is a link a marketer can share; a value that does
not parse is said on the page next to its field, never a traceback or a JSON error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse

from legato.api.security import Ability
from legato.console.auth import Session, signed_in
from legato.console.render import page
from legato.errors import Invalid, NotFound
from legato.service import audit, decisions
from legato.service.audit import AuditFilter
from legato.service.decisions import DecisionFilter
from legato.store.status import DecisionStatus, Route

router = APIRouter()

Reader = Annotated[Session, Depends(signed_in(Ability.READ))]
PAGE = 50  # decisions and audit rows on one page: a screenful, read off an index


@dataclass
class Form:
    """What a search form sent, as given (to fill the form again) and the problems of each field."""

    given: dict[str, str]
    problems: dict[str, str] = field(default_factory=dict)

    def text(self, name: str, *, longest: int = 128) -> str | None:
        value = self.given.get(name, "").strip()
        if not value:
            return None
        if len(value) > longest:
            self.problems[name] = f"at most {longest} characters"
            return None
        return value

    def choice(self, name: str, kind: type[Any]) -> Any:
        value = self.text(name)
        if value is None:
            return None
        try:
            return kind(value)
        except ValueError:
            self.problems[name] = f"'{value}' is not one of: " + ", ".join(member.value for member in kind)
            return None

    def time(self, name: str) -> datetime | None:
        """A ``datetime-local`` field's value, read as UTC (the pages show every time in UTC)."""
        value = self.text(name)
        if value is None:
            return None
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            self.problems[name] = f"'{value}' is not a date and time, e.g. 2024-03-04T08:00"
            return None
        return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)

    def number(self, name: str) -> int | None:
        value = self.text(name, longest=12)
        if value is None:
            return None
        if not value.isdigit():
            self.problems[name] = f"'{value}' is not a page cursor; use the next page link"
            return None
        return int(value)


def _form(request: Request, *names: str) -> Form:
    return Form({name: request.query_params.get(name, "") for name in names})


def _agents(request: Request) -> list[str]:
    playbook = request.app.state.context.playbook_or_none()
    return [agent.id for agent in playbook.agents] if playbook is not None else []


def _href(path: str, query: dict[str, str], **more: object) -> str:
    """A link to ``path`` with the search and, for the next page, its cursor."""
    values = {**query, **{k: str(v) for k, v in more.items()}}
    return f"{path}?{urlencode(values)}" if values else path


SEARCH = ("customer", "agent", "status", "route", "since", "until")


@router.get("/decisions", response_class=HTMLResponse, summary="Decisions searched by customer, agent, status, route and time")
def decisions_page(request: Request, session: Reader) -> HTMLResponse:
    form = _form(request, *SEARCH, "after")
    where = DecisionFilter(
        customer=form.text("customer"), agent=form.text("agent"), status=form.choice("status", DecisionStatus),
        route=form.choice("route", Route), since=form.time("since"), until=form.time("until"),
    )
    after = form.text("after", longest=64)
    found, error = None, None
    if not form.problems:
        try:
            found = decisions.search(request.app.state.context.engine, where, limit=PAGE, after=after)
        except Invalid as exc:
            error = exc
    query = {name: form.given[name] for name in SEARCH if form.given.get(name, "").strip()}
    return page(
        request, "decisions.html", session=session, form=form, found=found, error=error, query=query, paged=after is not None,
        first_href=_href("/decisions", query), next_href=_href("/decisions", query, after=found.next_cursor) if found and found.next_cursor else None,
        agents=_agents(request), statuses=[s.value for s in DecisionStatus], routes=[r.value for r in Route],
        status_code=422 if form.problems or error else 200,
    )


@router.get("/decisions/{decision_id}", response_class=HTMLResponse, summary="One decision: why it was made, and its outcome")
def decision_page(request: Request, session: Reader, decision_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> HTMLResponse:
    ctx = request.app.state.context
    try:
        detail = decisions.explain(ctx.engine, decision_id, now=ctx.now(), playbook=ctx.playbook_or_none())
    except NotFound as exc:
        return page(request, "decision.html", session=session, detail=None, error=exc, decision_id=decision_id, status_code=404)
    return page(request, "decision.html", session=session, detail=detail, error=None, decision_id=decision_id)


AUDIT = ("action", "entity", "agent", "actor")


@router.get("/audit", response_class=HTMLResponse, summary="The audit log: who did what, when")
def audit_page(request: Request, session: Reader) -> HTMLResponse:
    form = _form(request, *AUDIT, "before")
    where = AuditFilter(action=form.text("action", longest=64), entity=form.text("entity", longest=32),
                        agent=form.text("agent"), actor=form.text("actor"))
    before = form.number("before")
    engine = request.app.state.context.engine
    found, error = None, None
    if not form.problems:
        try:
            found = audit.search(engine, where, limit=PAGE, before=before)
        except Invalid as exc:
            error = exc
    query = {name: form.given[name] for name in AUDIT if form.given.get(name, "").strip()}
    return page(
        request, "audit.html", session=session, form=form, found=found, error=error, query=query, paged=before is not None,
        first_href=_href("/audit", query), next_href=_href("/audit", query, before=found.next_before) if found and found.next_before else None,
        kinds=audit.kinds(engine), agents=_agents(request), status_code=422 if form.problems or error else 200,
    )
