"""An agent's track record, and the promotions, demotions and pauses that follow from it.

Promotion up the trust ladder is recommended by the record and confirmed by a person:
:func:`promotion_check` says which criteria are unmet, :func:`promote` refuses while any is
unless the person gives an override reason, which is audited with the unmet criteria.
Demotion needs only a reason. Every change is one transaction with one audit row (entity
``agent``), and is refused without change when it makes no sense (promoting down, demoting
an agent already at that stage, pausing a paused agent).

The record is read set-based: review outcomes from ``review_items`` (decided in the window),
rejection reasons and escalations from the audit rows :mod:`legato.trust.review` writes,
guardrail findings from ``decisions.findings``, lift from :func:`legato.monitor.lift.lift`
and stop-loss breaches from audit rows with action ``stop_loss_breach``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, Row

from legato.errors import Conflict, Invalid, LegatoError, NotFound
from legato.monitor.alerts import clear_alert, incident_key
from legato.monitor.lift import Lift, measure
from legato.store.schema import agents, audit_log, decisions, review_items
from legato.store.status import AgentStatus, AlertKind, ReviewKind, ReviewStatus
from legato.trust.agent_state import StageCause, change_stage, change_status
from legato.trust.ladder import Stage

STOP_LOSS_BREACH = "stop_loss_breach"
PAUSED = "agent_paused"
STOP_LOSS_ACTOR = "stop_loss"  # legato.monitor.stop_loss's actor in the audit log
# Decision reasons that are not guardrail findings: spending limits and the uplift gate say
# nothing about conduct.
NOT_GUARDRAILS = frozenset({"budget", "uplift_gate", "holdout_unreachable"})


class TrustError(LegatoError):
    """A trust-ladder change that cannot be made as asked; nothing was changed."""


class TrustInvalid(TrustError, Invalid):
    """The request is wrong: no such stage, not up (or not down), no name or reason."""


class TrustNotFound(TrustError, NotFound):
    """There is no such agent."""


class TrustConflict(TrustError, Conflict):
    """The agent's state or record refuses it: already paused, does not qualify."""


@dataclass(frozen=True)
class PromotionCriteria:
    """What an agent's record must show before it moves up a stage.

    Lift is judged on the point estimate of ``lift_metric`` against the holdout; with
    ``require_lift`` an agent without a measurement (fewer than 30 customers with settled
    decisions in and out of the holdout, or no outcome recorded yet) does not qualify yet.
    """

    min_reviewed: int = 200
    min_unedited_approval_rate: float = 0.95
    stop_loss_free_days: float = 30.0
    lift_metric: str = "reward_per_customer"
    min_lift: float = 0.0
    require_lift: bool = True
    window_days: float = 90.0


@dataclass(frozen=True)
class TrackRecord:
    agent_id: str
    stage: int
    status: str
    since: datetime
    until: datetime
    reviewed: int = 0
    approved: int = 0
    approved_unedited: int = 0
    edited: int = 0
    rejected: int = 0
    expired: int = 0
    open: int = 0
    escalations: int = 0
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    decisions: int = 0
    guardrail_findings: int = 0
    findings_by_rule: dict[str, int] = field(default_factory=dict)
    lift: list[Lift] = field(default_factory=list)
    last_stop_loss_breach: datetime | None = None
    lift_nothing_yet: str | None = None  # why there is no lift to show yet, in words

    @property
    def approval_rate(self) -> float | None:
        return self.approved / self.reviewed if self.reviewed else None

    @property
    def unedited_approval_rate(self) -> float | None:
        return self.approved_unedited / self.reviewed if self.reviewed else None

    @property
    def edit_rate(self) -> float | None:
        return self.edited / self.reviewed if self.reviewed else None

    def lift_of(self, metric: str) -> Lift | None:
        return next((m for m in self.lift if m.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "trust_stage": self.stage,
            "status": self.status,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "reviewed": self.reviewed,
            "approved": self.approved,
            "approved_unedited": self.approved_unedited,
            "edited": self.edited,
            "rejected": self.rejected,
            "expired": self.expired,
            "open": self.open,
            "approval_rate": self.approval_rate,
            "unedited_approval_rate": self.unedited_approval_rate,
            "edit_rate": self.edit_rate,
            "escalations": self.escalations,
            "rejection_reasons": self.rejection_reasons,
            "decisions": self.decisions,
            "guardrail_findings": self.guardrail_findings,
            "findings_by_rule": self.findings_by_rule,
            "lift": [m.to_dict() for m in self.lift],
            "lift_nothing_yet": self.lift_nothing_yet,
            "last_stop_loss_breach": self.last_stop_loss_breach.isoformat() if self.last_stop_loss_breach else None,
        }


@dataclass(frozen=True)
class AgentState:
    id: str
    trust_stage: int
    status: str
    updated_at: datetime
    open_items: int

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.id, "trust_stage": self.trust_stage, "stage_name": Stage(self.trust_stage).name.lower(),
                "status": self.status, "updated_at": self.updated_at.isoformat(), "open_review_items": self.open_items}


