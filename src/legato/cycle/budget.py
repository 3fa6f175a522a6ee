"""The daily budget of an agent: what is left today, who gets it, and the reservation of it.

The budget goes to the sends with the highest expected value across the agent's whole
audience, ties broken by a seeded random key, whatever page or partition a customer is in.
The allocation is made once per agent and cycle, in the plan, from every partition's
candidates (sends the guardrails allow), and kept as a cut: a rank below which a candidate
keeps its send. Each partition then applies the cut to its own candidates independently.

The cycle reserves what it allocates (``budget_reservations``) in one transaction that
first takes the agent's row lock, so two cycles of the same day cannot both spend what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.decide.holdout import unit_hash
from legato.playbook.models import Agent, Playbook
from legato.store.schema import budget_reservations, decisions
from legato.trust import agent_state
from legato.trust.ladder import EXECUTE, REVIEW

OFFER_COST = "budget:daily_offer_cost"
SENDS = "budget:daily_sends"


@dataclass
class Budget:
    sends_left: float
    cost_left: float

    @property
    def limited(self) -> bool:
        return not (np.isinf(self.sends_left) and np.isinf(self.cost_left))


def day_of(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def budget_left(connection: Connection, playbook: Playbook, agent: Agent, now: datetime) -> Budget:
    """Today's budget less what cycles reserved and what cycles without a reservation proposed."""
    if agent.budget.daily_sends is None and agent.budget.daily_offer_cost is None:
        return Budget(np.inf, np.inf)
    day_start = day_of(now)
    reserved = connection.execute(
        sa.select(sa.func.coalesce(sa.func.sum(budget_reservations.c.sends), 0), sa.func.coalesce(sa.func.sum(budget_reservations.c.cost), 0.0)).where(
            budget_reservations.c.agent_id == agent.id, budget_reservations.c.day == day_start
        )
    ).one()
    reserving = sa.select(budget_reservations.c.cycle_id).where(budget_reservations.c.agent_id == agent.id, budget_reservations.c.day == day_start)
    # Cycles that reserved nothing (e.g. run while the agent had no budget) still spent it.
    used = connection.execute(
        sa.select(decisions.c.offer_id, sa.func.count())
        .where(
            decisions.c.agent_id == agent.id,
            decisions.c.decided_at >= day_start,
            decisions.c.decided_at < day_start + timedelta(days=1),
            decisions.c.route.in_((EXECUTE, REVIEW)),
            decisions.c.cycle_id.not_in(reserving),
        )
        .group_by(decisions.c.offer_id)
    ).all()
    offer_cost = {o.id: o.cost for o in playbook.offers}
    sends = int(reserved[0]) + sum(count for _, count in used)
    cost = float(reserved[1]) + sum(offer_cost.get(offer_id, 0.0) * count for offer_id, count in used if offer_id)
    return Budget(
        sends_left=np.inf if agent.budget.daily_sends is None else max(agent.budget.daily_sends - sends, 0),
        cost_left=np.inf if agent.budget.daily_offer_cost is None else max(agent.budget.daily_offer_cost - cost, 0.0),
    )


