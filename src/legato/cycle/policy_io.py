"""Loading and saving an agent's policy state: the versions the learning step builds on."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.cycle.audit import audit
from legato.decide.policy import Policy
from legato.decide.registry import build_policy, restore_policy
from legato.playbook.models import Agent
from legato.store.schema import policy_states


def load_policy(connection: Connection, agent: Agent, action_keys: list[str], now: datetime) -> tuple[Policy, int]:
    """The agent's latest saved policy, or a fresh one when there is none or it does not fit.

    A saved state that cannot be restored (corrupted, another policy, another action space)
    is never used half-way: the agent starts fresh and the reason goes to the audit log.
    """
    latest = connection.execute(
        sa.select(policy_states.c.version, policy_states.c.policy, policy_states.c.state)
        .where(policy_states.c.agent_id == agent.id)
        .order_by(policy_states.c.version.desc())
        .limit(1)
    ).first()
    if latest is not None and latest.policy == agent.policy.name:
        try:
            policy = restore_policy(latest.policy, latest.state)
            same_space = latest.state.get("action_keys") == action_keys and latest.state.get("features") == agent.features
            if same_space and _same_params(policy, agent):
                return policy, latest.version
            reason = "the action space, the features or the policy parameters changed"
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"the saved state could not be restored: {exc}"
        audit(connection, now, "engine", "policy_reset", "agent", agent.id, {"version": latest.version, "reason": reason})
    policy = build_policy(agent.policy.name, agent.policy.params, len(action_keys))
    version = save_policy(connection, agent, policy, action_keys, now)
    return policy, version


def _same_params(policy: Policy, agent: Agent) -> bool:
    params = getattr(policy, "params", None)
    return params is None or params == type(params).model_validate(agent.policy.params)


def save_policy(connection: Connection, agent: Agent, policy: Policy, action_keys: list[str], now: datetime) -> int:
    """A new version of the agent's policy state; the action keys say which index is which action."""
    latest = connection.execute(
        sa.select(sa.func.max(policy_states.c.version)).where(policy_states.c.agent_id == agent.id)
    ).scalar_one()
    version = (latest or 0) + 1
    connection.execute(
        sa.insert(policy_states).values(
            agent_id=agent.id,
            version=version,
            policy=agent.policy.name,
            state={**policy.state(), "action_keys": action_keys, "features": agent.features},
            created_at=now,
        )
    )
    return version
