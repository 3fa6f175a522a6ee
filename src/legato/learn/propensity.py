"""Likelihood to buy: a calibrated purchase-propensity model, and how fitted models are stored.

Storage format and trust
------------------------
A fitted scikit-learn model is stored as a JSON-friendly dict::

    {"format": "legato.sklearn-joblib", "version": 1, "sklearn": "1.9.1",
     "sha256": "<hex digest of the joblib bytes>", "data": "<base64 of the joblib bytes>"}

joblib bytes are a pickle, and unpickling runs code chosen by whoever wrote them. Legato
therefore loads a model only from its own store, written by its own process: the trust
assumption is that whoever can write the store is already trusted (they could change every
decision anyway). Never pass a state obtained from elsewhere (an e-mail, a download, a
shared drive) to :func:`decode_estimator`. The digest catches corruption, not tampering;
a state written by another scikit-learn version is refused, because scikit-learn does not
promise that pickles load across versions, and a silently wrong model is worse than a refit.
"""

from __future__ import annotations

import base64
import hashlib
import io
from typing import Any, Literal, Self

import joblib
import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier

from legato.errors import LegatoError

FORMAT = "legato.sklearn-joblib"
FORMAT_VERSION = 1


def encode_estimator(estimator: Any) -> dict[str, Any]:
    """A fitted estimator as a JSON-serialisable dict (see the module docstring)."""
    buffer = io.BytesIO()
    joblib.dump(estimator, buffer, compress=3)
    raw = buffer.getvalue()
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "sklearn": sklearn.__version__,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "data": base64.b64encode(raw).decode("ascii"),
    }


def decode_estimator(blob: dict[str, Any]) -> Any:
    """The estimator stored by :func:`encode_estimator`. Only for states this installation wrote."""
    if blob.get("format") != FORMAT or blob.get("version") != FORMAT_VERSION:
        raise LegatoError(
            f"not a stored model of format {FORMAT} v{FORMAT_VERSION}: {blob.get('format')!r} v{blob.get('version')!r}",
            hint="load only model states written by Legato's own store",
        )
    if blob.get("sklearn") != sklearn.__version__:
        raise LegatoError(
            f"the stored model was written by scikit-learn {blob.get('sklearn')}, this is {sklearn.__version__}",
            hint="refit the model (its training data is in the store) instead of loading it across versions",
        )
    raw = base64.b64decode(blob["data"])
    if hashlib.sha256(raw).hexdigest() != blob.get("sha256"):
        raise LegatoError("the stored model is corrupted (its sha256 does not match)", hint="refit the model")
    return joblib.load(io.BytesIO(raw))


def _as_matrix(X: Any) -> npt.NDArray[np.float64]:
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"X must be a customers × features matrix, got shape {matrix.shape}")
    return matrix


def _binary(y: Any, n: int, label: str) -> npt.NDArray[np.int64]:
    values = np.asarray(y)
    if values.shape != (n,):
        raise ValueError(f"{label} must have one entry per row ({n}), got shape {values.shape}")
    if not np.all((values == 0) | (values == 1)):
        raise ValueError(f"{label} must be 0 or 1")
    return values.astype(np.int64)


BOOSTER_PARAMS = (
    "max_iter",
    "learning_rate",
    "max_depth",
    "min_samples_leaf",
    "l2_regularization",
    "categorical_features",
    "random_state",
)


class BoostedClassifierSettings:
    """The gradient-boosted classifier settings the propensity and uplift models share.

    Subclasses take these as keyword arguments (with their own defaults) and store them as
    attributes of the same names; this builds the classifier and reports them.
    """

    max_iter: int
    learning_rate: float
    max_depth: int | None
    min_samples_leaf: int
    l2_regularization: float
    categorical_features: list[int] | list[bool] | None
    random_state: int

    def _set_booster_params(self, **params: Any) -> None:
        for name in BOOSTER_PARAMS:
            setattr(self, name, params[name])

    def _booster_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in BOOSTER_PARAMS}

    def _booster(self) -> HistGradientBoostingClassifier:
        # A fixed number of rounds: early stopping would carve its own random validation split
        # out of the data (each calibration fold, each arm), so fits would not reproduce.
        return HistGradientBoostingClassifier(**self._booster_params(), early_stopping=False)


