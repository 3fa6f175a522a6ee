"""The plan step of one agent: everything its partitions share, decided once per cycle.

Settle and learn (a new policy version), the stop-loss (which may lower the stage this very
cycle), the approvals the trust stage needs, the uplift gate and send-time profile, the
audience query, the partitions recorded as pending, and the budget's allocation across the
whole audience (reserved in the store).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import Connection, Engine

from legato.cycle.action_table import ActionTable
from legato.cycle.budget import BudgetCut, Candidates, reserve
from legato.cycle.learning import learn
from legato.cycle.page import Proposal, propose
from legato.cycle.partitions import Partition, partition_rng, record
from legato.cycle.policy_io import load_policy
from legato.cycle.query import AudienceQuery
from legato.cycle.report import AgentReport
from legato.cycle.targeting import Targeting
from legato.cycle.trust_routing import Trust, approved_variants
from legato.decide.actions import action_space
from legato.decide.policy import Policy
from legato.monitor.stop_loss import check_stop_loss
from legato.playbook.models import Agent, Playbook
from legato.trust.ladder import Stage


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


def plan_agent(
    engine: Engine, playbook: Playbook, agent: Agent, stage: int, cycle_id: int, now: datetime, partitions: list[Partition], report: AgentReport
) -> AgentPlan:
    """Learn, stop-loss, approvals, targeting and the partitions, in one transaction."""
    actions = action_space(playbook, agent)
    table = ActionTable(playbook, actions)
    channels = sorted({a.channel for a in actions if a.channel})
    query = AudienceQuery.build(playbook, agent, channels, now, engine.dialect.name)
    with engine.begin() as connection:
        action_keys = [a.key for a in actions]
        policy, report.policy_version = load_policy(connection, agent, action_keys, now)
        learn(connection, playbook, agent, policy, action_keys, now, report)
        stage, report.stop_loss = check_stop_loss(connection, agent, stage, now)
        report.stage = stage
        approved = approved_variants(connection, agent) if stage == Stage.ASSISTED else set()
        targeting = Targeting.prepare(connection, playbook, agent, now, report)
        record(connection, cycle_id, agent.id, partitions)
    trust = Trust(stage, query.escalations, approved, table, playbook)
    return AgentPlan(agent, stage, policy, table, channels, targeting, trust, query, partitions)


def propose_partition(connection: Connection, playbook: Playbook, plan: AgentPlan, partition: Partition, now: datetime) -> Proposal | None:
    """The partition's proposal from its own rows and random stream; None when none of its customers is in the audience."""
    columns, n = plan.query.read(connection, partition)
    if n == 0:
        return None
    rng = partition_rng(plan.agent.id, now, partition)
    return propose(connection, playbook, plan.agent, plan.targeting, now, plan.policy, plan.table, plan.channels, columns, rng)


def allocate_budget(engine: Engine, playbook: Playbook, plan: AgentPlan, cycle_id: int, now: datetime) -> None:
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
