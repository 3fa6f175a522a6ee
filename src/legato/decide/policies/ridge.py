"""The Bayesian ridge-regression posteriors behind LinTS and LinUCB: one per action
(disjoint) or one shared on customer ⊗ action features, with a known or learned noise
variance, and their saved state."""

from __future__ import annotations

from typing import Any

import numpy as np

from legato.decide.policies.common import FloatArray, IntArray, _groups


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

    def carry_from(self, old: _DisjointRidge, pairs: IntArray) -> None:
        """Take over ``old``'s regressions: row (new, old) of ``pairs`` copies old action
        ``old``'s A, b, Σr² and count to new action ``new``; the others stay at the prior."""
        new, previous = pairs[:, 0], pairs[:, 1]
        self.A[new], self.b[new] = old.A[previous], old.b[previous]
        self.yy[new], self.n[new] = old.yy[previous], old.n[previous]
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

    def carry_from(self, old: _SharedRidge, columns: list[int | None]) -> None:
        """Take over ``old``'s posterior on Θ when the action-feature columns change: new
        column c continues old column ``columns[c]`` or, when None, starts at the prior.

        Only ``action_identity`` columns come and go (one per action). An old column no new
        one continues is marginalized out: the precision of the weights that remain is the
        Schur complement A_RR − A_RD A_DD⁻¹ A_DR and their mean is unchanged, so every
        remaining action's score keeps exactly its posterior (dropping rows of A instead
        would forget the correlation the removed action's data set up). A new column's
        weights are independent of the rest, at the prior N(0, σ²/λ): a new action is
        scored from its features alone until it has data. The residual sum of squares, and so
        the noise posterior, is kept.
        """
        d, m_old, m_new = self.n_features, old.phi.shape[1], self.phi.shape[1]
        kept = [(c, previous) for c, previous in enumerate(columns) if previous is not None]
        new_index = np.array([a * m_new + c for a in range(d) for c, _ in kept], dtype=np.int64)
        old_index = np.array([a * m_old + previous for a in range(d) for _, previous in kept], dtype=np.int64)
        dropped = np.setdiff1d(np.arange(d * m_old), old_index)
        if dropped.size:
            mean, _, explained = old._factors()
            a_rr = old.A[np.ix_(old_index, old_index)]
            a_rd = old.A[np.ix_(old_index, dropped)]
            precision = a_rr - a_rd @ np.linalg.solve(old.A[np.ix_(dropped, dropped)], a_rd.T)
            precision = (precision + precision.T) / 2.0  # exact symmetry for the Cholesky factor
            moment = precision @ mean[old_index]
            # Σr² − bᵀA⁻¹b (the residual) stays; bᵀA⁻¹b is now the kept weights' share.
            yy = old.yy - explained + moment @ mean[old_index]
        else:
            precision, moment, yy = old.A[np.ix_(old_index, old_index)], old.b[old_index], old.yy
        self.A[np.ix_(new_index, new_index)] = precision
        self.b[new_index] = moment
        self.yy, self.n = np.asarray(yy, dtype=np.float64).reshape(()), old.n.copy()
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