# --- reading -------------------------------------------------------------------------------


def list_agents(engine: Engine) -> list[AgentState]:
    """Every agent the engine knows, with its stage, status and open review items."""
    open_items = (
        sa.select(review_items.c.agent_id, sa.func.count().label("n"))
        .where(review_items.c.status == ReviewStatus.OPEN)
        .group_by(review_items.c.agent_id)
        .subquery()
    )
    query = (
        sa.select(agents.c.id, agents.c.trust_stage, agents.c.status, agents.c.updated_at, sa.func.coalesce(open_items.c.n, 0))
        .select_from(agents.outerjoin(open_items, open_items.c.agent_id == agents.c.id))
        .order_by(agents.c.id)
    )
    with engine.connect() as connection:
        return [AgentState(*row) for row in connection.execute(query)]


def track_record(engine: Engine, agent_id: str, *, now: datetime, window_days: float = 90.0) -> TrackRecord:
    """The agent's record over the ``window_days`` before ``now``."""
    with engine.connect() as connection:
        return record_of(connection, agent_id, since=now - timedelta(days=window_days), until=now)


def record_of(connection: Connection, agent_id: str, *, since: datetime, until: datetime) -> TrackRecord:
    """The record over [since, until) on an open connection (so a promotion reads and writes in one transaction)."""
    agent = _agent(connection, agent_id)
    edited = decisions.c.content_override.is_not(None)
    outcomes = connection.execute(
        sa.select(
            review_items.c.status,
            sa.func.count(),
            sa.func.sum(sa.case((edited, 1), else_=0)),
        )
        .select_from(review_items.join(decisions, decisions.c.id == review_items.c.decision_id))
        .where(review_items.c.agent_id == agent_id, review_items.c.decided_at >= since, review_items.c.decided_at < until)
        .group_by(review_items.c.status)
    ).all()
    by_status = {status: (int(n), int(e or 0)) for status, n, e in outcomes}
    open_now = connection.execute(
        # Its own proposals only: customers' replies and findings about it are not its record.
        sa.select(sa.func.count())
        .select_from(review_items)
        .where(review_items.c.agent_id == agent_id, review_items.c.status == ReviewStatus.OPEN, review_items.c.kind == ReviewKind.DECISION)
    ).scalar_one()
    approved, approved_edited = by_status.get(ReviewStatus.APPROVED, (0, 0))
    rejected, rejected_edited = by_status.get(ReviewStatus.REJECTED, (0, 0))

    actions = _review_actions(connection, agent_id, since, until)
    reasons = Counter({reason: n for action, reason, n in actions if action == "review_rejected"})
    escalations = sum(n for action, _, n in actions if action == "review_escalated")

    findings = Counter[str]()
    n_decisions = 0
    for text, n in connection.execute(
        sa.select(sa.cast(decisions.c.findings, sa.Text), sa.func.count())
        .where(decisions.c.agent_id == agent_id, decisions.c.decided_at >= since, decisions.c.decided_at < until)
        .group_by(sa.cast(decisions.c.findings, sa.Text))
    ):
        n_decisions += int(n)
        for finding in json.loads(text) if text else []:
            rule = finding if isinstance(finding, str) else str(finding.get("rule", finding))
            if rule.split(":", 1)[0] not in NOT_GUARDRAILS:
                findings[rule] += int(n)

    measured = measure(connection, agent_id, decided_from=since, decided_to=until)
    breach = connection.execute(
        sa.select(sa.func.max(audit_log.c.at)).where(
            # A breach of an agent already at the rule's stage pauses it without a stage change.
            sa.or_(audit_log.c.action == STOP_LOSS_BREACH, sa.and_(audit_log.c.action == PAUSED, audit_log.c.actor == STOP_LOSS_ACTOR)),
            audit_log.c.entity == "agent", audit_log.c.entity_id == agent_id, audit_log.c.at < until
        )
    ).scalar_one()
    return TrackRecord(
        agent_id=agent_id,
        stage=agent.trust_stage,
        status=agent.status,
        since=since,
        until=until,
        reviewed=approved + rejected,
        approved=approved,
        approved_unedited=approved - approved_edited,
        edited=approved_edited + rejected_edited,
        rejected=rejected,
        expired=by_status.get("expired", (0, 0))[0],
        open=int(open_now),
        escalations=escalations,
        rejection_reasons=dict(reasons.most_common()),
        decisions=n_decisions,
        guardrail_findings=sum(findings.values()),
        findings_by_rule=dict(findings.most_common()),
        lift=measured.lifts,
        last_stop_loss_breach=breach,
        lift_nothing_yet=measured.nothing_yet,
    )


