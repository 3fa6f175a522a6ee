"""The scoring speed path of LinTS and LinUCB computes what the plain computation does.

``decide`` scores in an action-major layout, reduces over the actions with a running maximum,
writes LinUCB's width as a GEMM over pairwise products and runs chunks on threads. These
tests pin each piece against its plain NumPy definition, and whole decisions against a
straightforward customer-major reference (the implementation before the speed path).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from legato.decide.policies import LinTS, LinUCB, scoring
from legato.decide.policies.scoring import (
    _first_argmax,
    _index_dtype,
    _pair_products,
    _pair_weights,
    _penalty_rows,
    _run_chunks,
    _ThreadBuffers,
)
from legato.decide.policy import BatchDecision, uniform_allowed


@pytest.mark.parametrize("k", [1, 2, 24, 300])
def test_first_argmax_is_numpys_argmax(k: int) -> None:
    rng = np.random.default_rng(k)
    # Coarse values so that exact ties are common: argmax keeps the first maximum.
    scores = np.round(rng.standard_normal((k, 5_000)), 1).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[0, :10] = -np.inf
    scores[:, :5] = -np.inf  # all −inf: argmax says 0
    winners = np.empty(scores.shape[1], dtype=_index_dtype(k))
    _first_argmax(scores, winners, _ThreadBuffers())
    np.testing.assert_array_equal(winners, scores.argmax(axis=0))


def test_first_argmax_with_a_penalty_per_customer() -> None:
    rng = np.random.default_rng(1)
    k, members, customers = 7, 5, 300
    scores = np.round(rng.standard_normal((k, members * customers)), 1).astype(np.float32)
    allowed = rng.random((customers, k)) < 0.5
    allowed[np.arange(customers), rng.integers(0, k, customers)] = True
    winners = np.empty(members * customers, dtype=_index_dtype(k))
    _first_argmax(scores, winners, _ThreadBuffers(), _penalty_rows(allowed))
    # Reference: customer-major, −inf where not allowed, argmax over the actions.
    by_customer = scores.reshape(k, members, customers).transpose(2, 1, 0)
    masked = np.where(allowed[:, None, :], by_customer, -np.inf)
    np.testing.assert_array_equal(winners.reshape(members, customers).T, masked.argmax(axis=2))
    assert allowed[np.arange(customers)[:, None], winners.reshape(members, customers).T].all()


def test_penalty_rows_are_zero_or_minus_infinity() -> None:
    allowed = np.random.default_rng(2).random((50, 9)) < 0.5
    penalty = _penalty_rows(allowed)
    assert penalty.dtype == np.float32 and penalty.flags.c_contiguous
    np.testing.assert_array_equal(penalty, np.where(allowed.T, np.float32(0.0), np.float32(-np.inf)))


@pytest.mark.parametrize("d", [1, 2, 7, 20])
def test_pairwise_form_is_the_quadratic_form(d: int) -> None:
    rng = np.random.default_rng(d)
    k, m = 5, 400
    sigma = rng.standard_normal((k, d, d))  # deliberately asymmetric: Σ_ij + Σ_ji keeps it exact
    x = rng.standard_normal((d, m)).astype(np.float32)
    pairs = _pair_products(x, np.empty((d * (d + 1) // 2, m), dtype=np.float32))
    got = _pair_weights(sigma) @ pairs
    want = np.einsum("im,kij,jm->km", x.astype(np.float64), sigma, x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * d)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_run_chunks_keeps_the_callers_order(threads: int) -> None:
    caller = threading.get_ident()
    prepared: list[int] = []
    finished: list[tuple[int, int, int]] = []

    def prepare(start: int, stop: int) -> int:
        assert threading.get_ident() == caller
        prepared.append(start)
        return start * 10

    def work(start: int, stop: int, token: int) -> int:
        return token + stop - start

    def finish(start: int, stop: int, result: int) -> None:
        assert threading.get_ident() == caller
        finished.append((start, stop, result))

    _run_chunks(1_050, 100, prepare, work, finish, threads=threads)
    starts = list(range(0, 1_050, 100))
    assert prepared == starts
    assert finished == [(start, min(1_050, start + 100), start * 10 + min(100, 1_050 - start)) for start in starts]


def test_run_chunks_reraises_a_workers_error() -> None:
    def work(start: int, stop: int, _: Any) -> None:
        if start == 300:
            raise RuntimeError("chunk 300")

    with pytest.raises(RuntimeError, match="chunk 300"):
        _run_chunks(1_000, 100, lambda start, stop: None, work, lambda start, stop, _: None, threads=2)


# ----------------------------------------------------------------- whole decisions vs a reference


def _reference_lin_ts(policy: LinTS, x: Any, rng: np.random.Generator, allowed: Any) -> BatchDecision:
    """LinTS's decide before the speed path: customer-major scores, NumPy argmax per member."""
    model = policy.model
    assert model is not None
    n, d = x.shape
    k, samples, chunk = policy.n_actions, policy.params.propensity_samples, policy.params.chunk_size
    mean = model.mean_weights().astype(np.float32)
    actions, propensities, expected = np.empty(n, dtype=np.int64), np.empty(n), np.empty(n)
    for start in range(0, n, chunk):
        block = x[start : start + chunk].astype(np.float32)
        m = block.shape[0]
        weights = model.sample_weights(rng, samples, policy.params.alpha)
        weights = weights.transpose(1, 0, 2).reshape(d, samples * k).astype(np.float32)
        scores = (block @ weights).reshape(m, samples, k)
        if allowed is not None:
            scores = np.where(allowed[start : start + m, None, :], scores, -np.inf)
        winners = scores.argmax(axis=2)
        member = rng.integers(0, samples, size=m)
        chosen = winners[np.arange(m), member]
        actions[start : start + m] = chosen
        propensities[start : start + m] = np.count_nonzero(winners == chosen[:, None], axis=1) / samples
        expected[start : start + m] = (block @ mean)[np.arange(m), chosen]
    return BatchDecision(actions=actions, propensities=propensities, expected_values=expected)


