"""The plan step of one agent: everything its partitions share, decided once per cycle.

Settle and learn (a new policy version), the anomaly detector and the stop-loss (which may
lower the stage, or pause the agent, this very cycle), the approvals the trust stage needs, the uplift gate and send-time profile, the
audience query, the partitions recorded as pending, and the budget's allocation across the
whole audience (reserved in the store).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.cycle.action_table import ActionTable
from legato.cycle.budget import BudgetCut, Candidates, reserve
from legato.cycle.learning import learn
from legato.cycle.page import Proposal, propose
from legato.cycle.partitions import Partition, partition_rng, record
from legato.cycle.policy_io import load_policy, policy_at
from legato.cycle.query import AudienceQuery
from legato.cycle.report import AgentReport
from legato.cycle.targeting import Targeting
from legato.cycle.trust_routing import Trust, approved_variants
from legato.decide.actions import action_space
from legato.decide.policy import Policy
from legato.monitor.anomaly import detect_anomalies
from legato.monitor.series import agent_series
from legato.monitor.stop_loss import check_stop_loss
from legato.playbook.models import Agent, Playbook
from legato.store.schema import cycle_agents
from legato.trust.ladder import Stage

# Called last in each of the cycle's transactions: raises when the cycle's lease is no longer
# this process's (legato.cycle.lease.Lease.fence), so nothing of that transaction is written.
Fence = Callable[[Connection], None]


def no_fence(_connection: Connection) -> None:
    return None


@dataclass
class AgentPlan:
    agent: Agent
    stage: int
    policy: Policy
    table: ActionTable
    channels: list[str]
    targeting: Targeting
    trust: Trust
    query: AudienceQuery
    partitions: list[Partition]
    cut: BudgetCut = field(default_factory=BudgetCut.unlimited)
    paused: bool = False  # the stop-loss paused the agent in this plan: no budget, no partitions


def plan_agent(
    engine: Engine,
    playbook: Playbook,
    agent: Agent,
    stage: int,
    cycle_id: int,
    now: datetime,
    partitions: list[Partition],
    report: AgentReport,
    fence: Fence = no_fence,
) -> AgentPlan:
    """Learn, stop-loss, approvals, targeting and the partitions, in one transaction.

    The same transaction records what the plan decided (``cycle_agents``: the stage after
    the stop-loss, the policy version the partitions decide with), so that a cycle resumed
    after a crash continues from it (:func:`resume_plan`) and none of this runs twice.
    """
    actions = action_space(playbook, agent)
    table = ActionTable(playbook, actions)
    channels = sorted({a.channel for a in actions if a.channel})
    query = AudienceQuery.build(playbook, agent, channels, now, engine.dialect.name)
    with engine.begin() as connection:
        action_keys = [a.key for a in actions]
        policy, report.policy_version = load_policy(connection, agent, action_keys, now)
        learn(connection, playbook, agent, policy, action_keys, now, report)
        # One read of the agent's daily series for both monitors (legato.monitor.series).
        series = agent_series(connection, playbook, agent, now)
        report.anomalies = detect_anomalies(connection, playbook, agent, now, series)
        stopped = check_stop_loss(connection, playbook, agent, stage, now, series)
        stage, report.stop_loss, report.paused = stopped.stage, stopped.breaches, stopped.paused
        report.stage = stage
        approved = approved_variants(connection, agent) if stage == Stage.ASSISTED else set()
        targeting = Targeting.prepare(connection, playbook, agent, now, report)
        # A paused agent decides nothing: it has no partitions to do (a resumed cycle skips it too).
        record(connection, cycle_id, agent.id, [] if stopped.paused else partitions)
        connection.execute(
            sa.insert(cycle_agents).values(cycle_id=cycle_id, agent_id=agent.id, stage=stage, policy_version=report.policy_version, planned_at=now)
        )
        fence(connection)
    trust = Trust(stage, query.escalations, approved, table, playbook)
    return AgentPlan(agent, stage, policy, table, channels, targeting, trust, query, [] if stopped.paused else partitions, paused=stopped.paused)


@dataclass(frozen=True)
class Planned:
    """What an agent's plan step of a cycle recorded."""

    stage: int
    policy_version: int
    budget_cut: BudgetCut | None  # None until the budget was allocated


