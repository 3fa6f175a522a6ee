"""The uplift gate: whom does a message actually change, and by how much?

A purchase-propensity model finds customers who will buy; an uplift model finds customers
who buy *because* they were contacted. Contacting the first kind wastes budget and goodwill;
the gate lets an agent contact only customers whose predicted uplift pays for the contact.
Both models need data from a randomized experiment (or an agent's holdout): treatment must
be independent of the features.

Models: :class:`TwoModelUplift` (one outcome model per arm, any number of arms) and
:class:`ClassTransformationUplift` (one model on a transformed label, two arms). Metrics:
:func:`uplift_at_k` and :func:`qini_auc_score`. States are stored as described in
:mod:`legato.learn.propensity` (joblib + base64, loaded only from Legato's own store).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import HistGradientBoostingClassifier

from legato.learn.propensity import BoostedClassifierSettings, _as_matrix, _binary, decode_estimator, encode_estimator

FloatArray = npt.NDArray[np.float64]


class _BoostedUplift(BoostedClassifierSettings):
    """Shared constructor parameters: those of the gradient-boosted classifiers underneath."""

    kind: str

    def __init__(
        self,
        *,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_depth: int | None = 3,
        min_samples_leaf: int = 100,
        l2_regularization: float = 0.0,
        categorical_features: list[int] | list[bool] | None = None,
        random_state: int = 0,
    ) -> None:
        self._set_booster_params(
            max_iter=max_iter,
            learning_rate=learning_rate,
            max_depth=max_depth,
            min_samples_leaf=min_samples_leaf,
            l2_regularization=l2_regularization,
            categorical_features=categorical_features,
            random_state=random_state,
        )
        self.models_: list[HistGradientBoostingClassifier] | None = None

    def _fitted(self) -> list[HistGradientBoostingClassifier]:
        if self.models_ is None:
            raise ValueError("the model is not fitted yet; call fit first")
        return self.models_

    def get_params(self) -> dict[str, Any]:
        return self._booster_params()

    def state(self) -> dict[str, Any]:
        """Parameters and fitted models as a JSON-serialisable dict (trust: see legato.learn.propensity)."""
        return {
            "model": self.kind,
            "params": self.get_params(),
            "fitted": None if self.models_ is None else [encode_estimator(model) for model in self.models_],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        if state.get("model") != cls.kind:
            raise ValueError(f"not a {cls.kind} state: {state.get('model')!r}")
        model = cls(**state["params"])
        if state["fitted"] is not None:
            model.models_ = [decode_estimator(blob) for blob in state["fitted"]]
        return model


class TwoModelUplift(_BoostedUplift):
    """Two-model (T-learner) uplift: one outcome model per arm, uplift = difference.

    Implements the two-model approach (Hansotia & Rukstales, 2002, "Incremental value
    modeling", Journal of Interactive Marketing 16), named T-learner by Künzel, Sekhon,
    Bickel & Yu (2019), "Metalearners for estimating heterogeneous treatment effects using
    machine learning" (PNAS 116). ``treatment`` holds arm indices 0..T (0 = control); with
    more than two arms :meth:`predict_outcomes` gives P(y=1 | x, arm) for every arm, which is
    what a policy needs to pick the best arm per customer.
    """

    kind = "two_model_uplift"

    def fit(self, X: Any, treatment: Any, y: Any) -> Self:
        matrix = _as_matrix(X)
        arms = np.asarray(treatment)
        labels = _binary(y, matrix.shape[0], "y")
        if arms.shape != labels.shape or not np.all(np.equal(np.mod(arms, 1), 0)) or arms.min() < 0:
            raise ValueError("treatment must hold one arm index (0 = control, 1.. = treatments) per row")
        arms = arms.astype(np.int64)
        n_arms = int(arms.max()) + 1
        if n_arms < 2:
            raise ValueError("treatment holds a single arm; uplift needs a control and at least one treatment")
        models = []
        for arm in range(n_arms):
            rows = arms == arm
            if labels[rows].min(initial=1) == labels[rows].max(initial=0):
                raise ValueError(f"arm {arm} has no rows or a single outcome class; cannot model it")
            models.append(self._booster().fit(matrix[rows], labels[rows]))
        self.models_ = models
        return self

    def predict_outcomes(self, X: Any) -> FloatArray:
        """P(y=1 | x, arm) for every arm: (n, n_arms)."""
        matrix = _as_matrix(X)
        return np.column_stack([model.predict_proba(matrix)[:, 1] for model in self._fitted()])

    def predict_uplift(self, X: Any) -> FloatArray:
        """Uplift of each treatment over control: (n,) with two arms, (n, n_arms - 1) with more."""
        outcomes = self.predict_outcomes(X)
        uplift = outcomes[:, 1:] - outcomes[:, :1]
        return uplift[:, 0] if uplift.shape[1] == 1 else uplift


class ClassTransformationUplift(_BoostedUplift):
    """Class-transformation uplift: one classifier on z = y·t + (1−y)(1−t); uplift = 2P(z=1|x) − 1.

    Implements Jaśkowski & Jaroszewicz (2012), "Uplift modeling for clinical trial data"
    (ICML Workshop on Clinical Data Analysis). The identity needs P(t=1) = 1/2; rows are
    therefore weighted by 1/(2·P(t)) so that treated and control weigh the same, which makes
    it hold for any treated share of a randomized experiment (t independent of x).
    ``balanced=False`` fits unweighted, as scikit-uplift's ``ClassTransformation`` does (it
    only warns when the arms are unbalanced).
    """

    kind = "class_transformation_uplift"

    def __init__(self, *, balanced: bool = True, **params: Any) -> None:
        super().__init__(**params)
        self.balanced = balanced

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "balanced": self.balanced}

    def fit(self, X: Any, treatment: Any, y: Any) -> Self:
        matrix = _as_matrix(X)
        labels = _binary(y, matrix.shape[0], "y")
        treated = _binary(treatment, matrix.shape[0], "treatment")
        share = treated.mean()
        if share in (0.0, 1.0):
            raise ValueError("treatment holds a single arm; uplift needs treated and control rows")
        z = labels * treated + (1 - labels) * (1 - treated)
        weights = np.where(treated == 1, 0.5 / share, 0.5 / (1.0 - share)) if self.balanced else None
        self.models_ = [self._booster().fit(matrix, z, sample_weight=weights)]
        return self

    def predict_uplift(self, X: Any) -> FloatArray:
        probability = np.asarray(self._fitted()[0].predict_proba(_as_matrix(X))[:, 1], dtype=np.float64)
        return 2.0 * probability - 1.0


# ------------------------------------------------------------------------------- metrics


def _metric_arrays(y: Any, uplift: Any, treatment: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    outcome = np.asarray(y, dtype=np.float64)
    score = np.asarray(uplift, dtype=np.float64)
    treated = np.asarray(treatment, dtype=np.float64)
    if not (outcome.shape == score.shape == treated.shape) or outcome.ndim != 1:
        raise ValueError("y, uplift and treatment must be 1-D arrays of the same length")
    if not np.all((treated == 0) | (treated == 1)):
        raise ValueError("treatment must be 0 or 1")
    return outcome, score, treated


def uplift_at_k(y: Any, uplift: Any, treatment: Any, k: float = 0.3) -> float:
    """Response rate of treated minus control among the top k share of all customers by uplift.

    The "overall" strategy of scikit-uplift's ``uplift_at_k`` (the top ``int(n·k)`` rows by
    predicted uplift, whatever their arm), the metric its Hillstrom notebook reports.
    """
    outcome, score, treated = _metric_arrays(y, uplift, treatment)
    if not 0 < k <= 1:
        raise ValueError(f"k must lie in (0, 1], got {k}")
    top = np.argsort(-score, kind="mergesort")[: int(outcome.size * k)]
    in_treated, in_control = treated[top] == 1, treated[top] == 0
    if not in_treated.any() or not in_control.any():
        return float("nan")
    return float(outcome[top][in_treated].mean() - outcome[top][in_control].mean())


def qini_curve(y: Any, uplift: Any, treatment: Any) -> tuple[FloatArray, FloatArray]:
    """(customers targeted, incremental responders) at each distinct uplift threshold.

    Radcliffe (2007), "Using control groups to target on predicted lift: Building and
    assessing uplift models" (Direct Marketing Analytics Journal): at the top t customers,
    Q(t) = treated responders − control responders · treated/control counts. Tied scores are
    one threshold, so the curve does not depend on how ties happen to be ordered.
    """
    outcome, score, treated = _metric_arrays(y, uplift, treatment)
    order = np.argsort(-score, kind="mergesort")
    outcome, score, treated = outcome[order], score[order], treated[order]
    ends = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    n_treated = np.cumsum(treated)[ends]
    n_control = (ends + 1) - n_treated
    responders_treated = np.cumsum(outcome * treated)[ends]
    responders_control = np.cumsum(outcome * (1 - treated))[ends]
    ratio = np.divide(n_treated, n_control, out=np.zeros_like(n_treated), where=n_control > 0)
    return np.r_[0.0, ends + 1.0], np.r_[0.0, responders_treated - responders_control * ratio]


def qini_auc_score(y: Any, uplift: Any, treatment: Any) -> float:
    """Normalized area under the Qini curve: (model − random) / (perfect − random).

    The Qini coefficient of Radcliffe (2007), normalized as scikit-uplift's
    ``qini_auc_score`` (with ``negative_effect=True``): the perfect curve targets treated
    responders first and control responders last; 1 is perfect, 0 is random targeting.
    """
    outcome, _, treated = _metric_arrays(y, uplift, treatment)
    x, q = qini_curve(y, uplift, treatment)
    # The best possible ordering: treated responders, then the rest, then control responders.
    xp, qp = qini_curve(outcome, outcome * treated - outcome * (1 - treated), treated)
    random_area = xp[-1] * qp[-1] / 2.0
    perfect = np.trapezoid(qp, xp) - random_area
    actual = np.trapezoid(q, x) - random_area
    return float(actual / perfect) if perfect != 0 else float("nan")
