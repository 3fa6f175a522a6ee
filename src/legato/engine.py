"""One orchestration cycle: the only module that knows the order of the steps.

For each active agent: select the audience in SQL, page by page → build the feature batch
→ holdout → the policy picks an action per customer with its propensity → budget and
contact guardrails mask what is not allowed, each with a reason → the trust stage routes
each proposed send to "execute" or "review" → decisions, outbox rows, review items and an
audit entry are written in one transaction per page. Then the dispatcher sends what is due.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.audience.fields import StoreResolver, audience_from
from legato.audience.sql import FieldType, compile_expression, compile_value
from legato.clock import Clock
from legato.decide.actions import NOTHING, Action, action_space
from legato.decide.features import decode_context, encode_allowed, encode_context, feature_matrix
from legato.decide.holdout import in_global_control, in_holdout, unit_hash
from legato.decide.send_time import HourPreference, customer_counts, population_profile
from legato.decide.uplift_gate import HOLDOUT_UNREACHABLE, UpliftGate, fit_gate
from legato.decide.policy import Policy
from legato.decide.registry import build_policy, restore_policy
from legato.decide.timing import next_send_times
from legato.deliver.channels import Transport
from legato.deliver.dispatch import DispatchReport, dispatch_due
from legato.deliver.dispatch import message_context
from legato.deliver.render import CreativeTemplate, RenderError, SampleCustomer, variant_hash
from legato.guard.content import ContentChecker, Message, verdict
from legato.errors import NothingToDoError
from legato.guard.contact import ContactFacts, check_contacts, contact_columns, facts_from_columns, unreachable_reasons
from legato.guard.defaults import guardrails_in_force
from legato.learn.attribution import settle
from legato.learn.scoring import ScoreReport, refresh_if_due
from legato.playbook.models import Agent, Playbook
from legato.store import traits as trait_store
from legato.store.bulk import insert_many
from legato.store.db import is_empty
from legato.store.schema import (
    agents,
    audit_log,
    customers,
    cycles,
    decisions,
    inbound_messages,
    outbox,
    policy_states,
    review_items,
    settings,
)
from legato.trust.escalation import Escalations, evidence_for_reason
from legato.trust.ladder import EXECUTE, REVIEW, Stage, route
from legato.trust.review import assign_due_dates, expire_overdue
from legato.monitor.fairness import audit_daily
from legato.monitor.stop_loss import check_stop_loss

PAGE = 50_000

Progress = Callable[[str, int], None]


@dataclass
class AgentReport:
    agent_id: str
    stage: int
    audience: int = 0
    holdout: int = 0
    nothing: int = 0
    scheduled: int = 0
    queued: int = 0
    delayed: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    sent: int = 0
    failed: int = 0
    settled: int = 0
    stop_loss: list[Any] = field(default_factory=list)
    learned_from: int = 0
    policy_version: int = 0
    learning_error: str | None = None
    global_control: int = 0
    uplift_gate: dict[str, Any] | None = None
    own_send_time: int = 0  # sends timed by the customer's own engagement hours

    @property
    def suppressed_total(self) -> int:
        return sum(self.suppressed.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "trust_stage": self.stage,
            "audience": self.audience,
            "holdout": self.holdout,
            "do_nothing": self.nothing,
            "scheduled": self.scheduled,
            "queued_for_review": self.queued,
            "delayed": self.delayed,
            "suppressed": dict(self.suppressed),
            "sent": self.sent,
            "failed": self.failed,
            "settled": self.settled,
            "learned_from": self.learned_from,
            "policy_version": self.policy_version,
            "learning_error": self.learning_error,
            "stop_loss_breaches": [b.to_dict() for b in self.stop_loss],
            "global_control": self.global_control,
            "uplift_gate": self.uplift_gate,
            "sends_timed_by_own_history": self.own_send_time,
        }


@dataclass
class CycleReport:
    cycle_id: int
    at: datetime
    agents: dict[str, AgentReport]
    dispatch: DispatchReport
    scores: list[ScoreReport] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle_id,
            "at": self.at.isoformat(),
            "scores": [s.to_dict() for s in self.scores],
            "agents": [a.to_dict() for a in self.agents.values()],
            "dispatch_errors": self.dispatch.errors,
        }


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
        stages = _sync_agents(connection, playbook, now)
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
            _audit(connection, now, "engine", "fairness_audit_failed", "cycle", str(cycle_id), {"reason": f"{type(exc).__name__}: {exc}"})
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


def _sync_agents(connection: Connection, playbook: Playbook, now: datetime) -> dict[str, tuple[int, str]]:
    """Agents as the playbook declares them, with run-time changes kept.

    The playbook's trust stage applies when an agent is created and whenever the playbook
    itself changes it; otherwise a promotion, demotion or pause made at run time (by a person
    or by a stop-loss) stands. Every change is audited.
    """
    known = {row.id: row for row in connection.execute(sa.select(agents))}
    declared = dict(connection.execute(sa.select(settings.c.key, settings.c.value).where(settings.c.key.like("agent:%:playbook_stage"))).all())
    result: dict[str, tuple[int, str]] = {}
    for agent in playbook.agents:
        key = f"agent:{agent.id}:playbook_stage"
        row = known.get(agent.id)
        if row is None:
            connection.execute(sa.insert(agents).values(id=agent.id, trust_stage=agent.trust_stage, status="active", updated_at=now))
            _audit(connection, now, "playbook", "agent_created", "agent", agent.id, {"trust_stage": agent.trust_stage})
            result[agent.id] = (agent.trust_stage, "active")
        elif declared.get(key) != str(agent.trust_stage) and row.trust_stage != agent.trust_stage:
            connection.execute(sa.update(agents).where(agents.c.id == agent.id).values(trust_stage=agent.trust_stage, updated_at=now))
            _audit(connection, now, "playbook", "trust_stage_changed", "agent", agent.id, {"from": row.trust_stage, "to": agent.trust_stage})
            result[agent.id] = (agent.trust_stage, row.status)
        else:
            result[agent.id] = (row.trust_stage, row.status)
        if declared.get(key) != str(agent.trust_stage):
            connection.execute(sa.delete(settings).where(settings.c.key == key))
            connection.execute(sa.insert(settings).values(key=key, value=str(agent.trust_stage)))
    return result


def _audit(connection: Connection, at: datetime, actor: str, action: str, entity: str, entity_id: str, detail: dict[str, Any]) -> None:
    connection.execute(
        sa.insert(audit_log).values(at=at, actor=actor, action=action, entity=entity, entity_id=entity_id, detail=detail)
    )


def _load_policy(connection: Connection, agent: Agent, action_keys: list[str], now: datetime) -> tuple[Policy, int]:
    """The agent's latest saved policy, or a fresh one when there is none or it does not fit.

    A saved state that cannot be restored (corrupted, another policy, another action space)
    is never used half-way: the agent starts fresh and the reason goes to the audit log.
    """
    latest = connection.execute(
        sa.select(policy_states.c.version, policy_states.c.policy, policy_states.c.state)
        .where(policy_states.c.agent_id == agent.id)
        .order_by(policy_states.c.version.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.policy == agent.policy.name:
        try:
            policy = restore_policy(latest.policy, latest.state)
            same_space = latest.state.get("action_keys") == action_keys and latest.state.get("features") == agent.features
            if same_space and _same_params(policy, agent):
                return policy, latest.version
            reason = "the action space, the features or the policy parameters changed"
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"the saved state could not be restored: {exc}"
        _audit(connection, now, "engine", "policy_reset", "agent", agent.id, {"version": latest.version, "reason": reason})
    policy = build_policy(agent.policy.name, agent.policy.params, len(action_keys))
    version = _save_policy(connection, agent, policy, action_keys, now)
    return policy, version


def _same_params(policy: Policy, agent: Agent) -> bool:
    params = getattr(policy, "params", None)
    return params is None or params == type(params).model_validate(agent.policy.params)


def _save_policy(connection: Connection, agent: Agent, policy: Policy, action_keys: list[str], now: datetime) -> int:
    """A new version of the agent's policy state; the action keys say which index is which action."""
    latest = connection.execute(
        sa.select(sa.func.max(policy_states.c.version)).where(policy_states.c.agent_id == agent.id)
    ).scalar_one()
    version = (latest or 0) + 1
    connection.execute(
        sa.insert(policy_states).values(
            agent_id=agent.id,
            version=version,
            policy=agent.policy.name,
            state={**policy.state(), "action_keys": action_keys, "features": agent.features},
            created_at=now,
        )
    )
    return version


