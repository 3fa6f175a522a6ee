"""The learning policies: protocol shapes, honest propensities, learning, state, parameters."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from legato.decide.policies import LEARNING_POLICIES, BetaThompson, LinTS, LinUCB
from legato.decide.policies.ridge import _DisjointRidge, _NoisePrior, _SharedRidge

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("beta_thompson", {}),
    ("beta_thompson", {"segment_column": 1, "n_segments": 2, "propensity_samples": 500}),
    ("lin_ts", {}),
    ("lin_ts", {"action_features": [[1, 0], [0, 1], [1, 1], [0.5, 0]], "action_identity": True}),
    ("lin_ucb", {}),
    ("lin_ucb", {"epsilon": 0.2}),
    ("lin_ucb", {"action_features": [[1, 0], [0, 1], [1, 1], [0.5, 0]]}),
]
IDS = [f"{name}-{'-'.join(params) or 'default'}" for name, params in CONFIGS]
K = 4


def build(name: str, params: dict[str, Any], n_actions: int = K) -> Any:
    cls = LEARNING_POLICIES[name]
    return cls(n_actions, cls.Params.model_validate(params))


def features(n: int, rng: np.random.Generator, d: int = 3) -> np.ndarray:
    x = np.ones((n, d))
    x[:, 1] = rng.integers(0, 2, size=n)  # doubles as a segment column
    x[:, 2:] = rng.normal(size=(n, d - 2))
    return x


def train(policy: Any, rng: np.random.Generator, n: int = 500) -> None:
    x = features(n, rng)
    actions = rng.integers(0, K, size=n)
    rewards = (rng.random(n) < 0.2 + 0.1 * actions).astype(float)
    policy.update(x, actions, rewards, np.full(n, 1 / K))


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=IDS)
def test_decide_shapes_and_valid_propensities(name: str, params: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    policy = build(name, params)
    for _ in range(2):  # untrained, then trained
        decision = policy.decide(features(1000, rng), rng)
        assert decision.actions.shape == decision.propensities.shape == decision.expected_values.shape == (1000,)
        assert decision.actions.dtype == np.int64
        assert decision.actions.min() >= 0 and decision.actions.max() < K
        assert np.all((decision.propensities > 0) & (decision.propensities <= 1))
        assert np.all(np.isfinite(decision.expected_values))
        train(policy, rng)


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=IDS)
def test_empty_batch(name: str, params: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    policy = build(name, params)
    train(policy, rng)
    decision = policy.decide(np.ones((0, 3)), rng)
    assert decision.actions.shape == (0,)
    policy.update(np.ones((0, 3)), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0))


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=IDS)
def test_propensities_are_the_probabilities_actually_used(name: str, params: dict[str, Any]) -> None:
    """For one customer repeated (one ensemble), the propensities of the distinct actions sum
    to 1 and match how often each action is chosen."""
    rng = np.random.default_rng(1)
    policy = build(name, {**params, "chunk_size": 100_000} if name != "beta_thompson" else params)
    train(policy, rng, n=200)
    n = 40_000
    x = np.tile(np.array([[1.0, 1.0, 0.3]]), (n, 1))
    decision = policy.decide(x, rng)
    distinct = {}
    for action in np.unique(decision.actions):
        values = np.unique(decision.propensities[decision.actions == action])
        assert values.size == 1, "one customer, one ensemble: one propensity per action"
        distinct[int(action)] = float(values[0])
        share = np.mean(decision.actions == action)
        assert share == pytest.approx(values[0], abs=4 * np.sqrt(values[0] * (1 - values[0]) / n) + 1e-9)
    if name == "lin_ucb" and not params.get("epsilon"):
        assert list(distinct.values()) == [1.0]
    else:
        # Every action with probability ≥ 1/500 shows up among 40,000 draws.
        assert sum(distinct.values()) == pytest.approx(1.0, abs=1e-9)


def contextual_reward(x: np.ndarray, actions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Action 0 is best when x1 = 1, action 1 when x1 = 0; the others are poor."""
    p = np.full(len(actions), 0.1)
    p[(actions == 0) & (x[:, 1] == 1)] = 0.6
    p[(actions == 1) & (x[:, 1] == 0)] = 0.6
    return (rng.random(len(actions)) < p).astype(float)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("beta_thompson", {"segment_column": 1, "n_segments": 2}),
        ("lin_ts", {"alpha": 0.5}),
        ("lin_ucb", {"alpha": 0.5}),
        ("lin_ts", {"alpha": 0.5, "action_features": [[1, 0], [0, 1], [1, 1], [0, 0]], "action_identity": True}),
    ],
    ids=["beta_thompson-segments", "lin_ts", "lin_ucb", "lin_ts-shared"],
)
def test_learns_the_best_action_per_customer(name: str, params: dict[str, Any]) -> None:
    rng = np.random.default_rng(2)
    policy = build(name, params)
    for _ in range(30):  # 30 batches of 200 decisions
        x = features(200, rng)
        decision = policy.decide(x, rng)
        policy.update(x, decision.actions, contextual_reward(x, decision.actions, rng), decision.propensities)
    x = features(5000, rng)
    best = np.where(x[:, 1] == 1, 0, 1)
    assert np.mean(policy.decide(x, rng).actions == best) > 0.85


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=IDS)
def test_state_round_trip_continues_identically(name: str, params: dict[str, Any]) -> None:
    rng = np.random.default_rng(3)
    policy = build(name, params)
    train(policy, rng)
    state = json.loads(json.dumps(policy.state()))  # must be plain JSON
    restored = type(policy).from_state(state)
    x = features(3000, rng)
    for _ in range(2):
        a, b = policy.decide(x, np.random.default_rng(7)), restored.decide(x, np.random.default_rng(7))
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.propensities, b.propensities)
        np.testing.assert_array_equal(a.expected_values, b.expected_values)
        rewards = (rng.random(len(x)) < 0.3).astype(float)
        policy.update(x, a.actions, rewards, a.propensities)
        restored.update(x, b.actions, rewards, b.propensities)
    assert policy.state() == restored.state()


