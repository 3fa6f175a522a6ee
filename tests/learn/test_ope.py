"""Off-policy estimators on a synthetic log whose true policy value is known."""

from __future__ import annotations

import numpy as np
import pytest

from legato.learn.ope import IPS, SNIPS, DoublyRobust, Estimate

K = 3
# Reward probability per (context, action); two contexts with probabilities 0.6 / 0.4.
P_REWARD = np.array([[0.1, 0.5, 0.2], [0.4, 0.1, 0.3]])
P_CONTEXT = np.array([0.6, 0.4])
LOGGING = np.array([[0.6, 0.2, 0.2], [0.2, 0.5, 0.3]])  # non-uniform, all actions possible
TARGET = np.array([[0.1, 0.8, 0.1], [0.7, 0.1, 0.2]])
TRUE_VALUE = float((P_CONTEXT[:, None] * TARGET * P_REWARD).sum())


def logged_data(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    context = (rng.random(n) < P_CONTEXT[1]).astype(int)
    cumulative = LOGGING.cumsum(axis=1)[context]
    action = np.minimum((rng.random(n)[:, None] > cumulative).sum(axis=1), K - 1)
    reward = (rng.random(n) < P_REWARD[context, action]).astype(float)
    return {
        "context": context,
        "action": action,
        "reward": reward,
        "logged": LOGGING[context, action],
        "target": TARGET[context, action],
        "distribution": TARGET[context],
    }


def dr(data: dict[str, np.ndarray], q: np.ndarray, **kwargs: int) -> Estimate:
    estimate = DoublyRobust(**kwargs).estimate(
        data["reward"],
        data["logged"],
        data["target"],
        actions=data["action"],
        reward_predictions=q,
        policy_distribution=data["distribution"],
    )
    return estimate


def test_each_estimator_covers_the_true_value() -> None:
    data = logged_data(20_000, np.random.default_rng(0))
    rough_model = np.full((20_000, K), 0.3)  # wrong on purpose: DR must still be right
    estimates = [
        IPS(n_bootstrap=500).estimate(data["reward"], data["logged"], data["target"]),
        SNIPS(n_bootstrap=500).estimate(data["reward"], data["logged"], data["target"]),
        dr(data, rough_model, n_bootstrap=500),
    ]
    for estimate in estimates:
        assert estimate.ci_low <= TRUE_VALUE <= estimate.ci_high, estimate
        assert estimate.ci_low <= estimate.value <= estimate.ci_high
        assert estimate.n == 20_000 and estimate.std_error > 0


def test_estimators_are_unbiased_over_repeated_logs() -> None:
    rng = np.random.default_rng(1)
    runs: dict[str, list[float]] = {"ips": [], "snips": [], "dr": []}
    for _ in range(300):
        data = logged_data(500, rng)
        runs["ips"].append(IPS(n_bootstrap=1).estimate(data["reward"], data["logged"], data["target"]).value)
        runs["snips"].append(SNIPS(n_bootstrap=1).estimate(data["reward"], data["logged"], data["target"]).value)
        runs["dr"].append(dr(data, np.full((500, K), 0.3), n_bootstrap=1).value)
    for name, values in runs.items():
        array = np.asarray(values)
        # Within four standard errors of the mean (SNIPS's O(1/n) bias is far below that).
        assert abs(array.mean() - TRUE_VALUE) < 4 * array.std(ddof=1) / np.sqrt(array.size), name


def test_dr_with_a_perfect_reward_model_varies_less_than_ips() -> None:
    rng = np.random.default_rng(2)
    ips_values, dr_values = [], []
    for _ in range(200):
        data = logged_data(500, rng)
        perfect = P_REWARD[data["context"]]
        ips_values.append(IPS(n_bootstrap=1).estimate(data["reward"], data["logged"], data["target"]).value)
        dr_values.append(dr(data, perfect, n_bootstrap=1).value)
    assert np.var(dr_values) < 0.8 * np.var(ips_values)  # about 0.57 here: reward noise remains
    data = logged_data(5000, rng)
    ips_error = IPS(n_bootstrap=300).estimate(data["reward"], data["logged"], data["target"]).std_error
    assert dr(data, P_REWARD[data["context"]], n_bootstrap=300).std_error < ips_error


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    data = logged_data(2000, np.random.default_rng(3))
    first = IPS(n_bootstrap=200, seed=5).estimate(data["reward"], data["logged"], data["target"])
    second = IPS(n_bootstrap=200, seed=5).estimate(data["reward"], data["logged"], data["target"])
    assert first == second


def test_snips_when_the_policy_never_agrees_with_the_log() -> None:
    estimate = SNIPS(n_bootstrap=50).estimate(np.ones(10), np.full(10, 0.5), np.zeros(10))
    assert np.isnan(estimate.value)


@pytest.mark.parametrize(
    ("rewards", "logged", "target", "message"),
    [
        (np.ones(3), np.array([0.5, 0.0, 0.5]), np.ones(3), "logged_propensities must lie in"),
        (np.ones(3), np.full(2, 0.5), np.ones(3), "one entry per reward"),
        (np.ones(3), np.full(3, 0.5), np.full(3, 1.5), "target_probabilities must lie in"),
        (np.array([1.0, np.nan, 0.0]), np.full(3, 0.5), np.ones(3), "NaN"),
        (np.zeros(0), np.zeros(0), np.zeros(0), "non-empty"),
    ],
)
def test_bad_inputs_are_refused(rewards: np.ndarray, logged: np.ndarray, target: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IPS().estimate(rewards, logged, target)


def test_dr_checks_its_policy_distribution_against_the_target_probabilities() -> None:
    data = logged_data(100, np.random.default_rng(4))
    with pytest.raises(ValueError, match="disagree"):
        DoublyRobust().estimate(
            data["reward"],
            data["logged"],
            data["target"] * 0.5,
            actions=data["action"],
            reward_predictions=np.zeros((100, K)),
            policy_distribution=data["distribution"],
        )


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="n_bootstrap"):
        IPS(n_bootstrap=0)
    with pytest.raises(ValueError, match="confidence"):
        SNIPS(confidence=1.0)