def _learn(connection: Connection, playbook: Playbook, agent: Agent, policy: Policy, action_keys: list[str], now: datetime, report: AgentReport) -> None:
    """Settle the decisions whose attribution window closed and update the policy from them."""
    settled = settle(connection, agent.id, playbook.objective(agent.objective), {o.id: o.cost for o in playbook.offers}, now)
    report.settled = len(settled)
    # Decisions made with other features (before the playbook changed them) cannot teach this policy.
    # Actions are matched by key, so decisions made before the action space changed still
    # teach the actions that remain.
    width = 4 * (len(agent.features) + 1)
    position = {key: i for i, key in enumerate(action_keys)}
    action_index = np.array([position.get(key, -1) for key in settled.actions], dtype=np.int64)
    usable = settled.executed & (action_index >= 0) & np.array([c is not None and len(c) == width for c in settled.contexts], dtype=bool)
    if not usable.any():
        return
    try:
        contexts = decode_context([c for c, keep in zip(settled.contexts, usable, strict=True) if keep], len(agent.features) + 1)
        policy.update(contexts, action_index[usable], settled.reward[usable], settled.propensity[usable])
    except ValueError as exc:
        # Keep deciding with the last good state; the reason is audited and reported.
        report.learning_error = str(exc)
        _audit(connection, now, "engine", "policy_update_failed", "agent", agent.id, {"reason": str(exc)})
        return
    report.learned_from = int(usable.sum())
    report.policy_version = _save_policy(connection, agent, policy, action_keys, now)


