"""Learning policies: Beta-Bernoulli Thompson sampling, linear Thompson sampling and LinUCB.

All three follow the one protocol of :mod:`legato.decide.policy`: parameters in a Pydantic
``Params`` model given to the constructor, ``decide`` on a whole batch of customers,
``update`` from a batch of outcomes, and ``state()``/``from_state()`` that round-trip
through JSON so that a restarted agent continues exactly where it was (same state and same
random generator give the same decisions).

Batched Thompson sampling and exact propensities
------------------------------------------------
Textbook Thompson sampling draws one posterior sample per customer: for a million customers
and 24 actions that is a million 24-action draws (for LinTS, a million multivariate
Gaussians), far too slow. The standard batched approximation draws the parameters once per
chunk of customers and scores the whole chunk with one matrix product ``X @ Θ``. We draw a
small *ensemble* of ``propensity_samples`` posterior samples per chunk, and each customer
follows one member picked uniformly at random:

- marginally, each customer's action is distributed exactly as under Thompson sampling
  (a uniformly picked draw from the posterior is itself a draw from the posterior); what the
  batching costs is that customers of one chunk are correlated through the shared ensemble;
- given the ensemble, the probability of the chosen action is the share of members whose
  argmax it is. That is the Monte Carlo estimate of "the probability that this action wins
  the argmax under the posterior" and, at the same time, the *exact* probability with which
  this decision was randomized, which is what inverse-propensity off-policy evaluation
  needs (a Monte Carlo estimate computed from separate draws could be 0 for the action that
  was actually chosen, and IPS would divide by it).

Masks (``allowed``, see :mod:`legato.decide.policy`) are applied inside each member: a
member's choice for a customer is its argmax over that customer's allowed actions, so the
propensity is still the exact share of members that chose the action, now under the mask.
LinUCB takes its argmax (and breaks ties, and explores with ε) among the allowed actions only.

Speed
-----
LinTS and LinUCB decide for a million customers × 24 actions in a fraction of a second
(``legato bench throughput``): scores are float32 GEMMs in an action-major layout, reduced
over the actions with whole-row vectorized passes, in cache-sized blocks, with chunks on
parallel threads; every random draw stays on the calling thread in chunk order. The
decisions and propensities are those of the plain sequential computation; see "the scoring
speed path" below and the two classes' docstrings.

Rewards, propensities and learning
----------------------------------
``update`` accepts the logged propensities because the protocol carries them for every
policy; these three learners do not weight by them: a Bayesian posterior (Beta or ridge
regression) stays valid when the data were collected adaptively, so they learn from their
own logs and from any other policy's logs alike.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import ConfigDict, Field, field_validator, model_validator
from threadpoolctl import threadpool_limits

from legato.decide.policy import BatchDecision, BoolArray, PolicyParams, check_allowed, uniform_allowed

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STATE_VERSION = 1


class _LearningParams(PolicyParams):
    # NaN or infinite parameters would silently poison every later decision.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ---------------------------------------------------------------------------- input checks


def _features(features: Any, n_features: int | None) -> FloatArray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a customers × features matrix, got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"features have {x.shape[1]} columns but this policy was trained on {n_features}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinite values; features.feature_matrix maps missing values to 0")
    return x


def _feedback(
    x: FloatArray, actions: Any, rewards: Any, propensities: Any, n_actions: int
) -> tuple[IntArray, FloatArray]:
    n = x.shape[0]
    a = np.asarray(actions)
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(propensities, dtype=np.float64)
    for label, array in (("actions", a), ("rewards", r), ("propensities", p)):
        if array.shape != (n,):
            raise ValueError(f"{label} must have one entry per customer ({n}), got shape {array.shape}")
    if n and not np.issubdtype(a.dtype, np.integer) and not np.all(np.equal(np.mod(a, 1), 0)):
        raise ValueError("actions must be integer indices into the action space")
    a = a.astype(np.int64)
    if n and (a.min() < 0 or a.max() >= n_actions):
        raise ValueError(f"actions must lie in 0..{n_actions - 1}, got {a.min()}..{a.max()}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards contain NaN or infinite values")
    return a, r


def _check_n_actions(n_actions: int) -> None:
    if n_actions < 1:
        raise ValueError(f"a policy needs at least one action, got n_actions={n_actions}")


def _check_state(state: dict[str, Any], name: str) -> None:
    if state.get("policy") != name:
        raise ValueError(f"this state belongs to policy {state.get('policy')!r}, not {name!r}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported {name} state version {state.get('version')!r} (expected {STATE_VERSION})")


def _ensemble_choice(winners: IntArray, rng: np.random.Generator) -> tuple[IntArray, FloatArray]:
    """Each row follows one uniformly picked ensemble member; its propensity is the share of
    members that agree (see the module docstring for why this is exact)."""
    m, size = winners.shape
    member = rng.integers(0, size, size=m)
    chosen = winners[np.arange(m), member]
    propensity = np.count_nonzero(winners == chosen[:, None], axis=1) / size
    return chosen.astype(np.int64), propensity


def _mask_keys(mask: BoolArray) -> IntArray:
    """One integer per row, equal for rows with the same mask (any number of actions)."""
    packed = np.packbits(mask, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    inverse = np.unique(keys, return_inverse=True)[1]
    return inverse.reshape(-1).astype(np.int64)


# Beyond this many distinct masks in a segment, Beta Thompson scores every customer against
# the ensemble directly (rows × draws × actions) rather than once per distinct mask.
_MAX_MASK_GROUPS = 256


def _groups(keys: IntArray) -> Iterator[tuple[int, IntArray]]:
    """(key, row indices) for every key present: one sort instead of one mask per key."""
    order = np.argsort(keys, kind="stable")
    present, starts = np.unique(keys[order], return_index=True)
    ends = np.append(starts[1:], keys.size)
    for key, start, stop in zip(present, starts, ends[: present.size], strict=True):
        yield int(key), order[start:stop]


def _single_threaded_blas() -> threadpool_limits:
    """One BLAS thread per product: the chunks themselves run on parallel threads
    (:func:`_run_chunks`), which scales the whole scoring and not only the products. Measured
    on 2 cores (10⁶ customers × 24 actions): BLAS on 2 threads instead took LinTS to 0.24 s and
    LinUCB to 0.20 s, chunk threads to 0.21 s and 0.13 s. Chunk threads also just wait (no
    spinning) when another process holds the cores."""
    return threadpool_limits(limits=1, user_api="blas")


# ------------------------------------------------------------------ the scoring speed path
#
# LinTS and LinUCB score a chunk of customers in the *transposed* layout: one row per
# (action[, ensemble member]) and one column per customer, ``scores = W @ Xᵀ``, one float32
# GEMM per block. Three things make it fast, none changes a decision:
#
# 1. Every reduction over the actions (argmax, maximum, ties) runs down axis 0, over K long
#    contiguous rows, with whole-row vectorized ufuncs (``_first_argmax``). The
#    customer-major layout (rows × K) made NumPy run one 24-element loop per customer and
#    ensemble member: 16 million of them per million customers, which cost more than the
#    matrix products themselves (0.47 of LinTS's 0.78 s).
# 2. The product is cut into blocks of columns that stay in cache (a whole chunk of 8,192
#    customers × 384 scores is 12 MiB), so the scores are reduced while still cached.
# 3. Chunks are scored on ``_DECIDE_THREADS`` threads (``_run_chunks``), while everything
#    that draws random numbers stays on the calling thread, in chunk order.
#
# Same decisions: the random stream is drawn in the same order and amounts as the plain
# sequential loop, and ``_first_argmax`` returns exactly ``argmax`` (first maximum). The only
# difference can be the order of a float32 product's additions (BLAS blocking, LinUCB's
# pairwise form), i.e. the last bit of a score; two actions that close were already a
# coin-flip of rounding before. float32 is enough for these scores because they only rank
# actions within a customer (well-scaled features, |score| ~ 1: float32's relative error
# after d = 20 terms, ~1e-6, is far below any difference in expected reward worth acting
# on); the propensities are computed from the very scores the choice used, so they are
# the exact probabilities of the randomization that happened, and the posterior state stays
# float64.

# float32 numbers per scoring block: 4 MiB (best measured among 0.5-8 MiB on a 2-core EPYC
# with 1 MiB L2 per core and a shared 32 MiB L3; smaller blocks pay NumPy's per-call
# overhead more often, larger ones fall out of cache).
_SCORE_BLOCK_FLOATS = 1 << 20


def _block_columns(rows: int, chunk: int) -> int:
    """Customers per scoring block when each customer has ``rows`` scores."""
    return max(1, min(chunk, _SCORE_BLOCK_FLOATS // max(rows, 1)))


def _index_dtype(n_actions: int) -> np.dtype[Any]:
    return np.dtype(np.uint8 if n_actions <= np.iinfo(np.uint8).max else np.uint32)


def _first_argmax(
    scores: npt.NDArray[np.float32],
    winners: npt.NDArray[Any],
    buffers: _ThreadBuffers,
    penalty: npt.NDArray[np.float32] | None = None,
) -> None:
    """``winners[:] = (scores + penalty).argmax(axis=0)`` for a (K, width) block, without
    NumPy's per-column loop: a running maximum down the K rows, ~4 vectorized passes per row.

    Identical to ``argmax`` (the *first* index of the maximum): a later row replaces the
    winner only when strictly greater. The winner update needs no ``where``: row k is
    larger than every index recorded so far, so ``winners = max(winners, k · [row k wins])``
    sets exactly the columns row k wins. ``winners`` is uint8 for K ≤ 255, else uint32.
    ``penalty`` (K, c), 0 or −inf (:func:`_penalty_rows`), masks the actions per customer
    when each row holds ``width / c`` ensemble members' scores for c customers
    (member-major, customer-minor): it is added row by row into a scratch row, so the
    block is read once and not rewritten.
    """
    width = scores.shape[1]
    best = buffers.get("best", width, np.float32)
    better = buffers.get("better", width, np.bool_)
    step = buffers.get("step", width, winners.dtype)
    scratch = best if penalty is None else buffers.get("scratch", width, np.float32)
    as_uint8 = better.view(np.uint8)

    def row(k: int) -> npt.NDArray[np.float32]:
        if penalty is None:
            return scores[k]
        members = scores[k].reshape(-1, penalty.shape[1])
        np.add(members, penalty[k], out=scratch.reshape(members.shape))
        return scratch

    np.copyto(best, row(0))
    winners.fill(0)
    for k in range(1, scores.shape[0]):
        current = row(k)
        np.greater(current, best, out=better)
        np.maximum(best, current, out=best)
        np.multiply(as_uint8, winners.dtype.type(k), out=step)
        np.maximum(winners, step, out=winners)


# The IEEE-754 float32 bit pattern of −inf: a 0/1 mask times it, viewed as float32, is a
# 0/−inf penalty ~15× faster than np.where with scalar operands.
_NEG_INF_BITS = np.float32(-np.inf).view(np.uint32)


def _penalty_rows(allowed: BoolArray) -> npt.NDArray[np.float32]:
    """(K, m) float32 for a customers × actions mask (m, K): 0 where allowed, −inf where not.
    Added to scores, an argmax or maximum skips the disallowed actions; nothing allowed
    can tie with them (each customer has at least one allowed action, and scores are finite)."""
    bits = np.multiply(np.logical_not(allowed.T), _NEG_INF_BITS, dtype=np.uint32, order="C")
    return bits.view(np.float32)


def _pair_weights(covariances: FloatArray) -> npt.NDArray[np.float32]:
    """(K, d(d+1)/2) float32: row k holds Σ_k's entries for the pairs i ≤ j of
    :func:`_pair_products`, Σ_ii on the diagonal and Σ_ij + Σ_ji off it, so that
    ``row_k · pairs(x) = xᵀ Σ_k x`` exactly in real arithmetic (half the products of the
    full d² form; Σ_ij + Σ_ji rather than 2Σ_ij keeps it exact for a Σ that rounding left
    slightly asymmetric)."""
    d = covariances.shape[1]
    i, j = np.triu_indices(d)
    pair = covariances[:, i, j] + np.where(i == j, 0.0, covariances[:, j, i])
    return np.ascontiguousarray(pair, dtype=np.float32)


def _pair_products(columns: npt.NDArray[np.float32], out: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """x_i·x_j for i ≤ j (row-major upper triangle, the order of ``np.triu_indices``) of
    every column of ``columns`` (d, m): ``out`` (d(d+1)/2, m), d row-broadcast products."""
    d = columns.shape[0]
    offset = 0
    for i in range(d):
        np.multiply(columns[i], columns[i:], out=out[offset : offset + d - i])
        offset += d - i
    return out


# Threads that score chunks in parallel (NumPy's ufuncs and BLAS release the GIL): one per
# core, at most 2 (1.5× for LinTS, 1.6× for LinUCB on the 2-core machine this was measured
# on; more threads are untested).
_DECIDE_THREADS = max(1, min(2, os.cpu_count() or 1))


def _run_chunks(
    n: int,
    chunk: int,
    prepare: Callable[[int, int], Any],
    work: Callable[[int, int, Any], Any],
    finish: Callable[[int, int, Any], None],
    threads: int | None = None,
) -> None:
    """For each chunk [start, stop) of ``n`` rows, in order: ``prepare`` on this thread, then
    ``work`` on any thread, then ``finish`` on this thread.

    ``prepare`` and ``finish`` run in chunk order on the calling thread, so everything that
    draws from the random generator (``prepare`` before the scoring, ``finish`` after it)
    draws exactly the same stream as one sequential loop: the threads change which core
    computes a chunk's scores, never which numbers are drawn or which action wins (each
    chunk's arithmetic is the same on any thread). At most ``2 · threads`` chunks are in
    flight, which bounds the memory their results hold.
    """
    threads = _DECIDE_THREADS if threads is None else threads
    bounds = [(start, min(n, start + chunk)) for start in range(0, n, chunk)]
    if threads <= 1 or len(bounds) <= 1:
        for start, stop in bounds:
            finish(start, stop, work(start, stop, prepare(start, stop)))
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="legato-decide") as pool:
        pending: deque[tuple[int, int, Future[Any]]] = deque()
        for start, stop in bounds:
            pending.append((start, stop, pool.submit(work, start, stop, prepare(start, stop))))
            if len(pending) >= 2 * threads:
                first, last, future = pending.popleft()
                finish(first, last, future.result())
        while pending:
            first, last, future = pending.popleft()
            finish(first, last, future.result())


class _ThreadBuffers(threading.local):
    """Scratch arrays per thread (each worker thread reuses its own across chunks)."""

    def get(self, key: str, size: int, dtype: Any) -> npt.NDArray[Any]:
        store: dict[str, npt.NDArray[Any]] = self.__dict__.setdefault("store", {})
        array = store.get(key)
        if array is None or array.size < size or array.dtype != np.dtype(dtype):
            array = store[key] = np.empty(size, dtype=dtype)
        return array[:size]


# ------------------------------------------------------------------- Beta-Bernoulli Thompson


class BetaThompson:
    """Bernoulli Thompson sampling with an independent Beta posterior per action.

    Implements Thompson (1933), "On the likelihood that one unknown probability exceeds
    another in view of the evidence of two samples" (Biometrika 25), in the Beta-Bernoulli
    form evaluated by Chapelle & Li (2011), "An Empirical Evaluation of Thompson Sampling"
    (NeurIPS). Context-free: the features are ignored, except for one optional integer
    column that splits customers into segments, each with its own posteriors
    (``segment_column``: the column index in the feature matrix, whose values must be
    0..``n_segments``-1; column 0 is the constant ones column, so it cannot be a segment).

    Rewards must lie in [0, 1]: a success adds its reward to alpha and ``1 - reward`` to
    beta, so a fractional reward counts as a fractional success. Actions are drawn as
    described in the module docstring, with ``propensity_samples`` Beta draws per action
    and segment per ``decide`` call; the propensity of the chosen action is the share of
    those draws in which it had the highest sample. The expected value is its posterior mean.
    """

    name: ClassVar[str] = "beta_thompson"

    class Params(_LearningParams):
        prior_alpha: float = Field(default=1.0, gt=0, description="Beta prior successes per action")
        prior_beta: float = Field(default=1.0, gt=0, description="Beta prior failures per action")
        propensity_samples: int = Field(default=200, ge=1, le=1_000_000, description="posterior draws per decide call")
        segment_column: int | None = Field(default=None, ge=1, description="feature column holding a segment index")
        n_segments: int = Field(default=1, ge=1, le=100_000, description="number of segments in segment_column")

        @model_validator(mode="after")
        def _segments_need_a_column(self) -> Self:
            if self.segment_column is None and self.n_segments != 1:
                raise ValueError("n_segments needs segment_column (the feature column holding the segment index)")
            return self

    def __init__(self, n_actions: int, params: Params | None = None) -> None:
        _check_n_actions(n_actions)
        self.n_actions = n_actions
        self.params = params or self.Params()
        shape = (self.params.n_segments, n_actions)
        self.alpha: FloatArray = np.full(shape, self.params.prior_alpha)
        self.beta: FloatArray = np.full(shape, self.params.prior_beta)
        self.n_updates = 0

    def _segments(self, x: FloatArray) -> IntArray:
        column = self.params.segment_column
        if column is None:
            return np.zeros(x.shape[0], dtype=np.int64)
        if column >= x.shape[1]:
            raise ValueError(f"segment_column {column} is outside the {x.shape[1]} feature columns")
        values = x[:, column]
        segments = values.astype(np.int64)
        bad = (segments != values) | (segments < 0) | (segments >= self.params.n_segments)
        if np.any(bad):
            raise ValueError(
                f"segment column {column} holds {float(values[np.argmax(bad)])}; "
                f"segments must be integers 0..{self.params.n_segments - 1}"
            )
        return segments

    def decide(
        self, features: npt.NDArray[np.float64], rng: np.random.Generator, allowed: BoolArray | None = None
    ) -> BatchDecision:
        x = _features(features, None)
        segments = self._segments(x)
        n = x.shape[0]
        mask = check_allowed(allowed, n, self.n_actions)
        actions = np.zeros(n, dtype=np.int64)
        propensities = np.ones(n)
        # One ensemble per segment present.
        for segment, rows in _groups(segments):
            draws = rng.beta(
                self.alpha[segment], self.beta[segment], size=(self.params.propensity_samples, self.n_actions)
            )
            if mask is None:
                self._choose(draws, None, rows, rng, actions, propensities)
                continue
            keys = _mask_keys(mask[rows])
            if keys.max(initial=0) < _MAX_MASK_GROUPS:
                for _, group in _groups(keys):
                    self._choose(draws, mask[rows[group[0]]], rows[group], rng, actions, propensities)
            else:
                # Many distinct masks: each customer against every member, in bounded chunks
                # (rows × draws × actions work; float32 keeps it cache-sized, and the draws'
                # float32 ties are as improbable as float64's matter).
                compact = draws.astype(np.float32)
                chunk = max(1, (1 << 21) // draws.size)
                for start in range(0, rows.size, chunk):
                    block = rows[start : start + chunk]
                    penalty = np.where(mask[block], np.float32(0.0), np.float32(-np.inf))
                    masked = compact[None] + penalty[:, None, :]
                    actions[block], propensities[block] = _ensemble_choice(masked.argmax(axis=2), rng)
        means = self.alpha / (self.alpha + self.beta)
        return BatchDecision(actions=actions, propensities=propensities, expected_values=means[segments, actions])

    def _choose(
        self,
        draws: FloatArray,
        allowed_row: BoolArray | None,
        rows: IntArray,
        rng: np.random.Generator,
        actions: IntArray,
        propensities: FloatArray,
    ) -> None:
        """Customers ``rows`` share one ensemble and one mask: the share of members each action
        wins is computed once, not per customer."""
        winners = (draws if allowed_row is None else np.where(allowed_row, draws, -np.inf)).argmax(axis=1)
        wins = np.bincount(winners, minlength=self.n_actions)
        chosen = winners[rng.integers(0, winners.size, size=rows.size)]
        actions[rows] = chosen
        propensities[rows] = wins[chosen] / winners.size

    def update(
        self,
        features: npt.NDArray[np.float64],
        actions: npt.NDArray[np.int64],
        rewards: npt.NDArray[np.float64],
        propensities: npt.NDArray[np.float64],
    ) -> None:
        x = _features(features, None)
        a, r = _feedback(x, actions, rewards, propensities, self.n_actions)
        if np.any(r > 1):
            raise ValueError(
                f"beta_thompson learns rewards in [0, 1] (a click, a visit, a purchase), got {r.max():g}; "
                "use lin_ts or lin_ucb for revenue"
            )
        # A negative reward (contact cost, guardrail penalty, a reviewer's rejection, with no
        # outcome to outweigh it) is a failure: the Beta posterior counts successes and failures.
        r = np.maximum(r, 0.0)
        cells = self._segments(x) * self.n_actions + a
        size = self.alpha.size
        self.alpha += np.bincount(cells, weights=r, minlength=size).reshape(self.alpha.shape)
        self.beta += np.bincount(cells, weights=1.0 - r, minlength=size).reshape(self.beta.shape)
        self.n_updates += int(x.shape[0])

    def state(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "version": STATE_VERSION,
            "n_actions": self.n_actions,
            "params": self.params.model_dump(),
            "alpha": self.alpha.tolist(),
            "beta": self.beta.tolist(),
            "n_updates": self.n_updates,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_state(state, cls.name)
        policy = cls(int(state["n_actions"]), cls.Params.model_validate(state["params"]))
        alpha = np.asarray(state["alpha"], dtype=np.float64)
        beta = np.asarray(state["beta"], dtype=np.float64)
        if alpha.shape != policy.alpha.shape or beta.shape != policy.beta.shape:
            raise ValueError(f"state arrays have shape {alpha.shape}, expected {policy.alpha.shape}")
        policy.alpha, policy.beta = alpha, beta
        policy.n_updates = int(state["n_updates"])
        return policy


# ---------------------------------------------------------------- ridge-regression posteriors


class _NoisePrior:
    """The noise variance σ² of the rewards: known, or learned with its conjugate prior.

    The ridge posterior N(μ, σ² A⁻¹) is the Bayesian posterior of linear weights only for
    the right noise variance σ². Taking σ² = 1 (the textbook N(μ, v² A⁻¹) with v = 1) is
    right for unit-variance Gaussian rewards, but a visit or a purchase is Bernoulli with
    variance p(1−p) ≈ 0.1: a posterior ~10 times too wide in variance, so Thompson sampling
    explores far too long. The conjugate Normal-inverse-gamma model learns σ² from the
    residuals instead (Bayesian linear regression with unknown variance, e.g. Bishop 2006,
    §3.3 and exercise 3.12; used for Thompson sampling as "LinFullPost" by Riquelme, Tucker &
    Snoek, 2018, "Deep Bayesian Bandits Showdown", ICLR, whose prior a₀ = b₀ = 6 is the
    default here): θ | σ² ~ N(μ, σ² A⁻¹), σ² ~ InvGamma(a₀ + n/2, b₀ + (Σr² − bᵀA⁻¹b)/2),
    the prior being θ | σ² ~ N(0, σ²/λ · I). The mean μ = A⁻¹b does not change.
    """

    def __init__(self, shape: float, scale: float, known: float | None) -> None:
        self.shape, self.scale, self.known = shape, scale, known

    def draw(self, rng: np.random.Generator, size: tuple[int, ...], n: FloatArray, rss: FloatArray) -> FloatArray:
        """Standard deviations σ, one per draw and action (or the one shared model): ``size``."""
        if self.known is not None:
            return np.full(size, np.sqrt(self.known))
        shape = self.shape + n / 2.0
        rate = self.scale + np.maximum(rss, 0.0) / 2.0
        precision = rng.gamma(shape, 1.0 / rate, size=size)  # 1/σ² ~ Gamma(a, rate b)
        return np.asarray(1.0 / np.sqrt(precision))


def _residual_state(state: dict[str, Any], explained: FloatArray, shape: tuple[int, ...]) -> tuple[FloatArray, FloatArray]:
    """(Σr², n) from a state; states saved before they were kept start the noise estimate afresh
    (Σr² = bᵀA⁻¹b: zero residual, n = 0), so the prior alone sets σ² until new rewards arrive."""
    if "yy" not in state:
        return np.array(explained, dtype=np.float64).reshape(shape), np.zeros(shape)
    yy, n = np.asarray(state["yy"], dtype=np.float64), np.asarray(state["n"], dtype=np.float64)
    if yy.shape != shape or n.shape != shape:
        raise ValueError(f"state arrays yy and n have shapes {yy.shape}, {n.shape}; expected {shape}")
    return yy, n


class _RidgeState:
    """Saving and loading what both ridge models keep: A, b, Σr² and the reward count."""

    A: FloatArray
    b: FloatArray
    yy: FloatArray
    n: FloatArray
    _cache: tuple[FloatArray, FloatArray, FloatArray] | None

    def _factors(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {"A": self.A.tolist(), "b": self.b.tolist(), "yy": self.yy.tolist(), "n": self.n.tolist()}

    def load(self, state: dict[str, Any]) -> None:
        A, b = np.asarray(state["A"], dtype=np.float64), np.asarray(state["b"], dtype=np.float64)
        if A.shape != self.A.shape or b.shape != self.b.shape:
            raise ValueError(f"state arrays have shapes {A.shape}, {b.shape}; expected {self.A.shape}, {self.b.shape}")
        self.A, self.b, self._cache = A, b, None
        self.yy, self.n = _residual_state(state, self._factors()[2], self.yy.shape)


class _DisjointRidge(_RidgeState):
    """One Bayesian ridge regression per action on the customer features x.

    Posterior of action k: N(A_k⁻¹ b_k, σ_k² A_k⁻¹) with A_k = λI + Σ x xᵀ, b_k = Σ r x and
    σ_k² drawn from its own posterior (see :class:`_NoisePrior`); the exploration scale
    multiplies the covariance's square root.
    """

    def __init__(self, n_actions: int, n_features: int, ridge: float, noise: _NoisePrior | None = None) -> None:
        self.n_features = n_features
        self.noise = noise or _NoisePrior(6.0, 6.0, None)
        self.A: FloatArray = np.broadcast_to(ridge * np.eye(n_features), (n_actions, n_features, n_features)).copy()
        self.b: FloatArray = np.zeros((n_actions, n_features))
        self.yy: FloatArray = np.zeros(n_actions)  # Σ r² per action
        self.n: FloatArray = np.zeros(n_actions)  # rewards per action
        self._cache: tuple[FloatArray, FloatArray, FloatArray] | None = None

    def update(self, x: FloatArray, a: IntArray, r: FloatArray) -> None:
        for action, rows in _groups(a):
            block = x[rows]
            self.A[action] += block.T @ block
            self.b[action] += block.T @ r[rows]
            self.yy[action] += r[rows] @ r[rows]
            self.n[action] += rows.size
        self._cache = None

    def _factors(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(mean per action (K, d), L⁻¹ per action (K, d, d) with A = L Lᵀ, bᵀA⁻¹b per action (K,))."""
        if self._cache is None:
            inverse_cholesky = np.linalg.inv(np.linalg.cholesky(self.A))
            whitened = np.einsum("kij,kj->ki", inverse_cholesky, self.b)  # L⁻¹b
            mean = np.einsum("kji,kj->ki", inverse_cholesky, whitened)
            self._cache = (mean, inverse_cholesky, np.einsum("ki,ki->k", whitened, whitened))
        return self._cache

    def mean_weights(self) -> FloatArray:
        return self._factors()[0].T.copy()

    def sample_weights(self, rng: np.random.Generator, size: int, scale: float) -> FloatArray:
        mean, inverse_cholesky, explained = self._factors()
        sigma = self.noise.draw(rng, (size, mean.shape[0]), self.n, self.yy - explained)
        z = rng.standard_normal((size, *mean.shape)) * sigma[:, :, None]
        # θ = μ + scale · σ · L⁻ᵀ z has covariance scale² σ² A⁻¹.
        theta: FloatArray = mean[None] + scale * np.einsum("kji,skj->ski", inverse_cholesky, z)
        return theta.transpose(0, 2, 1)  # (size, d, K)

    def score_covariances(self) -> FloatArray:
        inverse_cholesky = self._factors()[1]
        covariances: FloatArray = np.einsum("kji,kjl->kil", inverse_cholesky, inverse_cholesky)  # A_k⁻¹
        return covariances


