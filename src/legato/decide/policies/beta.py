"""Beta-Bernoulli Thompson sampling, one posterior per action (and segment)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from legato.decide.policies.common import (
    STATE_VERSION,
    FloatArray,
    IntArray,
    _check_n_actions,
    _check_source,
    _check_state,
    _ensemble_choice,
    _feedback,
    _features,
    _groups,
    _LearningParams,
    _mask_keys,
    _require_same_params,
)
from legato.decide.policy import BatchDecision, BoolArray, check_allowed

# Beyond this many distinct masks in a segment, Beta Thompson scores every customer against
# the ensemble directly (rows × draws × actions) rather than once per distinct mask.
_MAX_MASK_GROUPS = 256


class BetaThompson:
    """Bernoulli Thompson sampling with an independent Beta posterior per action.

    Implements Thompson (1933), "On the likelihood that one unknown probability exceeds
    another in view of the evidence of two samples" (Biometrika 25), in the Beta-Bernoulli
    form evaluated by Chapelle & Li (2011), "An Empirical Evaluation of Thompson Sampling"
    (NeurIPS). Context-free: the features are ignored, except for one optional integer
    column that splits customers into segments, each with its own posteriors
    (``segment_column``: the column index in the feature matrix, whose values must be
    0..``n_segments``-1; column 0 is the constant ones column, so it cannot be a segment).

    Rewards must lie in [0, 1]: a success adds its reward to alpha and ``1 - reward`` to
    beta, so a fractional reward counts as a fractional success. Actions are drawn as
    described in the docstring of :mod:`legato.decide.policies`, with ``propensity_samples`` Beta draws per action
    and segment per ``decide`` call; the propensity of the chosen action is the share of
    those draws in which it had the highest sample. The expected value is its posterior mean.
    """

    name: ClassVar[str] = "beta_thompson"

    class Params(_LearningParams):
        prior_alpha: float = Field(default=1.0, gt=0, description="Beta prior successes per action")
        prior_beta: float = Field(default=1.0, gt=0, description="Beta prior failures per action")
        propensity_samples: int = Field(default=200, ge=1, le=1_000_000, description="posterior draws per decide call")
        segment_column: int | None = Field(default=None, ge=1, description="feature column holding a segment index")
        n_segments: int = Field(default=1, ge=1, le=100_000, description="number of segments in segment_column")

        @model_validator(mode="after")
        def _segments_need_a_column(self) -> Self:
            if self.segment_column is None and self.n_segments != 1:
                raise ValueError("n_segments needs segment_column (the feature column holding the segment index)")
            return self

    def __init__(self, n_actions: int, params: Params | None = None) -> None:
        _check_n_actions(n_actions)
        self.n_actions = n_actions
        self.params = params or self.Params()
        shape = (self.params.n_segments, n_actions)
        self.alpha: FloatArray = np.full(shape, self.params.prior_alpha)
        self.beta: FloatArray = np.full(shape, self.params.prior_beta)
        self.n_updates = 0

    def _segments(self, x: FloatArray) -> IntArray:
        column = self.params.segment_column
        if column is None:
            return np.zeros(x.shape[0], dtype=np.int64)
        if column >= x.shape[1]:
            raise ValueError(f"segment_column {column} is outside the {x.shape[1]} feature columns")
        values = x[:, column]
        segments = values.astype(np.int64)
        bad = (segments != values) | (segments < 0) | (segments >= self.params.n_segments)
        if np.any(bad):
            raise ValueError(
                f"segment column {column} holds {float(values[np.argmax(bad)])}; "
                f"segments must be integers 0..{self.params.n_segments - 1}"
            )
        return segments

    def decide(
        self, features: npt.NDArray[np.float64], rng: np.random.Generator, allowed: BoolArray | None = None
    ) -> BatchDecision:
        x = _features(features, None)
        segments = self._segments(x)
        n = x.shape[0]
        mask = check_allowed(allowed, n, self.n_actions)
        actions = np.zeros(n, dtype=np.int64)
        propensities = np.ones(n)
        # One ensemble per segment present.
        for segment, rows in _groups(segments):
            draws = rng.beta(
                self.alpha[segment], self.beta[segment], size=(self.params.propensity_samples, self.n_actions)
            )
            if mask is None:
                self._choose(draws, None, rows, rng, actions, propensities)
                continue
            keys = _mask_keys(mask[rows])
            if keys.max(initial=0) < _MAX_MASK_GROUPS:
                for _, group in _groups(keys):
                    self._choose(draws, mask[rows[group[0]]], rows[group], rng, actions, propensities)
            else:
                # Many distinct masks: each customer against every member, in bounded chunks
                # (rows × draws × actions work; float32 keeps it cache-sized, and the draws'
                # float32 ties are as improbable as float64's matter).
                compact = draws.astype(np.float32)
                chunk = max(1, (1 << 21) // draws.size)
                for start in range(0, rows.size, chunk):
                    block = rows[start : start + chunk]
                    penalty = np.where(mask[block], np.float32(0.0), np.float32(-np.inf))
                    masked = compact[None] + penalty[:, None, :]
                    actions[block], propensities[block] = _ensemble_choice(masked.argmax(axis=2), rng)
        means = self.alpha / (self.alpha + self.beta)
        return BatchDecision(actions=actions, propensities=propensities, expected_values=means[segments, actions])

    def _choose(
        self,
        draws: FloatArray,
        allowed_row: BoolArray | None,
        rows: IntArray,
        rng: np.random.Generator,
        actions: IntArray,
        propensities: FloatArray,
    ) -> None:
        """Customers ``rows`` share one ensemble and one mask: the share of members each action
        wins is computed once, not per customer."""
        winners = (draws if allowed_row is None else np.where(allowed_row, draws, -np.inf)).argmax(axis=1)
        wins = np.bincount(winners, minlength=self.n_actions)
        chosen = winners[rng.integers(0, winners.size, size=rows.size)]
        actions[rows] = chosen
        propensities[rows] = wins[chosen] / winners.size

    def update(
        self,
        features: npt.NDArray[np.float64],
        actions: npt.NDArray[np.int64],
        rewards: npt.NDArray[np.float64],
        propensities: npt.NDArray[np.float64],
    ) -> None:
        x = _features(features, None)
        a, r = _feedback(x, actions, rewards, propensities, self.n_actions)
        if np.any(r > 1):
            raise ValueError(
                f"beta_thompson learns rewards in [0, 1] (a click, a visit, a purchase), got {r.max():g}; "
                "use lin_ts or lin_ucb for revenue"
            )
        # A negative reward (contact cost, guardrail penalty, a reviewer's rejection, with no
        # outcome to outweigh it) is a failure: the Beta posterior counts successes and failures.
        r = np.maximum(r, 0.0)
        cells = self._segments(x) * self.n_actions + a
        size = self.alpha.size
        self.alpha += np.bincount(cells, weights=r, minlength=size).reshape(self.alpha.shape)
        self.beta += np.bincount(cells, weights=1.0 - r, minlength=size).reshape(self.beta.shape)
        self.n_updates += int(x.shape[0])

    def state(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "version": STATE_VERSION,
            "n_actions": self.n_actions,
            "params": self.params.model_dump(),
            "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(),
            "n_updates": self.n_updates,
        }

    def with_actions(self, source: Sequence[int | None], params: Params) -> Self:
        """The posteriors of the actions that remain, unchanged; a new action starts at the
        prior (``prior_alpha``, ``prior_beta``) in every segment (see
        :mod:`legato.decide.policy`). The arms are independent, so dropping one changes no other."""
        pairs = _check_source(source, self.n_actions)
        _require_same_params(self.params, params)
        policy = type(self)(len(source), params)
        policy.alpha[:, pairs[:, 0]] = self.alpha[:, pairs[:, 1]]
        policy.beta[:, pairs[:, 0]] = self.beta[:, pairs[:, 1]]
        policy.n_updates = self.n_updates
        return policy

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_state(state, cls.name)
        policy = cls(int(state["n_actions"]), cls.Params.model_validate(state["params"]))
        alpha = np.asarray(state["alpha"], dtype=np.float64)
        beta = np.asarray(state["beta"], dtype=np.float64)
        if alpha.shape != policy.alpha.shape or beta.shape != policy.beta.shape:
            raise ValueError(f"state arrays have shape {alpha.shape}, expected {policy.alpha.shape}")
        policy.alpha, policy.beta = alpha, beta
        policy.n_updates = int(state["n_updates"])
        return policy
