"""The scoring speed path of LinTS and LinUCB: transposed float32 blocks, a vectorized first
argmax, 0/−inf mask penalties, the pairwise form of xᵀΣx, and chunks on parallel threads
whose random draws stay on the calling thread. None of it changes a decision (see below)."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from legato.decide.policies.common import FloatArray
from legato.decide.policy import BoolArray


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
