"""An agent's daily series for the stop-loss and the anomaly detector: its sends and its holdout per UTC day, with their outcomes.

**The one owner.** The stop-loss and the anomaly detector ask :func:`agent_series` and nothing
else for their numbers. It reads them from the **kept counts** (``metric_totals`` and
``metric_groups``, which :mod:`legato.monitor.metrics` writes as things happen), so a cycle
reads a few rows per day instead of rescanning the agent's decisions; the same series can be
read **from decisions** (``source=Source.DECISIONS``: a store whose history predates the kept
counts, and the test that proves both ways equal). What comes from where:

==========================  ============================================  =====================
series                      kept counts (per UTC day of the decision)     read from decisions
==========================  ============================================  =====================
``sent.n``                  ``sent``: messages that went out (a later     status sent or failed
                            hard bounce fails the decision, not the send)  with its message out
``offer_cost``              ``sent`` per offer × the offer's cost          the same, per decision
``sent`` unsubscribes,      settled sends' ``unsubscribed``/``complained``  the decisions' stored
complaints                  (arm sent) + unsettled sends' so far (below)   outcomes + the same
``sent`` bounces            ``bounced``: the provider's bounce reports    bounce events naming
                                                                           the decision
``settled_sent``,           ``settled`` and outcomes by arm (sent,         stored outcomes of
``settled_holdout``         holdout), ``revenue_sq``                       settled decisions
==========================  ============================================  =====================

Two parts always come from decisions, because no kept count can give them: the unsubscribes
and complaints of **sends still in their attribution window** (counted as they arrive, through
the attribution rule, :func:`legato.learn.attribution.outcomes_so_far`; the kept counts take
outcomes when a decision settles), a bounded read of the agent's unsettled decisions; and
**the epoch's own day** after a resume, since a kept count is per day and the series starts at
the resume's instant. The mSPRT against the holdout needs per arm only the count, sum and sum
of squares of each outcome over decisions, which the kept counts hold (``revenue_sq``).

Days are UTC days of the decision, from the epoch (the agent's last resume by a person, else
its first send or held-out decision) to ``now``, every calendar day present (a day without
sends is zeros), so a sequential test's daily restarts are calendar days. Decisions are
assumed not to be dated after ``now`` (a cycle reads its series before it decides).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.learn.attribution import outcomes_so_far
from legato.monitor.metrics import Arm, Measure, arm_of, day_of, message_left
from legato.playbook.models import Agent, Playbook
from legato.store.schema import audit_log, decisions, events, metric_groups, metric_totals
from legato.store.status import DecisionStatus, Route

Floats = npt.NDArray[np.float64]

# The per-decision outcomes a group sums (0/1 but revenue).
OUTCOMES = ("visited", "purchased", "revenue", "unsubscribed", "complained")
# Outcomes known the moment they happen, counted before the window closes.
FAST = ("unsubscribed", "complained", "bounced")
RESUMED = "agent_resumed"
# outcome → its kept count
_MEASURE = {"visited": Measure.VISITED, "purchased": Measure.CONVERTED, "revenue": Measure.REVENUE,
            "unsubscribed": Measure.UNSUBSCRIBED, "complained": Measure.COMPLAINED}
_GROUPS = {Arm.SENT: "settled_sent", Arm.HOLDOUT: "settled_holdout"}


class Source(StrEnum):
    KEPT = "kept"  # the kept counts (the history) and decisions for what they cannot give
    DECISIONS = "decisions"  # every number from decisions and events


@dataclass(frozen=True)
class Group:
    """Decisions per day: how many, and the sum and sum of squares of each outcome."""

    n: Floats
    sums: dict[str, Floats] = field(default_factory=dict)
    squares: dict[str, Floats] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentSeries:
    agent_id: str
    since: datetime | None  # the epoch: the last resume by a person (None: from the first decision)
    days: list[date]
    sent: Group  # every send, with FAST outcomes as they arrived
    offer_cost: Floats  # of the day's sends
    settled_sent: Group  # sends whose attribution window closed, OUTCOMES stored
    settled_holdout: Group  # the holdout's decisions likewise


def epoch(connection: Connection, agent_id: str) -> datetime | None:
    """When the agent last resumed (a person's call, audited): its tests start afresh from then."""
    return connection.execute(
        sa.select(sa.func.max(audit_log.c.at)).where(audit_log.c.action == RESUMED, audit_log.c.entity == "agent", audit_log.c.entity_id == agent_id)
    ).scalar_one()


class _Days:
    """What each day adds up to, by (part, what): ``("sent", "n")``, ``("settled_holdout", "revenue_sq")``…"""

    def __init__(self) -> None:
        self.values: defaultdict[date, defaultdict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))

    def add(self, day: date, part: str, what: str, value: float) -> None:
        self.values[day][(part, what)] += value

    def mark(self, day: date) -> None:
        """A day the agent sent or held out on: where the series starts without an epoch."""
        self.values[day]  # noqa: B018 - the defaultdict makes the day


