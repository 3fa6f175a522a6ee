"""Partitions: the customer-id ranges a cycle's work is split into, recorded in the store.

Every agent of a cycle uses the same ranges over all customers (not over its audience), so a
range is cheap to compute once and means the same thing for each agent. A partition's
decisions, its outbox rows, review items and its "done" mark are written in one
transaction; a partition step needs nothing from another partition, only the agent's plan.
Its random stream is seeded from (agent, cycle time, partition number), so the draws do not
depend on which partitions ran before it, or in which process.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.schema import customers, cycle_partitions


class PartitionStatus(str, enum.Enum):
    PENDING = "pending"
    DONE = "done"


@dataclass(frozen=True)
class Partition:
    number: int
    low: str  # exclusive
    high: str  # inclusive


def split_customers(connection: Connection, size: int) -> list[Partition]:
    """Consecutive id ranges of ``size`` customers each (the last one shorter)."""
    numbered = sa.select(customers.c.id, sa.func.row_number().over(order_by=customers.c.id).label("n")).subquery()
    highs = list(connection.execute(sa.select(numbered.c.id).where(numbered.c.n % size == 0).order_by(numbered.c.id)).scalars())
    last = connection.execute(sa.select(sa.func.max(customers.c.id))).scalar()
    if last is None:
        return []
    if not highs or highs[-1] != last:
        highs.append(last)
    lows = ["", *highs[:-1]]
    return [Partition(number, low, high) for number, (low, high) in enumerate(zip(lows, highs, strict=True))]


def record(connection: Connection, cycle_id: int, agent_id: str, partitions: list[Partition]) -> None:
    """The agent's partitions of this cycle, all pending."""
    if partitions:
        connection.execute(
            sa.insert(cycle_partitions),
            [
                {"cycle_id": cycle_id, "agent_id": agent_id, "number": p.number, "low": p.low, "high": p.high, "status": PartitionStatus.PENDING.value}
                for p in partitions
            ],
        )


def mark_done(connection: Connection, cycle_id: int, agent_id: str, partition: Partition, decided: int, now: datetime) -> None:
    connection.execute(
        sa.update(cycle_partitions)
        .where(cycle_partitions.c.cycle_id == cycle_id, cycle_partitions.c.agent_id == agent_id, cycle_partitions.c.number == partition.number)
        .values(status=PartitionStatus.DONE.value, decisions=decided, finished_at=now)
    )


def partition_rng(agent_id: str, at: datetime, partition: Partition) -> np.random.Generator:
    """The partition's own random stream: the same (agent, cycle time, partition) draws the same."""
    digest = hashlib.sha256(f"{agent_id}|{at.isoformat()}|{partition.number}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def recorded(connection: Connection, cycle_id: int) -> list[Partition]:
    """The ranges a cycle cut (the same for each of its agents), as its plans recorded them."""
    rows = connection.execute(
        sa.select(cycle_partitions.c.number, cycle_partitions.c.low, cycle_partitions.c.high)
        .where(cycle_partitions.c.cycle_id == cycle_id)
        .distinct()
        .order_by(cycle_partitions.c.number)
    ).all()
    return [Partition(number, low, high) for number, low, high in rows]


def done_numbers(connection: Connection, cycle_id: int, agent_id: str) -> set[int]:
    """The agent's partitions of this cycle already written (kept when the cycle resumes)."""
    return set(
        connection.execute(
            sa.select(cycle_partitions.c.number).where(
                cycle_partitions.c.cycle_id == cycle_id,
                cycle_partitions.c.agent_id == agent_id,
                cycle_partitions.c.status == PartitionStatus.DONE.value,
            )
        ).scalars()
    )
