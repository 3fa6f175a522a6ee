"""A changed action space keeps what a policy learned (issue 9, defect 6).

Each policy family, through :func:`legato.decide.registry.continue_policy` (the rule the
cycle asks): the actions that remain keep their posterior, a new one starts at the prior
(or, for a shared linear model, is scored from its features at once), a removed one is
dropped without disturbing the rest. On the code before, any change of the action space
discarded the learned state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from legato.decide.policies import BetaThompson, LinTS, LinUCB
from legato.decide.policies.ridge import _DisjointRidge, _SharedRidge
from legato.decide.policy import FixedAction
from legato.decide.registry import Continuation, build_policy, continue_policy

FEATURES = ["purchase_count", "lifetime_spend / 100"]
OLD_KEYS = ["nothing", "hello/no_offer/09:00-17:00", "promo/no_offer/09:00-17:00"]


def customers(n: int, rng: np.random.Generator) -> np.ndarray:
    """A constant column, a 0/1 segment column and one continuous feature."""
    return np.column_stack([np.ones(n), rng.integers(0, 2, n), rng.normal(size=n)])


def trained(name: str, params: dict[str, Any], seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    policy = build_policy(name, params, len(OLD_KEYS))
    x = customers(600, rng)
    actions = rng.integers(0, len(OLD_KEYS), 600)
    rewards = (rng.random(600) < 0.1 + 0.2 * actions + 0.1 * x[:, 1]).astype(float)
    policy.update(x, actions, rewards, np.full(600, 1 / len(OLD_KEYS)))
    return policy


def saved(policy: Any, keys: list[str] = OLD_KEYS, features: list[str] = FEATURES) -> dict[str, Any]:
    """The state as the cycle saves it."""
    return {**policy.state(), "action_keys": keys, "features": features}


def carry(name: str, params: dict[str, Any], old: Any, keys: list[str], **saved_as: Any) -> Continuation:
    return continue_policy(name, params, FEATURES, keys, name, saved(old, **saved_as))


def test_the_same_action_space_continues_the_saved_state_unchanged() -> None:
    old = trained("beta_thompson", {})
    result = carry("beta_thompson", {}, old, OLD_KEYS)
    assert not result.changed and result.reset_reason is None
    assert np.array_equal(result.policy.alpha, old.alpha)  # type: ignore[attr-defined]


def test_beta_thompson_keeps_the_counts_and_starts_a_new_arm_at_its_prior() -> None:
    params = {"prior_alpha": 2.0, "prior_beta": 3.0, "segment_column": 1, "n_segments": 2}
    old = trained("beta_thompson", params)
    # "promo" is retired, "bye" is new, and the order changes.
    keys = ["nothing", "bye/no_offer/09:00-17:00", "hello/no_offer/09:00-17:00"]
    result = carry("beta_thompson", params, old, keys)
    policy = result.policy
    assert isinstance(policy, BetaThompson) and result.reset_reason is None and result.changed
    assert (result.added, result.removed) == (["bye/no_offer/09:00-17:00"], ["promo/no_offer/09:00-17:00"])
    assert policy.alpha.shape == (2, 3)
    for new, old_index in ((0, 0), (2, 1)):  # every segment's counts, by key
        assert np.array_equal(policy.alpha[:, new], old.alpha[:, old_index])
        assert np.array_equal(policy.beta[:, new], old.beta[:, old_index])
    assert np.all(policy.alpha[:, 1] == 2.0) and np.all(policy.beta[:, 1] == 3.0)
    assert policy.n_updates == old.n_updates == 600
    # It decides over the new space (every action possible, valid propensities).
    decision = policy.decide(customers(2000, np.random.default_rng(1)), np.random.default_rng(2))
    assert set(np.unique(decision.actions)) <= {0, 1, 2} and np.all(decision.propensities > 0)


@pytest.mark.parametrize("policy_class", [LinTS, LinUCB])
def test_disjoint_linear_models_keep_each_remaining_actions_regression(policy_class: Any) -> None:
    old = trained(policy_class.name, {})
    keys = ["hello/no_offer/09:00-17:00", "nothing", "bye/no_offer/09:00-17:00"]
    result = carry(policy_class.name, {}, old, keys)
    model = result.policy.model  # type: ignore[attr-defined]
    assert isinstance(model, _DisjointRidge) and result.reset_reason is None
    for new, old_index in ((0, 1), (1, 0)):
        assert np.array_equal(model.A[new], old.model.A[old_index]) and np.array_equal(model.b[new], old.model.b[old_index])
        assert (model.yy[new], model.n[new]) == (old.model.yy[old_index], old.model.n[old_index])
    assert np.array_equal(model.A[2], np.eye(3)) and not model.b[2].any() and model.n[2] == 0
    # The remaining actions score exactly as before.
    assert np.allclose(model.mean_weights()[:, :2], old.model.mean_weights()[:, [1, 0]])


@pytest.mark.parametrize("policy_class", [LinTS, LinUCB])
def test_a_shared_linear_model_keeps_its_posterior_and_scores_a_new_creative_from_its_features(policy_class: Any) -> None:
    rows = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    old = trained(policy_class.name, {"action_features": rows})
    keys = [*OLD_KEYS, "bye/no_offer/09:00-17:00"]
    # The new creative is described like "promo": it should be scored like "promo" from the start.
    result = carry(policy_class.name, {"action_features": [*rows, [0.0, 1.0]]}, old, keys)
    model = result.policy.model  # type: ignore[attr-defined]
    assert isinstance(model, _SharedRidge) and result.reset_reason is None and result.added == keys[3:]
    assert np.array_equal(model.A, old.model.A) and np.array_equal(model.b, old.model.b)
    assert (model.yy, model.n) == (old.model.yy, old.model.n)
    mean = model.mean_weights()
    assert np.abs(mean[:, 2]).max() > 0.01  # it learned something about promo ...
    assert np.allclose(mean[:, 3], mean[:, 2]) and np.allclose(mean[:, :3], old.model.mean_weights())  # ... which bye inherits
    assert np.allclose(model.score_covariances()[3], model.score_covariances()[2])
    x = customers(500, np.random.default_rng(3))
    decision = result.policy.decide(x, np.random.default_rng(4))
    assert decision.actions.max() <= 3 and np.all(decision.propensities > 0)


@pytest.mark.parametrize("policy_class", [LinTS, LinUCB])
def test_with_action_identity_a_removed_action_is_marginalized_and_the_rest_keep_their_posterior(policy_class: Any) -> None:
    rows = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    params = {"action_features": rows, "action_identity": True}
    old = trained(policy_class.name, params)
    # "promo" (index 2) removed, "bye" added: identity columns change.
    keys = ["nothing", "hello/no_offer/09:00-17:00", "bye/no_offer/09:00-17:00"]
    new_rows = [[0.0, 0.0], [1.0, 0.0], [0.5, 0.5]]
    result = carry(policy_class.name, {**params, "action_features": new_rows}, old, keys)
    model, before = result.policy.model, old.model  # type: ignore[attr-defined]
    assert isinstance(model, _SharedRidge) and result.reset_reason is None
    assert model.A.shape == before.A.shape  # d × (2 features + 3 identities), as before
    # The remaining actions' score posteriors (mean and covariance) are exactly the old ones:
    # only marginalizing the removed identity weights out, not deleting their rows, does that.
    assert np.allclose(model.mean_weights()[:, :2], before.mean_weights()[:, :2], atol=1e-10)
    assert np.allclose(model.score_covariances()[:2], before.score_covariances()[:2], atol=1e-10)
    # The residual sum of squares (the noise posterior) is kept.
    assert np.isclose(model.yy - model._factors()[2], before.yy - before._factors()[2])
    # The new action: its features' share of what was learned, its own identity at the prior.
    theta = before._factors()[0].reshape(3, -1)
    assert np.allclose(model.mean_weights()[:, 2], theta[:, :2] @ np.array([0.5, 0.5]), atol=1e-10)
    # Deleting the rows of A (the naive way) would have changed them.
    keep = [i for i in range(before.A.shape[0]) if i % 5 != 4]
    naive = np.linalg.inv(before.A[np.ix_(keep, keep)])
    assert not np.allclose(naive, np.linalg.inv(before.A)[np.ix_(keep, keep)], atol=1e-6)


@pytest.mark.parametrize(
    ("name", "old_params", "new_params", "reason"),
    [
        ("beta_thompson", {}, {"prior_alpha": 5.0}, "prior_alpha"),
        ("lin_ts", {}, {"ridge": 3.0}, "ridge"),
        ("lin_ucb", {"action_features": [[0.0], [1.0], [2.0]]}, {"action_features": [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]}, "columns"),
        ("lin_ts", {}, {"action_features": [[0.0], [1.0], [2.0]]}, "one per action and one shared"),
    ],
)
def test_a_parameter_the_learned_state_depends_on_starts_afresh_with_the_reason(
    name: str, old_params: dict[str, Any], new_params: dict[str, Any], reason: str
) -> None:
    old = trained(name, old_params)
    result = carry(name, new_params, old, OLD_KEYS)
    assert result.changed and result.reset_reason is not None and reason in result.reset_reason
    assert result.policy.state()["n_updates"] == 0  # type: ignore[attr-defined]


def test_other_features_another_policy_or_a_broken_state_start_afresh() -> None:
    old = trained("beta_thompson", {})
    other_features = continue_policy("beta_thompson", {}, ["purchase_count"], OLD_KEYS, "beta_thompson", saved(old))
    assert other_features.reset_reason == "the features changed"
    other_policy = continue_policy("lin_ts", {}, FEATURES, OLD_KEYS, "beta_thompson", saved(old))
    assert other_policy.reset_reason == "the policy changed from beta_thompson to lin_ts"
    broken = {**saved(old), "alpha": [[1.0]]}
    assert "could not continue" in (continue_policy("beta_thompson", {}, FEATURES, OLD_KEYS, "beta_thompson", broken).reset_reason or "")
    twice = continue_policy("beta_thompson", {}, FEATURES, ["nothing", "nothing"], "beta_thompson", saved(old))
    assert "appears twice" in (twice.reset_reason or "")
    first = continue_policy("beta_thompson", {}, FEATURES, OLD_KEYS, None, None)
    assert first.changed and first.reset_reason is None


def test_a_fixed_rule_follows_the_playbook_over_the_new_space() -> None:
    old = build_policy("fixed", {"action": 1}, 3)
    result = continue_policy("fixed", {"action": 3}, FEATURES, [*OLD_KEYS, "bye"], "fixed", saved(old))
    assert isinstance(result.policy, FixedAction) and result.policy.params.action == 3 and result.reset_reason is None
