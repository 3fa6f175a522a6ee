"""The learning step: settle decisions whose attribution window closed and update the policy.

Outcomes imported after their decision settled are credited to it here too
(``attribution.credit_late``): the stored outcome and reward are corrected for reports,
the policy is not taught from the decision a second time (see ``credit_late``).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import Connection

from legato.cycle.policy_io import save_policy
from legato.cycle.report import AgentReport
from legato.decide.features import decode_context
from legato.decide.policy import Policy
from legato.learn.attribution import credit_late, settle
from legato.playbook.models import Agent, Playbook
from legato.store.audit import record


def learn(connection: Connection, playbook: Playbook, agent: Agent, policy: Policy, action_keys: list[str], now: datetime, report: AgentReport) -> None:
    """Settle the decisions whose attribution window closed and update the policy from them."""
    objective, costs = playbook.objective(agent.objective), {o.id: o.cost for o in playbook.offers}
    settled = settle(connection, agent.id, objective, costs, now)
    report.settled = len(settled)
    late = credit_late(connection, agent.id, objective, costs, now)
    report.late_credited = late.decisions
    if late.decisions:
        record(connection, now, "engine", "late_outcomes_credited", "agent", agent.id, late.to_dict())
    # Decisions made with other features (before the playbook changed them) cannot teach this policy.
    # Actions are matched by key, so decisions made before the action space changed still
    # teach the actions that remain.
    width = 4 * (len(agent.features) + 1)
    position = {key: i for i, key in enumerate(action_keys)}
    action_index = np.array([position.get(key, -1) for key in settled.actions], dtype=np.int64)
    usable = settled.executed & (action_index >= 0) & np.array([c is not None and len(c) == width for c in settled.contexts], dtype=bool)
    if not usable.any():
        return
    try:
        contexts = decode_context([c for c, keep in zip(settled.contexts, usable, strict=True) if keep], len(agent.features) + 1)
        policy.update(contexts, action_index[usable], settled.reward[usable], settled.propensity[usable])
    except ValueError as exc:
        # Keep deciding with the last good state; the reason is audited and reported.
        report.learning_error = str(exc)
        record(connection, now, "engine", "policy_update_failed", "agent", agent.id, {"reason": str(exc)})
        return
    report.learned_from = int(usable.sum())
    report.policy_version = save_policy(connection, agent, policy, action_keys, now)
