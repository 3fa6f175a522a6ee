"""Per-customer action masks: never a disallowed action, and propensities exact under the mask."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from legato.decide.policies import beta as beta_module
from legato.decide.registry import POLICIES

K = 6

CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("uniform_random", {}),
    ("fixed", {"action": 2}),
    ("beta_thompson", {}),
    ("beta_thompson", {"segment_column": 1, "n_segments": 2, "propensity_samples": 300}),
    ("lin_ts", {}),
    ("lin_ts", {"action_features": [[1, 0], [0, 1], [1, 1], [0.5, 0], [0, 0.5], [1, 0.5]], "action_identity": True}),
    ("lin_ucb", {}),
    ("lin_ucb", {"epsilon": 0.3}),
]
IDS = [f"{name}-{'-'.join(params) or 'default'}" for name, params in CONFIGS]


def build(name: str, params: dict[str, Any]) -> Any:
    cls = POLICIES[name]
    return cls(K, cls.Params.model_validate(params))


def features(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.ones((n, 3))
    x[:, 1] = rng.integers(0, 2, size=n)  # doubles as a segment column
    x[:, 2] = rng.normal(size=n)
    return x


def trained(name: str, params: dict[str, Any], rng: np.random.Generator) -> Any:
    policy = build(name, params)
    n = 2000
    actions = rng.integers(0, K, size=n)
    # Action 5 is clearly best, so an unmasked policy would choose it almost always.
    rewards = (rng.random(n) < 0.1 + 0.12 * actions).astype(float)
    policy.update(features(n, rng), actions, rewards, np.full(n, 1 / K))
    return policy


def random_mask(n: int, rng: np.random.Generator, share: float = 0.5) -> np.ndarray:
    mask = rng.random((n, K)) < share
    mask[np.arange(n), rng.integers(0, K, size=n)] = True  # at least one allowed action per row
    return mask


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=IDS)
def test_mask_is_respected(name: str, params: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    policy = trained(name, params, rng)
    n = 5000
    mask = random_mask(n, rng)
    decision = policy.decide(features(n, rng), rng, allowed=mask)
    assert decision.actions.shape == decision.propensities.shape == decision.expected_values.shape == (n,)
    acting = decision.actions >= 0  # -1, no action, only from a fixed rule the customer cannot receive
    assert name == "fixed" or acting.all()
    assert np.all(mask[np.arange(n)[acting], decision.actions[acting]])
    assert np.all((decision.propensities > 0) & (decision.propensities <= 1))
    # A single allowed action is chosen with certainty.
    only = mask.sum(axis=1) == 1
    assert np.all(decision.propensities[only] == 1.0)


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=IDS)
def test_all_true_mask_is_the_unmasked_decision(name: str, params: dict[str, Any]) -> None:
    policy = trained(name, params, np.random.default_rng(0))
    x = features(1000, np.random.default_rng(1))
    plain = policy.decide(x, np.random.default_rng(2))
    masked = policy.decide(x, np.random.default_rng(2), allowed=np.ones((1000, K), dtype=bool))
    np.testing.assert_array_equal(plain.actions, masked.actions)
    np.testing.assert_array_equal(plain.propensities, masked.propensities)


# Beta Thompson alone has a second code path, taken when a batch holds many distinct masks.
# A fixed rule does not randomize (see test_fixed_takes_its_fallback_or_no_action...).
MASK_PATHS = [(name, params, False) for name, params in CONFIGS if name != "fixed"] + [
    (name, params, True) for name, params in CONFIGS if name == "beta_thompson"
]


@pytest.mark.parametrize(
    ("name", "params", "many_masks"),
    MASK_PATHS,
    ids=[f"{n}-{'-'.join(p) or 'default'}{'-many-masks' if m else ''}" for n, p, m in MASK_PATHS],
)
def test_masked_propensities_match_frequencies(
    name: str, params: dict[str, Any], many_masks: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One customer repeated under one mask, one ensemble: the propensities of the distinct
    actions sum to 1 and match how often each is chosen (Monte Carlo), and none is disallowed."""
    if many_masks:
        monkeypatch.setattr(beta_module, "_MAX_MASK_GROUPS", 0)
    rng = np.random.default_rng(3)
    policy = trained(name, {**params, "chunk_size": 100_000} if name.startswith("lin_") else params, rng)
    n = 40_000
    x = np.tile(np.array([[1.0, 1.0, 0.3]]), (n, 1))
    allowed_row = np.array([True, True, False, True, False, False])  # the best action (5) is not allowed
    mask = np.tile(allowed_row, (n, 1))
    decision = policy.decide(x, rng, allowed=mask)
    assert np.all(allowed_row[decision.actions])
    distinct = {}
    for action in np.unique(decision.actions):
        values = np.unique(decision.propensities[decision.actions == action])
        assert values.size == 1, "one customer, one mask, one ensemble: one propensity per action"
        distinct[int(action)] = float(values[0])
        frequency = np.mean(decision.actions == action)
        assert frequency == pytest.approx(distinct[int(action)], abs=0.015)
    if name == "lin_ucb" and params.get("epsilon"):
        # ε-exploration among the 3 allowed actions; the greedy one gets the rest.
        assert sorted(distinct.values())[0] == pytest.approx(0.3 / 3)
    assert sum(distinct.values()) == pytest.approx(1.0)


