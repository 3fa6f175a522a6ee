"""Loading and saving an agent's policy state: the versions the learning step builds on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from legato.decide.policy import Policy
from legato.decide.registry import continue_policy
from legato.decide.versions import latest_version, save_version, saved_version
from legato.errors import Conflict
from legato.playbook.models import Agent
from legato.store.audit import record


def load_policy(connection: Connection, agent: Agent, action_keys: list[str], now: datetime) -> tuple[Policy, int]:
    """The policy the agent decides with this cycle, and its version.

    The latest saved state continues when it fits the playbook, carried over to the current
    actions when they changed (:func:`legato.decide.registry.continue_policy` owns that rule;
    audited as ``policy_actions_changed``). A state that cannot continue is never used
    half-way: the agent starts fresh and the reason goes to the audit log (``policy_reset``).
    """
    latest = latest_version(connection, agent.id)
    continued = continue_policy(
        agent.policy.name,
        agent.policy.params,
        agent.features,
        action_keys,
        None if latest is None else latest.policy,
        None if latest is None else latest.state,
    )
    if latest is not None and not continued.changed:
        return continued.policy, latest.version
    if latest is not None and continued.reset_reason is not None:
        record(connection, now, "engine", "policy_reset", "agent", agent.id, {"version": latest.version, "reason": continued.reset_reason})
    version = save_policy(connection, agent, continued.policy, action_keys, now)
    if latest is not None and (continued.added or continued.removed):
        record(
            connection,
            now,
            "engine",
            "policy_actions_changed",
            "agent",
            agent.id,
            {"from_version": latest.version, "version": version, "added": continued.added, "removed": continued.removed},
        )
    return continued.policy, version


def policy_at(connection: Connection, agent: Agent, action_keys: list[str], version: int) -> Policy:
    """The policy of a saved version, as a resumed cycle decides with it (nothing is saved)."""
    saved = saved_version(connection, agent.id, version)
    continued = continue_policy(
        agent.policy.name, agent.policy.params, agent.features, action_keys, None if saved is None else saved.policy, None if saved is None else saved.state
    )
    if saved is None or continued.changed:
        raise Conflict(
            f"cannot resume the cycle for agent '{agent.id}': its policy version {version} "
            + ("is not in the store" if saved is None else "does not continue under the playbook the cycle started with"),
            hint="the store was changed by hand; restore it from a backup",
        )
    return continued.policy


def save_policy(connection: Connection, agent: Agent, policy: Policy, action_keys: list[str], now: datetime) -> int:
    """A new version of the agent's policy state; the action keys say which index is which action."""
    state = {**policy.state(), "action_keys": action_keys, "features": agent.features}
    return save_version(connection, agent.id, agent.policy.name, state, now)