@dataclass
class _Budget:
    sends_left: float
    cost_left: float


def _budget(connection: Connection, playbook: Playbook, agent: Agent, now: datetime) -> _Budget:
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
    return _Budget(
        sends_left=np.inf if agent.budget.daily_sends is None else max(agent.budget.daily_sends - sends, 0),
        cost_left=np.inf if agent.budget.daily_offer_cost is None else max(agent.budget.daily_offer_cost - cost, 0.0),
    )


def _run_agent(
    engine: Engine, playbook: Playbook, agent: Agent, stage: int, cycle_id: int, now: datetime, progress: Progress | None
) -> AgentReport:
    report = AgentReport(agent_id=agent.id, stage=stage)
    dialect = engine.dialect.name
    actions = action_space(playbook, agent)
    table = _ActionTable(playbook, actions)
    channels = sorted({a.channel for a in actions if a.channel})
    resolver = StoreResolver(playbook, now, dialect)
    base = sa.select(customers.c.id, customers.c.time_zone, *(_feature(resolver, text, dialect).label(f"f_{i}") for i, text in enumerate(agent.features)))
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
    base = base.add_columns(*escalations.columns, _feature(resolver, "lifetime_spend", dialect).label("customer_value"))
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(f"{agent.id}|{now.isoformat()}".encode()).digest()[:8], "little"))
    last_id: str | None = None
    with engine.begin() as connection:
        action_keys = [a.key for a in actions]
        policy, report.policy_version = _load_policy(connection, agent, action_keys, now)
        _learn(connection, playbook, agent, policy, action_keys, now, report)
        stage, report.stop_loss = check_stop_loss(connection, agent, stage, now)
        report.stage = stage
        budget = _budget(connection, playbook, agent, now)
        approved = _approved_variants(connection, agent) if stage == Stage.ASSISTED else set()
        targeting = _Targeting.prepare(connection, playbook, agent, now, report)
    trust = _Trust(stage, escalations, approved, table, playbook)
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
            _decide_page(connection, playbook, agent, trust, targeting, cycle_id, now, policy, table, channels, columns, budget, rng, report)
        if progress:
            progress(agent.id, len(rows))


def _approved_variants(connection: Connection, agent: Agent) -> set[str]:
    """Content hashes of this agent's variants a person approved as they stand (not edited).

    Approval is bound to content: a creative changed in the playbook since has another hash
    and needs approval again.
    """
    rows = connection.execute(
        sa.select(decisions.c.content_hash)
        .join(review_items, review_items.c.decision_id == decisions.c.id)
        .where(review_items.c.agent_id == agent.id, review_items.c.status == "approved", decisions.c.content_override.is_(None))
        .distinct()
    ).scalars()
    return {h for h in rows if h}