def agent_series(connection: Connection, playbook: Playbook, agent: Agent, now: datetime, *, source: Source | None = None) -> AgentSeries:
    """The agent's daily series from its epoch up to ``now``, from the kept counts when they
    hold the agent's history (``source`` forces one way)."""
    since = epoch(connection, agent.id)
    objective = next(o for o in playbook.objectives if o.id == agent.objective)
    costs = {o.id: float(o.cost) for o in playbook.offers}
    if source is None:
        kept = connection.execute(sa.select(metric_totals.c.agent_id).where(metric_totals.c.agent_id == agent.id).limit(1)).first()
        source = Source.KEPT if kept is not None else Source.DECISIONS
    found = _Days()
    last = date.fromisoformat(day_of(now))
    if source is Source.KEPT:
        first = None
        if since is not None:  # the epoch's day, from the resume's instant on: from decisions
            first = date.fromisoformat(day_of(since)) + timedelta(days=1)
            midnight = datetime.combine(first, datetime.min.time(), timezone.utc)
            _from_decisions(connection, found, agent.id, costs, since, min(midnight, now), before=midnight <= now)
        _from_kept(connection, found, agent.id, first, last, costs)
    else:
        _from_decisions(connection, found, agent.id, costs, since, now)
    _open_outcomes(connection, found, agent.id, since, now, objective.attribution_days)
    start = date.fromisoformat(day_of(since)) if since is not None else min(found.values, default=None)
    days = [] if start is None else [start + timedelta(days=i) for i in range((last - start).days + 1)]
    return _series(agent.id, since, days, found)


def _from_kept(connection: Connection, found: _Days, agent_id: str, first: date | None, last: date, costs: Mapping[str, float]) -> None:
    """Whole days ``first``..``last`` from the kept counts: a few rows per day."""
    names = [Measure.SENT, Measure.HELD_OUT, Measure.BOUNCED, Measure.SETTLED, *_MEASURE.values(), Measure.REVENUE_SQUARES]
    bounds = [metric_totals.c.day <= last.isoformat(), *([metric_totals.c.day >= first.isoformat()] if first else [])]
    rows = connection.execute(
        sa.select(metric_totals.c.day, metric_totals.c.name, metric_totals.c.arm, sa.func.sum(metric_totals.c.value))
        .where(metric_totals.c.agent_id == agent_id, metric_totals.c.name.in_([n.value for n in names]), *bounds)
        .group_by(metric_totals.c.day, metric_totals.c.name, metric_totals.c.arm)
    ).all()
    outcome_of = {m.value: o for o, m in _MEASURE.items()}
    for day_text, name, arm, value in rows:
        value = float(value)
        if not value:
            continue
        day = date.fromisoformat(day_text)
        if name in (Measure.SENT, Measure.HELD_OUT) and value > 0:
            found.mark(day)
        if name == Measure.SENT:
            found.add(day, "sent", "n", value)
        elif name == Measure.BOUNCED:
            found.add(day, "sent", "bounced", value)
        elif arm in _GROUPS:
            part = _GROUPS[Arm(arm)]
            if name == Measure.SETTLED:
                found.mark(day)
                found.add(day, part, "n", value)
            elif name == Measure.REVENUE_SQUARES:
                found.add(day, part, "revenue_sq", value)
            else:
                found.add(day, part, outcome_of[name], value)
                if arm == Arm.SENT and name in (Measure.UNSUBSCRIBED, Measure.COMPLAINED):
                    found.add(day, "sent", outcome_of[name], value)  # the settled sends' part of the fast outcomes
    g = metric_groups
    by_offer = connection.execute(
        sa.select(g.c.day, g.c.grp, sa.func.sum(g.c.value)).where(
            g.c.dimension == "offer", g.c.agent_id == agent_id, g.c.grp != "", g.c.name == Measure.SENT.value,
            g.c.day <= last.isoformat(), *([g.c.day >= first.isoformat()] if first else []),
        ).group_by(g.c.day, g.c.grp)
    ).all()
    for day_text, offer, value in by_offer:
        found.add(date.fromisoformat(day_text), "offer_cost", "", float(value) * costs.get(offer, 0.0))


