"""Stop-loss: when a guardrail KPI of an agent's recent sends crosses its limit, demote at once.

Measured on the sends settled (attribution window closed) in the last ``LOOKBACK_DAYS``,
and only once at least ``min_sends`` of them exist, so a handful of early unsubscribes does
not demote an agent on noise. A breach demotes the agent to the rule's stage (default 0,
Manual) through the one writer of trust stages (:mod:`legato.trust.agent_state`), which
audits it as ``stop_loss_breach``; promotion checks read that row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.playbook.models import Agent, Metric
from legato.store.schema import decisions
from legato.store.status import DecisionStatus
from legato.trust.agent_state import StageCause, change_stage

LOOKBACK_DAYS = 7


@dataclass(frozen=True)
class Breach:
    metric: str
    value: float
    limit: float
    sends: int
    demoted_to: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def check_stop_loss(connection: Connection, agent: Agent, stage: int, now: datetime) -> tuple[int, list[Breach]]:
    """The agent's stage after applying its stop-loss rules, and the breaches found."""
    if not agent.stop_loss:
        return stage, []
    as_int = lambda column: sa.func.sum(sa.cast(column, sa.Integer))  # noqa: E731
    row = connection.execute(
        sa.select(
            sa.func.count().label("sends"),
            as_int(decisions.c.visited).label("visits"),
            as_int(decisions.c.purchased).label("purchases"),
            sa.func.sum(decisions.c.revenue).label("revenue"),
            as_int(decisions.c.unsubscribed).label("unsubscribes"),
            as_int(decisions.c.complained).label("complaints"),
        ).where(
            decisions.c.agent_id == agent.id,
            decisions.c.status == DecisionStatus.SENT,
            decisions.c.settled_at >= now - timedelta(days=LOOKBACK_DAYS),
        )
    ).one()
    sends = int(row.sends or 0)
    values = {
        Metric.sends: float(sends),
        Metric.visit_rate: (row.visits or 0) / sends if sends else 0.0,
        Metric.conversion_rate: (row.purchases or 0) / sends if sends else 0.0,
        Metric.revenue: float(row.revenue or 0.0),
        Metric.revenue_per_send: float(row.revenue or 0.0) / sends if sends else 0.0,
        Metric.unsubscribe_rate: (row.unsubscribes or 0) / sends if sends else 0.0,
        Metric.complaint_rate: (row.complaints or 0) / sends if sends else 0.0,
    }
    breaches: list[Breach] = []
    for rule in agent.stop_loss:
        if sends < rule.min_sends:
            continue
        value = values[rule.metric]
        crossed = (rule.max is not None and value > rule.max) or (rule.min is not None and value < rule.min)
        if not crossed or stage <= rule.demote_to:
            continue
        limit = rule.max if rule.max is not None and value > rule.max else rule.min
        breach = Breach(rule.metric.value, value, float(limit or 0.0), sends, rule.demote_to)
        reason = f"{breach.metric} {value:.4g} crossed {breach.limit:.4g} over {sends} settled sends"
        change_stage(connection, agent.id, rule.demote_to, cause=StageCause.STOP_LOSS, actor="stop_loss", reason=reason, now=now, detail=breach.to_dict())
        breaches.append(breach)
        stage = rule.demote_to
    return stage, breaches