@dataclass
class _Targeting:
    """Per agent and cycle: the uplift gate, and the population's engagement hours for send times."""

    gate: UpliftGate | None
    population_hours: npt.NDArray[np.float64] | None

    @classmethod
    def prepare(cls, connection: Connection, playbook: Playbook, agent: Agent, now: datetime, report: AgentReport) -> _Targeting:
        gate = None
        if agent.uplift_gate is not None:
            gate = fit_gate(connection, agent, playbook.objective(agent.objective), now, agent.uplift_gate)
            report.uplift_gate = {"open": gate.is_open, "reason": gate.reason, "treated": gate.treated, "holdout": gate.control, "gated": 0}
        population = population_profile(connection, now, agent.send_time) if agent.send_time.mode == "learned" else None
        return cls(gate, population)


@dataclass
class _Trust:
    """What routing needs besides the page: the stage, escalation rules and approval memory."""

    stage: int
    escalations: Escalations
    approved: set[str]
    table: _ActionTable
    playbook: Playbook

    def route(
        self,
        agent: Agent,
        allowed: npt.NDArray[np.bool_],
        chosen: npt.NDArray[np.int64],
        columns: dict[str, npt.NDArray[Any]],
        expected: npt.NDArray[np.float64],
        propensity: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_], npt.NDArray[np.int64]]:
        """Per row: the route, the review reason (None when not reviewed) and its priority."""
        n = len(allowed)
        index = np.where(chosen >= 0, chosen, 0)
        routes = route(self.stage, allowed)
        reasons = np.full(n, None, dtype=object)
        priority = np.zeros(n, dtype=np.int64)
        if self.stage == Stage.MANUAL:
            reasons[allowed] = "trust_stage_0"
            priority[allowed] = 50
        elif self.stage == Stage.ASSISTED:
            known = np.array([h in self.approved for h in self.table.content_hash])
            risky = np.zeros(n, dtype=bool)
            limits = agent.risk_limits
            if limits.max_offer_value is not None:
                risky |= self.table.offer_value[index] > limits.max_offer_value
            if limits.max_customer_value is not None:
                value = np.array([np.nan if v is None else float(v) for v in columns["customer_value"]])
                risky |= np.nan_to_num(value) > limits.max_customer_value
            for mask, reason in ((allowed & ~known[index], "not_approved_before"), (allowed & known[index] & risky, "risk_limit")):
                routes[mask], reasons[mask], priority[mask] = REVIEW, reason, 50
        facts = {
            "offer_value": self.table.offer_value[index],
            "offer_cost": self.table.offer_cost[index],
            "expected_value": expected,
            "propensity": propensity,
            "uncertainty": 1.0 - propensity,
        }
        rule_reasons, rule_priority = self.escalations.match(columns, facts, n)
        escalate = allowed & (rule_reasons != None)  # noqa: E711 - elementwise on objects
        routes[escalate], reasons[escalate], priority[escalate] = REVIEW, rule_reasons[escalate], rule_priority[escalate]
        content = allowed & self.table.content_escalate[index]
        routes[content], reasons[content], priority[content] = REVIEW, "content_escalation", 70
        return routes, reasons, priority


def _feature(resolver: StoreResolver, text: str, dialect: str) -> sa.ColumnElement[Any]:
    field = compile_value(text, resolver, dialect_name=dialect)
    if field.type is FieldType.BOOLEAN:  # PostgreSQL cannot cast boolean to float
        return sa.case((field.column, 1.0), (sa.not_(field.column), 0.0), else_=sa.null())
    return sa.cast(field.column, sa.Float)


