"""Segments and audiences evaluated inside the database.

An audience is the agent's expression joined with the customer's traits; its rows are read
in pages ordered by customer id, so a million customers never sit in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.audience.fields import StoreResolver, audience_from, lifecycle_case
from legato.audience.sql import compile_expression
from legato.playbook.models import Playbook
from legato.store.schema import customers


@dataclass(frozen=True)
class SegmentSample:
    name: str
    size: int
    total: int
    sample: list[dict[str, object]]


def condition(playbook: Playbook, expression: str, at: datetime, dialect_name: str) -> sa.ColumnElement[bool]:
    return compile_expression(expression, StoreResolver(playbook, at, dialect_name), dialect_name=dialect_name)


def segment_sample(engine: Engine, playbook: Playbook, name: str, at: datetime, *, limit: int = 10) -> SegmentSample:
    """Size of a named segment (or lifecycle stage) and a few of its customers."""
    expression = playbook.segments.get(name) or next((s.when for s in playbook.lifecycle if s.stage == name), None)
    if expression is None:
        from legato.errors import LegatoError

        known = sorted([*playbook.segments, *(s.stage for s in playbook.lifecycle)])
        raise LegatoError(f"no segment or lifecycle stage named '{name}'", hint=f"known: {', '.join(known) or 'none'}")
    dialect = engine.dialect.name
    where = condition(playbook, name if name in playbook.segments else expression, at, dialect)
    stage = lifecycle_case(playbook, at, dialect).label("lifecycle_stage")
    with engine.connect() as connection:
        size = _count(connection, where)
        total = connection.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        rows = connection.execute(
            sa.select(customers.c.id, customers.c.country, stage, customers.c.attributes)
            .select_from(audience_from())
            .where(where)
            .order_by(customers.c.id)
            .limit(limit)
        ).mappings()
        sample = [dict(row) for row in rows]
    return SegmentSample(name=name, size=size, total=total, sample=sample)


def _count(connection: Connection, where: sa.ColumnElement[bool]) -> int:
    return connection.execute(sa.select(sa.func.count()).select_from(audience_from()).where(where)).scalar_one()


@dataclass(frozen=True)
class AudienceSizes:
    """How many customers each agent's audience holds now, of how many, and per lifecycle stage."""

    total: int
    agents: dict[str, int]
    stages: dict[str | None, int]


def audience_sizes(engine: Engine, playbook: Playbook, at: datetime) -> AudienceSizes:
    """Every agent's audience counted on the data as it is (``legato validate --database``)."""
    dialect = engine.dialect.name
    with engine.connect() as connection:
        total = connection.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one()
        agents = {agent.id: _count(connection, condition(playbook, agent.audience, at, dialect)) for agent in playbook.agents}
        stages: dict[str | None, int] = {}
        if playbook.lifecycle:
            stage = lifecycle_case(playbook, at, dialect).label("stage")
            query = sa.select(stage, sa.func.count()).select_from(audience_from()).group_by(stage)
            stages = {name: int(count) for name, count in connection.execute(query)}
    return AudienceSizes(int(total), agents, stages)
