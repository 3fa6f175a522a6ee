"""What the guardrails did: decisions per agent, UTC day and rule that blocked, delayed or escalated them.

A decision's ``findings`` list every rule that stopped or moved it (``frequency_cap:<name>``,
``delayed:quiet_hours:<name>``, ``consent_revoked:email``, ``escalate:high_value``, ...;
see "Names of rules in reasons" in docs/architecture.md). The list is unnested in SQL
(SQLite's ``json_each``, PostgreSQL's ``json_array_elements_text``), so the count is one
grouped query however many decisions there are, and decisions without findings cost nothing
beyond being read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.monitor.kpis import utc_day
from legato.store.schema import decisions


class RuleOutcome(StrEnum):
    """What a rule did to the decisions it names."""

    BLOCKED = "blocked"  # no message
    DELAYED = "delayed"  # sent later (quiet hours, a cap with on_block: delay)
    ESCALATED = "escalated"  # sent to a person
    GATED = "gated"  # the uplift gate: not worth contacting
    UNREACHABLE_HOLDOUT = "unreachable_holdout"  # held out, and could not have been reached anyway


def outcome_of(reason: str) -> RuleOutcome:
    if reason.startswith("delayed:"):
        return RuleOutcome.DELAYED
    if reason.startswith("escalate:"):
        return RuleOutcome.ESCALATED
    if reason == "uplift_gate":
        return RuleOutcome.GATED
    if reason == "holdout_unreachable":
        return RuleOutcome.UNREACHABLE_HOLDOUT
    return RuleOutcome.BLOCKED


@dataclass(frozen=True)
class RuleCount:
    agent_id: str
    day: date
    rule: str
    decisions: int

    @property
    def outcome(self) -> RuleOutcome:
        return outcome_of(self.rule)

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent_id, "day": self.day.isoformat(), "rule": self.rule, "outcome": self.outcome.value, "decisions": self.decisions}


def rule_counts(
    connection: Connection,
    *,
    agent_id: str | None = None,
    decided_from: datetime | None = None,
    decided_to: datetime | None = None,
) -> list[RuleCount]:
    """Per agent and day, each rule with the decisions it named: by day, agent, then most decisions first."""
    postgres = connection.dialect.name == "postgresql"
    unnest = sa.func.json_array_elements_text if postgres else sa.func.json_each
    element = unnest(decisions.c.findings).table_valued("value").alias("finding")
    day = utc_day(decisions.c.decided_at, connection.dialect.name).label("day")
    rule = element.c.value.label("rule")
    n = sa.func.count().label("n")
    where: list[sa.ColumnElement[bool]] = []
    if agent_id is not None:
        where.append(decisions.c.agent_id == agent_id)
    if decided_from is not None:
        where.append(decisions.c.decided_at >= decided_from)
    if decided_to is not None:
        where.append(decisions.c.decided_at < decided_to)
    query = (
        sa.select(decisions.c.agent_id, day, rule, n)
        .select_from(decisions.join(element, sa.true()))
        .where(*where)
        .group_by(decisions.c.agent_id, day, rule)
        .order_by(day, decisions.c.agent_id, n.desc(), rule)
    )
    return [RuleCount(row.agent_id, date.fromisoformat(row.day), str(row.rule), int(row.n)) for row in connection.execute(query)]
