"""``/agents`` and ``/agents/{agent_id}``: each agent's objective, audience, trust stage and track
record, why a promotion is or is not recommended, what it decided on its last cycle's day, and
its results by creative, offer, channel and segment; pause, resume, promote and demote.

Every read is a :mod:`legato.service` call (``agents.list_agents``/``show`` for the record and
the promotion check, ``reports.kpis`` for the day and the breakdowns); every change is
``legato.service.agents`` with the session's key name as who did it, so it is checked and
audited by its owner (:mod:`legato.trust.track_record`, :mod:`legato.trust.agent_state`) exactly
as ``legato agents ...`` and ``POST /v1/agents/...`` are. Each change asks for a reason (the
form will not send without one) and carries the session's CSRF token. Abilities are the API's:
pause, resume and demote need ``steer`` (marketer, admin), promote ``govern`` (admin).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from legato.api.context import ApiContext, context
from legato.api.security import Ability
from legato.console.auth import Session, signed_in
from legato.console.csrf import checked, form_of
from legato.console.render import page
from legato.errors import LegatoError
from legato.monitor.kpis import BY, GroupKpis
from legato.service import agents, audit, reports
from legato.service.audit import AuditFilter
from legato.service.overview import escalated, period
from legato.service.overview import stop_loss as overview_stop_loss
from legato.trust.ladder import Stage

router = APIRouter()

AgentId = Path(..., min_length=1, max_length=128)
DONE = {  # ?done=... after a change: what the page says happened
    "paused": "Paused. It decides nothing until someone resumes it.",
    "resumed": "Resumed. It decides again at its stage from the next cycle.",
    "promoted": "Promoted one stage.",
    "demoted": "Demoted.",
}
REASON_LIMIT = 500  # the API's limit on a reason


@dataclass
class AgentRow:
    id: str
    objective: str | None
    stage: int
    stage_name: str
    status: str
    open_items: int
    audience: float | None  # customers it looked at on its last cycle's day
    primary: Any  # the primary KPI line over the overview's period, or None


def _objective_of(playbook: Any, agent_id: str) -> str | None:
    if playbook is None:
        return None
    spec = next((a for a in playbook.agents if a.id == agent_id), None)
    return spec.objective if spec is not None else None


def _last_day(engine: Any, now: datetime) -> tuple[datetime, datetime]:
    """The last cycle's UTC day, as [start, end)."""
    _, until, _ = period(engine, now=now, days=1)
    return until - timedelta(days=1), until


@router.get("/agents")
def agents_page(request: Request, session: Session = Depends(signed_in(Ability.READ)), ctx: ApiContext = Depends(context)) -> Response:
    playbook = ctx.playbook_or_none()
    now = ctx.now()
    day_start, day_end = _last_day(ctx.engine, now)
    since, until, _ = period(ctx.engine, now=now, days=30)
    today = {g.agent_id: g for g in reports.kpis(ctx.engine, playbook, since=day_start, until=day_end).groups}
    month = {g.agent_id: g for g in reports.kpis(ctx.engine, playbook, since=since, until=until).groups}
    rows = []
    for state in agents.list_agents(ctx.engine):
        group = month.get(state.id)
        primary = next((k for k in group.kpis if k.primary), None) if group else None
        rows.append(AgentRow(state.id, _objective_of(playbook, state.id), state.trust_stage, Stage(state.trust_stage).name.lower(),
                             state.status, state.open_items, today[state.id].counts.get("audience") if state.id in today else None, primary))
    return page(request, "agents.html", session=session, rows=rows, day=day_start, since=since, until=until)


def _detail(request: Request, ctx: ApiContext, session: Session, agent_id: str, *, status_code: int = 200,
            error: LegatoError | None = None, done: str | None = None, form: dict[str, str] | None = None) -> Response:
    playbook = ctx.playbook_or_none()
    now = ctx.now()
    shown = agents.show(ctx.engine, agent_id, now=now)  # NotFound: the 404 page
    day_start, day_end = _last_day(ctx.engine, now)
    since, until, last_cycle = period(ctx.engine, now=now, days=30)
    today = next(iter(reports.kpis(ctx.engine, playbook, agent_id=agent_id, since=day_start, until=day_end).groups), None)
    today_actions = reports.kpis(ctx.engine, playbook, agent_id=agent_id, since=day_start, until=day_end, by="creative").groups
    today_escalated = escalated(ctx.engine, agent_id, since=day_start, until=day_end)
    changes = audit.search(ctx.engine, AuditFilter(entity="agent", entity_id=agent_id), limit=10).items
    stop_loss = overview_stop_loss(ctx.engine, agent_id)
    overall = next(iter(reports.kpis(ctx.engine, playbook, agent_id=agent_id, since=since, until=until).groups), None)
    breakdowns: dict[str, list[GroupKpis]] = {}
    for by in BY:
        breakdowns[by] = reports.kpis(ctx.engine, playbook, agent_id=agent_id, since=since, until=until, by=by).groups
    objective = None
    objective_id = _objective_of(playbook, agent_id)
    if playbook is not None and objective_id is not None:
        objective = playbook.objective(objective_id)
    spec = next((a for a in playbook.agents if a.id == agent_id), None) if playbook is not None else None
    record = shown.record
    stage = record.stage
    return page(
        request, "agent.html", status_code=status_code, session=session, agent_id=agent_id, shown=shown, record=record,
        objective=objective, spec=spec, today=today, today_actions=today_actions, today_escalated=today_escalated, changes=changes,
        stop_loss=stop_loss, overall=overall, breakdowns=breakdowns, day=day_start, since=since, until=until,
        last_cycle=last_cycle, stage_name=Stage(stage).name.lower(), next_stage=stage + 1 if stage < max(Stage) else None,
        lower_stages=[(int(s), s.name.lower()) for s in Stage if s < stage], error=error, done=DONE.get(done or ""),
        form=form or {}, reason_limit=REASON_LIMIT, now=now,
    )


