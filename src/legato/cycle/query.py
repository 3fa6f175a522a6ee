"""The agent's audience query: one SELECT per partition with everything a partition step reads.

The agent's expression, its features, the contact facts (consent, contact points, cap counts
bounded to the partition's id range), whether a proposal or a message of theirs waits for a
person, and the escalation rules that need only customer fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.audience.fields import StoreResolver, audience_from, lifecycle_case
from legato.audience.sql import FieldType, compile_expression, compile_value
from legato.cycle.partitions import Partition
from legato.guard.contact import contact_columns
from legato.guard.defaults import guardrails_in_force
from legato.playbook.models import Agent, Playbook
from legato.store.fetch import fetch_columns
from legato.store.hints import not_indexed
from legato.store.schema import customers, decisions, inbound_messages, review_items
from legato.store.status import ReviewKind, ReviewStatus
from legato.trust.escalation import Escalations


def feature(resolver: StoreResolver, text: str, dialect: str) -> sa.ColumnElement[Any]:
    field = compile_value(text, resolver, dialect_name=dialect)
    if field.type is FieldType.BOOLEAN:  # PostgreSQL cannot cast boolean to float
        return sa.case((field.column, 1.0), (sa.not_(field.column), 0.0), else_=sa.null())
    return sa.cast(field.column, sa.Float)


@dataclass
class AudienceQuery:
    select: sa.Select[Any]
    escalations: Escalations

    @classmethod
    def build(cls, playbook: Playbook, agent: Agent, channels: list[str], now: datetime, dialect: str) -> AudienceQuery:
        resolver = StoreResolver(playbook, now, dialect)
        base = sa.select(customers.c.id, customers.c.time_zone, *(feature(resolver, text, dialect).label(f"f_{i}") for i, text in enumerate(agent.features)))
        audience = compile_expression(agent.audience, resolver, dialect_name=dialect)
        base = base.select_from(audience_from()).where(audience)
        # Partitions are id ranges: every per-customer subquery below is bounded to the range.
        low, high = sa.bindparam("page_low", type_=sa.String()), sa.bindparam("page_high", type_=sa.String())
        base = base.where(customers.c.id > low, customers.c.id <= high)
        all_tags = {tag for creative in playbook.creatives for tag in creative.tags}
        tagged = {tag: [c.id for c in playbook.creatives if tag in c.tags] for tag in all_tags}
        base = contact_columns(base, guardrails_in_force(playbook), channels, now, page=(low, high), tagged=tagged)
        # A customer whose last proposal from this agent still waits for a person gets no second
        # one, and nobody is contacted while a message they wrote waits for a person. The
        # partition's customer range drives these, not the open items of every customer.
        waiting = sa.union(
            sa.select(decisions.c.customer_id)
            .join(review_items, review_items.c.decision_id == decisions.c.id)
            .where(not_indexed(review_items.c.agent_id) == agent.id, not_indexed(review_items.c.status) == ReviewStatus.OPEN)
            .where(decisions.c.customer_id > low, decisions.c.customer_id <= high),
            sa.select(inbound_messages.c.customer_id)
            .join(review_items, review_items.c.inbound_message_id == inbound_messages.c.id)
            .where(review_items.c.kind == ReviewKind.CONVERSATION, not_indexed(review_items.c.status) == ReviewStatus.OPEN)
            .where(inbound_messages.c.customer_id > low, inbound_messages.c.customer_id <= high),
        ).subquery("awaiting")
        base = base.outerjoin(waiting, waiting.c.customer_id == customers.c.id).add_columns(
            sa.case((waiting.c.customer_id.is_not(None), 1), else_=0).label("awaiting_review")
        )
        escalations = Escalations(agent, resolver, dialect)
        base = base.add_columns(*escalations.columns, feature(resolver, "lifetime_spend", dialect).label("customer_value"))
        # The customer's lifecycle stage now: the segment the decision's metrics are kept under.
        base = base.add_columns(lifecycle_case(playbook, now, dialect).label("segment"))
        return cls(base.order_by(customers.c.id), escalations)

    def read(self, connection: Connection, partition: Partition) -> tuple[dict[str, npt.NDArray[Any]], int]:
        """The partition's audience as columns, in id order."""
        columns, n = fetch_columns(connection, self.select, {"page_low": partition.low, "page_high": partition.high})
        return columns, n