class _ActionTable:
    """Per-action facts as arrays, so a batch's actions index them without a loop."""

    def __init__(self, playbook: Playbook, actions: list[Action]) -> None:
        self.actions = actions
        self.keys = np.array([a.key for a in actions], dtype=object)
        self.channel = np.array([a.channel for a in actions], dtype=object)
        self.marketing = np.array([a.is_nothing or playbook.creative(a.creative_id).purpose == "marketing" for a in actions])
        self.tags = [tuple(playbook.creative(a.creative_id).tags) if a.creative_id else () for a in actions]
        self.approved_template = np.array([bool(a.creative_id) and playbook.creative(a.creative_id).approved_template for a in actions])
        self.creative = np.array([a.creative_id for a in actions], dtype=object)
        self.offer = np.array([a.offer_id for a in actions], dtype=object)
        costs = {o.id: o.cost for o in playbook.offers}
        values = {o.id: o.value for o in playbook.offers}
        self.offer_cost = np.array([costs.get(a.offer_id, 0.0) if a.offer_id else 0.0 for a in actions])
        self.offer_value = np.array([values.get(a.offer_id, 0.0) if a.offer_id else 0.0 for a in actions])
        self.windows = [w for a in actions if a.window for w in [a.window]]
        unique_windows = list(dict.fromkeys(w for w in self.windows))
        self.unique_windows = unique_windows
        self.window_index = np.array([unique_windows.index(a.window) if a.window else 0 for a in actions], dtype=np.int64)
        self.content_hash = np.array(
            [variant_hash(playbook.creative(a.creative_id), a.offer_id) if a.creative_id else None for a in actions], dtype=object
        )
        self.nothing_index = next((i for i, a in enumerate(actions) if a.is_nothing), None)
        self.send_actions = np.array([not a.is_nothing for a in actions])
        self.marketing_any = bool((self.marketing & self.send_actions).any())
        checker = ContentChecker.for_playbook(playbook)
        checks = [_check_variant(playbook, a, checker) for a in actions]
        self.content_block = np.array([c == "block" for c, _ in checks])
        self.content_escalate = np.array([c == "escalate" for c, _ in checks])
        self.content_rule = np.array([rule for _, rule in checks], dtype=object)


    def _kind(self, k: int) -> tuple[str, bool, bool]:
        """What decides whether a customer can receive action ``k``: channel, marketing?, approved template?"""
        return (str(self.channel[k]), bool(self.marketing[k]), bool(self.approved_template[k]))

    def standing(self, facts: ContactFacts, n: int) -> dict[tuple[str, bool, bool], npt.NDArray[np.object_]]:
        """Why each customer cannot receive each kind of send in the action space."""
        kinds = sorted({self._kind(k) for k in np.flatnonzero(self.send_actions).tolist()})
        return {
            kind: unreachable_reasons(facts, kind[0], np.full(n, kind[1]), np.full(n, kind[2])) for kind in kinds
        }

    def reachable(self, standing: dict[tuple[str, bool, bool], npt.NDArray[np.object_]], n: int) -> npt.NDArray[np.bool_]:
        """customers × actions: may the customer receive the action at all now? "Do nothing" always."""
        reach = np.ones((n, len(self.actions)), dtype=bool)
        for k in np.flatnonzero(self.send_actions).tolist():
            reach[:, k] = standing[self._kind(k)] == None  # noqa: E711
        return reach

    @staticmethod
    def unreachable_reasons(standing: dict[tuple[str, bool, bool], npt.NDArray[np.object_]], rows: npt.NDArray[np.int64]) -> npt.NDArray[np.object_]:
        """For customers who can receive none of the channels: each distinct reason once, joined with '+'."""
        columns = [reasons[rows].tolist() for reasons in standing.values()]
        return np.array(["+".join(dict.fromkeys(r for r in found if r is not None)) for found in zip(*columns, strict=True)] or [], dtype=object)


def _check_variant(playbook: Playbook, action: Action, checker: ContentChecker) -> tuple[str, str | None]:
    """The content verdict of an action's creative and offer, rendered once for everybody.

    Personal parts are placeholders here; the dispatcher checks each personalized message
    again before it leaves.
    """
    if action.is_nothing:
        return "ok", None
    creative = playbook.creative(action.creative_id)  # type: ignore[arg-type]
    offer = playbook.offer(action.offer_id) if action.offer_id else None
    try:
        rendered = CreativeTemplate(creative).render(message_context(playbook, SampleCustomer(id="[id]"), offer, "sample"))
    except RenderError:
        return "block", "template.render_error"
    findings = checker.check(
        Message(channel=creative.channel.value, body=rendered.body, subject=rendered.subject, title=rendered.title, purpose=creative.purpose),
        offer_id=action.offer_id,
        # The first SMS to a number has the strictest rules; a variant must be fit to be one.
        first_sms=creative.channel.value in ("sms", "whatsapp"),
    )
    outcome = verdict(findings)
    worst = next((f.rule for f in findings if f.severity == outcome), None)
    return outcome, worst



