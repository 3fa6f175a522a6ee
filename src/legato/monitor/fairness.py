"""Fairness audits: selection rates per protected group, per agent.

Protected attributes (declared in the playbook) can never be used to target; they are read
here only to audit. For each agent and protected attribute: the share of each group's
customers the agent proposed to contact (an audience that leaves a group out entirely
counts against it, which a rate among decisions would hide), the disparate impact ratio (lowest rate over
highest) and the demographic parity difference (highest minus lowest). The four-fifths rule
(EEOC Uniform Guidelines, 29 CFR § 1607.4(D)) flags a group whose rate is below 80% of the
highest group's; because small groups make that ratio noisy, a flag counts as a *breach* only
when Fisher's exact test (two-sided) finds the two rates different at the 5% level. A breach
is written to the audit log as an escalation for a person to look at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from scipy.stats import fisher_exact
from sqlalchemy import Engine

from legato.playbook.models import Playbook
from legato.store.schema import audit_log, customers, decisions

FOUR_FIFTHS = 0.8
ALPHA = 0.05
SELECTED = ("scheduled", "sent", "queued")


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "attribute": self.attribute,
            "groups": [{"group": g.group, "customers": g.customers, "selected": g.selected, "rate": g.rate} for g in self.groups],
            "disparate_impact": self.disparate_impact,
            "parity_difference": self.parity_difference,
            "breaches": self.breaches,
        }


def audit_fairness(engine: Engine, playbook: Playbook, now: datetime, *, since: datetime | None = None) -> list[FairnessAudit]:
    audits: list[FairnessAudit] = []
    with engine.begin() as connection:
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
                for breach in audit.breaches:
                    connection.execute(
                        sa.insert(audit_log).values(
                            at=now, actor="fairness_audit", action="fairness_breach", entity="agent", entity_id=agent_id, detail={"attribute": attribute, **breach}
                        )
                    )
                audits.append(audit)
    return audits


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