def _reference_lin_ucb(policy: LinUCB, x: Any, rng: np.random.Generator, allowed: Any) -> BatchDecision:
    """LinUCB's decide before the speed path: the full d² quadratic form, customer-major."""
    model = policy.model
    assert model is not None
    n, d = x.shape
    k, chunk, epsilon = policy.n_actions, policy.params.chunk_size, policy.params.epsilon
    mean = model.mean_weights().astype(np.float32)
    covariances = model.score_covariances().reshape(k, d * d).T.astype(np.float32)
    actions, propensities, expected = np.empty(n, dtype=np.int64), np.empty(n), np.empty(n)
    for start in range(0, n, chunk):
        block = x[start : start + chunk].astype(np.float32)
        m = block.shape[0]
        means = block @ mean
        spread = (block[:, :, None] * block[:, None, :]).reshape(m, d * d) @ covariances
        scores = means + policy.params.alpha * np.sqrt(np.maximum(spread, 0.0))
        if allowed is not None:
            scores = np.where(allowed[start : start + m], scores, -np.inf).astype(np.float32)
        best = scores.max(axis=1, keepdims=True)
        tied = scores >= best - 1e-6 * np.maximum(np.abs(best), 1.0)
        n_tied = tied.sum(axis=1)
        greedy = scores.argmax(axis=1)
        if np.any(n_tied > 1):
            rows = np.flatnonzero(n_tied > 1)
            greedy[rows] = np.where(tied[rows], rng.random((rows.size, k)), -1.0).argmax(axis=1)
        chosen, n_allowed = greedy, k
        if epsilon > 0:
            explore = rng.random(m) < epsilon
            if allowed is None:
                uniform = rng.integers(0, k, size=m)
            else:
                uniform, _ = uniform_allowed(allowed[start : start + m], rng)
                n_allowed = allowed[start : start + m].sum(axis=1)
            chosen = np.where(explore, uniform, greedy)
        actions[start : start + m] = chosen
        propensities[start : start + m] = (1.0 - epsilon) * tied[np.arange(m), chosen] / n_tied + epsilon / n_allowed
        expected[start : start + m] = means[np.arange(m), chosen]
    return BatchDecision(actions=actions, propensities=propensities, expected_values=expected)


