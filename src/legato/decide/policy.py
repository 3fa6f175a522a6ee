"""The one protocol every policy follows, and the registry the playbook names policies from.

In the spirit of scikit-learn and river: parameters go to the constructor (validated by a
Pydantic model, so a playbook's typo is caught by ``legato validate``), ``decide`` works
on a whole batch of customers at once, ``update`` learns from a batch of outcomes, and
``state``/``from_state`` round-trip through the store as JSON so a restart continues where
the agent was.

Per-customer action masks
-------------------------
``decide(features, rng, allowed=None)`` takes an optional boolean matrix ``allowed`` of shape
customers × actions. ``allowed[i, k]`` False means action ``k`` must never be chosen for
customer ``i`` (typically: the customer did not consent to that action's channel). Every
policy then randomizes over the allowed actions only, and the propensity it returns is the
exact probability it gave the chosen action *under that customer's mask*, so inverse
propensity scoring of the logs stays unbiased. ``None`` (or an all-True matrix) means every
action is allowed and costs nothing. A row with no allowed action, a matrix of the wrong
shape or values other than booleans (or 0/1) raise ``ValueError``: the engine removes such
customers before it asks (an action space of size zero after consent filtering is its
error to report, with the customer, not the policy's to guess).

A changed action space
----------------------
``with_actions(source, params)`` carries what a policy learned over to a changed action
space (a creative, offer or send window added or removed): new action ``j`` continues old
action ``source[j]``, or starts from the prior when ``source[j]`` is None; old actions that
no index names are dropped without changing what the others learned. ``params`` are the
playbook's parameters for the new space; the policy raises ValueError when its learned
state cannot continue under them (it was learned under another prior, say), and the
caller then starts afresh. The rule for when a saved state continues at all is
:func:`legato.decide.registry.continue_policy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from legato.errors import LegatoError


class NonFiniteDecision(LegatoError):
    """A policy produced a propensity or estimate that is not a finite number (or not a probability)."""


@dataclass(frozen=True)
class BatchDecision:
    """What a policy chose for each customer of a batch.

    Every policy's answer passes through here, so this is where a non-finite number is
    stopped: a NaN propensity would be written as NULL and break every later evaluation and
    update (revenue of 1e200 once did that to lin_ucb). Nothing is written then; the cycle
    fails with the customers' rows named.
    """

    # index into the agent's action space; -1 where the policy takes no action for the
    # customer (only a fixed rule does, when the customer cannot receive its action)
    actions: npt.NDArray[np.int64]
    propensities: npt.NDArray[np.float64]  # probability the policy gave the chosen action
    expected_values: npt.NDArray[np.float64]  # the policy's estimate of the chosen action's reward

    def __post_init__(self) -> None:
        propensities = np.asarray(self.propensities, dtype=np.float64)
        bad = ~np.isfinite(propensities) | (propensities < 0) | (propensities > 1 + 1e-9)
        bad |= ~np.isfinite(np.asarray(self.expected_values, dtype=np.float64))
        if bad.any():
            rows = np.flatnonzero(bad)
            raise NonFiniteDecision(
                f"the policy gave {rows.size} customer(s) a propensity or estimate that is not a finite probability "
                f"(first: row {int(rows[0])}, propensity {propensities[rows[0]]!r}); nothing was decided",
                hint="a feature is far too large or not a number: check the imported values (legato import reports them by row) "
                "and the agent's features, then roll the policy back (legato agents rollback) if its state is damaged",
            )


class PolicyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


BoolArray = npt.NDArray[np.bool_]


def check_allowed(allowed: Any, n: int, n_actions: int) -> BoolArray | None:
    """The validated mask as a C-contiguous boolean matrix, or None when every action is allowed.

    Raises ValueError for a wrong shape, values other than booleans or 0/1, or a customer
    with no allowed action (the message names the first such row and how many there are).
    """
    if allowed is None:
        return None
    mask = np.asarray(allowed)
    if mask.shape != (n, n_actions):
        raise ValueError(
            f"allowed must be a customers × actions matrix of shape ({n}, {n_actions}), got shape {mask.shape}"
        )
    if mask.dtype != np.bool_:
        if mask.size and not (np.issubdtype(mask.dtype, np.number) and np.all((mask == 0) | (mask == 1))):
            raise ValueError("allowed must hold booleans (or 0/1): True where the action may be chosen")
        mask = mask.astype(np.bool_)
    if mask.all():
        return None  # the unmasked fast path, same decisions
    none_allowed = ~mask.any(axis=1)
    if none_allowed.any():
        rows = np.flatnonzero(none_allowed)
        raise ValueError(
            f"allowed has no allowed action for {rows.size} customer(s) (first: row {int(rows[0])}); "
            "remove customers who can receive no action before deciding"
        )
    return np.ascontiguousarray(mask)


def uniform_allowed(mask: BoolArray, rng: np.random.Generator) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """One action per row drawn uniformly among its allowed ones, and its probability 1/count."""
    counts = mask.sum(axis=1)
    rank = rng.integers(0, counts)  # the rank-th allowed action of the row, 0-based
    # The first column whose running count of allowed actions exceeds rank.
    chosen = (np.cumsum(mask, axis=1) > rank[:, None]).argmax(axis=1)
    return chosen.astype(np.int64), 1.0 / counts


class Policy(Protocol):
    """What every policy does (see the module docstring for the mask's contract).

    ``decide(features, rng, allowed=None)``: for each row of ``features`` (customers ×
    features) one action index, the probability the policy gave it (given ``allowed``, if
    any) and the policy's expected reward for it. An action that ``allowed`` marks False for
    a customer is never chosen for that customer.
    """

    name: ClassVar[str]
    Params: ClassVar[type[PolicyParams]]
    n_actions: int
    params: Any  # an instance of Params

    def decide(
        self, features: npt.NDArray[np.float64], rng: np.random.Generator, allowed: BoolArray | None = None
    ) -> BatchDecision: ...

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

    def with_actions(self, source: Sequence[int | None], params: Any) -> Policy: ...


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

    def decide(
        self, features: npt.NDArray[np.float64], rng: np.random.Generator, allowed: BoolArray | None = None
    ) -> BatchDecision:
        """Uniform over all actions, or over each customer's allowed ones (propensity 1/count)."""
        n = features.shape[0]
        mask = check_allowed(allowed, n, self.n_actions)
        if mask is not None:
            actions, propensities = uniform_allowed(mask, rng)
            return BatchDecision(actions=actions, propensities=propensities, expected_values=np.zeros(n))
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

    def with_actions(self, source: Sequence[int | None], params: Params) -> UniformRandom:
        """Nothing learned to carry: uniform over the new actions."""
        return type(self)(len(source), params)


class FixedAction:
    """Always the same action (a business rule, or a single-arm baseline to compare against).

    With a mask, a customer for whom the action is not allowed gets ``fallback`` when it is
    set and allowed (e.g. 0, "do nothing"), and otherwise no action at all (-1): a business
    rule never silently becomes another message. Raising instead would let one customer
    without consent stop the whole batch. The rule stays deterministic: every propensity is 1.
    """

    name: ClassVar[str] = "fixed"

    class Params(PolicyParams):
        action: int = 0
        fallback: int | None = None

    def __init__(self, n_actions: int, params: Params | None = None) -> None:
        self.n_actions = n_actions
        self.params = params or self.Params()
        for label, value in (("action", self.params.action), ("fallback", self.params.fallback)):
            if value is not None and not 0 <= value < n_actions:
                raise ValueError(f"{label} {value} is outside the action space 0..{n_actions - 1}")

    def decide(
        self, features: npt.NDArray[np.float64], rng: np.random.Generator, allowed: BoolArray | None = None
    ) -> BatchDecision:
        n = features.shape[0]
        mask = check_allowed(allowed, n, self.n_actions)
        actions = np.full(n, self.params.action, dtype=np.int64)
        if mask is not None:
            blocked = ~mask[:, self.params.action]
            fallback = self.params.fallback
            usable = blocked & (mask[:, fallback] if fallback is not None else False)
            actions[blocked] = -1
            if fallback is not None:
                actions[usable] = fallback
        return BatchDecision(
            actions=actions,
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

    def with_actions(self, source: Sequence[int | None], params: Params) -> FixedAction:
        """Nothing learned to carry: the rule as the playbook now states it."""
        return type(self)(len(source), params)
