"""No policy may emit a number that is not finite: bounded features in, a guard on every answer out."""

from __future__ import annotations

import numpy as np
import pytest

from legato.decide.features import FEATURE_LIMIT, feature_matrix
from legato.decide.policy import BatchDecision, NonFiniteDecision
from legato.decide.registry import build_policy


def test_features_are_bounded() -> None:
    column = np.array([1e200, -np.inf, np.inf, None, 3.0], dtype=object)
    matrix = feature_matrix([column], 5)
    assert np.isfinite(matrix).all()
    assert matrix[:, 1].tolist() == [FEATURE_LIMIT, -FEATURE_LIMIT, FEATURE_LIMIT, 0.0, 3.0]


def test_a_policy_answer_with_a_non_finite_number_is_refused() -> None:
    with pytest.raises(NonFiniteDecision, match="row 1"):
        BatchDecision(actions=np.array([0, 1]), propensities=np.array([0.5, np.nan]), expected_values=np.zeros(2))
    with pytest.raises(NonFiniteDecision):
        BatchDecision(actions=np.array([0]), propensities=np.array([0.5]), expected_values=np.array([np.inf]))
    with pytest.raises(NonFiniteDecision):
        BatchDecision(actions=np.array([0]), propensities=np.array([1.5]), expected_values=np.zeros(1))


def test_lin_ucb_on_huge_revenue_features_decides_with_finite_propensities() -> None:
    rng = np.random.default_rng(0)
    raw = np.array([[1e200], [5.0], [1e150], [2.0]] * 50, dtype=object)
    features = feature_matrix([raw[:, 0]], len(raw))
    policy = build_policy("lin_ucb", {}, n_actions=3)
    first = policy.decide(features, rng)
    policy.update(features, first.actions, np.where(first.actions == 0, 1e9, 0.0), first.propensities)
    batch = policy.decide(features, rng)
    assert np.isfinite(batch.propensities).all() and np.isfinite(batch.expected_values).all()