def _rank(expected: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Smaller ranks first: the negated expected value, a missing one last."""
    return -np.nan_to_num(expected, nan=-np.inf)


_ALL = (np.inf, np.inf)  # a cut every candidate passes
_NONE = (-np.inf, -np.inf)  # a cut no candidate passes


def _within(rank: npt.NDArray[np.float64], tie: npt.NDArray[np.float64], cut: tuple[float, float]) -> npt.NDArray[np.bool_]:
    if cut == _ALL:
        return np.ones(len(rank), dtype=bool)
    return (rank < cut[0]) | ((rank == cut[0]) & (tie <= cut[1]))


@dataclass(frozen=True)
class BudgetCut:
    """Which candidates keep their send: those ranked at or before ``sends`` and, when they
    cost something, at or before ``cost`` (ranks are (-expected value, random tie key))."""

    salt: str
    sends: tuple[float, float] = _ALL
    cost: tuple[float, float] = _ALL

    @classmethod
    def unlimited(cls) -> BudgetCut:
        return cls(salt="")

    @property
    def is_unlimited(self) -> bool:
        return self.sends == _ALL and self.cost == _ALL

    def to_json(self) -> dict[str, object]:
        """The cut as stored with the cycle's plan; floats as exact text (JSON has no infinity)."""
        return {"salt": self.salt, "sends": [repr(x) for x in self.sends], "cost": [repr(x) for x in self.cost]}

    @classmethod
    def from_json(cls, stored: dict[str, object]) -> BudgetCut:
        def pair(name: str) -> tuple[float, float]:
            values = stored[name]
            assert isinstance(values, list) and len(values) == 2
            return (float(values[0]), float(values[1]))

        return cls(salt=str(stored["salt"]), sends=pair("sends"), cost=pair("cost"))

    def ties(self, ids: npt.NDArray[np.str_]) -> npt.NDArray[np.float64]:
        return unit_hash(ids, self.salt)

    def apply(
        self,
        candidates: npt.NDArray[np.bool_],
        expected: npt.NDArray[np.float64],
        ids: npt.NDArray[np.str_],
        cost: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.object_]]:
        """Candidates past the budget, and which limit each one hit."""
        n = len(candidates)
        over = np.zeros(n, dtype=bool)
        why = np.full(n, None, dtype=object)
        rows = np.flatnonzero(candidates)
        if self.is_unlimited or len(rows) == 0:
            return over, why
        rank, tie = _rank(expected[rows]), self.ties(ids[rows])
        affordable = (cost[rows] == 0) | _within(rank, tie, self.cost)
        within = affordable & _within(rank, tie, self.sends)
        over[rows[~within]] = True
        why[rows[~affordable]] = OFFER_COST
        why[rows[affordable & ~within]] = SENDS
        return over, why


@dataclass
class Candidates:
    """A partition's candidates as the allocation needs them."""

    expected: npt.NDArray[np.float64]
    tie: npt.NDArray[np.float64]
    cost: npt.NDArray[np.float64]


def allocate(salt: str, found: Sequence[Candidates], budget: Budget) -> tuple[BudgetCut, int, float]:
    """The cut that spends ``budget`` on the best candidates of every partition, and what it keeps."""
    if not budget.limited:
        return BudgetCut.unlimited(), 0, 0.0
    expected = np.concatenate([c.expected for c in found]) if found else np.zeros(0)
    tie = np.concatenate([c.tie for c in found]) if found else np.zeros(0)
    cost = np.concatenate([c.cost for c in found]) if found else np.zeros(0)
    rank = _rank(expected)
    order = np.lexsort((tie, rank))
    costs = cost[order]
    # Offer cost is spent in rank order; sends without an offer cost nothing and stay eligible.
    paid = np.cumsum(costs) <= budget.cost_left
    affordable = (costs == 0) | paid
    within = affordable & (np.cumsum(affordable) <= budget.sends_left)
    key = np.column_stack([rank[order], tie[order]])
    # The positive-cost candidates that fit are a prefix of the order (the running cost only grows).
    if np.isinf(budget.cost_left) or paid.all():
        cost_cut = _ALL
    else:
        fits = int(paid.sum())
        cost_cut = _NONE if fits == 0 else (float(key[fits - 1, 0]), float(key[fits - 1, 1]))
    if np.isinf(budget.sends_left) or within.sum() == affordable.sum():
        sends_cut = _ALL
    else:
        kept = np.flatnonzero(within)
        sends_cut = _NONE if len(kept) == 0 else (float(key[kept[-1], 0]), float(key[kept[-1], 1]))
    return BudgetCut(salt=salt, sends=sends_cut, cost=cost_cut), int(within.sum()), float(costs[within].sum())


def reserve(
    connection: Connection, playbook: Playbook, agent: Agent, cycle_id: int, now: datetime, found: Sequence[Candidates], salt: str
) -> BudgetCut:
    """Allocate what is left of today's budget and record it as this cycle's reservation.

    The agent is held first (:func:`legato.trust.agent_state.hold`), so a second cycle reads
    what is left only after this reservation is in.
    """
    agent_state.hold(connection, agent.id)
    budget = budget_left(connection, playbook, agent, now)
    cut, sends, cost = allocate(salt, found, budget)
    if budget.limited:
        connection.execute(
            sa.insert(budget_reservations).values(cycle_id=cycle_id, agent_id=agent.id, day=day_of(now), sends=sends, cost=cost, created_at=now)
        )
    return cut
