"""Reports: lift per agent with intervals, guardrail findings by rule, fairness, the KPIs by day.

The same functions as ``legato report lift|guardrails|fairness|kpis`` (:mod:`legato.service.reports`).
A period is decisions made from ``since`` (inclusive) to ``until`` (exclusive); a time
without an offset is UTC. Reading a report writes nothing: the fairness report here finds
breaches without raising them as review findings (the cycle's daily audit and
``legato report fairness`` do that).
"""

from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.clock import as_utc
from legato.errors import Invalid
from legato.monitor.guardrails import RuleOutcome
from legato.service import reports

router = APIRouter(prefix="/v1/reports", tags=["reports"])

AgentFilter = Query(None, min_length=1, max_length=128, description="Only this agent")
Since = Query(None, description="Decisions made from this instant on (ISO-8601; UTC unless an offset is given)")
Until = Query(None, description="Decisions made before this instant (exclusive; for a whole day give the next day)")


class Period(BaseModel):
    since: datetime | None
    until: datetime | None


def period(since: datetime | None = Since, until: datetime | None = Until) -> Period:
    start = as_utc(since) if since is not None else None
    end = as_utc(until) if until is not None else None
    if start is not None and end is not None and end <= start:
        raise Invalid(f"until ({end.isoformat()}) is not after since ({start.isoformat()})", hint="give a period that ends after it starts")
    return Period(since=start, until=end)


# --- lift --------------------------------------------------------------------------------


class Lift(BaseModel):
    metric: str
    treated: float
    control: float
    difference: float
    low: float | None = Field(description="95% interval; None below 30 customers a group, or with no outcome recorded (see note)")
    high: float | None
    n_treated: int = Field(description="customers")
    n_control: int = Field(description="customers")
    note: str | None = None


class LiftGroup(BaseModel):
    """One agent against one comparison group (its holdout, or the global control), in one segment."""

    agent: str
    against: str  # holdout | global_control
    segment: str | None
    decisions: int
    settled: int
    customers_treated: int
    customers_control: int
    switched: int = Field(description="customers in both groups within the period, left out")
    nothing_yet: str | None = Field(description="why nothing can be measured yet, when nothing can")
    first_unsettled: datetime | None
    lifts: list[Lift]


class LiftReport(BaseModel):
    since: datetime | None
    until: datetime | None
    groups: list[LiftGroup]


@router.get("/lift", response_model=LiftReport, responses=documented(409),
            summary="Each agent's lift per customer against its holdout and the global control, with 95% intervals")
def lift(
    agent: str | None = AgentFilter,
    by_segment: bool = Query(False, description="One comparison per segment of the playbook in force"),
    caller: Caller = Depends(allow(Ability.READ)),
    when: Period = Depends(period),
    ctx: ApiContext = Depends(context),
) -> LiftReport:
    playbook = ctx.playbook() if by_segment else None
    rows = reports.lift_report(ctx.engine, now=ctx.now(), agent_id=agent, since=when.since, until=when.until,
                               by_segment=by_segment, playbook=playbook)
    groups = []
    for row in rows:
        data = row.report.to_dict()
        groups.append(LiftGroup(agent=data.pop("agent_id"), segment=row.segment, **{**data, "first_unsettled": row.report.first_unsettled}))
    return LiftReport(since=when.since, until=when.until, groups=groups)


# --- guardrails --------------------------------------------------------------------------


class RuleCount(BaseModel):
    agent: str
    day: date = Field(description="the UTC day the decisions were made")
    rule: str = Field(description="the rule's reason code, e.g. frequency_cap:<name>, delayed:quiet_hours:<name>, consent_revoked:email")
    outcome: RuleOutcome
    decisions: int


class GuardrailReport(BaseModel):
    since: datetime | None
    until: datetime | None
    rules: list[RuleCount]


@router.get("/guardrails", response_model=GuardrailReport, summary="How many decisions each rule blocked, delayed or escalated, per agent and day")
def guardrails(
    agent: str | None = AgentFilter,
    caller: Caller = Depends(allow(Ability.READ)),
    when: Period = Depends(period),
    ctx: ApiContext = Depends(context),
) -> GuardrailReport:
    counts = reports.guardrail_report(ctx.engine, agent_id=agent, since=when.since, until=when.until)
    rules = [RuleCount(agent=c.agent_id, day=c.day, rule=c.rule, outcome=c.outcome, decisions=c.decisions) for c in counts]
    return GuardrailReport(since=when.since, until=when.until, rules=rules)


# --- fairness ----------------------------------------------------------------------------


class GroupRate(BaseModel):
    group: str
    customers: int
    selected: int
    rate: float


class Breach(BaseModel):
    group: str
    rate: float
    reference_group: str
    reference_rate: float
    ratio: float
    p_value: float


class FairnessAudit(BaseModel):
    agent: str
    attribute: str
    groups: list[GroupRate]
    disparate_impact: float | None = Field(description="lowest group's rate over the highest's")
    parity_difference: float | None = Field(description="highest group's rate minus the lowest's")
    breaches: list[Breach] = Field(description="below four fifths of the highest rate, and different by Fisher's exact test at 5%")


class FairnessReport(BaseModel):
    since: datetime | None
    audits: list[FairnessAudit]
    breach: bool


@router.get("/fairness", response_model=FairnessReport, responses=documented(409),
            summary="Selection rates per protected group of the playbook in force, with the four-fifths rule")
def fairness(
    since: datetime | None = Since,
    caller: Caller = Depends(allow(Ability.READ)),
    ctx: ApiContext = Depends(context),
) -> FairnessReport:
    start = as_utc(since) if since is not None else None
    audits = reports.fairness_report(ctx.engine, ctx.playbook(), now=ctx.now(), since=start, record_breaches=False)
    shaped = []
    for audit in audits:
        data = audit.to_dict()
        data.pop("review_item", None)
        shaped.append(FairnessAudit(**data))
    return FairnessReport(since=start, audits=shaped, breach=any(a.breaches for a in audits))


# --- KPIs by day -------------------------------------------------------------------------


class DayKpis(BaseModel):
    """An agent's KPIs over the messages decided on one UTC day; rates per settled send (None while none settled)."""

    agent: str
    day: date
    sends: int
    settled: int
    visit_rate: float | None
    conversion_rate: float | None
    revenue: float | None
    revenue_per_send: float | None
    unsubscribe_rate: float | None
    complaint_rate: float | None


class KpiReport(BaseModel):
    since: datetime | None
    until: datetime | None
    days: list[DayKpis]


@router.get("/kpis", response_model=KpiReport, summary="The playbook's KPIs per agent and day decided")
def kpis(
    agent: str | None = AgentFilter,
    caller: Caller = Depends(allow(Ability.READ)),
    when: Period = Depends(period),
    ctx: ApiContext = Depends(context),
) -> KpiReport:
    rows = reports.kpi_report(ctx.engine, agent_id=agent, since=when.since, until=when.until)
    days = [DayKpis(agent=r.agent_id, day=r.day, sends=r.sends, settled=r.settled,
                    **{k: v for k, v in r.values.items() if k != "sends"}) for r in rows]
    return KpiReport(since=when.since, until=when.until, days=days)