def _review_actions(connection: Connection, agent_id: str, since: datetime, until: datetime) -> list[tuple[str, str | None, int]]:
    """(action, rejection reason, count) of the agent's rejections and escalations in the window."""
    reason = audit_log.c.detail["reason"].as_string()
    return [
        (action, why, int(n))
        for action, why, n in connection.execute(
            sa.select(audit_log.c.action, reason, sa.func.count())
            .where(
                audit_log.c.action.in_(("review_rejected", "review_escalated")),
                audit_log.c.at >= since,
                audit_log.c.at < until,
                audit_log.c.entity == "review_item",
                audit_log.c.detail["agent"].as_string() == agent_id,
            )
            .group_by(audit_log.c.action, reason)
        )
    ]


def promotion_check(record: TrackRecord, criteria: PromotionCriteria) -> tuple[bool, list[str]]:
    """Whether the record meets the criteria, and each criterion it does not meet, in words."""
    unmet: list[str] = []
    if record.reviewed < criteria.min_reviewed:
        unmet.append(f"{record.reviewed} reviewed items, needs at least {criteria.min_reviewed}")
    rate = record.unedited_approval_rate
    if rate is None or rate < criteria.min_unedited_approval_rate:
        shown = "no reviewed items" if rate is None else f"{rate:.1%} approved unedited"
        unmet.append(f"{shown}, needs at least {criteria.min_unedited_approval_rate:.0%}")
    if record.last_stop_loss_breach is not None and record.last_stop_loss_breach > record.until - timedelta(days=criteria.stop_loss_free_days):
        unmet.append(
            f"stop-loss breached at {record.last_stop_loss_breach:%Y-%m-%d %H:%M} UTC, "
            f"needs {criteria.stop_loss_free_days:g} days without a breach"
        )
    measured = record.lift_of(criteria.lift_metric)
    if measured is None or measured.low is None:
        if criteria.require_lift:
            why = record.lift_nothing_yet or (measured.note if measured is not None else None) or "needs 30 customers with settled decisions in each group"
            unmet.append(f"no lift measurement of {criteria.lift_metric} against the holdout yet ({why})")
    elif measured.difference < criteria.min_lift:
        unmet.append(
            f"lift of {criteria.lift_metric} is {measured.difference:+.4g} (95% CI {measured.low:+.4g} to {measured.high:+.4g}), "
            f"needs at least {criteria.min_lift:+g}"
        )
    return not unmet, unmet