@router.get("/agents/{agent_id}")
def agent_page(request: Request, agent_id: str = AgentId, done: str | None = Query(None, max_length=16),
               session: Session = Depends(signed_in(Ability.READ)), ctx: ApiContext = Depends(context)) -> Response:
    return _detail(request, ctx, session, agent_id, done=done)


async def _reason(request: Request) -> tuple[dict[str, str], str | None]:
    form = await form_of(request)
    reason = form.get("reason", "").strip()
    return form, (reason[:REASON_LIMIT] if reason else None)


def _act(request: Request, ctx: ApiContext, session: Session, agent_id: str, form: dict[str, str], done: str, change: Any) -> Response:
    """Run one change through the service; on refusal the page again, with why, and what was typed."""
    try:
        change()
    except LegatoError as error:
        from legato.api.errors import STATUS_OF_KIND, kind_of

        return _detail(request, ctx, session, agent_id, status_code=STATUS_OF_KIND[kind_of(error)], error=error, form=form)
    return RedirectResponse(f"/agents/{agent_id}?done={done}", status_code=303)


def _no_reason(request: Request, ctx: ApiContext, session: Session, agent_id: str, form: dict[str, str], what: str) -> Response:
    from legato.errors import Invalid

    return _detail(request, ctx, session, agent_id, status_code=422, form=form,
                   error=Invalid(f"{what} needs a reason", hint="say why in the reason field; it goes to the audit log with your name"))


@router.post("/agents/{agent_id}/pause")
async def pause(request: Request, agent_id: str = AgentId, session: Session = Depends(checked(Ability.STEER)),
                ctx: ApiContext = Depends(context)) -> Response:
    form, reason = await _reason(request)
    if reason is None:
        return _no_reason(request, ctx, session, agent_id, form, "pausing an agent")
    return _act(request, ctx, session, agent_id, form, "paused", lambda: agents.pause(ctx.engine, agent_id, session.name, reason, now=ctx.now()))


@router.post("/agents/{agent_id}/resume")
async def resume(request: Request, agent_id: str = AgentId, session: Session = Depends(checked(Ability.STEER)),
                 ctx: ApiContext = Depends(context)) -> Response:
    form, reason = await _reason(request)
    if reason is None:
        return _no_reason(request, ctx, session, agent_id, form, "resuming an agent")
    return _act(request, ctx, session, agent_id, form, "resumed",
                lambda: agents.resume(ctx.engine, agent_id, session.name, now=ctx.now(), reason=reason))


@router.post("/agents/{agent_id}/promote")
async def promote(request: Request, agent_id: str = AgentId, session: Session = Depends(checked(Ability.GOVERN)),
                  ctx: ApiContext = Depends(context)) -> Response:
    form, reason = await _reason(request)
    stage = _stage(form)
    if reason is None:
        return _no_reason(request, ctx, session, agent_id, form, "promoting an agent")
    # The reason goes to the service as the override reason: it is what the audit row records as
    # the promotion's reason, whether the record qualifies or not (unmet criteria are recorded beside it).
    return _act(request, ctx, session, agent_id, form, "promoted",
                lambda: agents.promote(ctx.engine, agent_id, stage if stage is not None else -1, session.name, now=ctx.now(), override_reason=reason))


@router.post("/agents/{agent_id}/demote")
async def demote(request: Request, agent_id: str = AgentId, session: Session = Depends(checked(Ability.STEER)),
                 ctx: ApiContext = Depends(context)) -> Response:
    form, reason = await _reason(request)
    stage = _stage(form)
    if reason is None:
        return _no_reason(request, ctx, session, agent_id, form, "demoting an agent")
    return _act(request, ctx, session, agent_id, form, "demoted",
                lambda: agents.demote(ctx.engine, agent_id, stage if stage is not None else -1, session.name, reason, now=ctx.now()))


def _stage(form: dict[str, str]) -> int | None:
    try:
        return int(form.get("to_stage", ""))
    except ValueError:
        return None
