"""Score a candidate policy on an agent's logged decisions before switching it on.

The agent's settled, executed decisions (what the customer actually experienced, with the
propensity the logging policy gave it) are split in time: the candidate learns from the
earlier half and is evaluated on the later half with IPS, self-normalized IPS and doubly
robust estimators (see :mod:`legato.learn.ope`). The candidate's probability of each action
is estimated by asking it to decide repeatedly (its own randomization, ``draws`` times); the
doubly robust reward model is a ridge regression per action fitted on the earlier half.
The candidate decides among the actions each customer could actually be offered (the
channels they could receive), as stored with each decision.

Caveat, reported with every result as ``mean_weight``: decisions that guardrails or budgets
suppressed are left out (the customer did not experience the chosen action), so the logged
propensities describe the policy, not the filtered sample. When guardrails suppress many
sends the mean importance weight drifts from 1 and IPS is biased; SNIPS corrects for the
scale and is the estimate to read then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.decide.actions import action_space
from legato.decide.features import decode_allowed, decode_context
from legato.decide.registry import build_policy
from legato.errors import LegatoError, NotFound
from legato.learn.ope import IPS, SNIPS, DoublyRobust
from legato.playbook.models import Playbook, PolicySpec
from legato.store.schema import decisions
from legato.store.status import DecisionStatus

MIN_DECISIONS = 200


@dataclass(frozen=True)
class Logged:
    contexts: npt.NDArray[np.float64]
    actions: npt.NDArray[np.int64]
    rewards: npt.NDArray[np.float64]
    propensities: npt.NDArray[np.float64]
    allowed: npt.NDArray[np.bool_] | None  # per decision, the actions the logging policy could choose


def logged_decisions(engine: Engine, playbook: Playbook, agent_id: str) -> Logged:
    agent = next((a for a in playbook.agents if a.id == agent_id), None)
    if agent is None:
        raise NotFound(f"no agent named '{agent_id}' in the playbook", hint=f"agents: {', '.join(a.id for a in playbook.agents)}")
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(decisions.c.context, decisions.c.action, decisions.c.reward, decisions.c.propensity, decisions.c.allowed_actions)
            .where(
                decisions.c.agent_id == agent_id,
                decisions.c.settled_at.is_not(None),
                decisions.c.holdout.is_(False),
                decisions.c.status.in_((DecisionStatus.SENT, DecisionStatus.NOTHING)),
                decisions.c.context.is_not(None),
            )
            .order_by(decisions.c.decided_at, decisions.c.id)
        ).all()
    # Match actions by key, and keep only decisions made with the agent's current features.
    position = {action.key: i for i, action in enumerate(action_space(playbook, agent))}
    width = 4 * (len(agent.features) + 1)
    rows = [r for r in rows if r.action in position and len(r.context) == width]
    if len(rows) < MIN_DECISIONS:
        raise LegatoError(
            f"agent '{agent_id}' has {len(rows)} settled decisions; off-policy evaluation needs at least {MIN_DECISIONS}",
            hint="run more cycles and wait for the attribution window to close",
        )
    return Logged(
        contexts=decode_context([r.context for r in rows], len(agent.features) + 1),
        actions=np.array([position[r.action] for r in rows], dtype=np.int64),
        rewards=np.array([r.reward for r in rows], dtype=np.float64),
        propensities=np.array([r.propensity for r in rows], dtype=np.float64),
        allowed=decode_allowed([r.allowed_actions for r in rows], len(position)),
    )


def evaluate_candidate(
    engine: Engine, playbook: Playbook, agent_id: str, candidate: PolicySpec, *, draws: int = 32, n_bootstrap: int = 500, seed: int = 0
) -> dict[str, Any]:
    logged = logged_decisions(engine, playbook, agent_id)
    agent = next(a for a in playbook.agents if a.id == agent_id)
    n_actions = len(action_space(playbook, agent))
    half = len(logged.actions) // 2
    train, test = slice(0, half), slice(half, None)
    try:
        policy = build_policy(candidate.name, candidate.params, n_actions)
        policy.update(logged.contexts[train], logged.actions[train], logged.rewards[train], logged.propensities[train])
    except (ValueError, KeyError) as exc:
        raise LegatoError(f"candidate policy {candidate.name} cannot learn from these logs: {exc}") from exc
    x = logged.contexts[test]
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(x), n_actions))
    # The candidate answers the question the logging policy answered: among the same actions.
    allowed = None if logged.allowed is None else logged.allowed[test]
    for _ in range(draws):
        chosen = policy.decide(x, rng, allowed=allowed).actions
        acting = chosen >= 0  # a fixed rule may take no action for a customer
        counts[np.flatnonzero(acting), chosen[acting]] += 1
    distribution = counts / draws
    rows = np.arange(len(x))
    target = distribution[rows, logged.actions[test]]
    rewards, propensities = logged.rewards[test], logged.propensities[test]
    predictions = _reward_model(logged.contexts[train], logged.actions[train], logged.rewards[train], x, n_actions)
    estimates = {
        "ips": IPS(n_bootstrap, seed=seed).estimate(rewards, propensities, target),
        "snips": SNIPS(n_bootstrap, seed=seed).estimate(rewards, propensities, target),
        "dr": DoublyRobust(n_bootstrap, seed=seed).estimate(
            rewards, propensities, target, actions=logged.actions[test], reward_predictions=predictions, policy_distribution=distribution
        ),
    }
    return {
        "agent": agent_id,
        "candidate": {"policy": candidate.name, "params": candidate.params},
        "n_train": half,
        "n_evaluated": len(x),
        "logged_value": float(rewards.mean()),
        "mean_weight": float((target / propensities).mean()),
        "estimates": {name: {"value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high} for name, e in estimates.items()},
    }


def _reward_model(x: npt.NDArray[np.float64], a: npt.NDArray[np.int64], r: npt.NDArray[np.float64], x_new: npt.NDArray[np.float64], k: int, ridge: float = 1.0) -> npt.NDArray[np.float64]:
    """Ridge regression of reward on features, one per action (the mean reward where an action is rare)."""
    predictions = np.full((len(x_new), k), r.mean())
    for action in range(k):
        mine = a == action
        if mine.sum() < x.shape[1]:
            continue
        xa = x[mine]
        weights = np.linalg.solve(xa.T @ xa + ridge * np.eye(x.shape[1]), xa.T @ r[mine])
        predictions[:, action] = x_new @ weights
    return predictions
