"""Lift against the holdout, with a confidence interval, from settled decisions.

The comparison is intent-to-treat: every decision the agent made for a customer outside the
holdout (sent, "do nothing" or suppressed alike) against the decisions for held-out
customers. Comparing only the customers who were sent a message with the holdout would
credit the agent for whom it chose to contact, not for what contacting did.
The interval is the normal approximation for a difference of two means with unequal
variances (Welch), fine at the sample sizes a campaign has; below 30 per group it is
reported as missing rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.schema import decisions
from legato.store.status import Route

Z_95 = 1.959963984540054
MIN_GROUP = 30


@dataclass(frozen=True)
class Lift:
    metric: str
    treated: float
    control: float
    difference: float
    low: float | None
    high: float | None
    n_treated: int
    n_control: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def lift(
    connection: Connection,
    agent_id: str,
    *,
    decided_from: datetime | None = None,
    decided_to: datetime | None = None,
    against: Literal["holdout", "global_control"] = "holdout",
) -> list[Lift]:
    """Visit rate, conversion rate, revenue per customer and reward per decision vs the holdout.

    ``against="global_control"`` compares the same treated decisions with the customers of
    the program-wide control group instead (no agent sent them marketing), which measures
    what the whole program adds, not only this agent; the agent's own holdout is left out.
    """
    measures = {
        "visit_rate": sa.cast(decisions.c.visited, sa.Integer),
        "conversion_rate": sa.cast(decisions.c.purchased, sa.Integer),
        "revenue_per_customer": sa.func.coalesce(decisions.c.revenue, 0.0),
        "reward_per_decision": sa.func.coalesce(decisions.c.reward, 0.0),
    }
    sums = [
        part
        for name, value in measures.items()
        for part in (sa.func.sum(value).label(f"{name}_sum"), sa.func.sum(value * value).label(f"{name}_squares"))
    ]
    in_control = decisions.c.route == Route.CONTROL
    if against == "holdout":
        group, scope = decisions.c.holdout, ~in_control
    else:
        group, scope = in_control, ~decisions.c.holdout
    query = (
        sa.select(group.label("control"), sa.func.count().label("n"), *sums)
        .where(decisions.c.agent_id == agent_id, decisions.c.settled_at.is_not(None), scope)
        .group_by(group)
    )
    if decided_from is not None:
        query = query.where(decisions.c.decided_at >= decided_from)
    if decided_to is not None:
        query = query.where(decisions.c.decided_at < decided_to)
    groups = {bool(row.control): row._mapping for row in connection.execute(query)}
    if not groups:
        return []
    return [_compare(name, _Moments.of(groups.get(False), name), _Moments.of(groups.get(True), name)) for name in measures]


@dataclass(frozen=True)
class _Moments:
    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, row: Any, name: str) -> _Moments:
        if row is None or not row["n"]:
            return cls(0, math.nan, math.nan)
        n = int(row["n"])
        total = float(row[f"{name}_sum"] or 0.0)
        squares = float(row[f"{name}_squares"] or 0.0)
        mean = total / n
        variance = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else math.nan
        return cls(n, mean, variance)


def _compare(metric: str, treated: _Moments, control: _Moments) -> Lift:
    difference = treated.mean - control.mean
    low = high = None
    if treated.n >= MIN_GROUP and control.n >= MIN_GROUP:
        se = math.sqrt(treated.variance / treated.n + control.variance / control.n)
        low, high = difference - Z_95 * se, difference + Z_95 * se
    return Lift(metric, treated.mean, control.mean, difference, low, high, treated.n, control.n)