class _SharedRidge(_RidgeState):
    """One Bayesian ridge regression shared by all actions on z = x ⊗ φ_k.

    φ_k is action k's feature vector, so the score is xᵀ Θ φ_k with Θ a d × m matrix: the
    outer product lets every customer feature interact with every action feature, and a
    new creative whose features resemble known ones starts from what they learned.
    """

    def __init__(self, action_features: FloatArray, n_features: int, ridge: float, noise: _NoisePrior | None = None) -> None:
        self.phi = action_features  # (K, m)
        self.n_features = n_features
        self.noise = noise or _NoisePrior(6.0, 6.0, None)
        dim = n_features * action_features.shape[1]
        self.A: FloatArray = ridge * np.eye(dim)
        self.b: FloatArray = np.zeros(dim)
        self.yy: FloatArray = np.zeros(())  # Σ r², one noise variance for the one model
        self.n: FloatArray = np.zeros(())
        self._cache: tuple[FloatArray, FloatArray, FloatArray] | None = None

    def update(self, x: FloatArray, a: IntArray, r: FloatArray) -> None:
        d, (n_actions, m) = self.n_features, self.phi.shape
        grams = np.zeros((n_actions, d, d))
        moments = np.zeros((n_actions, d))
        for action, rows in _groups(a):
            block = x[rows]
            grams[action] = block.T @ block
            moments[action] = block.T @ r[rows]
        # Σ_k (X_kᵀX_k) ⊗ (φ_k φ_kᵀ) and Σ_k (X_kᵀ r_k) ⊗ φ_k, since z zᵀ = (x xᵀ) ⊗ (φ φᵀ).
        self.A += np.einsum("kac,kb,ke->abce", grams, self.phi, self.phi).reshape(d * m, d * m)
        self.b += np.einsum("ka,kb->ab", moments, self.phi).reshape(d * m)
        self.yy = self.yy + r @ r
        self.n = self.n + r.size
        self._cache = None

    def _factors(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        if self._cache is None:
            inverse_cholesky = np.linalg.inv(np.linalg.cholesky(self.A))
            whitened = inverse_cholesky @ self.b
            mean = inverse_cholesky.T @ whitened
            self._cache = (mean, inverse_cholesky, np.asarray(whitened @ whitened))
        return self._cache

    def mean_weights(self) -> FloatArray:
        mean = self._factors()[0]
        return mean.reshape(self.n_features, -1) @ self.phi.T  # (d, K)

    def sample_weights(self, rng: np.random.Generator, size: int, scale: float) -> FloatArray:
        mean, inverse_cholesky, explained = self._factors()
        sigma = self.noise.draw(rng, (size,), self.n, self.yy - explained)
        z = rng.standard_normal((size, mean.shape[0])) * sigma[:, None]
        theta = mean[None] + scale * (z @ inverse_cholesky)  # rows of σ L⁻ᵀ z
        return theta.reshape(size, self.n_features, -1) @ self.phi.T  # (size, d, K)

    def score_covariances(self) -> FloatArray:
        inverse_cholesky = self._factors()[1]
        d, m = self.n_features, self.phi.shape[1]
        covariance = (inverse_cholesky.T @ inverse_cholesky).reshape(d, m, d, m)
        # Var(xᵀΘφ_k) = xᵀ Σ_k x with Σ_k = (I ⊗ φ_k)ᵀ A⁻¹ (I ⊗ φ_k).
        covariances: FloatArray = np.einsum("kb,abce,ke->kac", self.phi, covariance, self.phi)
        return covariances


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

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_state(state, cls.name)
        policy = cls(int(state["n_actions"]), cls.Params.model_validate(state["params"]))
        if state["n_features"] is not None:
            policy._model(int(state["n_features"])).load(state["model"])
        policy.n_updates = int(state["n_updates"])
        return policy


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
    the module docstring). The propensity is the share of draws that agree, so it is a
    multiple of 1/``propensity_samples`` and never 0 for the chosen action. With
    ``allowed``, each draw's argmax is taken over the customer's allowed actions, and the
    propensity is the share of draws whose masked argmax is the chosen action. The
    expected value is the posterior-mean score of the chosen action.

    Speed path (see "the scoring speed path" in the source). The draws' weights are stacked
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

    Speed path (see "the scoring speed path" in the source). The mean term is one GEMM
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


LEARNING_POLICIES: dict[str, Any] = {policy.name: policy for policy in (BetaThompson, LinTS, LinUCB)}