def _decide_page(
    connection: Connection,
    playbook: Playbook,
    agent: Agent,
    trust: _Trust,
    targeting: _Targeting,
    cycle_id: int,
    now: datetime,
    policy: Policy,
    table: _ActionTable,
    channels: list[str],
    columns: dict[str, npt.NDArray[Any]],
    budget: _Budget,
    rng: np.random.Generator,
    report: AgentReport,
) -> None:
    ids = columns["id"].astype(str)
    n = len(ids)
    report.audience += n
    # The program-wide control group gets no marketing from any agent; it is not the agent's holdout.
    control = in_global_control(ids, playbook.global_control) if table.marketing_any else np.zeros(n, dtype=bool)
    holdout = in_holdout(ids, agent.id, agent.holdout) & ~control
    features = feature_matrix([columns[f"f_{i}"] for i in range(len(agent.features))], n)
    guardrails = guardrails_in_force(playbook)
    facts = facts_from_columns(columns, guardrails, channels)
    chosen = np.full(n, -1, dtype=np.int64)
    propensity = np.ones(n)
    expected = np.zeros(n)
    active = ~holdout & ~control
    # The policy chooses only among the channels each customer can receive now (consent,
    # contact point, suppression list, WhatsApp's window); who can receive none gets no decision.
    standing = table.standing(facts, n)
    reach = table.reachable(standing, n)
    reachable = reach[:, table.send_actions].any(axis=1) if table.send_actions.any() else np.ones(n, dtype=bool)
    unreachable = active & ~reachable
    active &= ~unreachable
    # Then the uplift gate, among those a message could reach (its top share is of them).
    gated = np.zeros(n, dtype=bool)
    if targeting.gate is not None and not targeting.gate.is_open:
        passes, _ = targeting.gate.passes(features[active])
        gated[active] = ~passes
        active &= ~gated
    batch = policy.decide(features[active], rng, allowed=None if reach[active].all() else reach[active])
    chosen[active] = batch.actions
    propensity[active] = batch.propensities
    expected[active] = batch.expected_values
    # A fixed rule takes no action (-1) for a customer who cannot receive its message.
    declined = active & (chosen < 0)

    channel = np.full(n, None, dtype=object)
    acting = chosen >= 0
    channel[acting] = table.channel[chosen[acting]]
    sends = channel != None  # noqa: E711 - elementwise on objects
    send_at = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    window = np.zeros(n, dtype=np.int64)
    window[sends] = table.window_index[chosen[sends]]
    hours = None
    own_history = np.zeros(n, dtype=bool)
    if targeting.population_hours is not None and sends.any():
        counts = customer_counts(connection, ids[sends], now, agent.send_time)
        preference = HourPreference.estimate(counts, targeting.population_hours, agent.send_time.min_events)
        hours = preference.best_hours(table.unique_windows, window[sends])
        own_history[sends] = preference.own_history
    send_at[sends] = next_send_times(now, columns["time_zone"][sends], table.unique_windows, window[sends], hours)

    # Guardrails first, so that only sends that may go out use up the budget.
    index = np.where(chosen >= 0, chosen, 0)
    verdict = check_contacts(
        channel,
        send_at,
        facts,
        guardrails,
        marketing=table.marketing[index],
        tags=[table.tags[i] for i in index.tolist()],
        templates=table.approved_template[index],
    )
    reasons = verdict.reasons.copy()
    reasons[unreachable] = table.unreachable_reasons(standing, np.flatnonzero(unreachable))
    reasons[declined] = "rule_action_unavailable"
    send_at = np.where(sends, verdict.send_at, send_at)
    off_content = sends & verdict.allowed & table.content_block[index]
    reasons[off_content] = np.char.add("content:", table.content_rule[index][off_content].astype(str)).astype(object)
    awaiting = sends & verdict.allowed & ~off_content & columns["awaiting_review"].astype(bool)
    reasons[awaiting] = "awaiting_review"
    blocked = sends & ~(verdict.allowed & ~off_content & ~awaiting)
    over_budget, budget_reason = _over_budget(sends & ~blocked, chosen, expected, table, budget, rng)
    reasons[over_budget] = budget_reason[over_budget]
    allowed = sends & ~blocked & ~over_budget
    # Escalations (rules, content findings) reach a person whatever the agent's stage.
    routes, review_reason, review_priority = trust.route(agent, allowed, chosen, columns, expected, propensity)
    escalated = (routes == REVIEW) & (review_reason != "trust_stage_0")
    reasons[escalated] = np.char.add("escalate:", review_reason[escalated].astype(str)).astype(object)
    if trust.stage == Stage.SUPERVISED and agent.audit_sample > 0:
        # After-the-fact audit: a stable random share of what executes is shown to a person.
        audited = (routes == EXECUTE) & (unit_hash(ids, f"audit:{agent.id}:{now.isoformat()}") < agent.audit_sample)
        review_reason[audited], review_priority[audited] = "audit_sample", 10

    status = np.full(n, "nothing", dtype=object)
    route_column = np.full(n, "none", dtype=object)
    status[holdout], route_column[holdout] = "holdout", "holdout"
    status[control], route_column[control] = "control", "control"
    # Not the policy's choice: kept out of learning and off-policy evaluation.
    status[gated], route_column[gated], reasons[gated] = "gated", "gate", "uplift_gate"
    # Held-out customers no message could have reached: lift keeps them (intent to treat), the
    # uplift gate leaves them out so that its two arms are both reachable customers.
    reasons[holdout & ~reachable] = HOLDOUT_UNREACHABLE
    suppressed = over_budget | blocked | unreachable | declined
    status[suppressed], route_column[suppressed] = "suppressed", "suppress"
    status[routes == REVIEW], route_column[routes == REVIEW] = "queued", REVIEW
    status[routes == EXECUTE], route_column[routes == EXECUTE] = "scheduled", EXECUTE

    report.holdout += int(holdout.sum())
    report.global_control += int(control.sum())
    report.own_send_time += int((own_history & allowed).sum())
    report.nothing += int((active & ~sends & ~declined).sum()) + int(gated.sum())
    if report.uplift_gate is not None:
        report.uplift_gate["gated"] += int(gated.sum())
    report.scheduled += int((routes == EXECUTE).sum())
    report.queued += int((routes == REVIEW).sum())
    report.delayed += int((allowed & verdict.delayed).sum())
    report.suppressed.update(reasons[suppressed].tolist())

    allowed_blobs = encode_allowed(reach, active)
    written_after = _write_page(connection, agent, cycle_id, now, ids, chosen, propensity, expected, holdout, reasons, route_column, status, send_at, table, features, allowed_blobs)
    _queue_reviews(connection, playbook, agent, cycle_id, written_after, now, ids, review_reason, review_priority, routes)


