"""The policies a playbook can name, and how they are built, checked and restored."""

from __future__ import annotations

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


def check_policy(name: str, params: dict[str, Any]) -> list[PolicyConfigError]:
    """Problems with a policy name and its parameters, without building the policy."""
    if name not in POLICIES:
        return [PolicyConfigError(("name",), f"unknown policy '{name}'", f"known policies: {', '.join(sorted(POLICIES))}")]
    try:
        POLICIES[name].Params.model_validate(params)
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
