"""One orchestration cycle: the only module that knows the order of the steps.

For each active agent: select the audience in SQL, page by page → build the feature batch
→ holdout → the policy picks an action per customer with its propensity → budget and
contact guardrails mask what is not allowed, each with a reason → the trust stage routes
each proposed send to "execute" or "review" → decisions, outbox rows, review items and an
audit entry are written in one transaction per page. Then the dispatcher sends what is due.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.audience.fields import StoreResolver, audience_from
from legato.audience.sql import compile_expression
from legato.clock import Clock
from legato.cycle.action_table import ActionTable
from legato.cycle.agents import sync_agents
from legato.cycle.audit import audit
from legato.cycle.budget import daily_budget
from legato.cycle.learning import learn
from legato.cycle.page import decide_page
from legato.cycle.policy_io import load_policy
from legato.cycle.query import feature
from legato.cycle.report import AgentReport, CycleReport
from legato.cycle.targeting import Targeting
from legato.cycle.trust_routing import Trust, approved_variants
from legato.decide.actions import action_space
from legato.deliver.channels import Transport
from legato.deliver.dispatch import dispatch_due
from legato.errors import NothingToDoError
from legato.guard.contact import contact_columns
from legato.guard.defaults import guardrails_in_force
from legato.learn.scoring import refresh_if_due
from legato.monitor.fairness import audit_daily
from legato.monitor.stop_loss import check_stop_loss
from legato.playbook.models import Agent, Playbook
from legato.store import traits as trait_store
from legato.store.db import is_empty
from legato.store.schema import customers, cycles, decisions, inbound_messages, review_items
from legato.trust.escalation import Escalations
from legato.trust.ladder import Stage
from legato.trust.review import expire_overdue

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
    expire_overdue(engine, now, sla_hours=playbook.review.sla_hours)
    with engine.begin() as connection:
        trait_store.roll_windows(connection, now)
        cycle_id = connection.execute(
            sa.insert(cycles).values(at=now, started_at=now, status="running").returning(cycles.c.id)
        ).scalar_one()
        stages = sync_agents(connection, playbook, now)
    reports: dict[str, AgentReport] = {}
    try:
        scores = refresh_if_due(engine, playbook, now)
        for agent in playbook.agents:
            stage, status = stages[agent.id]
            if not agent.active or status != "active":
                continue
            reports[agent.id] = _run_agent(engine, playbook, agent, stage, cycle_id, now, progress)
        dispatched = dispatch_due(engine, playbook, clock, transports)
    except Exception:
        # Pages already written stay (each was one transaction); the cycle says it did not finish.
        with engine.begin() as connection:
            connection.execute(sa.update(cycles).where(cycles.c.id == cycle_id).values(finished_at=clock.now(), status="failed"))
        raise
    try:
        audit_daily(engine, playbook, now)
    except Exception as exc:  # noqa: BLE001 - the audit must not undo a cycle whose messages went out
        with engine.begin() as connection:
            audit(connection, now, "engine", "fairness_audit_failed", "cycle", str(cycle_id), {"reason": f"{type(exc).__name__}: {exc}"})
    for agent_id, count in dispatched.sent.items():
        if agent_id in reports:
            reports[agent_id].sent = count
    for agent_id, count in dispatched.failed.items():
        if agent_id in reports:
            reports[agent_id].failed = count
    with engine.begin() as connection:
        connection.execute(
            sa.update(cycles).where(cycles.c.id == cycle_id).values(finished_at=clock.now(), status="finished")
        )
    return CycleReport(cycle_id=cycle_id, at=now, agents=reports, dispatch=dispatched, scores=scores)


def _run_agent(
    engine: Engine, playbook: Playbook, agent: Agent, stage: int, cycle_id: int, now: datetime, progress: Progress | None
) -> AgentReport:
    report = AgentReport(agent_id=agent.id, stage=stage)
    dialect = engine.dialect.name
    actions = action_space(playbook, agent)
    table = ActionTable(playbook, actions)
    channels = sorted({a.channel for a in actions if a.channel})
    resolver = StoreResolver(playbook, now, dialect)
    base = sa.select(customers.c.id, customers.c.time_zone, *(feature(resolver, text, dialect).label(f"f_{i}") for i, text in enumerate(agent.features)))
    audience = compile_expression(agent.audience, resolver, dialect_name=dialect)
    base = base.select_from(audience_from()).where(audience)
    # Pages are id ranges: every per-customer subquery below is bounded to the page's range.
    low, high = sa.bindparam("page_low", type_=sa.String()), sa.bindparam("page_high", type_=sa.String())
    base = base.where(customers.c.id > low, customers.c.id <= high)
    all_tags = {tag for creative in playbook.creatives for tag in creative.tags}
    tagged = {tag: [c.id for c in playbook.creatives if tag in c.tags] for tag in all_tags}
    base = contact_columns(base, guardrails_in_force(playbook), channels, now, page=(low, high), tagged=tagged)
    # A customer whose last proposal from this agent still waits for a person gets no second
    # one, and nobody is contacted while a message they wrote waits for a person.
    waiting = sa.union(
        sa.select(decisions.c.customer_id)
        .join(review_items, review_items.c.decision_id == decisions.c.id)
        .where(review_items.c.agent_id == agent.id, review_items.c.status == "open")
        .where(decisions.c.customer_id > low, decisions.c.customer_id <= high),
        sa.select(inbound_messages.c.customer_id)
        .join(review_items, review_items.c.inbound_message_id == inbound_messages.c.id)
        .where(review_items.c.kind == "conversation", review_items.c.status == "open")
        .where(inbound_messages.c.customer_id > low, inbound_messages.c.customer_id <= high),
    ).subquery("awaiting")
    base = base.outerjoin(waiting, waiting.c.customer_id == customers.c.id).add_columns(
        sa.case((waiting.c.customer_id.is_not(None), 1), else_=0).label("awaiting_review")
    )
    escalations = Escalations(agent, resolver, dialect)
    base = base.add_columns(*escalations.columns, feature(resolver, "lifetime_spend", dialect).label("customer_value"))
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{agent.id}|{now.isoformat()}".encode()).digest()[:8], "little"))
    last_id: str | None = None
    with engine.begin() as connection:
        action_keys = [a.key for a in actions]
        policy, report.policy_version = load_policy(connection, agent, action_keys, now)
        learn(connection, playbook, agent, policy, action_keys, now, report)
        stage, report.stop_loss = check_stop_loss(connection, agent, stage, now)
        report.stage = stage
        budget = daily_budget(connection, playbook, agent, now)
        approved = approved_variants(connection, agent) if stage == Stage.ASSISTED else set()
        targeting = Targeting.prepare(connection, playbook, agent, now, report)
    trust = Trust(stage, escalations, approved, table, playbook)
    ids = sa.select(customers.c.id).select_from(audience_from()).where(audience, customers.c.id > low).order_by(customers.c.id)
    while True:
        with engine.begin() as connection:
            bounds = {"page_low": last_id or ""}
            high_id = connection.execute(ids.offset(PAGE - 1).limit(1), bounds).scalar()
            if high_id is None:  # the last, shorter page
                high_id = connection.execute(sa.select(sa.func.max(customers.c.id))).scalar() or ""
            result = connection.execute(base.order_by(customers.c.id), {**bounds, "page_high": high_id})
            keys = list(result.keys())
            rows = result.all()
            if not rows:
                return report
            columns = {key: np.array(values, dtype=object) for key, values in zip(keys, zip(*rows, strict=True), strict=True)}
            last_id = rows[-1][0]
            decide_page(connection, playbook, agent, trust, targeting, cycle_id, now, policy, table, channels, columns, budget, rng, report)
        if progress:
            progress(agent.id, len(rows))
