"""What LinTS and LinUCB share: their parameters, the ridge posterior they build, its updates
and its saved state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator, model_validator

from legato.decide.policies.common import (
    STATE_VERSION,
    FloatArray,
    _check_n_actions,
    _check_source,
    _check_state,
    _feedback,
    _features,
    _LearningParams,
    _require_same_params,
)
from legato.decide.policies.ridge import _DisjointRidge, _NoisePrior, _SharedRidge


class _LinearParams(_LearningParams):
    alpha: float = Field(default=1.0, gt=0, description="exploration scale (v in Agrawal & Goyal, α in Li et al.)")
    ridge: float = Field(default=1.0, gt=0, description="prior precision λ of the ridge regression")
    action_features: list[list[float]] | None = Field(
        default=None, description="one feature row per action; given → one shared model on customer ⊗ action features"
    )
    action_identity: bool = Field(default=False, description="append a one-hot action id to the action features")
    chunk_size: int = Field(default=8192, ge=1, le=10_000_000, description="customers scored per matrix product")
    noise_variance: float | None = Field(
        default=None,
        gt=0,
        description="reward noise variance σ² of LinTS's posterior N(μ, σ²A⁻¹); None = learned (Normal-inverse-gamma)",
    )
    noise_prior_shape: float = Field(default=6.0, gt=0, description="a₀ of the inverse-gamma prior on σ²")
    noise_prior_scale: float = Field(default=6.0, gt=0, description="b₀ of the inverse-gamma prior on σ²")

    @field_validator("action_features")
    @classmethod
    def _rectangular(cls, rows: list[list[float]] | None) -> list[list[float]] | None:
        if rows is None:
            return None
        if not rows or not rows[0]:
            raise ValueError("action_features needs one non-empty row per action")
        if any(len(row) != len(rows[0]) for row in rows):
            raise ValueError("every action_features row must have the same length")
        return rows

    @model_validator(mode="after")
    def _identity_needs_features(self) -> Self:
        if self.action_identity and self.action_features is None:
            raise ValueError(
                "action_identity needs action_features (without them each action already has its own model)"
            )
        return self


class _LinearPolicy:
    """What LinTS and LinUCB share: the ridge posterior, its updates and its state."""

    name: ClassVar[str]
    Params: ClassVar[type[_LinearParams]]

    def __init__(self, n_actions: int, params: _LinearParams | None = None) -> None:
        _check_n_actions(n_actions)
        self.n_actions = n_actions
        self.params = params or self.Params()
        self._phi: FloatArray | None = None
        if self.params.action_features is not None:
            phi = np.asarray(self.params.action_features, dtype=np.float64)
            if phi.shape[0] != n_actions:
                raise ValueError(
                    f"action_features has {phi.shape[0]} rows but the action space has {n_actions} actions"
                )
            if self.params.action_identity:
                phi = np.hstack([phi, np.eye(n_actions)])
            self._phi = phi
        self.model: _DisjointRidge | _SharedRidge | None = None  # built on first use: d is not known before
        self.n_updates = 0

    def _model(self, n_features: int) -> _DisjointRidge | _SharedRidge:
        if self.model is None:
            noise = _NoisePrior(
                self.params.noise_prior_shape, self.params.noise_prior_scale, self.params.noise_variance
            )
            if self._phi is None:
                self.model = _DisjointRidge(self.n_actions, n_features, self.params.ridge, noise)
            else:
                self.model = _SharedRidge(self._phi, n_features, self.params.ridge, noise)
        return self.model

    def _batch(self, features: Any) -> tuple[FloatArray, _DisjointRidge | _SharedRidge]:
        x = _features(features, None if self.model is None else self.model.n_features)
        return x, self._model(x.shape[1])

    def update(
        self,
        features: npt.NDArray[np.float64],
        actions: npt.NDArray[np.int64],
        rewards: npt.NDArray[np.float64],
        propensities: npt.NDArray[np.float64],
    ) -> None:
        x, model = self._batch(features)
        a, r = _feedback(x, actions, rewards, propensities, self.n_actions)
        if x.shape[0]:
            model.update(x, a, r)
        self.n_updates += int(x.shape[0])

    def state(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "version": STATE_VERSION,
            "n_actions": self.n_actions,
            "params": self.params.model_dump(),
            "n_features": None if self.model is None else self.model.n_features,
            "model": None if self.model is None else self.model.state(),
            "n_updates": self.n_updates,
        }

    def with_actions(self, source: Sequence[int | None], params: _LinearParams) -> Self:
        """The posterior carried over to a changed action space (see :mod:`legato.decide.policy`).

        Disjoint (no ``action_features``): each remaining action keeps its regression, a new
        one starts at the prior. Shared: the posterior is on Θ, which does not depend on the
        actions, so it is kept whole and a new action is scored from its feature row at once;
        with ``action_identity`` the removed actions' identity weights are marginalized out and
        a new action's start at the prior (:meth:`_SharedRidge.carry_from`). Only
        ``action_features`` may differ from the old parameters, and only in its rows: the
        number of action-feature columns is the shape of Θ.
        """
        pairs = _check_source(source, self.n_actions)
        _require_same_params(self.params, params, frozenset({"action_features"}))
        if (self.params.action_features is None) != (params.action_features is None):
            raise ValueError(
                "action_features were added or removed: the model changes between one per action and one shared"
            )
        if self._phi is not None and params.action_features is not None:
            before, after = len(self.params.action_features[0]), len(params.action_features[0])
            if before != after:
                raise ValueError(f"action_features rows have {after} columns, the learned model has {before}")
        policy = type(self)(len(source), params)
        policy.n_updates = self.n_updates
        if self.model is None:
            return policy
        model = policy._model(self.model.n_features)
        if isinstance(self.model, _DisjointRidge) and isinstance(model, _DisjointRidge):
            model.carry_from(self.model, pairs)
        elif isinstance(self.model, _SharedRidge) and isinstance(model, _SharedRidge):
            assert params.action_features is not None
            width = len(params.action_features[0])
            columns: list[int | None] = list(range(width))
            if params.action_identity:
                columns += [None if old is None else width + old for old in source]
            model.carry_from(self.model, columns)
        return policy

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_state(state, cls.name)
        policy = cls(int(state["n_actions"]), cls.Params.model_validate(state["params"]))
        if state["n_features"] is not None:
            policy._model(int(state["n_features"])).load(state["model"])
        policy.n_updates = int(state["n_updates"])
        return policy