def _queue_reviews(
    connection: Connection,
    playbook: Playbook,
    agent: Agent,
    cycle_id: int,
    written_after: int,
    now: datetime,
    ids: npt.NDArray[np.str_],
    reason: npt.NDArray[np.object_],
    priority: npt.NDArray[np.int64],
    routes: npt.NDArray[np.object_],
) -> None:
    """One review item per decision a person must see: "open" ones wait, "audit" ones went out."""
    wanted = reason != None  # noqa: E711 - elementwise on objects
    if not wanted.any():
        return
    by_customer = {
        customer: (r, int(p), "open" if route_ == REVIEW else "audit")
        for customer, r, p, route_ in zip(ids[wanted].tolist(), reason[wanted].tolist(), priority[wanted].tolist(), routes[wanted].tolist(), strict=True)
    }
    rows = connection.execute(
        sa.select(decisions.c.id, decisions.c.customer_id, decisions.c.content_hash).where(
            decisions.c.cycle_id == cycle_id,
            decisions.c.agent_id == agent.id,
            decisions.c.id > written_after,
            decisions.c.route.in_((REVIEW, EXECUTE)),
        )
    ).all()
    # What the reviewer reads besides the decision, e.g. the statement of a company value it conflicts with.
    evidence = {r: json.dumps(e) if (e := evidence_for_reason(playbook, r)) is not None else None for r in set(reason[wanted].tolist())}
    items = [
        (decision_id, agent.id, by_customer[customer][0], by_customer[customer][1], by_customer[customer][2], now, content_hash, evidence[by_customer[customer][0]])
        for decision_id, customer, content_hash in rows
        if customer in by_customer
    ]
    insert_many(connection, review_items, ["decision_id", "agent_id", "reason", "priority", "status", "created_at", "content_hash", "evidence"], items)
    assign_due_dates(connection, playbook.review.sla_hours)


