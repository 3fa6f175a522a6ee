"""Fairness audits: selection rates per protected group, per agent.

Protected attributes (declared in the playbook) can never be used to target; they are read
here only to audit. For each agent and protected attribute: the share of each group's
customers the agent proposed to contact (an audience that leaves a group out entirely
counts against it, which a rate among decisions would hide), the disparate impact ratio (lowest rate over
highest) and the demographic parity difference (highest minus lowest). The four-fifths rule
(EEOC Uniform Guidelines, 29 CFR § 1607.4(D)) flags a group whose rate is below 80% of the
highest group's; because small groups make that ratio noisy, a flag counts as a *breach* only
when Fisher's exact test (two-sided) finds the two rates different at the 5% level.

A breach is written to the audit log and becomes a review item of kind "finding" (reason
``fairness_breach``, the numbers as evidence) for a person to look at: one per agent,
attribute and period (the UTC day of the audit), and none while an earlier one for the same
agent and attribute is still open, so re-running the audit adds nothing. The audit runs on
``legato report fairness`` (over all decisions) and once a day from the cycle
(:func:`audit_daily`, over the last 30 days).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from scipy.stats import fisher_exact
from sqlalchemy import Connection, Engine

from legato.playbook.models import Playbook
from legato.store.schema import audit_log, customers, decisions, review_items
from legato.store.audit import record
from legato.store.status import DecisionStatus, ReviewKind, ReviewStatus
from legato.trust.review.items import NewItem, open_item

FOUR_FIFTHS = 0.8
ALPHA = 0.05
SELECTED = (DecisionStatus.SCHEDULED, DecisionStatus.SENT, DecisionStatus.QUEUED)
REASON = "fairness_breach"
PRIORITY = 80  # above the stage-0 backlog: unfair targeting is an ethical matter, not a routine proposal
DAILY_WINDOW_DAYS = 30.0
ACTOR = "fairness_audit"


@dataclass(frozen=True)
class GroupRate:
    group: str
    customers: int
    selected: int

    @property
    def rate(self) -> float:
        return self.selected / self.customers if self.customers else 0.0


@dataclass
class FairnessAudit:
    agent_id: str
    attribute: str
    groups: list[GroupRate]
    disparate_impact: float | None = None
    parity_difference: float | None = None
    breaches: list[dict[str, Any]] = field(default_factory=list)
    review_item_id: int | None = None  # the finding raised for the breaches (None if none or already raised)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "attribute": self.attribute,
            "groups": [{"group": g.group, "customers": g.customers, "selected": g.selected, "rate": g.rate} for g in self.groups],
            "disparate_impact": self.disparate_impact,
            "parity_difference": self.parity_difference,
            "breaches": self.breaches,
            "review_item": self.review_item_id,
        }


def audit_fairness(
    engine: Engine, playbook: Playbook, now: datetime, *, since: datetime | None = None, record_breaches: bool = True
) -> list[FairnessAudit]:
    """Audit every agent on every protected attribute over decisions since ``since`` (all if None).

    Breaches go to the audit log and, as findings, to the review queue (see the module doc);
    with ``record_breaches=False`` nothing is written (a report read over HTTP: reading must
    not change the store; the cycle's daily audit raises the findings).
    """
    audits: list[FairnessAudit] = []
    with engine.begin() if record_breaches else engine.connect() as connection:
        for attribute in playbook.guardrails.protected_attributes:
            group = sa.func.coalesce(customers.c.attributes[attribute].as_string(), "(unknown)").label("grp")
            population = dict(connection.execute(sa.select(group, sa.func.count()).group_by(group)).all())
            query = (
                sa.select(decisions.c.agent_id, group, sa.func.count(sa.distinct(decisions.c.customer_id)))
                .join(customers, customers.c.id == decisions.c.customer_id)
                .where(decisions.c.holdout.is_(False), decisions.c.status.in_(SELECTED))
                .group_by(decisions.c.agent_id, group)
            )
            if since is not None:
                query = query.where(decisions.c.decided_at >= since)
            selected: dict[str, dict[str, int]] = {}
            for agent_id, name, count in connection.execute(query):
                selected.setdefault(agent_id, {})[str(name)] = int(count)
            for agent_id in sorted(a.id for a in playbook.agents):
                chosen = selected.get(agent_id, {})
                groups = [GroupRate(str(name), int(total), chosen.get(str(name), 0)) for name, total in sorted(population.items())]
                audit = _assess(agent_id, attribute, groups)
                audits.append(audit)
                if not record_breaches:
                    continue
                for breach in audit.breaches:
                    record(connection, now, ACTOR, "fairness_breach", "agent", agent_id, {"attribute": attribute, **breach})
                if audit.breaches:
                    audit.review_item_id = _raise_finding(connection, playbook, audit, now, since)
        if not record_breaches:
            return audits
        record(
            connection, now, ACTOR, "fairness_audit_run", "fairness_audit", _period(now),
            {
                "since": since.isoformat() if since else None,
                "attributes": list(playbook.guardrails.protected_attributes),
                "breaches": sum(len(a.breaches) for a in audits),
                "review_items": [a.review_item_id for a in audits if a.review_item_id is not None],
            },
        )
    return audits


def audit_daily(engine: Engine, playbook: Playbook, now: datetime, *, window_days: float = DAILY_WINDOW_DAYS) -> list[FairnessAudit]:
    """The cycle's audit: at most once per UTC day, over the last ``window_days`` of decisions.

    Returns the audits made, or nothing when the playbook protects no attribute or an audit
    already ran today (from the cycle or ``legato report fairness``).
    """
    if not playbook.guardrails.protected_attributes:
        return []
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.connect() as connection:
        done = connection.execute(
            sa.select(audit_log.c.id)
            .where(audit_log.c.action == "fairness_audit_run", audit_log.c.at >= day, audit_log.c.at < day + timedelta(days=1))
            .limit(1)
        ).first()
    if done is not None:
        return []
    return audit_fairness(engine, playbook, now, since=now - timedelta(days=window_days))


def _period(now: datetime) -> str:
    return f"{now:%Y-%m-%d}"


def _raise_finding(connection: Connection, playbook: Playbook, audit: FairnessAudit, now: datetime, since: datetime | None) -> int | None:
    """One finding per agent, attribute and period; none while one for them is still open."""
    period = _period(now)
    earlier = connection.execute(
        sa.select(review_items.c.status, review_items.c.evidence).where(
            review_items.c.kind == ReviewKind.FINDING, review_items.c.reason == REASON, review_items.c.agent_id == audit.agent_id
        )
    ).all()
    for status, evidence in earlier:
        same = (evidence or {}).get("attribute") == audit.attribute
        if same and (status == ReviewStatus.OPEN or (evidence or {}).get("period") == period):
            return None
    evidence = {
        "attribute": audit.attribute,
        "period": period,
        "since": since.isoformat() if since else None,
        "disparate_impact": audit.disparate_impact,
        "parity_difference": audit.parity_difference,
        "four_fifths": FOUR_FIFTHS,
        "alpha": ALPHA,
        "breaches": audit.breaches,
        "groups": [{"group": g.group, "customers": g.customers, "selected": g.selected, "rate": g.rate} for g in audit.groups],
    }
    item = NewItem(kind=ReviewKind.FINDING, reason=REASON, priority=PRIORITY, created_at=now, agent_id=audit.agent_id, evidence=evidence)
    return open_item(connection, item, playbook.review.sla_hours)


def _assess(agent_id: str, attribute: str, groups: list[GroupRate]) -> FairnessAudit:
    audit = FairnessAudit(agent_id, attribute, groups)
    measured = [g for g in groups if g.customers > 0]
    if len(measured) < 2:
        return audit
    best = max(measured, key=lambda g: g.rate)
    lowest = min(measured, key=lambda g: g.rate)
    audit.parity_difference = best.rate - lowest.rate
    audit.disparate_impact = lowest.rate / best.rate if best.rate > 0 else None
    for g in measured:
        if g is best or best.rate == 0 or g.rate / best.rate >= FOUR_FIFTHS:
            continue
        table = [[g.selected, g.customers - g.selected], [best.selected, best.customers - best.selected]]
        p_value = float(fisher_exact(table).pvalue)
        if p_value < ALPHA:
            audit.breaches.append(
                {"group": g.group, "rate": g.rate, "reference_group": best.group, "reference_rate": best.rate, "ratio": g.rate / best.rate, "p_value": p_value}
            )
    return audit
