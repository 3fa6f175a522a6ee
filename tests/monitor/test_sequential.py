"""The stop-loss's sequential tests: daily looks do not inflate false alarms, and real harm is caught.

A/A runs simulate the tests' inputs (daily counts of identical groups) with NumPy for many seeds
at once; the seeds are fixed, so every figure here is reproducible. bench/stop_loss_aa.py prints
the same figures with their intervals.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from legato.monitor.sequential import (
    clopper_pearson,
    holdout_log_lr,
    rate_log_lr,
    shiryaev_roberts,
    tripwire_threshold,
    wilson_interval,
)

SEEDS = 400
LOOKS = 30  # daily looks
ALPHA = 0.05


def guardrail_fired(p_treated: float, p_holdout: float, *, harm_above: bool, seed: int, sends: int = 2000, held: int = 220,
                    min_sends: int = 2000, min_holdout: int = 200) -> np.ndarray:
    """Per seed: did the one-sided mSPRT reject at any of the 30 daily looks (cumulative counts)?"""
    rng = np.random.default_rng(seed)
    xt = np.cumsum(rng.binomial(sends, p_treated, (SEEDS, LOOKS)), axis=1)
    xc = np.cumsum(rng.binomial(held, p_holdout, (SEEDS, LOOKS)), axis=1)
    nt = np.cumsum(np.full((SEEDS, LOOKS), sends), axis=1)
    nc = np.cumsum(np.full((SEEDS, LOOKS), held), axis=1)
    log_lr = holdout_log_lr(nt, xt, xt, nc, xc, xc, margin=0.0, harm_above=harm_above, binary=True, tuned_n=min_sends)
    judged = (nt >= min_sends) & (nc >= min_holdout)
    return np.asarray(((log_lr >= np.log(1 / ALPHA)) & judged).any(axis=1))


@pytest.mark.parametrize(("rate", "harm_above"), [(0.02, False), (0.02, True), (0.15, False), (0.002, True)])
def test_a_a_guardrail_fires_in_at_most_five_percent_of_seeds_over_thirty_daily_looks(rate: float, harm_above: bool) -> None:
    """Treated and holdout identical (the null's boundary: the hardest case for a one-sided test)."""
    fired = guardrail_fired(rate, rate, harm_above=harm_above, seed=11)
    low, high = clopper_pearson(int(fired.sum()), SEEDS)
    assert fired.mean() <= ALPHA, (fired.mean(), low, high)


def test_the_naive_daily_z_test_does_cry_wolf_on_the_same_data() -> None:
    """The A/A above can fail: a fixed-sample one-sided z-test read every day fires far more often."""
    rng = np.random.default_rng(11)
    p = 0.02
    xt = np.cumsum(rng.binomial(2000, p, (SEEDS, LOOKS)), axis=1)
    xc = np.cumsum(rng.binomial(220, p, (SEEDS, LOOKS)), axis=1)
    nt, nc = np.cumsum(np.full((SEEDS, LOOKS), 2000), axis=1), np.cumsum(np.full((SEEDS, LOOKS), 220), axis=1)
    pt, pc = xt / nt, xc / nc
    z = (pt - pc) / np.sqrt(pt * (1 - pt) / nt + pc * (1 - pc) / nc)
    assert (z < -1.645).any(axis=1).mean() > 0.12


def test_a_real_harm_against_the_holdout_is_caught() -> None:
    fired = guardrail_fired(0.02 * 0.6, 0.02, harm_above=False, seed=12)  # conversions 40% lower than without a message
    assert fired.mean() >= 0.9


def tripwire_first_alarm(rates: np.ndarray, limit: float, *, sends: int, seed: int, min_sends: int = 500) -> np.ndarray:
    """Per seed: the index of the first day whose look alarms (LOOKS when none)."""
    rng = np.random.default_rng(seed)
    x = rng.binomial(sends, np.broadcast_to(rates, (SEEDS, LOOKS)))
    n = np.full((SEEDS, LOOKS), sends)
    alarm = shiryaev_roberts(x, n, limit, min_trials=min_sends) >= tripwire_threshold(ALPHA)
    return np.where(alarm.any(axis=1), np.argmax(alarm, axis=1), LOOKS)


@pytest.mark.parametrize(("limit", "sends", "min_sends"), [(0.003, 6000, 500), (0.01, 100, 100), (0.003, 400, 1000)])
def test_a_a_tripwire_at_its_limit_fires_in_at_most_five_percent_of_seeds(limit: float, sends: int, min_sends: int) -> None:
    """The true rate exactly at the limit, every day: the null's boundary, again the hardest case."""
    first = tripwire_first_alarm(np.full(LOOKS, limit), limit, sends=sends, seed=21, min_sends=min_sends)
    assert (first < LOOKS).mean() <= ALPHA


def test_a_tripwire_at_the_simulated_worlds_rates_never_fires() -> None:
    """The Hillstrom world's 0.2% unsubscribes against a 0.3% limit, 6,000 sends a day."""
    first = tripwire_first_alarm(np.full(LOOKS, 0.002), 0.003, sends=6000, seed=22)
    assert (first < LOOKS).sum() == 0


def test_a_four_fold_unsubscribe_spike_from_day_ten_is_caught_within_one_look() -> None:
    """0.2% then 0.8% from day 10 (index 9) against a 0.3% limit, 6,000 sends a day."""
    rates = np.where(np.arange(LOOKS) >= 9, 0.008, 0.002)
    first = tripwire_first_alarm(rates, 0.003, sends=6000, seed=23)
    assert (first >= 9).all()  # never before the spike
    assert (first == 9).mean() >= 0.9  # mostly on the spike's first day (380 of 400 seeds)
    assert (first <= 10).all()  # always by its second


def test_the_bernoulli_mixture_is_the_integral_it_claims() -> None:
    """log LR = log ∫ L(p)/L(limit) over the truncated Beta(1, b) prior, checked by quadrature."""
    limit, x, n = 0.05, 4, 30
    b = 1 / (2 * limit) - 1
    ratio = lambda p: (p / limit) ** x * ((1 - p) / (1 - limit)) ** (n - x) * b * (1 - p) ** (b - 1)  # noqa: E731
    prior_mass = (1 - limit) ** b
    expected = integrate.quad(ratio, limit, 1)[0] / prior_mass
    assert float(rate_log_lr(x, n, limit)) == pytest.approx(np.log(expected), rel=1e-6)
    below = float(rate_log_lr(0, 200, limit, above=False))
    assert below > 0  # no event in 200 is evidence of a rate under 5%
    assert float(rate_log_lr(3, 10, 0.0)) == np.inf and float(rate_log_lr(0, 10, 0.0)) == 0.0


def test_intervals() -> None:
    low, high = clopper_pearson(0, 200)
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 200), abs=1e-9)
    wl, wh = wilson_interval(10, 200)
    assert wl == pytest.approx(0.0274, abs=1e-3) and wh == pytest.approx(0.0899, abs=1e-3)
