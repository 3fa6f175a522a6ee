"""Cycles as the store records them: the newest first, and one cycle's progress per agent.

A cycle's row says when it ran (``at``: the cycle's time; ``started_at``/``finished_at``) and
how it ended (:class:`~legato.store.status.CycleStatus`); its partitions say how far each agent
got (done partitions and the decisions they wrote), so a running cycle's progress is read from
the store by any process, not only the one running it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.cycle.partitions import PartitionStatus
from legato.errors import NotFound
from legato.store.schema import audit_log, cycle_partitions, cycles

FAILED = "cycle_failed"  # the audit action that says why a cycle failed, written with its failed status


def failure_reason(error: BaseException) -> str:
    """What a failed cycle's record says: a user's error in its own words (and its fix); a bug
    only by its type, since its text may carry customers' data (the traceback goes to the log)."""
    from legato.errors import LegatoError

    if isinstance(error, LegatoError):
        return error.message + (f" ({error.hint})" if error.hint else "")
    return f"an internal error ({type(error).__name__}); the log of the process that ran it has the details"


@dataclass(frozen=True)
class AgentProgress:
    agent_id: str
    partitions: int
    done: int
    decisions: int  # written by the done partitions


@dataclass(frozen=True)
class Cycle:
    id: int
    at: datetime
    started_at: datetime
    finished_at: datetime | None
    status: str  # store.status.CycleStatus
    playbook_version_id: int | None
    agents: list[AgentProgress] = field(default_factory=list)  # read by :func:`cycle` only
    error: str | None = None  # why it failed, when that was recorded


def cycles_page(connection: Connection, *, limit: int = 20, before: int | None = None) -> list[Cycle]:
    """Cycles newest first (``before``: only older than that id)."""
    query = sa.select(cycles).order_by(cycles.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(cycles.c.id < before)
    return [_cycle(row) for row in connection.execute(query)]


def cycle(connection: Connection, cycle_id: int) -> Cycle:
    """One cycle with each agent's progress and, if it failed, why; :class:`NotFound` if there is none."""
    row = connection.execute(sa.select(cycles).where(cycles.c.id == cycle_id)).first()
    if row is None:
        raise NotFound(f"there is no cycle {cycle_id}", hint="list the cycles with GET /v1/cycles")
    p = cycle_partitions
    done = sa.func.sum(sa.case((p.c.status == PartitionStatus.DONE.value, 1), else_=0))
    written = sa.func.sum(sa.case((p.c.status == PartitionStatus.DONE.value, sa.func.coalesce(p.c.decisions, 0)), else_=0))
    progress = [
        AgentProgress(r.agent_id, int(r.partitions), int(r.done or 0), int(r.decisions or 0))
        for r in connection.execute(
            sa.select(p.c.agent_id, sa.func.count().label("partitions"), done.label("done"), written.label("decisions"))
            .where(p.c.cycle_id == cycle_id).group_by(p.c.agent_id).order_by(p.c.agent_id)
        )
    ]
    error = connection.execute(
        sa.select(audit_log.c.detail).where(audit_log.c.entity == "cycle", audit_log.c.entity_id == str(cycle_id), audit_log.c.action == FAILED)
        .order_by(audit_log.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    found = _cycle(row)
    return Cycle(found.id, found.at, found.started_at, found.finished_at, found.status, found.playbook_version_id, progress,
                 (error or {}).get("reason"))


def _cycle(row: sa.Row[tuple[object, ...]]) -> Cycle:
    return Cycle(int(row.id), row.at, row.started_at, row.finished_at, str(row.status), row.playbook_version_id)  # type: ignore[arg-type]
