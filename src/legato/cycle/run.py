"""One orchestration cycle: the only module that knows the order of the steps.

Before the agents: overdue reviews expire, windowed traits roll, agents follow the playbook,
the cycle's customer-id partitions are cut, scores are refit when due. For each active agent:
its plan step (settle and learn, stop-loss, approvals, uplift gate, partitions recorded),
the budget's allocation over the whole audience (reserved), then one step per partition
(audience in SQL → holdouts → the policy's choice with its propensity → send time →
guardrails → the budget's cut → trust route → decisions, outbox rows, review items and an
audit entry, in one transaction that also marks the partition done). Then the dispatcher
sends what is due.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import Clock
from legato.cycle.agents import sync_agents
from legato.cycle.page import complete
from legato.cycle.partitions import Partition, mark_done, split_customers
from legato.cycle.plan import AgentPlan, allocate_budget, plan_agent, propose_partition
from legato.cycle.report import AgentReport, CycleReport
from legato.deliver.channels import Transport
from legato.deliver.dispatch import dispatch_due
from legato.errors import NothingToDoError
from legato.learn.scoring import refresh_if_due
from legato.monitor.fairness import audit_daily
from legato.playbook.models import Agent, Playbook
from legato.store import playbook_versions
from legato.store import traits as trait_store
from legato.store.audit import record
from legato.store.db import is_empty
from legato.store.schema import cycles
from legato.store.status import AgentStatus, CycleStatus
from legato.trust.pending_optouts import settle as settle_opt_outs
from legato.trust.review import expire_overdue

# Customers per partition.
PAGE = 50_000

Progress = Callable[[str, int], None]


def run_cycle(
    engine: Engine,
    playbook: Playbook,
    clock: Clock,
    transports: dict[str, Transport],
    *,
    progress: Progress | None = None,
) -> CycleReport:
    """Run every active agent once at ``clock.now()``, then dispatch what is due."""
    if is_empty(engine):
        raise NothingToDoError(
            "the database has no customers, so there is nobody to decide for",
            hint="import customers first: legato import customers FILE (or try `legato demo`)",
        )
    now = clock.now()
    settle_opt_outs(engine)  # an opt-out the store could not take yet is written first, or nothing runs
    expire_overdue(engine, now, sla_hours=playbook.review.sla_hours)
    with engine.begin() as connection:
        trait_store.roll_windows(connection, now)
        version_id = playbook_versions.record(connection, playbook, now)
        cycle_id = connection.execute(
            sa.insert(cycles).values(at=now, started_at=now, status=CycleStatus.RUNNING, playbook_version_id=version_id).returning(cycles.c.id)
        ).scalar_one()
        stages = sync_agents(connection, playbook, now)
        # The same customer-id ranges for every agent of the cycle.
        partitions = split_customers(connection, PAGE)
    reports: dict[str, AgentReport] = {}
    try:
        scores = refresh_if_due(engine, playbook, now)
        for agent in playbook.agents:
            stage, status = stages[agent.id]
            if not agent.active or status != AgentStatus.ACTIVE:
                continue
            reports[agent.id] = _run_agent(engine, playbook, agent, stage, cycle_id, now, partitions, progress)
        dispatched = dispatch_due(engine, playbook, clock, transports)
    except Exception:
        # Pages already written stay (each was one transaction); the cycle says it did not finish.
        with engine.begin() as connection:
            connection.execute(sa.update(cycles).where(cycles.c.id == cycle_id).values(finished_at=clock.now(), status=CycleStatus.FAILED))
        raise
    try:
        audit_daily(engine, playbook, now)
    except Exception as exc:  # noqa: BLE001 - the audit must not undo a cycle whose messages went out
        with engine.begin() as connection:
            record(connection, now, "engine", "fairness_audit_failed", "cycle", str(cycle_id), {"reason": f"{type(exc).__name__}: {exc}"})
    for agent_id, count in dispatched.sent.items():
        if agent_id in reports:
            reports[agent_id].sent = count
    for agent_id, count in dispatched.failed.items():
        if agent_id in reports:
            reports[agent_id].failed = count
    with engine.begin() as connection:
        connection.execute(
            sa.update(cycles).where(cycles.c.id == cycle_id).values(finished_at=clock.now(), status=CycleStatus.FINISHED)
        )
    return CycleReport(cycle_id=cycle_id, at=now, agents=reports, dispatch=dispatched, scores=scores)


def _run_agent(
    engine: Engine,
    playbook: Playbook,
    agent: Agent,
    stage: int,
    cycle_id: int,
    now: datetime,
    partitions: list[Partition],
    progress: Progress | None,
) -> AgentReport:
    """The agent's plan, its budget across the whole audience, then each partition in turn."""
    report = AgentReport(agent_id=agent.id, stage=stage)
    plan = plan_agent(engine, playbook, agent, stage, cycle_id, now, partitions, report)
    allocate_budget(engine, playbook, plan, cycle_id, now)
    for partition in partitions:
        decided = _run_partition(engine, playbook, plan, cycle_id, now, partition, report)
        if progress and decided:
            progress(agent.id, decided)
    return report


def _run_partition(engine: Engine, playbook: Playbook, plan: AgentPlan, cycle_id: int, now: datetime, partition: Partition, report: AgentReport) -> int:
    """One partition in one transaction: propose, apply the budget's cut, route, write, mark done."""
    settle_opt_outs(engine)  # one that arrived in the pending file meanwhile counts for this partition
    with engine.begin() as connection:
        proposal = propose_partition(connection, playbook, plan, partition, now)
        decided = 0
        if proposal is not None:
            decided = complete(connection, playbook, plan.agent, plan.trust, cycle_id, now, plan.table, partition, proposal, plan.cut, report)
        mark_done(connection, cycle_id, plan.agent.id, partition, decided, now)
    return decided
