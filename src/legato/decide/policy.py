"""The one protocol every policy follows, and the registry the playbook names policies from.

In the spirit of scikit-learn and river: parameters go to the constructor (validated by a
Pydantic model, so a playbook's typo is caught by ``legato validate``), ``decide`` works
on a whole batch of customers at once, ``update`` learns from a batch of outcomes, and
``state``/``from_state`` round-trip through the store as JSON so a restart continues where
the agent was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class BatchDecision:
    """What a policy chose for each customer of a batch."""

    actions: npt.NDArray[np.int64]  # index into the agent's action space
    propensities: npt.NDArray[np.float64]  # probability the policy gave the chosen action
    expected_values: npt.NDArray[np.float64]  # the policy's estimate of the chosen action's reward


class PolicyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Policy(Protocol):
    name: ClassVar[str]
    Params: ClassVar[type[PolicyParams]]

    def decide(self, features: npt.NDArray[np.float64], rng: np.random.Generator) -> BatchDecision: ...

    def update(
        self,
        features: npt.NDArray[np.float64],
        actions: npt.NDArray[np.int64],
        rewards: npt.NDArray[np.float64],
        propensities: npt.NDArray[np.float64],
    ) -> None: ...

    def state(self) -> dict[str, Any]: ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Policy: ...


class UniformRandom:
    """Every action with equal probability: the logging policy of a randomized experiment.

    Its decisions have known propensities 1/K, which is what makes later off-policy
    evaluation of smarter policies unbiased (Horvitz & Thompson, 1952).
    """

    name: ClassVar[str] = "uniform_random"

    class Params(PolicyParams):
        pass

    def __init__(self, n_actions: int, params: Params | None = None) -> None:
        self.n_actions = n_actions
        self.params = params or self.Params()

    def decide(self, features: npt.NDArray[np.float64], rng: np.random.Generator) -> BatchDecision:
        n = features.shape[0]
        return BatchDecision(
            actions=rng.integers(0, self.n_actions, size=n, dtype=np.int64),
            propensities=np.full(n, 1.0 / self.n_actions),
            expected_values=np.zeros(n),
        )

    def update(self, features: Any, actions: Any, rewards: Any, propensities: Any) -> None:
        """Nothing to learn: the policy stays uniform by design."""

    def state(self) -> dict[str, Any]:
        return {"policy": self.name, "n_actions": self.n_actions, "params": self.params.model_dump()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UniformRandom:
        return cls(int(state["n_actions"]), cls.Params.model_validate(state.get("params", {})))


class FixedAction:
    """Always the same action (a business rule, or a single-arm baseline to compare against)."""

    name: ClassVar[str] = "fixed"

    class Params(PolicyParams):
        action: int = 0

    def __init__(self, n_actions: int, params: Params | None = None) -> None:
        self.n_actions = n_actions
        self.params = params or self.Params()
        if not 0 <= self.params.action < n_actions:
            raise ValueError(f"action {self.params.action} is outside the action space 0..{n_actions - 1}")

    def decide(self, features: npt.NDArray[np.float64], rng: np.random.Generator) -> BatchDecision:
        n = features.shape[0]
        return BatchDecision(
            actions=np.full(n, self.params.action, dtype=np.int64),
            propensities=np.ones(n),
            expected_values=np.zeros(n),
        )

    def update(self, features: Any, actions: Any, rewards: Any, propensities: Any) -> None:
        """A fixed rule does not learn."""

    def state(self) -> dict[str, Any]:
        return {"policy": self.name, "n_actions": self.n_actions, "params": self.params.model_dump()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FixedAction:
        return cls(int(state["n_actions"]), cls.Params.model_validate(state.get("params", {})))