def _over_budget(
    sends: npt.NDArray[np.bool_],
    chosen: npt.NDArray[np.int64],
    expected: npt.NDArray[np.float64],
    table: _ActionTable,
    budget: _Budget,
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


def _write_page(
    connection: Connection,
    agent: Agent,
    cycle_id: int,
    now: datetime,
    ids: npt.NDArray[np.str_],
    chosen: npt.NDArray[np.int64],
    propensity: npt.NDArray[np.float64],
    expected: npt.NDArray[np.float64],
    holdout: npt.NDArray[np.bool_],
    reasons: npt.NDArray[np.object_],
    route_column: npt.NDArray[np.object_],
    status: npt.NDArray[np.object_],
    send_at: npt.NDArray[np.datetime64],
    table: _ActionTable,
    features: npt.NDArray[np.float64],
    allowed: list[bytes | None],
) -> int:
    """Decisions, then the outbox rows derived from them in SQL; returns the largest decision id
    before this page, so later steps of the same transaction can find the page's rows."""
    before = connection.execute(sa.select(sa.func.coalesce(sa.func.max(decisions.c.id), 0))).scalar_one()
    acting = chosen >= 0
    index = np.where(acting, chosen, 0)
    keys = np.where(acting, table.keys[index], NOTHING)
    send_times = _aware(send_at)
    n = len(ids)
    findings = {reason: json.dumps([reason] if reason else []) for reason in set(reasons.tolist())}
    columns = {
        "cycle_id": [cycle_id] * n,
        "agent_id": [agent.id] * n,
        "customer_id": ids.tolist(),
        "decided_at": [now] * n,
        "action": keys.tolist(),
        "offer_id": np.where(acting, table.offer[index], None).tolist(),
        "creative_id": np.where(acting, table.creative[index], None).tolist(),
        "channel": np.where(acting, table.channel[index], None).tolist(),
        "send_at": send_times,
        "propensity": propensity.tolist(),
        "expected_value": expected.tolist(),
        "holdout": holdout.tolist(),
        "findings": [findings[reason] for reason in reasons.tolist()],
        "route": route_column.tolist(),
        "status": status.tolist(),
        "content_hash": np.where(acting, table.content_hash[index], None).tolist(),
        "context": encode_context(features),
        "action_index": np.where(acting, chosen, None).tolist(),
        "allowed_actions": allowed,
    }
    insert_many(connection, decisions, list(columns), list(zip(*columns.values(), strict=True)))
    this_page = sa.and_(decisions.c.cycle_id == cycle_id, decisions.c.agent_id == agent.id, decisions.c.id > before)
    connection.execute(
        sa.insert(outbox).from_select(
            ["decision_id", "customer_id", "channel", "send_at", "status", "attempts"],
            sa.select(
                decisions.c.id,
                decisions.c.customer_id,
                decisions.c.channel,
                decisions.c.send_at,
                sa.literal("pending"),
                sa.literal(0),
            ).where(this_page, decisions.c.route == EXECUTE),
        )
    )
    counts = Counter(status.tolist())
    _audit(connection, now, f"agent:{agent.id}", "decided", "cycle", str(cycle_id), {"decisions": len(ids), **counts})
    return int(before)


def _aware(values: npt.NDArray[np.datetime64]) -> list[datetime | None]:
    from datetime import timezone

    return [None if v is None else v.replace(tzinfo=timezone.utc) for v in values.astype("datetime64[us]").astype(object).tolist()]
