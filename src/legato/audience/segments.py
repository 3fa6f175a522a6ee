"""Segments and audiences evaluated inside the database.

An audience is the agent's expression joined with the customer's traits; its rows are read
in pages ordered by customer id, so a million customers never sit in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.audience.fields import StoreResolver, audience_from, lifecycle_case
from legato.audience.expr import ExpressionError
from legato.audience.sql import compile_expression
from legato.playbook.models import Playbook
from legato.store.schema import customers


@dataclass(frozen=True)
class SegmentSample:
    name: str
    size: int
    total: int
    sample: list[dict[str, object]]
    # A lifecycle stage: customers whose ``when`` holds but whom an earlier stage took
    # (stages are ordered, the first that holds wins), by that stage. Empty for a segment.
    taken_by_earlier: dict[str, int] = field(default_factory=dict)
    stage: bool = False

    @property
    def when_holds(self) -> int:
        """Customers whose expression holds, members or not."""
        return self.size + sum(self.taken_by_earlier.values())

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"segment": self.name, "size": self.size, "total": self.total}
        if self.stage:
            data |= {"lifecycle_stage": True, "when_holds": self.when_holds, "taken_by_earlier_stages": self.taken_by_earlier}
        return data | {"sample": self.sample}


def condition(playbook: Playbook, expression: str, at: datetime, dialect_name: str) -> sa.ColumnElement[bool]:
    return compile_expression(expression, StoreResolver(playbook, at, dialect_name), dialect_name=dialect_name)


def membership(playbook: Playbook, name: str, at: datetime, dialect_name: str) -> sa.ColumnElement[bool]:
    """Who is in segment (or lifecycle stage) ``name`` at ``at``, as a condition over customers and traits.

    A lifecycle stage's members are the customers whose first holding stage it is, not
    every customer its ``when`` holds for.
    """
    if name in playbook.segments:
        return condition(playbook, name, at, dialect_name)
    if any(s.stage == name for s in playbook.lifecycle):
        return lifecycle_case(playbook, at, dialect_name) == name
    from legato.errors import NotFound

    known = sorted([*playbook.segments, *(s.stage for s in playbook.lifecycle)])
    raise NotFound(f"no segment or lifecycle stage named '{name}'", hint=f"known: {', '.join(known) or 'none'}")


def member_ids(playbook: Playbook, name: str, at: datetime, dialect_name: str) -> sa.Select[tuple[str]]:
    """The ids of the members of ``name`` at ``at``: ``decisions.c.customer_id.in_(member_ids(...))``."""
    return sa.select(customers.c.id).select_from(audience_from()).where(membership(playbook, name, at, dialect_name))


def segment_sample(engine: Engine, playbook: Playbook, name: str, at: datetime, *, limit: int = 10) -> SegmentSample:
    """Size of a named segment (or lifecycle stage) and a few of its customers.

    A lifecycle stage counts its members (stages are ordered and the first that holds
    wins) and says which earlier stages took the other customers its ``when`` holds for.
    """
    dialect = engine.dialect.name
    where = membership(playbook, name, at, dialect)
    stage = lifecycle_case(playbook, at, dialect).label("lifecycle_stage")
    is_stage = name not in playbook.segments
    with engine.connect() as connection:
        size = _count(connection, where)
        total = connection.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        taken: dict[str, int] = {}
        if is_stage:
            when = next(s.when for s in playbook.lifecycle if s.stage == name)
            raw = compile_expression(when, StoreResolver(playbook, at, dialect, with_lifecycle=False), dialect_name=dialect)
            order = [s.stage for s in playbook.lifecycle]
            counts = connection.execute(
                sa.select(stage, sa.func.count()).select_from(audience_from()).where(raw, ~where).group_by(stage)
            ).all()
            taken = {str(s): int(n) for s, n in sorted(counts, key=lambda r: order.index(r[0]) if r[0] in order else len(order))}
        rows = connection.execute(
            sa.select(customers.c.id, customers.c.country, stage, customers.c.attributes)
            .select_from(audience_from())
            .where(where)
            .order_by(customers.c.id)
            .limit(limit)
        ).mappings()
        sample = [dict(row) for row in rows]
    return SegmentSample(name=name, size=size, total=total, sample=sample, taken_by_earlier=taken, stage=is_stage)


def _count(connection: Connection, where: sa.ColumnElement[bool]) -> int:
    return connection.execute(sa.select(sa.func.count()).select_from(audience_from()).where(where)).scalar_one()


@dataclass(frozen=True)
class AudienceSizes:
    """How many customers each agent's audience holds now, of how many, and per lifecycle stage."""

    total: int
    agents: dict[str, int | None]  # None: the audience does not compile
    stages: dict[str | None, int]


def audience_sizes(engine: Engine, playbook: Playbook, at: datetime) -> AudienceSizes:
    """Every agent's audience counted on the data as it is (``legato validate --database``)."""
    dialect = engine.dialect.name
    with engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        agents: dict[str, int | None] = {}
        for agent in playbook.agents:
            try:
                where = condition(playbook, agent.audience, at, dialect)
            except ExpressionError:
                agents[agent.id] = None  # an audience that does not compile is a problem of its own
                continue
            agents[agent.id] = _count(connection, where)
        stages: dict[str | None, int] = {}
        if playbook.lifecycle:
            stage = lifecycle_case(playbook, at, dialect).label("stage")
            query = sa.select(stage, sa.func.count()).select_from(audience_from()).group_by(stage)
            stages = {name: int(count) for name, count in connection.execute(query)}
    return AudienceSizes(int(total), agents, stages)
