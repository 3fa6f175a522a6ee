"""``/``: the overview: every objective with its agents' KPIs against targets (primary first),
trend charts by day, open anomalies and the stop-loss state, the review queue's size and oldest
item, in one service call (:func:`legato.service.overview.overview`); the page updates itself
from ``/stream``.

``/overview/lift``: each agent's lift per customer vs its holdout with its interval
(:func:`legato.service.overview.lift_per_customer`). It reads every decision of the period, so
the overview does not wait for it: ``console.js`` loads it into the overview once the page is
shown (``data-load``), and without script the overview links to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from legato.api.context import ApiContext, context
from legato.api.security import Ability
from legato.console.auth import Session, signed_in
from legato.console.charts import Bar, Series, bar_chart, line_chart
from legato.console.render import kpi, page
from legato.monitor.kpis import GroupKpis
from legato.service.overview import Overview, lift_per_customer, overview

router = APIRouter()

# A KPI → the per-customer lift that measures the same outcome (legato.monitor.lift.METRICS).
PER_CUSTOMER = {"visit_rate": "visit_rate", "conversion_rate": "conversion_rate", "revenue": "revenue_per_customer",
                "revenue_per_send": "revenue_per_customer"}
LIFT_WORDS = {"visit_rate": "visits per customer", "conversion_rate": "purchases per customer",
              "revenue_per_customer": "revenue per customer", "reward_per_customer": "reward per customer",
              "open_rate": "opens per customer", "click_rate": "clicks per customer"}


@dataclass
class AgentView:
    agent_id: str
    status: str
    stage: int
    stage_name: str
    group: GroupKpis | None
    trend: Any = None  # SVG markup


@dataclass
class ObjectiveView:
    id: str
    goal: str | None
    why: str | None
    agents: list[AgentView] = field(default_factory=list)


def view(found: Overview) -> list[ObjectiveView]:
    """The overview's agents grouped by objective (the playbook's order), each with its charts."""
    objectives: dict[str, ObjectiveView] = {}
    if found.playbook is not None:
        for objective in found.playbook.objectives:
            objectives[objective.id] = ObjectiveView(objective.id, objective.goal.value if hasattr(objective.goal, "value") else str(objective.goal), objective.why)
    groups = {g.agent_id: g for g in found.kpis.groups}
    spec = {a.id: a for a in found.playbook.agents} if found.playbook is not None else {}
    for state in found.agents:
        group = groups.get(state.id)
        objective_id = (group.objective if group is not None else None) or (spec[state.id].objective if state.id in spec else None) or "(no objective)"
        target = objectives.setdefault(objective_id, ObjectiveView(objective_id, None, None))
        item = AgentView(state.id, state.status, state.trust_stage, state.to_dict()["stage_name"], group)
        primary = next((k for k in group.kpis if k.primary), group.kpis[0] if group and group.kpis else None) if group else None
        if group is not None and primary is not None:
            fmt = (lambda v, m=primary.metric: kpi(m, v))
            series = [Series(state.id, [(d.day, d.primary) for d in group.days])]
            if any(d.holdout is not None for d in group.days):
                series.append(Series("holdout", [(d.day, d.holdout) for d in group.days]))
            item.trend = line_chart(f"{state.id}: {primary.metric.replace('_', ' ')} by day", series, fmt=fmt, target=primary.target,
                                    y_label=primary.metric.replace("_", " "), chart_id=f"trend-{state.id}")
        target.agents.append(item)
    return [o for o in objectives.values() if o.agents]


@router.get("/")
def overview_page(
    request: Request,
    days: int = Query(30, ge=1, le=366, description="Whole UTC days up to the last cycle's"),
    session: Session = Depends(signed_in(Ability.READ)),
    ctx: ApiContext = Depends(context),
) -> Response:
    found = overview(ctx.engine, ctx.playbook_or_none(), now=ctx.now(), days=days)
    return page(request, "overview.html", session=session, o=found, objectives=view(found), lift_words=LIFT_WORDS, days=days,
                one_day=timedelta(days=1))


@dataclass
class LiftView:
    agent_id: str
    metric: str | None
    lift: Any  # legato.monitor.lift.Lift, or None
    note: str | None
    chart: Any


def lift_views(found: dict[str, Any], playbook: Any) -> list[LiftView]:
    views = []
    for agent_id, row in sorted(found.items()):
        primary = None
        if playbook is not None:
            spec = next((a for a in playbook.agents if a.id == agent_id), None)
            if spec is not None:
                primary = playbook.objective(spec.objective).kpis[0].metric.value
        wanted = PER_CUSTOMER.get(primary or "", "reward_per_customer")
        chosen = next((l for l in row.report.lifts if l.metric == wanted), None) or next(
            (l for l in row.report.lifts if l.metric == "reward_per_customer"), None)
        chart = None
        if chosen is not None:
            rate = chosen.metric.endswith("_rate")
            fmt = (lambda v: f"{v * 100:+.2f} pp") if rate else (lambda v: f"{v:+.3f}")
            chart = bar_chart(f"{agent_id}: lift in {LIFT_WORDS.get(chosen.metric, chosen.metric)} vs holdout",
                              [Bar("vs holdout", chosen.difference, chosen.low, chosen.high, chosen.note)], fmt=fmt, chart_id=f"lift-{agent_id}")
        views.append(LiftView(agent_id, chosen.metric if chosen else None, chosen, row.report.nothing_yet, chart))
    return views


@router.get("/overview/lift")
def overview_lift(
    request: Request,
    days: int = Query(30, ge=1, le=366),
    session: Session = Depends(signed_in(Ability.READ)),
    ctx: ApiContext = Depends(context),
) -> Response:
    since, until, found = lift_per_customer(ctx.engine, now=ctx.now(), days=days)
    return page(request, "overview_lift.html", session=session, lifts=lift_views(found, ctx.playbook_or_none()), lift_words=LIFT_WORDS,
                since=since, until=until, days=days, one_day=timedelta(days=1))
