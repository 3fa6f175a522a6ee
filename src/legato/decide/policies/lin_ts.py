"""Linear Thompson sampling (Agrawal & Goyal, 2013) on the ridge posterior."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field

from legato.decide.policies.common import IntArray
from legato.decide.policies.linear import _LinearParams, _LinearPolicy
from legato.decide.policies.scoring import (
    _block_columns,
    _first_argmax,
    _index_dtype,
    _penalty_rows,
    _run_chunks,
    _single_threaded_blas,
    _ThreadBuffers,
)
from legato.decide.policy import BatchDecision, BoolArray, check_allowed


class LinTS(_LinearPolicy):
    """Linear Thompson sampling: a Gaussian posterior on linear reward weights.

    Implements Agrawal & Goyal (2013), "Thompson Sampling for Contextual Bandits with Linear
    Payoffs" (ICML): the reward of action k for customer x is modelled as linear, the
    posterior of the weights is N(μ, v² σ² A⁻¹) of a ridge regression (v = ``alpha``,
    λ = ``ridge``), and the action with the highest sampled score is chosen.

    Noise variance. Agrawal & Goyal's v absorbs the reward noise's scale R; with v = 1 and
    σ² = 1 the posterior is exact only for unit-variance Gaussian rewards. Legato's rewards
    are mostly Bernoulli (a visit, a purchase) with variance p(1−p) ≈ 0.1, so a fixed σ² = 1
    makes the posterior ~10× too wide in variance and Thompson sampling keeps exploring long
    after the data have settled the question (Chapelle & Li, 2011, "An Empirical Evaluation
    of Thompson Sampling", NeurIPS, §4 show that a posterior wider than the true one costs
    regret). By default σ² is therefore *learned* with its conjugate inverse-gamma prior
    (Normal-inverse-gamma Bayesian linear regression, as "LinFullPost" in Riquelme, Tucker &
    Snoek, 2018, "Deep Bayesian Bandits Showdown", ICLR, with their prior a₀ = b₀ = 6,
    ``noise_prior_shape``/``noise_prior_scale``): each draw first samples σ² per action
    from InvGamma(a₀ + n/2, b₀ + RSS/2), then the weights from N(μ, v² σ² A⁻¹). v = 1 is
    then plain Thompson sampling from the posterior. ``noise_variance`` fixes σ² instead
    (1.0 gives the unit-variance posterior of earlier versions). :class:`LinUCB` keeps Li et
    al.'s width α·sqrt(xᵀA⁻¹x), derived there for rewards in [0, 1].

    Model. Without ``action_features`` each action has its own (disjoint) regression on x.
    With them (one row per action, K × m) one regression is shared by all actions on the
    outer product x ⊗ φ_k (d·m weights), so a new creative is scored from what creatives with
    similar features learned; ``action_identity`` appends a one-hot action id to φ_k so that
    each action can also deviate from what its features predict. The state then holds a
    (d·m)² matrix, so keep d·m in the hundreds (20 customer × 10 action features: 40,000 numbers).

    Batching. Per chunk of ``chunk_size`` customers, ``propensity_samples`` weight matrices
    are drawn and the chunk is scored with float32 products; each customer follows one
    uniformly picked draw (the standard batched approximation of per-customer sampling; see
    the docstring of :mod:`legato.decide.policies`). The propensity is the share of draws that agree, so it is a
    multiple of 1/``propensity_samples`` and never 0 for the chosen action. With
    ``allowed``, each draw's argmax is taken over the customer's allowed actions, and the
    propensity is the share of draws whose masked argmax is the chosen action. The
    expected value is the posterior-mean score of the chosen action.

    Speed path (see :mod:`legato.decide.policies.scoring`). The draws' weights are stacked
    as K·S rows (action-major, then member) with the posterior mean's K rows under them,
    and each cache-sized block of customers is scored by one GEMM of those rows with the
    block's transposed features: the scores of every member and the mean at once. Each
    member's argmax is a running maximum down the K action rows (exactly ``argmax``), the
    mask a 0/−inf penalty added row by row. Chunks run on parallel threads while the
    draws (weights, then each customer's member) are taken on the calling thread in chunk
    order, so the decisions are those of the plain sequential loop.
    """

    name: ClassVar[str] = "lin_ts"

    class Params(_LinearParams):
        propensity_samples: int = Field(
            default=16, ge=1, le=10_000, description="posterior draws per chunk of customers"
        )

    params: Params

    def decide(
        self, features: npt.NDArray[np.float64], rng: np.random.Generator, allowed: BoolArray | None = None
    ) -> BatchDecision:
        x, model = self._batch(features)
        n, d = x.shape
        k = self.n_actions
        mask = check_allowed(allowed, n, k)
        samples, chunk = self.params.propensity_samples, self.params.chunk_size
        draws = k * samples
        # The posterior mean's K rows ride along under the draws' K·S rows: one product per block.
        mean_rows = model.mean_weights().T.astype(np.float32)
        width = _block_columns(draws + k, chunk)
        index = _index_dtype(k)
        buffers = _ThreadBuffers()
        actions = np.empty(n, dtype=np.int64)
        propensities = np.empty(n)
        expected = np.empty(n)

        def prepare(start: int, stop: int) -> tuple[npt.NDArray[np.float32], IntArray]:
            # The chunk's ensemble, (samples, d, K) → rows (action, member): K·S rows, then
            # the K mean rows; then each customer's member. Same draws, same order as ever.
            weights = model.sample_weights(rng, samples, self.params.alpha)
            stacked = np.empty((draws + k, d), dtype=np.float32)
            stacked[:draws] = weights.transpose(2, 0, 1).reshape(draws, d)
            stacked[draws:] = mean_rows
            return stacked, rng.integers(0, samples, size=stop - start)

        def work(start: int, stop: int, drawn: tuple[npt.NDArray[np.float32], IntArray]) -> None:
            stacked, member = drawn
            columns = x[start:stop].T.astype(np.float32, order="C")  # (d, m)
            for left in range(0, stop - start, width):
                m = min(width, stop - start - left)
                rows = slice(start + left, start + left + m)
                product = buffers.get("product", (draws + k) * m, np.float32).reshape(draws + k, m)
                scores = np.matmul(stacked, columns[:, left : left + m], out=product)
                # (K, S·m): row k holds action k's score under every member for every customer.
                by_action = scores[:draws].reshape(k, samples * m)
                winners = buffers.get("winners", samples * m, index)
                # With a mask, each member's argmax among the customer's allowed actions.
                penalty = None if mask is None else _penalty_rows(mask[rows])
                _first_argmax(by_action, winners, buffers, penalty)
                won = winners.reshape(samples, m)  # member × customer
                customers = np.arange(m)
                chosen = won[member[left : left + m], customers].astype(np.int64)
                actions[rows] = chosen
                propensities[rows] = np.count_nonzero(won == chosen, axis=0) / samples
                expected[rows] = scores[draws + chosen, customers]

        with _single_threaded_blas():
            _run_chunks(n, chunk, prepare, work, lambda start, stop, _: None)
        return BatchDecision(actions=actions, propensities=propensities, expected_values=expected)
