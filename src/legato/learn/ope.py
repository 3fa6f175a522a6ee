"""Off-policy evaluation: what a new policy would have earned, estimated from another's logs.

Every decision Legato logs carries the propensity with which its action was chosen. With it,
the value of any other policy can be estimated from the same rows by reweighting each
logged reward by π(a|x) / μ(a|x), the new policy's probability of the logged action over the
logging policy's. The three estimators here work on plain arrays (one entry per logged
decision) and return the estimate with a percentile bootstrap confidence interval
(Efron, 1979, "Bootstrap methods: another look at the jackknife", Annals of Statistics 7).

Parameters go to the constructor, in the style of scikit-learn and Open Bandit Pipeline::

    IPS(n_bootstrap=1000, seed=0).estimate(rewards, logged_propensities, target_probabilities)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Bootstrap replicates are drawn in blocks so that a large log never needs a
# (n_bootstrap × n) index matrix in memory at once.
_BOOTSTRAP_CELLS = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate with its bootstrap confidence interval."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float  # standard deviation of the bootstrap replicates
    n: int
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _arrays(
    rewards: Any, logged_propensities: Any, target_probabilities: Any
) -> tuple[FloatArray, FloatArray, FloatArray]:
    r = np.asarray(rewards, dtype=np.float64)
    mu = np.asarray(logged_propensities, dtype=np.float64)
    pi = np.asarray(target_probabilities, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"rewards must be a non-empty 1-D array, got shape {r.shape}")
    for label, array in (("logged_propensities", mu), ("target_probabilities", pi)):
        if array.shape != r.shape:
            raise ValueError(f"{label} must have one entry per reward ({r.size}), got shape {array.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards contain NaN or infinite values")
    if not np.all((mu > 0) & (mu <= 1)):
        raise ValueError(
            "logged_propensities must lie in (0, 1]: an action logged with propensity 0 cannot be reweighted"
        )
    if not np.all((pi >= 0) & (pi <= 1)):
        raise ValueError("target_probabilities must lie in [0, 1]")
    return r, mu, pi


class _Estimator:
    name: ClassVar[str]

    def __init__(self, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int | None = 0) -> None:
        if n_bootstrap < 1:
            raise ValueError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        self.n_bootstrap = n_bootstrap
        self.confidence = confidence
        self.seed = seed

    def _replicates(self, numerator: FloatArray, denominator: FloatArray | None) -> FloatArray:
        """Bootstrap replicates of mean(numerator), or of sum(numerator)/sum(denominator)."""
        rng = np.random.default_rng(self.seed)
        n = numerator.size
        block = max(1, _BOOTSTRAP_CELLS // n)
        replicates = np.empty(self.n_bootstrap)
        for start in range(0, self.n_bootstrap, block):
            stop = min(start + block, self.n_bootstrap)
            rows = rng.integers(0, n, size=(stop - start, n))
            top = numerator[rows].sum(axis=1)
            bottom = np.full(stop - start, float(n)) if denominator is None else denominator[rows].sum(axis=1)
            # A resample can hold no weight at all (SNIPS when the policy never agrees with
            # the log); it then says nothing, like the full-sample estimate would.
            replicates[start:stop] = np.divide(top, bottom, out=np.full(stop - start, np.nan), where=bottom > 0)
        return replicates

    def _estimate(self, value: float, numerator: FloatArray, denominator: FloatArray | None) -> Estimate:
        replicates = self._replicates(numerator, denominator)
        replicates = replicates[np.isfinite(replicates)]
        tail = (1.0 - self.confidence) / 2.0 * 100.0
        if replicates.size:
            low, high = np.percentile(replicates, [tail, 100.0 - tail])
            spread = float(replicates.std(ddof=1)) if replicates.size > 1 else 0.0
        else:
            low = high = spread = float("nan")
        return Estimate(self.name, float(value), float(low), float(high), spread, numerator.size, self.confidence)


class IPS(_Estimator):
    """Inverse propensity scoring: mean of r · π(a|x) / μ(a|x).

    Implements Horvitz & Thompson (1952), "A Generalization of Sampling Without Replacement
    From a Finite Universe" (JASA 47), as used for policy evaluation. Unbiased whenever the
    logging policy gave every action the evaluated policy may take a positive propensity.
    """

    name: ClassVar[str] = "ips"

    def estimate(self, rewards: Any, logged_propensities: Any, target_probabilities: Any) -> Estimate:
        r, mu, pi = _arrays(rewards, logged_propensities, target_probabilities)
        terms = r * pi / mu
        return self._estimate(float(terms.mean()), terms, None)


class SNIPS(_Estimator):
    """Self-normalized IPS: Σ r·w / Σ w with w = π(a|x) / μ(a|x).

    Implements Swaminathan & Joachims (2015), "The Self-Normalized Estimator for
    Counterfactual Learning" (NeurIPS). Slightly biased but consistent, and much less
    variable than IPS when the weights are large; the bootstrap resamples numerator and
    denominator together.
    """

    name: ClassVar[str] = "snips"

    def estimate(self, rewards: Any, logged_propensities: Any, target_probabilities: Any) -> Estimate:
        r, mu, pi = _arrays(rewards, logged_propensities, target_probabilities)
        weights = pi / mu
        total = weights.sum()
        value = float((r * weights).sum() / total) if total > 0 else float("nan")
        return self._estimate(value, r * weights, weights)


class DoublyRobust(_Estimator):
    """Doubly robust: a reward model's prediction for the policy, corrected by IPS on its errors.

    Implements Dudík, Langford & Li (2011), "Doubly Robust Policy Evaluation and Learning"
    (ICML): per decision, Σ_a π(a|x) q̂(x,a) + π(a_i|x)/μ(a_i|x) · (r_i − q̂(x,a_i)).
    Unbiased if either the propensities or the reward model q̂ are right, and less variable
    than IPS the better q̂ is. Fit q̂ on other rows than those evaluated (cross-fitting) so
    that its errors on them are honest.
    """

    name: ClassVar[str] = "dr"

    def estimate(
        self,
        rewards: Any,
        logged_propensities: Any,
        target_probabilities: Any,
        *,
        actions: Any,
        reward_predictions: Any,
        policy_distribution: Any,
    ) -> Estimate:
        """``reward_predictions`` and ``policy_distribution`` are (n, K): q̂(x_i, a) and π(a|x_i)."""
        r, mu, pi = _arrays(rewards, logged_propensities, target_probabilities)
        a = np.asarray(actions, dtype=np.int64)
        q = np.asarray(reward_predictions, dtype=np.float64)
        distribution = np.asarray(policy_distribution, dtype=np.float64)
        if a.shape != r.shape:
            raise ValueError(f"actions must have one entry per reward ({r.size}), got shape {a.shape}")
        if q.ndim != 2 or q.shape[0] != r.size or distribution.shape != q.shape:
            raise ValueError(
                "reward_predictions and policy_distribution must both be (n, K); "
                f"got {q.shape} and {distribution.shape} for n={r.size}"
            )
        if a.min() < 0 or a.max() >= q.shape[1]:
            raise ValueError(f"actions must lie in 0..{q.shape[1] - 1}")
        rows = np.arange(r.size)
        if not np.allclose(distribution[rows, a], pi, atol=1e-9):
            raise ValueError("target_probabilities disagree with policy_distribution at the logged actions")
        terms = (distribution * q).sum(axis=1) + pi / mu * (r - q[rows, a])
        return self._estimate(float(terms.mean()), terms, None)


ESTIMATORS: dict[str, type[_Estimator]] = {estimator.name: estimator for estimator in (IPS, SNIPS, DoublyRobust)}
