"""LinUCB (Li, Chu, Langford & Schapire, 2010) on the ridge posterior."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from legato.decide.policies.common import IntArray
from legato.decide.policies.linear import _LinearParams, _LinearPolicy
from legato.decide.policies.scoring import (
    _block_columns,
    _index_dtype,
    _pair_products,
    _pair_weights,
    _penalty_rows,
    _run_chunks,
    _single_threaded_blas,
    _ThreadBuffers,
)
from legato.decide.policy import BatchDecision, BoolArray, check_allowed, uniform_allowed


class LinUCB(_LinearPolicy):
    """LinUCB: the action with the highest upper confidence bound on a linear reward.

    Implements Li, Chu, Langford & Schapire (2010), "A Contextual-Bandit Approach to
    Personalized News Article Recommendation" (WWW), disjoint model (one ridge regression
    per action) or, with ``action_features``, one model shared on x ⊗ φ_k (see
    :class:`LinTS`): score = xᵀμ_k + α·sqrt(xᵀ Σ_k x) with Σ_k the posterior covariance of
    action k's score weights.

    The argmax is deterministic: the propensity is 1 for the chosen action, unless scores
    tie (then the tie is broken uniformly at random and the propensity is 1/ties) or
    ``epsilon`` > 0, in which case a uniformly random action replaces the greedy one with
    probability ε and the propensity is (1-ε)+ε/K for the greedy action and ε/K for any
    other. With ``allowed``, the argmax, the ties and the ε-exploration all range over the
    customer's allowed actions only: ε/K becomes ε/(number of allowed actions). A
    deterministic rule gives a whole batch of identical customers the same action,
    so for large batches :class:`LinTS` explores better.

    Speed path (see :mod:`legato.decide.policies.scoring`). The mean term is one GEMM
    ``M (K × d) @ Xᵀ``. The width term xᵀΣ_k x for all K actions is one GEMM too: the
    d(d+1)/2 pairwise products x_i x_j (i ≤ j) of each customer times a matrix holding every
    Σ_k's matching entries (Σ_ii, and Σ_ij + Σ_ji off the diagonal) — the same quadratic
    form in real arithmetic with half the d² products of the full one. Scores, ties and the
    greedy action are computed per chunk on parallel threads; the tie-breaks and the
    ε-exploration draw their random numbers on the calling thread in chunk order, so the
    decisions are those of the plain sequential loop.
    """

    name: ClassVar[str] = "lin_ucb"

    class Params(_LinearParams):
        epsilon: float = Field(default=0.0, ge=0, le=1, description="probability of a uniformly random action")

    params: Params

    def decide(
        self, features: npt.NDArray[np.float64], rng: np.random.Generator, allowed: BoolArray | None = None
    ) -> BatchDecision:
        x, model = self._batch(features)
        n, d = x.shape
        mask = check_allowed(allowed, n, self.n_actions)
        k, chunk, epsilon = self.n_actions, self.params.chunk_size, self.params.epsilon
        alpha = np.float32(self.params.alpha)
        mean_rows = model.mean_weights().T.astype(np.float32)  # (K, d)
        # xᵀΣ_k x for every k as one product of the pairwise products x_i x_j (i ≤ j) with
        # the matching entries of every Σ_k: half the d² terms of the full quadratic form.
        width_rows = _pair_weights(model.score_covariances())  # (K, d(d+1)/2)
        width = _block_columns(width_rows.shape[1], chunk)
        levels = np.arange(k, dtype=_index_dtype(k))[:, None]
        buffers = _ThreadBuffers()
        actions = np.empty(n, dtype=np.int64)
        propensities = np.empty(n)
        expected = np.empty(n)

        def work(start: int, stop: int, _: None) -> tuple[npt.NDArray[np.float32], BoolArray, IntArray, IntArray]:
            """The deterministic part: scores, ties and the greedy action (one per customer)."""
            m = stop - start
            columns = x[start:stop].T.astype(np.float32, order="C")  # (d, m)
            means = mean_rows @ columns  # (K, m)
            scores = np.empty((k, m), dtype=np.float32)
            for left in range(0, m, width):
                right = min(m, left + width)
                pairs = buffers.get("pairs", width_rows.shape[1] * (right - left), np.float32)
                products = _pair_products(columns[:, left:right], pairs.reshape(-1, right - left))
                np.matmul(width_rows, products, out=scores[:, left:right])
            # score = mean + α·sqrt(max(xᵀΣx, 0)), in place (rounding can make xᵀΣx < 0 by a hair).
            np.maximum(scores, 0.0, out=scores)
            np.sqrt(scores, out=scores)
            np.multiply(scores, alpha, out=scores)
            np.add(scores, means, out=scores)
            if mask is not None:
                scores += _penalty_rows(mask[start:stop])  # disallowed actions can neither win nor tie
            best = scores.max(axis=0)
            # float32 noise must not decide a tie (an untrained model scores all actions alike).
            tied = scores >= best - 1e-6 * np.maximum(np.abs(best), 1.0)
            n_tied = np.count_nonzero(tied, axis=0)
            # The tied action with the highest index: the argmax whenever it is the only one
            # tied; rows with several are broken at random in ``finish``.
            greedy = np.multiply(tied, levels).max(axis=0).astype(np.int64)
            return means, tied, n_tied, greedy

        def finish(
            start: int, stop: int, scored: tuple[npt.NDArray[np.float32], BoolArray, IntArray, IntArray]
        ) -> None:
            """The random part, in chunk order: tie-breaks, then ε-exploration."""
            means, tied, n_tied, greedy = scored
            m = stop - start
            if np.any(n_tied > 1):
                rows = np.flatnonzero(n_tied > 1)
                noise = np.where(tied[:, rows].T, rng.random((rows.size, k)), -1.0)
                greedy[rows] = noise.argmax(axis=1)
            chosen = greedy
            n_allowed: IntArray | int = k
            if epsilon > 0:
                explore = rng.random(m) < epsilon
                if mask is None:
                    uniform = rng.integers(0, k, size=m)
                else:
                    uniform, _ = uniform_allowed(mask[start:stop], rng)
                    n_allowed = mask[start:stop].sum(axis=1)
                chosen = np.where(explore, uniform, greedy)
            customers = np.arange(m)
            in_greedy_set = tied[chosen, customers]
            actions[start:stop] = chosen
            propensities[start:stop] = (1.0 - epsilon) * in_greedy_set / n_tied + epsilon / n_allowed
            expected[start:stop] = means[chosen, customers]

        with _single_threaded_blas():
            _run_chunks(n, chunk, lambda start, stop: None, work, finish)
        return BatchDecision(actions=actions, propensities=propensities, expected_values=expected)
