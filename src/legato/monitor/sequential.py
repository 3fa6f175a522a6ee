"""Always-valid one-sided sequential tests: the stop-loss's statistics, safe to look at every day.

A fixed-sample test read after every cycle cries wolf: thirty daily looks at a 5% z-test on
two identical groups raise a false alarm in about a fifth of agents. The tests here are
*always valid*: the chance that they ever reject a true null is at most ``alpha`` however
often, and whenever, they are read. Each is a mixture likelihood ratio — a nonnegative
(super)martingale under the null — and rejects when it reaches ``1/alpha`` (Ville's
inequality). Everything is NumPy over arrays, so one call judges one agent or, in tests and
benches, thousands of simulated ones at once.

**Guardrail KPI against the holdout** (:func:`holdout_log_lr`): the mixture sequential
probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh, "Peeking at A/B Tests:
Why It Matters, and What to Do About It" (KDD 2017; *Always Valid Inference*, Operations
Research 2022), on the difference of means treated − holdout, with a normal mixture over the
effect as Statsig describes its sequential testing after Zhao, Liu and Deng, "Safely and Quickly
Deploying New Features with a Staged Rollout Framework Using Sequential Test and Adaptive
Experimental Design" (2019). One-sided: the mixing distribution is a half-normal on the harmful
side of the margin, whose closed form is Howard, Ramdas, McAuliffe and Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences" (Annals of Statistics 2021, eq. (3.11)'s
one-sided normal mixture). With a margin ``theta0`` it tests H0: harm <= theta0. The mixture's
scale ``tau`` is tuned to the rule's minimum sample (as GrowthBook tunes its confidence
sequences to an expected sample size): the boundary is tightest where a decision is first allowed.
It rests on the normal approximation of the two means (asymptotic, as GrowthBook's and
Statsig's do), which is why a minimum sample is required before it is read.

**Absolute tripwire** (:func:`rate_log_lr`, :func:`shiryaev_roberts`): a rate of the agent's
own sends (unsubscribes, complaints, bounces) against a fixed limit, H0: rate <= limit. The
per-start statistic is an exact Bernoulli mixture likelihood ratio (Robbins' mixture SPRT,
the mSPRT for a proportion): a Beta prior truncated to the rates above the limit, so it is
valid for the small counts of a young agent and needs no normal approximation. A tripwire
must catch a *change* (an agent healthy for months that starts to annoy people today), which
a test accumulating since the start is slow to see; so the mixture is restarted every day
and the restarts summed, the Shiryaev–Roberts procedure (Shiryaev 1963, Roberts 1966; the
bound below is Pollak 1985's argument). Under H0 the sum minus the number of restarts is a
supermartingale, so by optional stopping P(alarm within D days) <= D / A: with
``A = horizon / alpha`` a tripwire false-alarms with probability at most ``alpha`` over
``horizon`` daily looks, and on average at most ``alpha`` times per ``horizon`` days after.

Outcomes that arrive late (an unsubscribe an hour after the send) only make a count lower
than it will be; both tests for "too high" grow with the count, so reading them early is
conservative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import betainc, betaincc, betaln, log_ndtr
from scipy.stats import beta as beta_distribution

Array = npt.NDArray[np.float64]

# How many daily looks a tripwire's false-alarm bound is stated over: P(alarm within this
# many days) <= alpha.
HORIZON_DAYS = 30


@dataclass(frozen=True)
class Verdict:
    """One look of a sequential test: its statistic against its threshold, with the sample."""

    log_statistic: float  # log of the mixture likelihood ratio (or the Shiryaev–Roberts sum)
    log_threshold: float  # log(1/alpha), or log(horizon/alpha) for a tripwire
    reject: bool

    def to_dict(self) -> dict[str, float | bool]:
        return {"log_statistic": self.log_statistic, "log_threshold": self.log_threshold, "reject": self.reject}


def rate_log_lr(events: npt.ArrayLike, trials: npt.ArrayLike, limit: float, *, above: bool = True) -> Array:
    """log of the exact Bernoulli mixture likelihood ratio of ``events`` in ``trials`` against rate ``limit``.

    ``above``: H1 is a rate above ``limit`` (the prior is Beta(1, b) with mean twice the
    limit, truncated to the rates above it); otherwise a rate below it (mean half the limit,
    truncated below). It is a nonnegative supermartingale under every rate on the other side,
    so H0 is the whole side, not only the limit. Vectorised over matching shapes.
    """
    x = np.asarray(events, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if limit <= 0.0 or limit >= 1.0:
        # A limit of 0 (or 1): a single event past it is the breach, with certainty.
        crossed = (x > 0) if (above and limit <= 0.0) else (x < n) if (not above and limit >= 1.0) else np.zeros_like(x, bool)
        return np.where(crossed, np.inf, 0.0)
    a = 1.0
    b = max(1.0 / (2.0 * limit) - 1.0, 1.0) if above else max(2.0 / limit - 1.0, 1.0)
    tail = betaincc if above else betainc  # P(rate > limit), P(rate < limit) under a Beta
    with np.errstate(divide="ignore"):
        posterior = betaln(a + x, b + n - x) - betaln(a, b) + np.log(tail(a + x, b + n - x, limit))
    prior = float(np.log(tail(a, b, limit)))
    null = x * np.log(limit) + (n - x) * np.log1p(-limit)
    return np.asarray(posterior - prior - null, dtype=np.float64)


def shiryaev_roberts(events: npt.ArrayLike, trials: npt.ArrayLike, limit: float, *, min_trials: int, above: bool = True) -> Array:
    """log of the Shiryaev–Roberts statistic after each day: the mixture restarted every day, summed.

    ``events``/``trials``: per day (last axis), oldest first; leading axes are independent
    series (e.g. simulated seeds). A restart counts once its days hold ``min_trials`` trials
    (before that it is left out, which only lowers the sum: the bound stands).
    """
    x = np.asarray(events, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    days = x.shape[-1]
    cx = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    cn = np.concatenate([np.zeros(n.shape[:-1] + (1,)), np.cumsum(n, axis=-1)], axis=-1)
    out = np.full(x.shape, -np.inf)
    for d in range(days):
        # Restarts k = 0..d: the days k..d.
        xs = cx[..., d + 1 : d + 2] - cx[..., : d + 1]
        ns = cn[..., d + 1 : d + 2] - cn[..., : d + 1]
        terms = np.where(ns >= min_trials, rate_log_lr(xs, ns, limit, above=above), -np.inf)
        top = np.max(terms, axis=-1)
        finite = np.isfinite(top)
        safe = np.where(finite, top, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            summed = safe + np.log(np.sum(np.exp(terms - safe[..., None]), axis=-1))
        out[..., d] = np.where(finite, summed, top)
    return out


def tripwire_threshold(alpha: float, horizon: int = HORIZON_DAYS) -> float:
    """log A for the Shiryaev–Roberts tripwire: P(false alarm within ``horizon`` daily looks) <= alpha."""
    return float(np.log(horizon / alpha))


def holdout_log_lr(
    n_t: npt.ArrayLike,
    sum_t: npt.ArrayLike,
    sq_t: npt.ArrayLike,
    n_c: npt.ArrayLike,
    sum_c: npt.ArrayLike,
    sq_c: npt.ArrayLike,
    *,
    margin: float,
    harm_above: bool,
    binary: bool,
    tuned_n: int,
) -> Array:
    """log of the one-sided normal-mixture mSPRT of treated − holdout against ``margin``.

    H0: the difference is on the harmless side of ``margin`` (``harm_above``: harm is a
    difference above it, e.g. more unsubscribes; otherwise below it, e.g. fewer purchases).
    ``n``, ``sum``, ``sq``: each group's count, sum and sum of squares of the per-decision
    values. ``binary``: the values are 0/1, whose variance is taken from a rate shrunk by
    half an event (a holdout with no unsubscribe yet does not get variance 0). ``tuned_n``:
    the treated sample the mixture's scale is tuned to (the rule's minimum).
    """
    nt, st, qt = (np.asarray(v, dtype=np.float64) for v in (n_t, sum_t, sq_t))
    nc, sc, qc = (np.asarray(v, dtype=np.float64) for v in (n_c, sum_c, sq_c))
    with np.errstate(invalid="ignore", divide="ignore"):
        mt, mc = st / np.maximum(nt, 1.0), sc / np.maximum(nc, 1.0)
        if binary:
            # Rates under H0 at its boundary (treated = holdout + margin), from both groups
            # pooled and shrunk by half an event: a small holdout with no event yet (or few,
            # by chance) would otherwise look certain and inflate the statistic.
            pooled = (st + sc + 0.5) / (nt + nc + 1.0)
            pc = np.clip(pooled - margin * nt / np.maximum(nt + nc, 1.0), 1e-6, 1 - 1e-6)
            pt = np.clip(pc + margin, 1e-6, 1 - 1e-6)
            vt, vc = pt * (1 - pt), pc * (1 - pc)
        else:
            vt = np.maximum((qt - nt * mt**2) / np.maximum(nt - 1.0, 1.0), 1e-12)
            vc = np.maximum((qc - nc * mc**2) / np.maximum(nc - 1.0, 1.0), 1e-12)
        v = vt / np.maximum(nt, 1.0) + vc / np.maximum(nc, 1.0)
        # The mixture's variance: the difference's variance at the tuned sample, at the
        # current allocation between treated and holdout.
        tau2 = (vt + vc * nt / np.maximum(nc, 1.0)) / max(tuned_n, 1)
        u = (mt - mc - margin) * (1.0 if harm_above else -1.0)
        log_lr = (
            np.log(2.0)
            + 0.5 * np.log(v / (v + tau2))
            + tau2 * u**2 / (2.0 * v * (v + tau2))
            + log_ndtr(np.sqrt(tau2) * u / np.sqrt(v * (v + tau2)))
        )
    return np.asarray(np.where((nt > 0) & (nc > 0), log_lr, 0.0), dtype=np.float64)


def wilson_interval(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95% by default)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a proportion."""
    tail = (1 - level) / 2
    low = 0.0 if successes == 0 else float(beta_distribution.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta_distribution.ppf(1 - tail, successes + 1, trials - successes))
    return low, high
