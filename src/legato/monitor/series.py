"""An agent's daily series for the stop-loss: its sends and its holdout per UTC day, with their outcomes.

**The seam.** The stop-loss and the anomaly detector ask :func:`agent_series` and nothing else
for their numbers. Today it reads them from ``decisions`` (stored outcomes of settled
decisions; unsubscribes, complaints and bounces of unsettled sends as they arrived, through
the attribution rule, :func:`legato.learn.attribution.outcomes_so_far`) and ``events``
(bounces naming a decision). When the daily ``metrics`` table is written as things happen
(issue 14, part 1), this function reads it instead and its callers do not change.

Days are UTC days of the decision, from the epoch (the agent's last resume by a person, else
its first decision) to ``now``, every calendar day present (a day without sends is zeros),
so a sequential test's daily restarts are calendar days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.learn.attribution import outcomes_so_far
from legato.monitor.kpis import utc_day
from legato.playbook.models import Agent, Playbook
from legato.store.schema import audit_log, decisions, events
from legato.store.status import DecisionStatus

Floats = npt.NDArray[np.float64]

# The per-decision outcomes a group sums (0/1 but revenue).
OUTCOMES = ("visited", "purchased", "revenue", "unsubscribed", "complained")
# Outcomes known the moment they happen, counted before the window closes.
FAST = ("unsubscribed", "complained", "bounced")
RESUMED = "agent_resumed"


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


def agent_series(connection: Connection, playbook: Playbook, agent: Agent, now: datetime) -> AgentSeries:
    """The agent's daily series from its epoch up to ``now``."""
    since = epoch(connection, agent.id)
    objective = next(o for o in playbook.objectives if o.id == agent.objective)
    costs = {o.id: o.cost for o in playbook.offers}
    dialect = connection.dialect.name
    day = utc_day(decisions.c.decided_at, dialect).label("day")
    where = [decisions.c.agent_id == agent.id, decisions.c.decided_at <= now]
    if since is not None:
        where.append(decisions.c.decided_at >= since)
    # Booleans summed as 0/1 (PostgreSQL casts no boolean to a float), revenue as it is.
    value = lambda name: sa.func.coalesce(decisions.c.revenue, 0.0) if name == "revenue" else sa.case((decisions.c[name].is_(True), 1.0), else_=0.0)  # noqa: E731
    rows = connection.execute(
        sa.select(
            day,
            decisions.c.status,
            decisions.c.settled_at.is_not(None).label("settled"),
            decisions.c.offer_id,
            sa.func.count().label("n"),
            *(sa.func.sum(value(name)).label(name) for name in OUTCOMES),
            sa.func.sum(value("revenue") * value("revenue")).label("revenue_sq"),
        )
        .where(*where, decisions.c.status.in_([DecisionStatus.SENT, DecisionStatus.HOLDOUT]))
        .group_by(day, decisions.c.status, decisions.c.settled_at.is_not(None), decisions.c.offer_id)
    ).all()
    fast = _fast_outcomes(connection, agent.id, where, objective.attribution_days, now, day, since)
    first = min([date.fromisoformat(r.day) for r in rows] + [d for d, _ in fast], default=None)
    start = since.date() if since is not None else first
    days = [] if start is None else [start + timedelta(days=i) for i in range((now.date() - start).days + 1)]
    index = {d: i for i, d in enumerate(days)}
    size = len(days)
    sent, settled_sent, settled_holdout = _group(size, FAST), _group(size, OUTCOMES), _group(size, OUTCOMES)
    offer_cost = np.zeros(size)
    for row in rows:
        i = index.get(date.fromisoformat(row.day))
        if i is None:
            continue
        if row.status == DecisionStatus.SENT:
            sent.n[i] += row.n
            offer_cost[i] += row.n * costs.get(row.offer_id, 0.0) if row.offer_id else 0.0
            if row.settled:
                for name in ("unsubscribed", "complained"):
                    sent.sums[name][i] += row._mapping[name]
        if not row.settled:
            continue
        group = settled_sent if row.status == DecisionStatus.SENT else settled_holdout
        group.n[i] += row.n
        for name in OUTCOMES:
            group.sums[name][i] += row._mapping[name]
            group.squares[name][i] += row.revenue_sq if name == "revenue" else row._mapping[name]
    for d, counts in fast:
        i = index.get(d)
        if i is not None:
            for name, value in counts.items():
                sent.sums[name][i] += value
    for name in FAST:
        sent.squares[name][:] = sent.sums[name]
    return AgentSeries(agent.id, since, days, sent, offer_cost, settled_sent, settled_holdout)


def _group(size: int, names: tuple[str, ...]) -> Group:
    return Group(np.zeros(size), {n: np.zeros(size) for n in names}, {n: np.zeros(size) for n in names})


def _fast_outcomes(
    connection: Connection,
    agent_id: str,
    where: list[sa.ColumnElement[bool]],
    attribution_days: int,
    now: datetime,
    day: sa.ColumnElement[str],
    since: datetime | None,
) -> list[tuple[date, dict[str, float]]]:
    """Per day: unsubscribes and complaints of unsettled sends so far, and bounces of every send."""
    found: dict[date, dict[str, float]] = {}
    open_rows = connection.execute(
        sa.select(decisions.c.id, decisions.c.customer_id, decisions.c.decided_at, day)
        .where(*where, decisions.c.status == DecisionStatus.SENT, decisions.c.settled_at.is_(None))
        .order_by(decisions.c.id)
    ).all()
    if open_rows:
        so_far = outcomes_so_far(connection, agent_id, open_rows, timedelta(days=attribution_days), now)
        for row, unsubscribed, complained in zip(open_rows, so_far.unsubscribed.tolist(), so_far.complained.tolist(), strict=True):
            counts = found.setdefault(date.fromisoformat(row.day), {"unsubscribed": 0.0, "complained": 0.0, "bounced": 0.0})
            counts["unsubscribed"] += unsubscribed
            counts["complained"] += complained
    # A bounce names the message's decision (delivery reports, the dispatcher): the rate is per send.
    bounced = {
        str(v)
        for v in connection.execute(
            sa.select(events.c.properties["decision_id"].as_string()).where(
                events.c.type == "bounce", events.c.occurred_at <= now, *([events.c.occurred_at >= since] if since is not None else [])
            )
        ).scalars()
        if v is not None
    }
    ids = sorted(int(v) for v in bounced if v.isdigit())
    for offset in range(0, len(ids), 10_000):
        chunk = ids[offset : offset + 10_000]
        for (d,) in connection.execute(sa.select(day).where(*where, decisions.c.status == DecisionStatus.SENT, decisions.c.id.in_(chunk))):
            counts = found.setdefault(date.fromisoformat(d), {"unsubscribed": 0.0, "complained": 0.0, "bounced": 0.0})
            counts["bounced"] += 1.0
    return sorted(found.items())
