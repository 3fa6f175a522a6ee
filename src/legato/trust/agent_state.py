"""The one writer of an agent's row: its trust stage and whether it runs.

Five things move a stage: the playbook (when an agent is created and when the file itself
changes the stage), a person (promotion, demotion), a stop-loss breach and a compliance
breach at send time. All of them call :func:`change_stage`, which locks the row, writes the
stage and exactly one audit row of the same shape — entity ``agent``, ``detail`` with
``from``, ``to`` and ``reason`` besides the cause's own facts, the action naming the cause —
so the track record, the CLI and the API read every change the same way. Pause and resume
go through :func:`change_status` likewise. Rules about *whether* a change is allowed
(promotion criteria, "not down") stay with the caller; this module only refuses what is not a
change at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row

from legato.store.audit import record
from legato.store.schema import agents
from legato.store.status import AgentStatus
from legato.trust.ladder import Stage


class StageCause(StrEnum):
    """Why a stage changed; the value is the audit row's action."""

    PLAYBOOK = "trust_stage_changed"
    PROMOTION = "trust_promoted"
    DEMOTION = "trust_demoted"
    STOP_LOSS = "stop_loss_breach"
    COMPLIANCE = "compliance_breach"


# Causes that only ever lower a stage, applied by the system: a call that would not lower it is
# not a change (already at or below), and nothing is written.
AUTOMATIC_DEMOTIONS = frozenset({StageCause.STOP_LOSS, StageCause.COMPLIANCE})


@dataclass(frozen=True)
class StageChanged:
    agent_id: str
    from_stage: int
    to_stage: int
    cause: StageCause


def create(connection: Connection, agent_id: str, stage: int, now: datetime, *, actor: str = "playbook") -> None:
    """A new agent at the playbook's stage, active; audited as ``agent_created``."""
    connection.execute(sa.insert(agents).values(id=agent_id, trust_stage=int(Stage(stage)), status=AgentStatus.ACTIVE, updated_at=now))
    record(connection, now, actor, "agent_created", "agent", agent_id, {"trust_stage": int(stage)})


def change_stage(
    connection: Connection,
    agent_id: str,
    to_stage: int,
    *,
    cause: StageCause,
    actor: str,
    reason: str,
    now: datetime,
    detail: Mapping[str, Any] | None = None,
) -> StageChanged | None:
    """Set the agent's stage and audit it; ``None`` (nothing written) when it is not a change.

    An automatic demotion (stop-loss, compliance) that would not lower the stage is not a
    change either. The row is locked first, so two writers cannot both read the old stage.
    """
    row = locked(connection, agent_id)
    if row is None:
        return None
    before, after = int(row.trust_stage), int(Stage(to_stage))
    if after == before or (cause in AUTOMATIC_DEMOTIONS and after > before):
        return None
    connection.execute(sa.update(agents).where(agents.c.id == agent_id).values(trust_stage=after, updated_at=now))
    record(connection, now, actor, cause.value, "agent", agent_id, {**(detail or {}), "from": before, "to": after, "reason": reason})
    return StageChanged(agent_id, before, after, cause)


def change_status(
    connection: Connection,
    agent_id: str,
    to: AgentStatus,
    *,
    actor: str,
    reason: str | None,
    now: datetime,
    detail: Mapping[str, Any] | None = None,
) -> AgentStatus | None:
    """Pause or resume; audited as ``agent_paused`` / ``agent_resumed``. Returns the old status, or None if unchanged.

    ``detail``: the cause's own facts (a stop-loss's evidence; the breach a resume answers)."""
    row = locked(connection, agent_id)
    if row is None or row.status == to:
        return None
    connection.execute(sa.update(agents).where(agents.c.id == agent_id).values(status=AgentStatus(to), updated_at=now))
    action = "agent_paused" if to == AgentStatus.PAUSED else "agent_resumed"
    record(connection, now, actor, action, "agent", agent_id, {**(detail or {}), "from": row.status, "to": AgentStatus(to).value, "reason": reason})
    return AgentStatus(row.status)


def hold(connection: Connection, agent_id: str) -> None:
    """Make later writers of this agent's row (and, on SQLite, of the database) wait for this transaction.

    A no-op write: on PostgreSQL it locks the row until commit, on SQLite it takes the write
    lock at once rather than at the first real write. The budget reservation holds the agent
    so that a second cycle reads what is left only after this cycle's reservation is in.
    """
    connection.execute(sa.update(agents).where(agents.c.id == agent_id).values(updated_at=agents.c.updated_at))


def locked(connection: Connection, agent_id: str) -> Row[Any] | None:
    """The agent's row, locked until the transaction ends (PostgreSQL; SQLite has one writer)."""
    return connection.execute(sa.select(agents).where(agents.c.id == agent_id).with_for_update()).first()