class PurchasePropensity(BoostedClassifierSettings):
    """Calibrated probability that a customer buys: gradient boosting, then calibration.

    Gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier, after Ke et al.,
    2017, "LightGBM: A Highly Efficient Gradient Boosting Decision Tree") rank customers well
    but their scores are not probabilities one can put in an expected-value calculation, so
    they are calibrated on held-out folds (``CalibratedClassifierCV``): isotonic regression
    after Zadrozny & Elkan (2002), "Transforming Classifier Scores into Accurate Multiclass
    Probability Estimates" (KDD), or Platt's sigmoid (1999), "Probabilistic Outputs for
    Support Vector Machines"; see Niculescu-Mizil & Caruana (2005), "Predicting Good
    Probabilities with Supervised Learning" (ICML), for when each is preferable (isotonic
    needs more data; sigmoid is safer under roughly a thousand positives).

    ``categorical_features`` is a boolean mask or a list of column indices holding
    non-negative integer category codes. ``predict_proba`` follows scikit-learn: column 1 is
    the probability of buying.
    """

    def __init__(
        self,
        *,
        method: Literal["isotonic", "sigmoid"] = "isotonic",
        cv: int = 3,
        max_iter: int = 200,
        learning_rate: float = 0.05,
        max_depth: int | None = 4,
        min_samples_leaf: int = 50,
        l2_regularization: float = 1.0,
        categorical_features: list[int] | list[bool] | None = None,
        random_state: int = 0,
    ) -> None:
        if method not in ("isotonic", "sigmoid"):
            raise ValueError(f"method must be 'isotonic' or 'sigmoid', got {method!r}")
        if cv < 2:
            raise ValueError(f"cv must be at least 2 (calibration needs held-out folds), got {cv}")
        self.method = method
        self.cv = cv
        self._set_booster_params(
            max_iter=max_iter,
            learning_rate=learning_rate,
            max_depth=max_depth,
            min_samples_leaf=min_samples_leaf,
            l2_regularization=l2_regularization,
            categorical_features=categorical_features,
            random_state=random_state,
        )
        self.model_: CalibratedClassifierCV | None = None

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Self:
        matrix = _as_matrix(X)
        labels = _binary(y, matrix.shape[0], "y")
        if labels.min() == labels.max():
            raise ValueError("y holds a single class; a propensity model needs buyers and non-buyers")
        model = CalibratedClassifierCV(self._booster(), method=self.method, cv=self.cv)
        self.model_ = model.fit(matrix, labels, sample_weight=sample_weight)
        return self

    def predict_proba(self, X: Any) -> npt.NDArray[np.float64]:
        if self.model_ is None:
            raise ValueError("the model is not fitted yet; call fit first")
        return np.asarray(self.model_.predict_proba(_as_matrix(X)), dtype=np.float64)

    def get_params(self) -> dict[str, Any]:
        return {"method": self.method, "cv": self.cv, **self._booster_params()}

    def state(self) -> dict[str, Any]:
        """Parameters and fitted model as a JSON-serialisable dict (trust: see the module docstring)."""
        return {
            "model": "purchase_propensity",
            "params": self.get_params(),
            "fitted": None if self.model_ is None else encode_estimator(self.model_),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        if state.get("model") != "purchase_propensity":
            raise ValueError(f"not a purchase_propensity state: {state.get('model')!r}")
        model = cls(**state["params"])
        if state["fitted"] is not None:
            model.model_ = decode_estimator(state["fitted"])
        return model
