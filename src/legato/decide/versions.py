"""An agent's saved policy versions: the one writer of them, listing them, and rolling back.

Every learning step saves the policy's state as a new version (see the cycle), so a bad
stretch of learning can be undone. A rollback never deletes history: it saves the chosen
version's state again as the newest version, and the audit log says who did it and why. The
next cycle continues from it, carried over to the playbook's current actions if they
changed since (:func:`legato.decide.registry.continue_policy`), or afresh (audited) if the
features or the policy's parameters changed.

Version numbers. :func:`save_version` is the only writer of ``policy_states``. The pair
(agent, version) is the table's primary key, and the next number is taken inside the
insert itself (``INSERT … SELECT max + 1 … ON CONFLICT DO NOTHING RETURNING``): when
another writer took that number first, the insert does nothing and is tried again with a
fresh maximum, so two writers (two cycles, a cycle and a rollback, two machines) never get
the same number and neither fails. A read of ``max(version)`` before a separate insert
could give both the same number, and the second would fail on the key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite

from legato.errors import Conflict, Invalid, NotFound
from legato.store.audit import record
from legato.store.schema import policy_states


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


@dataclass(frozen=True)
class SavedVersion:
    version: int
    policy: str
    state: dict[str, Any]  # the policy's state plus the cycle's "action_keys" and "features"


def latest_version(connection: Connection, agent_id: str) -> SavedVersion | None:
    """The agent's newest saved policy version, or None before its first cycle."""
    row = connection.execute(
        sa.select(policy_states.c.version, policy_states.c.policy, policy_states.c.state)
        .where(policy_states.c.agent_id == agent_id)
        .order_by(policy_states.c.version.desc())
        .limit(1)
    ).first()
    return None if row is None else SavedVersion(row.version, row.policy, row.state)


def saved_version(connection: Connection, agent_id: str, version: int) -> SavedVersion | None:
    """One saved version of the agent's policy (a resumed cycle decides with the version its plan used)."""
    row = connection.execute(
        sa.select(policy_states.c.version, policy_states.c.policy, policy_states.c.state).where(
            policy_states.c.agent_id == agent_id, policy_states.c.version == version
        )
    ).first()
    return None if row is None else SavedVersion(row.version, row.policy, row.state)


# Each failed attempt means another writer committed a version in between; this many in a row
# would take a writer per attempt, far beyond any real contention for one agent.
_MAX_ATTEMPTS = 100


def save_version(connection: Connection, agent_id: str, policy: str, state: dict[str, Any], now: datetime) -> int:
    """Save ``state`` as the agent's next policy version and return its number.

    The number is ``max(version) + 1`` taken in the same statement as the insert; a number
    another writer took first makes the insert a no-op (the unique key (agent, version)),
    and it is tried again with the new maximum. Runs inside the caller's transaction.
    """
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    values = sa.select(
        sa.literal(agent_id, policy_states.c.agent_id.type),
        sa.func.coalesce(sa.func.max(policy_states.c.version), 0) + 1,
        sa.literal(policy, policy_states.c.policy.type),
        sa.literal(state, policy_states.c.state.type),
        sa.literal(now, policy_states.c.created_at.type),
    ).where(policy_states.c.agent_id == agent_id)
    statement = (
        insert(policy_states)
        .from_select(["agent_id", "version", "policy", "state", "created_at"], values)
        .on_conflict_do_nothing(index_elements=["agent_id", "version"])
        .returning(policy_states.c.version)
    )
    for _ in range(_MAX_ATTEMPTS):
        version = connection.execute(statement).scalar()
        if version is not None:
            return int(version)
    raise Conflict(
        f"could not save a policy version for agent '{agent_id}': {_MAX_ATTEMPTS} other versions were saved meanwhile",
        hint="another process is saving this agent's policy in a loop; stop it and run again",
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
        version = save_version(connection, agent_id, versions[to_version], {**old, "restored_from": to_version}, now)
        record(
            connection, now, by.strip(), "policy_rolled_back", "agent", agent_id,
            {"from_version": latest, "to_version": to_version, "new_version": version, "reason": reason.strip()},
        )
        row = connection.execute(
            sa.select(policy_states.c.version, policy_states.c.policy, policy_states.c.created_at, policy_states.c.state).where(
                policy_states.c.agent_id == agent_id, policy_states.c.version == version
            )
        ).one()
    return _version(agent_id, row)