def test_uniform_random_propensity_is_one_over_allowed_count() -> None:
    rng = np.random.default_rng(4)
    policy = build("uniform_random", {})
    mask = random_mask(200, rng)
    counts = np.zeros((200, K))
    draws = 2000
    for _ in range(draws):
        decision = policy.decide(np.ones((200, 1)), rng, allowed=mask)
        np.testing.assert_allclose(decision.propensities, 1.0 / mask.sum(axis=1))
        counts[np.arange(200), decision.actions] += 1
    expected = mask / mask.sum(axis=1, keepdims=True)
    assert np.all(counts[~mask] == 0)
    assert np.abs(counts / draws - expected).max() < 0.05


def test_lin_ucb_epsilon_propensity_is_exact_over_repeated_decisions() -> None:
    """The same customers decided again and again with fresh randomness: how often each
    customer got its action matches the propensity reported for it."""
    rng = np.random.default_rng(5)
    policy = trained("lin_ucb", {"epsilon": 0.4}, rng)
    x = features(50, rng)
    mask = random_mask(50, rng)
    counts = np.zeros((50, K))
    reported = np.zeros((50, K))
    draws = 4000
    for _ in range(draws):
        decision = policy.decide(x, rng, allowed=mask)
        counts[np.arange(50), decision.actions] += 1
        reported[np.arange(50), decision.actions] = decision.propensities
    seen = counts > 0
    assert np.all(mask[seen])
    assert np.abs(counts[seen] / draws - reported[seen]).max() < 0.04
    np.testing.assert_allclose(reported.sum(axis=1), 1.0)  # every allowed action is drawn sometimes


def test_fixed_takes_its_fallback_or_no_action_never_another_message() -> None:
    mask = np.array(
        [
            [True, True, True, True, True, True],
            [False, True, False, False, True, False],
            [True, False, False, False, False, False],
        ]
    )
    plain = build("fixed", {"action": 3}).decide(np.ones((3, 1)), np.random.default_rng(0), allowed=mask)
    assert plain.actions.tolist() == [3, -1, -1] and plain.propensities.tolist() == [1.0, 1.0, 1.0]
    with_fallback = build("fixed", {"action": 3, "fallback": 0}).decide(np.ones((3, 1)), np.random.default_rng(0), allowed=mask)
    assert with_fallback.actions.tolist() == [3, -1, 0]  # row 1 cannot have the fallback either
    with pytest.raises(ValueError, match="fallback 9 is outside the action space"):
        build("fixed", {"action": 3, "fallback": 9})


@pytest.mark.parametrize(("name", "params"), CONFIGS, ids=IDS)
def test_bad_masks_raise(name: str, params: dict[str, Any]) -> None:
    rng = np.random.default_rng(7)
    policy = trained(name, params, rng)
    x = features(4, rng)
    mask = np.ones((4, K), dtype=bool)
    mask[2] = False
    with pytest.raises(ValueError, match="no allowed action for 1 customer.*row 2"):
        policy.decide(x, rng, allowed=mask)
    with pytest.raises(ValueError, match="shape"):
        policy.decide(x, rng, allowed=np.ones((4, K + 1), dtype=bool))
    with pytest.raises(ValueError, match="shape"):
        policy.decide(x, rng, allowed=np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="booleans"):
        policy.decide(x, rng, allowed=np.full((4, K), 0.5))
    # 0/1 integers are accepted as booleans.
    ones = np.ones((4, K), dtype=np.int64)
    ones[:, 0] = 0
    assert np.all(policy.decide(x, rng, allowed=ones).actions != 0)


def test_empty_batch_with_a_mask() -> None:
    rng = np.random.default_rng(8)
    for name, params in CONFIGS:
        policy = trained(name, params, rng)
        decision = policy.decide(np.ones((0, 3)), rng, allowed=np.ones((0, K), dtype=bool))
        assert decision.actions.shape == (0,)