# --- changing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageChange:
    agent_id: str
    from_stage: int
    to_stage: int
    unmet: list[str]
    override_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent_id, "from_stage": self.from_stage, "to_stage": self.to_stage, "unmet": self.unmet,
                "override_reason": self.override_reason}


def promote(
    engine: Engine,
    agent_id: str,
    to_stage: int,
    by: str,
    *,
    override_reason: str | None = None,
    criteria: PromotionCriteria = PromotionCriteria(),
    now: datetime,
) -> StageChange:
    """Move the agent up one stage when its record qualifies, or with a recorded override.

    The ladder is climbed one stage at a time: an override may promote an agent whose record
    does not qualify yet (recorded with its reason), never skip a stage, since each stage is
    where the record for the next one is earned.
    """
    by = _name(by)
    with engine.begin() as connection:
        agent = _agent(connection, agent_id, lock=True)
        _valid_stage(to_stage)
        if to_stage <= agent.trust_stage:
            raise TrustInvalid(
                f"agent '{agent_id}' is at stage {agent.trust_stage}; promoting to {to_stage} is not up",
                hint="use `legato agents demote` to lower a stage",
            )
        if to_stage > agent.trust_stage + 1:
            raise TrustInvalid(
                f"agent '{agent_id}' is at stage {agent.trust_stage}: the ladder is climbed one stage at a time "
                f"({agent.trust_stage} → {agent.trust_stage + 1}), an override included",
                hint=f"promote to {agent.trust_stage + 1} now; stage {to_stage} once the record at {agent.trust_stage + 1} qualifies",
            )
        record = record_of(connection, agent_id, since=now - timedelta(days=criteria.window_days), until=now)
        _, unmet = promotion_check(record, criteria)
        override = override_reason.strip() if override_reason and override_reason.strip() else None
        if unmet and override is None:
            raise TrustConflict(
                f"agent '{agent_id}' does not qualify for stage {to_stage}: " + "; ".join(unmet),
                hint="wait for a longer record, or promote anyway with --override REASON (the reason is audited)",
            )
        detail = {"unmet": unmet, "override_reason": override, "criteria": criteria.__dict__, "record": _summary(record)}
        change_stage(connection, agent_id, to_stage, cause=StageCause.PROMOTION, actor=by, reason=override or "record qualifies", now=now, detail=detail)
        return StageChange(agent_id, agent.trust_stage, to_stage, unmet, override)


def demote(engine: Engine, agent_id: str, to_stage: int, by: str, reason: str, now: datetime) -> StageChange:
    """Move the agent down to ``to_stage`` (a person's call, or automatic on a stop-loss breach)."""
    by = _name(by)
    reason = _reason(reason, "a demotion")
    with engine.begin() as connection:
        agent = _agent(connection, agent_id, lock=True)
        _valid_stage(to_stage)
        if to_stage >= agent.trust_stage:
            raise TrustInvalid(
                f"agent '{agent_id}' is at stage {agent.trust_stage}; demoting to {to_stage} is not down",
                hint="use `legato agents promote` to raise a stage",
            )
        change_stage(connection, agent_id, to_stage, cause=StageCause.DEMOTION, actor=by, reason=reason, now=now)
        return StageChange(agent_id, agent.trust_stage, to_stage, [], None)


def pause(engine: Engine, agent_id: str, by: str, reason: str, now: datetime) -> AgentState:
    """Stop the agent deciding until it is resumed; its stage is kept."""
    return _set_status(engine, agent_id, by, AgentStatus.PAUSED, now, reason=_reason(reason, "a pause"))