def test_untrained_state_round_trip() -> None:
    policy = LinTS(3)
    restored = LinTS.from_state(json.loads(json.dumps(policy.state())))
    assert restored.model is None and restored.state() == policy.state()


def test_from_state_refuses_another_policys_state() -> None:
    with pytest.raises(ValueError, match="belongs to policy"):
        LinUCB.from_state(LinTS(3).state())


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (BetaThompson, {"bogus": 1}),
        (BetaThompson, {"prior_alpha": 0}),
        (BetaThompson, {"propensity_samples": 0}),
        (BetaThompson, {"n_segments": 3}),  # without segment_column
        (BetaThompson, {"segment_column": 0}),  # the ones column
        (LinTS, {"alpha": -1}),
        (LinTS, {"ridge": float("nan")}),
        (LinTS, {"action_features": [[1, 2], [3]]}),
        (LinTS, {"action_features": []}),
        (LinTS, {"action_identity": True}),
        (LinTS, {"epsilon": 0.1}),  # a LinUCB parameter
        (LinUCB, {"epsilon": 1.5}),
        (LinUCB, {"propensity_samples": 10}),  # a LinTS parameter
    ],
)
def test_params_validation(cls: Any, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        cls.Params.model_validate(params)


def test_action_features_must_match_the_action_space() -> None:
    with pytest.raises(ValueError, match="3 rows but the action space has 4"):
        LinTS(4, LinTS.Params(action_features=[[1.0], [2.0], [3.0]]))


def test_bad_feedback_is_refused() -> None:
    rng = np.random.default_rng(4)
    policy = LinTS(K)
    train(policy, rng)
    x = features(10, rng)
    with pytest.raises(ValueError, match="columns but this policy was trained on 3"):
        policy.decide(np.ones((5, 4)), rng)
    with pytest.raises(ValueError, match="actions must lie in"):
        policy.update(x, np.full(10, K), np.zeros(10), np.ones(10))
    with pytest.raises(ValueError, match="one entry per customer"):
        policy.update(x, np.zeros(9, dtype=int), np.zeros(10), np.ones(10))
    with pytest.raises(ValueError, match="NaN"):
        policy.update(x, np.zeros(10, dtype=int), np.full(10, np.nan), np.ones(10))
    with pytest.raises(ValueError, match=r"rewards in \[0, 1\]"):
        BetaThompson(K).update(x, np.zeros(10, dtype=int), np.full(10, 2.0), np.ones(10))
    segmented = BetaThompson(K, BetaThompson.Params(segment_column=2, n_segments=2))
    with pytest.raises(ValueError, match="segments must be integers 0..1"):
        segmented.decide(x, rng)


def test_shared_model_scores_a_new_creative_from_similar_ones() -> None:
    """Action 2 is never tried; it shares action 0's features, so it inherits its estimate."""
    rng = np.random.default_rng(5)
    policy = LinUCB(3, LinUCB.Params(action_features=[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], alpha=0.1))
    n = 3000
    x = features(n, rng)
    actions = rng.integers(0, 2, size=n)
    rewards = (rng.random(n) < np.where(actions == 0, 0.7, 0.1)).astype(float)
    policy.update(x, actions, rewards, np.full(n, 0.5))
    assert policy.model is not None
    means = policy.model.mean_weights()
    scores = features(100, rng) @ means
    np.testing.assert_allclose(scores[:, 2], scores[:, 0])
    assert np.mean(scores[:, 2]) == pytest.approx(0.7, abs=0.05)
    assert np.mean(scores[:, 1]) == pytest.approx(0.1, abs=0.05)


def test_shared_model_with_one_hot_action_features_equals_disjoint_models() -> None:
    rng = np.random.default_rng(6)
    n, d = 400, 3
    x = features(n, rng, d)
    actions = rng.integers(0, K, size=n)
    rewards = rng.normal(size=n)
    disjoint, shared = _DisjointRidge(K, d, 1.0), _SharedRidge(np.eye(K), d, 1.0)
    disjoint.update(x, actions, rewards)
    shared.update(x, actions, rewards)
    np.testing.assert_allclose(shared.mean_weights(), disjoint.mean_weights(), atol=1e-10)
    np.testing.assert_allclose(shared.score_covariances(), disjoint.score_covariances(), atol=1e-10)


@pytest.mark.parametrize("model", ["disjoint", "shared"])
def test_posterior_samples_have_the_ridge_covariance(model: str) -> None:
    rng = np.random.default_rng(8)
    n, d = 300, 3
    x = features(n, rng, d)
    actions = rng.integers(0, 2, size=n)
    known = _NoisePrior(6.0, 6.0, known=1.0)
    ridge = _DisjointRidge(2, d, 1.0, known) if model == "disjoint" else _SharedRidge(np.eye(2), d, 1.0, known)
    ridge.update(x, actions, rng.normal(size=n))
    draws = ridge.sample_weights(rng, 40_000, 2.0)  # (size, d, K)
    for action in range(2):
        empirical = np.cov(draws[:, :, action].T)
        np.testing.assert_allclose(empirical, 4.0 * ridge.score_covariances()[action], atol=2e-3)
        np.testing.assert_allclose(draws[:, :, action].mean(axis=0), ridge.mean_weights()[:, action], atol=5e-3)


@pytest.mark.parametrize("model", ["disjoint", "shared"])
def test_learned_noise_variance_scales_the_posterior(model: str) -> None:
    """Normal-inverse-gamma: the weights' covariance is E[σ²]·A⁻¹ = b_n/(a_n − 1)·A⁻¹, with
    b_n = b₀ + RSS/2 and a_n = a₀ + n/2, so Bernoulli-like rewards (σ² ≈ 0.16) give a
    posterior much narrower than the unit-variance one."""
    rng = np.random.default_rng(8)
    n, d = 3000, 3
    x = features(n, rng, d)
    actions = rng.integers(0, 2, size=n)
    rewards = (rng.random(n) < 0.2).astype(float)
    ridge = _DisjointRidge(2, d, 1.0) if model == "disjoint" else _SharedRidge(np.eye(2), d, 1.0)
    ridge.update(x, actions, rewards)
    draws = ridge.sample_weights(rng, 40_000, 1.0)
    for action in range(2):
        rows = actions == action if model == "disjoint" else np.ones(n, dtype=bool)
        design = np.column_stack([x[rows]])
        if model == "disjoint":
            a_matrix = np.eye(d) + design.T @ design
            fitted = np.linalg.solve(a_matrix, design.T @ rewards[rows])
            rss = rewards[rows] @ rewards[rows] - fitted @ a_matrix @ fitted
            count = rows.sum()
        else:
            mean, _, explained = ridge._factors()
            rss, count = rewards @ rewards - explained, n
        variance = (6.0 + rss / 2) / (6.0 + count / 2 - 1)
        assert 0.12 < variance < 0.2  # about p(1 − p) = 0.16
        empirical = np.cov(draws[:, :, action].T)
        np.testing.assert_allclose(empirical, variance * ridge.score_covariances()[action], rtol=0.05, atol=2e-5)


def test_lin_ucb_epsilon_propensities() -> None:
    rng = np.random.default_rng(9)
    policy = LinUCB(K, LinUCB.Params(epsilon=0.2))
    train(policy, rng)
    decision = policy.decide(features(2000, rng), rng)
    assert set(np.round(np.unique(decision.propensities), 12)) <= {round(0.8 + 0.2 / K, 12), round(0.2 / K, 12)}


def test_state_saved_before_noise_estimates_still_loads() -> None:
    """A LinTS state without Σr² and n (saved by an earlier version) loads; the noise
    estimate starts from the prior and learns from the next rewards."""
    rng = np.random.default_rng(11)
    policy = LinTS(K)
    train(policy, rng)
    state = json.loads(json.dumps(policy.state()))
    del state["model"]["yy"], state["model"]["n"]
    restored = LinTS.from_state(state)
    assert np.all(restored.model.n == 0)
    np.testing.assert_allclose(restored.model.mean_weights(), policy.model.mean_weights())
    train(restored, rng)
    assert np.all(restored.model.n > 0)
    decision = restored.decide(features(100, rng), rng)
    assert np.all((decision.propensities > 0) & (decision.propensities <= 1))


def test_known_noise_variance_is_a_parameter() -> None:
    policy = LinTS(K, LinTS.Params(noise_variance=1.0))
    train(policy, np.random.default_rng(12))
    restored = LinTS.from_state(json.loads(json.dumps(policy.state())))
    assert restored.params.noise_variance == 1.0
    with pytest.raises(ValidationError):
        LinTS.Params(noise_variance=0.0)