def _trained(cls: Any, k: int, d: int, params: dict[str, Any], rng: np.random.Generator, train: bool) -> Any:
    """A policy fit to 2,000 logged decisions with a real per-action signal (or to none)."""
    policy = cls(k, cls.Params(**params))
    rows = 2_000 if train else 0
    history = rng.standard_normal((rows, d))
    history[:, 0] = 1.0
    logged = rng.integers(0, k, rows)
    weights = rng.normal(0, 0.1, size=(d, k))
    rewards = (rng.random(rows) < np.clip(0.2 + (history @ weights)[np.arange(rows), logged], 0, 1)).astype(float)
    policy.update(history, logged, rewards, np.full(rows, 1.0 / k))
    return policy


CASES = [
    (LinTS, {}, True),
    (LinTS, {"propensity_samples": 5, "alpha": 0.5}, True),
    (LinTS, {"action_features": [[1, 0], [0, 1], [1, 1], [0.5, 0], [0, 0.5]], "action_identity": True}, True),
    (LinTS, {}, False),
    (LinUCB, {}, True),
    (LinUCB, {"epsilon": 0.2}, True),
    (LinUCB, {"action_features": [[1, 0], [0, 1], [1, 1], [0.5, 0], [0, 0.5]]}, True),
    (LinUCB, {}, False),  # untrained: every action ties, broken at random
    (LinUCB, {"epsilon": 0.2}, False),
]


@pytest.mark.parametrize(("cls", "params", "train"), CASES)
@pytest.mark.parametrize("masked", [False, True], ids=["all", "masked"])
def test_decisions_match_the_plain_computation(
    cls: Any, params: dict[str, Any], train: bool, masked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same random stream, same decisions: threads and layout change nothing. Only a float32
    near-tie could go the other way (the order of a product's additions may differ), which
    these data do not produce; the bound below leaves room for one on another BLAS."""
    rng = np.random.default_rng(7)
    k, d, n = 5, 6, 9_000
    policy = _trained(cls, k, d, {**params, "chunk_size": 1_000}, rng, train)
    x = rng.standard_normal((n, d))
    x[:, 0] = 1.0
    allowed = None
    if masked:
        allowed = rng.random((n, k)) < 0.6
        allowed[np.arange(n), rng.integers(0, k, n)] = True
    reference = (_reference_lin_ts if cls is LinTS else _reference_lin_ucb)(policy, x, np.random.default_rng(3), allowed)
    monkeypatch.setattr(scoring, "_DECIDE_THREADS", 2)
    threaded = policy.decide(x, np.random.default_rng(3), allowed)
    monkeypatch.setattr(scoring, "_DECIDE_THREADS", 1)
    sequential = policy.decide(x, np.random.default_rng(3), allowed)
    # Threads compute each chunk with the same arithmetic: bit for bit the same decision.
    np.testing.assert_array_equal(threaded.actions, sequential.actions)
    np.testing.assert_array_equal(threaded.propensities, sequential.propensities)
    np.testing.assert_array_equal(threaded.expected_values, sequential.expected_values)
    assert np.mean(threaded.actions != reference.actions) <= 1e-3
    assert np.mean(threaded.propensities != reference.propensities) <= 1e-3
    np.testing.assert_allclose(threaded.expected_values, reference.expected_values, rtol=1e-4, atol=1e-5)
    if allowed is not None:
        assert allowed[np.arange(n), threaded.actions].all()


def test_small_blocks_give_the_same_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache blocking is invisible: tiny blocks (many per chunk) decide alike."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3_000, 4))
    allowed = rng.random((3_000, 6)) < 0.7
    allowed[:, 2] = True
    for cls in (LinTS, LinUCB):
        policy = _trained(cls, 6, 4, {"chunk_size": 1_000}, rng, True)
        default = policy.decide(x, np.random.default_rng(0), allowed)
        monkeypatch.setattr(scoring, "_SCORE_BLOCK_FLOATS", 997)  # a block of a few customers
        blocked = policy.decide(x, np.random.default_rng(0), allowed)
        monkeypatch.undo()
        np.testing.assert_array_equal(default.actions, blocked.actions)
        np.testing.assert_array_equal(default.propensities, blocked.propensities)
        np.testing.assert_allclose(default.expected_values, blocked.expected_values, rtol=1e-5, atol=1e-6)
