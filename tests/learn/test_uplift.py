"""Uplift models recover who is moved by a message; metrics match their definitions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn

from legato.errors import LegatoError
from legato.learn.uplift import (
    ClassTransformationUplift,
    TwoModelUplift,
    qini_auc_score,
    qini_curve,
    uplift_at_k,
)


def experiment(n: int, rng: np.random.Generator, treated_share: float = 0.5) -> tuple[np.ndarray, ...]:
    """Randomized treatment; the message adds 0.3 to the response rate only when x0 > 0."""
    X = rng.normal(size=(n, 4))
    treatment = (rng.random(n) < treated_share).astype(int)
    true_uplift = np.where(X[:, 0] > 0, 0.3, 0.0)
    base = 0.2 + 0.1 * (X[:, 1] > 0)
    y = (rng.random(n) < base + treatment * true_uplift).astype(int)
    return X, treatment, y, true_uplift


@pytest.mark.parametrize("model_class", [TwoModelUplift, ClassTransformationUplift])
@pytest.mark.parametrize("treated_share", [0.5, 0.2])
def test_models_find_the_customers_the_message_moves(model_class: type, treated_share: float) -> None:
    rng = np.random.default_rng(0)
    X, t, y, _ = experiment(12_000, rng, treated_share)
    model = model_class(max_iter=60).fit(X, t, y)
    X_test, t_test, y_test, truth = experiment(6000, rng, treated_share)
    predicted = model.predict_uplift(X_test)
    assert predicted.shape == (6000,)
    assert np.corrcoef(predicted, truth)[0, 1] > 0.6
    # Movable customers get a clearly higher average prediction, close to the true 0.3.
    assert predicted[truth > 0].mean() == pytest.approx(0.3, abs=0.08)
    assert abs(predicted[truth == 0].mean()) < 0.08
    assert uplift_at_k(y_test, predicted, t_test, k=0.3) > 0.2


def test_two_model_uplift_with_several_arms() -> None:
    rng = np.random.default_rng(1)
    n = 9000
    X = rng.normal(size=(n, 3))
    arm = rng.integers(0, 3, size=n)
    p = 0.2 + 0.2 * (arm == 1) * (X[:, 0] > 0) + 0.2 * (arm == 2) * (X[:, 0] <= 0)
    y = (rng.random(n) < p).astype(int)
    model = TwoModelUplift(max_iter=50).fit(X, arm, y)
    outcomes = model.predict_outcomes(X[:1000])
    uplift = model.predict_uplift(X[:1000])
    assert outcomes.shape == (1000, 3) and uplift.shape == (1000, 2)
    best = np.argmax(outcomes, axis=1)
    assert np.mean(best == np.where(X[:1000, 0] > 0, 1, 2)) > 0.85


@pytest.mark.parametrize("model_class", [TwoModelUplift, ClassTransformationUplift])
def test_state_round_trip(model_class: type[TwoModelUplift] | type[ClassTransformationUplift]) -> None:
    rng = np.random.default_rng(2)
    X, t, y, _ = experiment(2000, rng)
    model = model_class(max_iter=20, random_state=3).fit(X, t, y)
    state = json.loads(json.dumps(model.state()))
    restored = model_class.from_state(state)
    np.testing.assert_array_equal(restored.predict_uplift(X), model.predict_uplift(X))
    assert restored.get_params() == model.get_params()
    unfitted = model_class.from_state(json.loads(json.dumps(model_class().state())))
    with pytest.raises(ValueError, match="not fitted"):
        unfitted.predict_uplift(X)


def test_refuses_states_it_should_not_load() -> None:
    rng = np.random.default_rng(4)
    X, t, y, _ = experiment(1000, rng)
    state = ClassTransformationUplift(max_iter=5).fit(X, t, y).state()
    other_version = {**state, "fitted": [{**state["fitted"][0], "sklearn": "0.0.1"}]}
    with pytest.raises(LegatoError, match=f"this is {sklearn.__version__}"):
        ClassTransformationUplift.from_state(other_version)
    blob = state["fitted"][0]
    corrupted = {**state, "fitted": [{**blob, "data": blob["data"][:-8] + "AAAAAAAA"}]}
    with pytest.raises(LegatoError, match="corrupted"):
        ClassTransformationUplift.from_state(corrupted)
    with pytest.raises(ValueError, match="not a two_model_uplift state"):
        TwoModelUplift.from_state(state)


def test_fit_validation() -> None:
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="single arm"):
        TwoModelUplift().fit(X, np.zeros(4), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="0 or 1"):
        ClassTransformationUplift().fit(X, np.array([0, 1, 2, 1]), np.array([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="one entry per row"):
        ClassTransformationUplift().fit(X, np.array([0, 1, 0]), np.array([0, 1, 0, 1]))


def test_uplift_at_k_by_hand() -> None:
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0])
    t = np.array([1, 1, 0, 1, 0, 1, 0, 0, 1, 0])
    score = np.arange(10, 0, -1)  # rows already in descending score order
    # Top 5: treated rows 0, 1, 3 → 2/3 respond; control rows 2, 4 → 1/2 respond.
    assert uplift_at_k(y, score, t, k=0.5) == pytest.approx(2 / 3 - 1 / 2)


def test_qini_curve_by_hand_and_ties() -> None:
    y = np.array([1, 0, 1, 0])
    t = np.array([1, 0, 0, 1])
    x, q = qini_curve(y, np.array([4.0, 3.0, 2.0, 1.0]), t)
    # Top 1: 1 treated responder. Top 2: 1 − 0·1/1. Top 3: 1 − 1·(1/2). Top 4: 1 − 1·(2/2).
    np.testing.assert_allclose(x, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(q, [0, 1, 1, 0.5, 0])
    x, q = qini_curve(y, np.zeros(4), t)  # all tied: one threshold
    np.testing.assert_allclose(x, [0, 4])


def test_qini_auc_score_is_one_for_perfect_and_zero_for_no_information() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=500)
    t = rng.integers(0, 2, size=500)
    assert qini_auc_score(y, y * t - y * (1 - t), t) == pytest.approx(1.0)
    assert qini_auc_score(y, np.zeros(500), t) == pytest.approx(0.0, abs=1e-12)
