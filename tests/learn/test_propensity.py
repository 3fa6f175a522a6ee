"""The calibrated purchase-propensity model: ranks well, is calibrated, saves and loads."""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from legato.learn.propensity import PurchasePropensity


def buyers(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, 4))
    X[:, 3] = rng.integers(0, 3, size=n)  # a categorical column
    logit = -1.5 + 1.2 * X[:, 0] - 0.8 * X[:, 1] + 0.5 * (X[:, 3] == 2)
    p = 1 / (1 + np.exp(-logit))
    return X, (rng.random(n) < p).astype(int), p


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_ranks_and_is_calibrated(method: Literal["isotonic", "sigmoid"]) -> None:
    rng = np.random.default_rng(0)
    X, y, _ = buyers(8000, rng)
    model = PurchasePropensity(method=method, max_iter=80, categorical_features=[3]).fit(X, y)
    X_test, y_test, p_true = buyers(8000, rng)
    proba = model.predict_proba(X_test)
    assert proba.shape == (8000, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    buy = proba[:, 1]
    assert roc_auc_score(y_test, buy) > 0.75
    assert roc_auc_score(y_test, buy) > roc_auc_score(y_test, p_true) - 0.03
    assert buy.mean() == pytest.approx(y_test.mean(), abs=0.02)
    # Within each decile of prediction, the buy rate matches the predicted rate.
    deciles = np.quantile(buy, np.linspace(0, 1, 11))
    which = np.clip(np.searchsorted(deciles, buy, side="right") - 1, 0, 9)
    for decile in range(10):
        rows = which == decile
        if rows.sum() > 200:
            assert y_test[rows].mean() == pytest.approx(buy[rows].mean(), abs=0.06)
    assert brier_score_loss(y_test, buy) < brier_score_loss(y_test, np.full(8000, y.mean()))


def test_state_round_trip() -> None:
    rng = np.random.default_rng(1)
    X, y, _ = buyers(2000, rng)
    model = PurchasePropensity(max_iter=20, method="sigmoid").fit(X, y)
    restored = PurchasePropensity.from_state(json.loads(json.dumps(model.state())))
    np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
    assert restored.get_params() == model.get_params()


def test_validation() -> None:
    with pytest.raises(ValueError, match="method"):
        PurchasePropensity(method="beta")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cv"):
        PurchasePropensity(cv=1)
    with pytest.raises(ValueError, match="single class"):
        PurchasePropensity().fit(np.zeros((10, 2)), np.zeros(10))
    with pytest.raises(ValueError, match="not fitted"):
        PurchasePropensity().predict_proba(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="0 or 1"):
        PurchasePropensity().fit(np.zeros((3, 2)), np.array([0, 1, 2]))
