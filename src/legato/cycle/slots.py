"""Which schedule slots ran: the one reader and writer of ``cycle_slots``.

An agent with a ``schedule:`` (:mod:`legato.playbook.schedule`) is due when the latest slot of
its schedule at or before now has no row here. `legato worker` looks (:func:`due`, a read),
takes the cycle's lease, looks again under it, and starts a cycle for the due agents;
the cycle records their slots (:func:`record`) in its first transaction, the one that creates
the cycle row. The primary key (agent, slot) is what makes a slot run once: two workers that
both saw it due are serialised by the lease, and the second finds the slot recorded; a worker
that lost its lease while frozen fails on the key and writes nothing. A cycle that is resumed
(its process died) runs the agents its slots name (:func:`agents_of`), not every agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.playbook.models import Playbook
from legato.store.schema import cycle_slots


def latest_slots(playbook: Playbook, now: datetime) -> dict[str, datetime]:
    """Each active scheduled agent's latest slot at or before ``now``."""
    zone = playbook.brand.zone
    found = {}
    for agent in playbook.agents:
        schedule = agent.parsed_schedule
        if agent.active and schedule is not None:
            found[agent.id] = schedule.latest(now, zone)
    return found


def next_slot(playbook: Playbook, now: datetime) -> datetime | None:
    """The first slot of any active scheduled agent after ``now``."""
    zone = playbook.brand.zone
    slots = [a.parsed_schedule.next(now, zone) for a in playbook.agents if a.active and a.parsed_schedule is not None]
    return min(slots) if slots else None


def due(connection: Connection | Engine, playbook: Playbook, now: datetime) -> dict[str, datetime]:
    """The agents whose latest slot has not run, with that slot."""
    latest = latest_slots(playbook, now)
    if not latest:
        return {}
    if isinstance(connection, Engine):
        with connection.connect() as opened:
            return due(opened, playbook, now)
    ran = set(
        connection.execute(
            sa.select(cycle_slots.c.agent_id, cycle_slots.c.slot_at).where(
                sa.or_(*(sa.and_(cycle_slots.c.agent_id == agent, cycle_slots.c.slot_at == slot) for agent, slot in latest.items()))
            )
        ).tuples()
    )
    return {agent: slot for agent, slot in latest.items() if (agent, slot) not in ran}


def record(connection: Connection, cycle_id: int, slots: Mapping[str, datetime]) -> None:
    """The slots cycle ``cycle_id`` runs; a slot already recorded raises ``IntegrityError`` (the
    caller's transaction, the cycle's first, is rolled back with it)."""
    if slots:
        connection.execute(sa.insert(cycle_slots), [{"agent_id": agent, "slot_at": slot, "cycle_id": cycle_id} for agent, slot in slots.items()])


def agents_of(connection: Connection, cycle_id: int) -> frozenset[str] | None:
    """The agents a scheduled cycle runs, or None for a cycle that runs every agent (`legato run`)."""
    agents = connection.execute(sa.select(cycle_slots.c.agent_id).where(cycle_slots.c.cycle_id == cycle_id)).scalars().all()
    return frozenset(agents) if agents else None


def last_ran(connection: Connection) -> dict[str, datetime]:
    """Each agent's latest slot that ran (for the worker's status)."""
    rows = connection.execute(sa.select(cycle_slots.c.agent_id, sa.func.max(cycle_slots.c.slot_at)).group_by(cycle_slots.c.agent_id)).tuples()
    return {agent: slot for agent, slot in rows}
