"""The daily budget of an agent: what is left today, and which sends it cannot pay for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.cycle.action_table import ActionTable
from legato.playbook.models import Agent, Playbook
from legato.store.schema import decisions
from legato.trust.ladder import EXECUTE, REVIEW


@dataclass
class Budget:
    sends_left: float
    cost_left: float


def daily_budget(connection: Connection, playbook: Playbook, agent: Agent, now: datetime) -> Budget:
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    used = connection.execute(
        sa.select(decisions.c.offer_id, sa.func.count())
        .where(
            decisions.c.agent_id == agent.id,
            decisions.c.decided_at >= day_start,
            decisions.c.decided_at < day_start + timedelta(days=1),
            decisions.c.route.in_((EXECUTE, REVIEW)),
        )
        .group_by(decisions.c.offer_id)
    ).all()
    offer_cost = {o.id: o.cost for o in playbook.offers}
    sends = sum(count for _, count in used)
    cost = sum(offer_cost.get(offer_id, 0.0) * count for offer_id, count in used if offer_id)
    return Budget(
        sends_left=np.inf if agent.budget.daily_sends is None else max(agent.budget.daily_sends - sends, 0),
        cost_left=np.inf if agent.budget.daily_offer_cost is None else max(agent.budget.daily_offer_cost - cost, 0.0),
    )


def spend_budget(
    sends: npt.NDArray[np.bool_],
    chosen: npt.NDArray[np.int64],
    expected: npt.NDArray[np.float64],
    table: ActionTable,
    budget: Budget,
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
    """Sends past the daily budget, keeping those with the highest expected value, and which
    limit each one hit (``budget:daily_offer_cost`` or ``budget:daily_sends``)."""
    over = np.zeros(len(sends), dtype=bool)
    why = np.full(len(sends), None, dtype=object)
    candidates = np.flatnonzero(sends)
    if len(candidates) == 0 or (np.isinf(budget.sends_left) and np.isinf(budget.cost_left)):
        return over, why
    # Highest expected value first; a random key breaks ties so no id order is favoured.
    order = candidates[np.lexsort((rng.random(len(candidates)), -expected[candidates]))]
    costs = table.offer_cost[chosen[order]]
    # Offer cost is spent in that order; sends without an offer cost nothing and stay eligible.
    affordable = (costs == 0) | (np.cumsum(costs) <= budget.cost_left)
    within = affordable & (np.cumsum(affordable) <= budget.sends_left)
    over[order[~within]] = True
    why[order[~affordable]] = "budget:daily_offer_cost"
    why[order[affordable & ~within]] = "budget:daily_sends"
    kept = order[within]
    budget.sends_left -= len(kept)
    budget.cost_left -= float(table.offer_cost[chosen[kept]].sum())
    return over, why
