"""The agents step: agents in the store as the playbook declares them, run-time changes kept."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.playbook.models import Playbook
from legato.store.schema import agents, settings
from legato.store.status import AgentStatus
from legato.trust import agent_state
from legato.trust.agent_state import StageCause


def sync_agents(connection: Connection, playbook: Playbook, now: datetime) -> dict[str, tuple[int, str]]:
    """Agents as the playbook declares them, with run-time changes kept.

    The playbook's trust stage applies when an agent is created and whenever the playbook
    itself changes it; otherwise a promotion, demotion or pause made at run time (by a person
    or by a stop-loss) stands. Every change goes through the agent's one writer
    (:mod:`legato.trust.agent_state`), which audits it.
    """
    known = {row.id: row for row in connection.execute(sa.select(agents))}
    declared = dict(connection.execute(sa.select(settings.c.key, settings.c.value).where(settings.c.key.like("agent:%:playbook_stage"))).all())
    result: dict[str, tuple[int, str]] = {}
    for agent in playbook.agents:
        key = f"agent:{agent.id}:playbook_stage"
        row = known.get(agent.id)
        if row is None:
            agent_state.create(connection, agent.id, agent.trust_stage, now)
            result[agent.id] = (agent.trust_stage, AgentStatus.ACTIVE)
        elif declared.get(key) != str(agent.trust_stage) and row.trust_stage != agent.trust_stage:
            agent_state.change_stage(
                connection, agent.id, agent.trust_stage, cause=StageCause.PLAYBOOK, actor="playbook",
                reason="the playbook's trust stage changed", now=now,
            )
            result[agent.id] = (agent.trust_stage, row.status)
        else:
            result[agent.id] = (row.trust_stage, row.status)
        if declared.get(key) != str(agent.trust_stage):
            connection.execute(sa.delete(settings).where(settings.c.key == key))
            connection.execute(sa.insert(settings).values(key=key, value=str(agent.trust_stage)))
    return result
