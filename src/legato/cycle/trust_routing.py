"""The trust step: each allowed send goes to "execute" or "review", by stage, approvals and escalations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.cycle.action_table import ActionTable
from legato.playbook.models import Agent, Playbook
from legato.store.schema import decisions, review_items
from legato.store.status import ReviewStatus
from legato.trust.escalation import Escalations
from legato.trust.ladder import REVIEW, Stage, route


def approved_variants(connection: Connection, agent: Agent) -> set[str]:
    """Content hashes of this agent's variants a person approved as they stand (not edited).

    Approval is bound to content: a creative changed in the playbook since has another hash
    and needs approval again.
    """
    rows = connection.execute(
        sa.select(decisions.c.content_hash)
        .join(review_items, review_items.c.decision_id == decisions.c.id)
        .where(review_items.c.agent_id == agent.id, review_items.c.status == ReviewStatus.APPROVED, decisions.c.content_override.is_(None))
        .distinct()
    ).scalars()
    return {h for h in rows if h}


@dataclass
class Trust:
    """What routing needs besides the page: the stage, escalation rules and approval memory."""

    stage: int
    escalations: Escalations
    approved: set[str]
    table: ActionTable
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