def resume(engine: Engine, agent_id: str, by: str, now: datetime, reason: str | None = None) -> AgentState:
    """Let a paused agent decide again at its stage: a person's call, audited with who and why.

    An agent its stop-loss paused needs a reason (what was checked or fixed): the audit row
    names the breach it answers, the stop-loss alert clears (its follow-up is then due) and
    the stop-loss's tests start afresh from this resume (:func:`legato.monitor.series.epoch`).
    """
    by = _name(by)
    with engine.begin() as connection:
        agent = _agent(connection, agent_id, lock=True)
        if agent.status == AgentStatus.ACTIVE:
            raise TrustConflict(f"agent '{agent_id}' is already {AgentStatus.ACTIVE}", hint="nothing was changed")
        pause = connection.execute(
            sa.select(audit_log.c.id, audit_log.c.actor, audit_log.c.at, audit_log.c.detail)
            .where(audit_log.c.action == PAUSED, audit_log.c.entity == "agent", audit_log.c.entity_id == agent_id)
            .order_by(audit_log.c.id.desc())
            .limit(1)
        ).first()
        given = reason.strip() if reason and reason.strip() else None
        detail: dict[str, Any] = {}
        if pause is not None and pause.actor == STOP_LOSS_ACTOR:
            if given is None:
                raise TrustInvalid(
                    f"agent '{agent_id}' was paused by its stop-loss at {pause.at:%Y-%m-%d %H:%M} UTC ({(pause.detail or {}).get('reason', '')}); "
                    "resuming it needs a reason",
                    hint="say what was checked or fixed with --reason TEXT (the API: {\"reason\": ...}); it goes to the audit log",
                )
            cleared = clear_alert(connection, incident_key(AlertKind.STOP_LOSS, agent_id), now, by=by)
            detail = {"answers": {"audit_id": pause.id, "paused_at": pause.at.isoformat(), "breaches": (pause.detail or {}).get("breaches", [])},
                      "alert_cleared": cleared}
        change_status(connection, agent_id, AgentStatus.ACTIVE, actor=by, reason=given, now=now, detail=detail)
    return next(a for a in list_agents(engine) if a.id == agent_id)


# --- helpers -------------------------------------------------------------------------------


def _set_status(engine: Engine, agent_id: str, by: str, status: AgentStatus, now: datetime, *, reason: str | None) -> AgentState:
    by = _name(by)
    with engine.begin() as connection:
        agent = _agent(connection, agent_id, lock=True)
        if agent.status == status:
            raise TrustConflict(f"agent '{agent_id}' is already {status}", hint="nothing was changed")
        change_status(connection, agent_id, status, actor=by, reason=reason, now=now)
    return next(a for a in list_agents(engine) if a.id == agent_id)


def _agent(connection: Connection, agent_id: str, *, lock: bool = False) -> Row[Any]:
    query = sa.select(agents).where(agents.c.id == agent_id)
    if lock:
        query = query.with_for_update()
    row = connection.execute(query).first()
    if row is None:
        known = connection.execute(sa.select(agents.c.id).order_by(agents.c.id)).scalars().all()
        raise TrustNotFound(
            f"there is no agent '{agent_id}'",
            hint=f"agents: {', '.join(known)}" if known else "agents appear after their first cycle (`legato run`)",
        )
    return row


def _summary(record: TrackRecord) -> dict[str, Any]:
    data = record.to_dict()
    keep = ("reviewed", "approval_rate", "unedited_approval_rate", "edit_rate", "escalations", "rejection_reasons", "last_stop_loss_breach")
    return {k: data[k] for k in keep}


def _valid_stage(stage: int) -> None:
    if stage not in tuple(Stage):
        raise TrustInvalid(f"there is no trust stage {stage}", hint="stages: 0 manual, 1 assisted, 2 supervised, 3 autonomous")


def _name(value: str) -> str:
    if not value or not value.strip():
        raise TrustInvalid("who makes this change is not said", hint="give your name with --by NAME")
    return value.strip()


def _reason(value: str, what: str) -> str:
    if not value or not value.strip():
        raise TrustInvalid(f"{what} needs a reason", hint="say why with --reason TEXT; it goes to the audit log")
    return value.strip()
