"""An agent's saved policy versions: list them, and roll back to one.

Every learning step saves the policy's state as a new version (see the engine), so a bad
stretch of learning can be undone. A rollback never deletes history: it saves the chosen
version's state again as the newest version, and the audit log says who did it and why. The
next cycle continues from it — unless the playbook has since changed the agent's actions,
features or policy parameters, in which case that state no longer fits and the engine starts
afresh (and audits why), exactly as after any such change.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.errors import Conflict, Invalid, NotFound
from legato.store.schema import audit_log, policy_states


@dataclass(frozen=True)
class PolicyVersion:
    agent_id: str
    version: int
    policy: str
    created_at: datetime
    updates: int | None  # batches or rows learned so far, when the policy records it
    restored_from: int | None  # set on a version a rollback created

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "created_at": self.created_at.isoformat()}


def _version(agent_id: str, row: Any) -> PolicyVersion:
    state = row.state or {}
    return PolicyVersion(
        agent_id=agent_id,
        version=row.version,
        policy=row.policy,
        created_at=row.created_at,
        updates=state.get("n_updates"),
        restored_from=state.get("restored_from"),
    )


def list_versions(engine: Engine, agent_id: str, *, limit: int = 50) -> list[PolicyVersion]:
    """The agent's newest ``limit`` policy versions, newest first."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(policy_states.c.version, policy_states.c.policy, policy_states.c.created_at, policy_states.c.state)
            .where(policy_states.c.agent_id == agent_id)
            .order_by(policy_states.c.version.desc())
            .limit(limit)
        ).all()
    if not rows:
        raise NotFound(f"agent '{agent_id}' has no saved policy yet", hint="a policy is saved when the agent first runs a cycle")
    return [_version(agent_id, row) for row in rows]


def roll_back(engine: Engine, agent_id: str, to_version: int, by: str, reason: str, now: datetime) -> PolicyVersion:
    """Save version ``to_version``'s state as the agent's newest version; audited."""
    if not by.strip():
        raise Invalid("a rollback needs the name of who does it", hint="pass --by NAME")
    if not reason.strip():
        raise Invalid("a rollback needs a reason", hint='pass --reason "why"; it goes to the audit log')
    with engine.begin() as connection:
        versions = dict(
            connection.execute(
                sa.select(policy_states.c.version, policy_states.c.policy).where(policy_states.c.agent_id == agent_id)
            ).all()
        )
        if not versions:
            raise NotFound(f"agent '{agent_id}' has no saved policy yet", hint="nothing was changed")
        latest = max(versions)
        if to_version not in versions:
            raise NotFound(
                f"agent '{agent_id}' has no policy version {to_version}",
                hint=f"versions are 1..{latest} (see `legato agents versions {agent_id}`); nothing was changed",
            )
        if to_version == latest:
            raise Conflict(f"version {to_version} is already the newest", hint="nothing was changed")
        old = connection.execute(
            sa.select(policy_states.c.state).where(policy_states.c.agent_id == agent_id, policy_states.c.version == to_version)
        ).scalar_one()
        connection.execute(
            sa.insert(policy_states).values(
                agent_id=agent_id,
                version=latest + 1,
                policy=versions[to_version],
                state={**old, "restored_from": to_version},
                created_at=now,
            )
        )
        connection.execute(
            sa.insert(audit_log).values(
                at=now,
                actor=by.strip(),
                action="policy_rolled_back",
                entity="agent",
                entity_id=agent_id,
                detail={"from_version": latest, "to_version": to_version, "new_version": latest + 1, "reason": reason.strip()},
            )
        )
        row = connection.execute(
            sa.select(policy_states.c.version, policy_states.c.policy, policy_states.c.created_at, policy_states.c.state).where(
                policy_states.c.agent_id == agent_id, policy_states.c.version == latest + 1
            )
        ).one()
    return _version(agent_id, row)