def planned_agents(connection: Connection, cycle_id: int) -> dict[str, Planned]:
    rows = connection.execute(sa.select(cycle_agents).where(cycle_agents.c.cycle_id == cycle_id)).all()
    return {
        row.agent_id: Planned(row.stage, row.policy_version, None if row.budget_cut is None else BudgetCut.from_json(row.budget_cut)) for row in rows
    }


def resume_plan(
    engine: Engine, playbook: Playbook, agent: Agent, cycle_id: int, now: datetime, partitions: list[Partition], planned: Planned, report: AgentReport
) -> AgentPlan:
    """The plan of an agent whose plan step this cycle already ran, rebuilt without running it again.

    Nothing is written: no settling or learning (the policy is the version the plan
    recorded), no stop-loss (its stage is the one recorded), no partitions recorded; the
    approvals, the uplift gate and the send-time profile are read again as of the cycle's time.
    """
    actions = action_space(playbook, agent)
    table = ActionTable(playbook, actions)
    channels = sorted({a.channel for a in actions if a.channel})
    query = AudienceQuery.build(playbook, agent, channels, now, engine.dialect.name)
    with engine.connect() as connection:
        policy = policy_at(connection, agent, [a.key for a in actions], planned.policy_version)
        approved = approved_variants(connection, agent) if planned.stage == Stage.ASSISTED else set()
        targeting = Targeting.prepare(connection, playbook, agent, now, report)
    report.stage, report.policy_version = planned.stage, planned.policy_version
    trust = Trust(planned.stage, query.escalations, approved, table, playbook)
    plan = AgentPlan(agent, planned.stage, policy, table, channels, targeting, trust, query, partitions)
    if planned.budget_cut is not None:
        plan.cut = planned.budget_cut
    return plan


def propose_partition(connection: Connection, playbook: Playbook, plan: AgentPlan, partition: Partition, now: datetime) -> Proposal | None:
    """The partition's proposal from its own rows and random stream; None when none of its customers is in the audience."""
    columns, n = plan.query.read(connection, partition)
    if n == 0:
        return None
    rng = partition_rng(plan.agent.id, now, partition)
    return propose(connection, playbook, plan.agent, plan.targeting, now, plan.policy, plan.table, plan.channels, columns, rng)


def allocate_budget(engine: Engine, playbook: Playbook, plan: AgentPlan, cycle_id: int, now: datetime, fence: Fence = no_fence) -> None:
    """Spend the daily budget on the best candidates of the whole audience and reserve it.

    Each partition is proposed once here only to collect its candidates (expected value, a
    seeded tie key, offer cost); the partition steps propose it again, identically, and
    apply the cut. Nothing is proposed twice when the agent has no budget.
    """
    budget = plan.agent.budget
    if budget.daily_sends is None and budget.daily_offer_cost is None:
        return
    salt = f"budget:{plan.agent.id}:{now.isoformat()}"
    found: list[Candidates] = []
    for partition in plan.partitions:
        with engine.connect() as connection:
            proposal = propose_partition(connection, playbook, plan, partition, now)
        if proposal is None:
            continue
        rows = np.flatnonzero(proposal.candidates)
        cut = BudgetCut(salt=salt)
        found.append(Candidates(expected=proposal.expected[rows], tie=cut.ties(proposal.ids[rows]), cost=plan.table.offer_cost[proposal.chosen[rows]]))
    with engine.begin() as connection:
        plan.cut = reserve(connection, playbook, plan.agent, cycle_id, now, found, salt)
        # Kept with the plan, in the reservation's transaction: a resumed cycle applies this cut
        # to its remaining partitions instead of reserving again.
        stored: Any = plan.cut.to_json()
        connection.execute(
            sa.update(cycle_agents).where(cycle_agents.c.cycle_id == cycle_id, cycle_agents.c.agent_id == plan.agent.id).values(budget_cut=stored)
        )
        fence(connection)
