"""The policies a playbook can name, and how they are built, checked, restored and continued."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from legato.decide.policies import LEARNING_POLICIES
from legato.decide.policy import FixedAction, Policy, UniformRandom

POLICIES: dict[str, Any] = {
    UniformRandom.name: UniformRandom,
    FixedAction.name: FixedAction,
    **LEARNING_POLICIES,
}


class PolicyConfigError(ValueError):
    """A policy name or parameter the registry does not know, with the field at fault."""

    def __init__(self, field: tuple[str, ...], message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.hint = hint


def check_policy(name: str, params: dict[str, Any], action_keys: list[str] | None = None) -> list[PolicyConfigError]:
    """Problems with a policy name and its parameters; with ``action_keys`` (the agent's
    actions, in order) also those of the parameters against that action space, such as
    ``action_features`` without one row per action (found by building the policy)."""
    if name not in POLICIES:
        return [PolicyConfigError(("name",), f"unknown policy '{name}'", f"known policies: {', '.join(sorted(POLICIES))}")]
    try:
        validated = POLICIES[name].Params.model_validate(params)
        if action_keys is not None:
            try:
                POLICIES[name](len(action_keys), validated)
            except ValueError as exc:
                # The policies name the parameter at fault first ("action_features has 3 rows ...").
                first = str(exc).split(" ", 1)[0]
                at = ("params", first) if first in POLICIES[name].Params.model_fields else ("params",)
                return [PolicyConfigError(at, str(exc), f"the agent's actions, in order: {', '.join(action_keys)}")]
    except ValidationError as exc:
        return [
            PolicyConfigError(
                ("params", *(str(p) for p in item["loc"])),
                "unknown parameter" if item["type"] == "extra_forbidden" else item["msg"],
                f"parameters of {name}: {', '.join(POLICIES[name].Params.model_fields) or 'none'}",
            )
            for item in exc.errors()
        ]
    return []


def build_policy(name: str, params: dict[str, Any], n_actions: int) -> Policy:
    policy_class = POLICIES[name]
    return policy_class(n_actions, policy_class.Params.model_validate(params))  # type: ignore[no-any-return]


def restore_policy(name: str, state: dict[str, Any]) -> Policy:
    """Rebuild a policy from its saved state; raises ValueError/KeyError/TypeError if it does not fit."""
    return POLICIES[name].from_state(state)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Continuation:
    """The policy an agent decides with now, and how it relates to its saved state."""

    policy: Policy
    changed: bool  # differs from the saved state: save it as a new version
    reset_reason: str | None = None  # the learned state was discarded, and why
    added: list[str] = field(default_factory=list)  # action keys new to the policy
    removed: list[str] = field(default_factory=list)  # action keys it dropped


def continue_policy(
    name: str,
    params: dict[str, Any],
    features: list[str],
    action_keys: list[str],
    saved_policy: str | None,
    saved_state: dict[str, Any] | None,
) -> Continuation:
    """The one rule for whether an agent's saved policy state continues under the playbook.

    It continues when it is the same policy on the same customer features. A changed action
    space (matched by action key, :attr:`legato.decide.actions.Action.key`) keeps what the
    remaining actions learned and starts new ones at the prior (see
    :meth:`~legato.decide.policy.Policy.with_actions`). It starts afresh, with the reason,
    when the policy or the features changed, when a parameter the state depends on changed,
    or when the saved state cannot be restored. ``saved_state`` holds the policy's own state
    plus ``action_keys`` and ``features``, as the cycle saves it.
    """
    fresh = build_policy(name, params, len(action_keys))
    if saved_state is None or saved_policy is None:
        return Continuation(fresh, changed=True)
    if saved_policy != name:
        return Continuation(fresh, changed=True, reset_reason=f"the policy changed from {saved_policy} to {name}")
    if saved_state.get("features") != features:
        return Continuation(fresh, changed=True, reset_reason="the features changed")
    try:
        saved = restore_policy(name, saved_state)
        saved_keys = list(saved_state["action_keys"])
        if len(saved_keys) != len(set(saved_keys)) or len(action_keys) != len(set(action_keys)):
            raise ValueError("an action key appears twice, so actions cannot be matched by key")
        if len(saved_keys) != saved.n_actions:
            raise ValueError(f"the state has {saved.n_actions} actions but {len(saved_keys)} action keys")
        new_params = fresh.params
        if saved_keys == action_keys and saved.params == new_params:
            return Continuation(saved, changed=False)
        position = {key: i for i, key in enumerate(saved_keys)}
        policy = saved.with_actions([position.get(key) for key in action_keys], new_params)
    except (ValueError, KeyError, TypeError) as exc:
        return Continuation(fresh, changed=True, reset_reason=f"the saved state could not continue: {exc}")
    known = set(saved_keys)
    return Continuation(
        policy,
        changed=True,
        added=[key for key in action_keys if key not in known],
        removed=[key for key in saved_keys if key not in set(action_keys)],
    )