def _from_decisions(
    connection: Connection, found: _Days, agent_id: str, costs: Mapping[str, float], since: datetime | None, until: datetime, *, before: bool = False
) -> None:
    """The decisions made from ``since`` to ``until`` (``before``: ``until`` excluded, the midnight
    the kept counts take over at), counted as the kept counts count them (:func:`legato.monitor.metrics.recount`)."""
    where = [decisions.c.agent_id == agent_id, decisions.c.decided_at < until if before else decisions.c.decided_at <= until]
    if since is not None:
        where.append(decisions.c.decided_at >= since)
    left = message_left()
    value = lambda name: sa.func.coalesce(decisions.c.revenue, 0.0) if name == "revenue" else sa.case((decisions.c[name].is_(True), 1.0), else_=0.0)  # noqa: E731
    counted = sa.or_(decisions.c.status.in_([DecisionStatus.SENT, DecisionStatus.FAILED]), decisions.c.route == Route.HOLDOUT,
                     decisions.c.holdout.is_(True), decisions.c.settled_at.is_not(None))
    rows = connection.execute(
        sa.select(
            decisions.c.id, decisions.c.decided_at, decisions.c.route, decisions.c.holdout, decisions.c.status, decisions.c.offer_id,
            decisions.c.settled_at.is_not(None).label("settled"), left, *(value(name).label(name) for name in OUTCOMES),
        ).where(*where, counted)
    ).all()
    ids: dict[int, date] = {}
    for row in rows:
        day = date.fromisoformat(day_of(row.decided_at))
        arm = arm_of(row.route, bool(row.holdout), bool(row.left))
        if row.route == Route.HOLDOUT:
            found.mark(day)
        if row.left and row.status in (DecisionStatus.SENT, DecisionStatus.FAILED):
            found.mark(day)
            found.add(day, "sent", "n", 1.0)
            found.add(day, "offer_cost", "", costs.get(row.offer_id, 0.0) if row.offer_id else 0.0)
            ids[int(row.id)] = day
        if row.settled and arm in _GROUPS:
            part = _GROUPS[arm]
            found.mark(day)
            found.add(day, part, "n", 1.0)
            for name in OUTCOMES:
                found.add(day, part, name, float(row._mapping[name]))
                if arm is Arm.SENT and name in ("unsubscribed", "complained"):
                    found.add(day, "sent", name, float(row._mapping[name]))
            found.add(day, part, "revenue_sq", float(row.revenue) ** 2)
    if not ids:
        return
    # Bounce reports name the message's decision (service.deliveries): each one counts, as the kept counts count them.
    # (a report comes after its message: after the epoch, when there is one)
    reported = [events.c.type == "bounce", *([events.c.occurred_at >= since] if since is not None else [])]
    for (properties,) in connection.execute(sa.select(events.c.properties).where(*reported)):
        data = properties if isinstance(properties, Mapping) else json.loads(properties or "{}")
        decision = str(data.get("decision_id") or "")
        if data.get("message_id") and decision.isdigit() and int(decision) in ids:
            found.add(ids[int(decision)], "sent", "bounced", 1.0)


def _open_outcomes(connection: Connection, found: _Days, agent_id: str, since: datetime | None, now: datetime, attribution_days: int) -> None:
    """Unsubscribes and complaints of the sends still in their window, so far: no kept count has them yet."""
    where = [decisions.c.agent_id == agent_id, decisions.c.decided_at <= now, decisions.c.settled_at.is_(None),
             decisions.c.status.in_([DecisionStatus.SENT, DecisionStatus.FAILED])]
    if since is not None:
        where.append(decisions.c.decided_at >= since)
    chosen = sa.select(decisions.c.id, decisions.c.customer_id, decisions.c.decided_at, message_left()).where(*where).order_by(decisions.c.id)
    open_rows = [r for r in connection.execute(chosen).all() if r.left]
    if not open_rows:
        return
    so_far = outcomes_so_far(connection, agent_id, open_rows, timedelta(days=attribution_days), now)
    for row, unsubscribed, complained in zip(open_rows, so_far.unsubscribed.tolist(), so_far.complained.tolist(), strict=True):
        day = date.fromisoformat(day_of(row.decided_at))
        found.add(day, "sent", "unsubscribed", float(unsubscribed))
        found.add(day, "sent", "complained", float(complained))


def _series(agent_id: str, since: datetime | None, days: list[date], found: _Days) -> AgentSeries:
    def array(part: str, what: str) -> Floats:
        return np.array([found.values[d].get((part, what), 0.0) if d in found.values else 0.0 for d in days], dtype=np.float64)

    def group(part: str, names: tuple[str, ...]) -> Group:
        sums = {n: array(part, n) for n in names}
        squares = {n: (array(part, "revenue_sq") if n == "revenue" else sums[n].copy()) for n in names}
        return Group(array(part, "n"), sums, squares)

    return AgentSeries(
        agent_id, since, days, group("sent", FAST), array("offer_cost", ""), group("settled_sent", OUTCOMES), group("settled_holdout", OUTCOMES)
    )
