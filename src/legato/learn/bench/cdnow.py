"""CDNOW benchmark: who buys again? Legato's propensity model vs recency-frequency and BG/NBD.

The CDNOW cohort (23,570 customers whose first purchase was in the first quarter of 1997,
followed to June 1998) is the standard test of buy-again models since Fader, Hardie & Lee
(2005), "Counting Your Customers the Easy Way: An Alternative to the Pareto/NBD Model"
(Marketing Science 24). Their split: a 39-week calibration period from 1997-01-01, then a
39-week holdout. The question here: does a customer buy at least once in the holdout?

Customers are split 50/50 at random; models learn on one half's calibration-period summary
and are judged on the other half by AUC, Brier score, expected calibration error (ECE,
10 equal-width bins; Naeini, Cooper & Hauskrecht, 2015, "Obtaining Well Calibrated
Probabilities Using Bayesian Binning", AAAI) and calibration slope (logistic regression of
the outcome on the predicted log-odds; Cox, 1958, "Two further applications of a model for
binary regression", Biometrika 45; 1 is ideal):

- ``legato``: :class:`legato.learn.propensity.PurchasePropensity` on recency, frequency,
  age, spend and basket features;
- ``recency_frequency``: logistic regression on recency (days since the last purchase) and
  log frequency, the classic RF baseline;
- ``bgnbd``: the BG/NBD model from the ``lifetimes`` package (a benchmark-only extra),
  ranking by its expected number of holdout purchases. It predicts a count, not a
  probability, so only its AUC is reported; null with the reason when ``lifetimes`` is not
  installed or fails.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from legato.datasets import CDNOW, open_text, shipped
from legato.errors import LegatoError
from legato.learn.bench._common import find_file, number, with_small_models
from legato.learn.propensity import PurchasePropensity

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

COHORT_START = dt.date(1997, 1, 1)
PERIOD_DAYS = 39 * 7  # calibration and holdout are 39 weeks each
HINT = (
    "pass --data the CDNOW_master.txt file (customer_id, YYYYMMDD date, number_of_cds, dollar_value; "
    "may be .xz or .gz) or its folder, or omit --data to use the packaged copy"
)
FEATURES = (
    "frequency",  # repeat purchase days in calibration
    "recency",  # days from first to last purchase
    "age",  # days from first purchase to the end of calibration (T)
    "days_since_last",
    "total_spend",
    "mean_spend",
    "total_cds",
    "first_spend",
)


@dataclass(frozen=True)
class Cohort:
    features: FloatArray  # customers × FEATURES
    bought_again: IntArray  # 1 if any purchase in the holdout period


def _parse(path: Path) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """customer ids, day offsets from the cohort start, CDs and dollars, one entry per row."""
    rows = []
    with open_text(path, encoding="ascii") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or not fields[0].isdigit():  # blank line or the header
                continue
            if len(fields) != 4:
                raise LegatoError(f"{path}:{line_number}: expected 4 columns, found {len(fields)}", hint=HINT)
            rows.append(fields)
    if not rows:
        raise LegatoError(f"{path} holds no purchases", hint=HINT)
    table = np.array(rows)
    dates = (
        table[:, 1].astype("datetime64[D]")
        if "-" in table[0, 1]
        else np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in table[:, 1]], dtype="datetime64[D]")
    )
    days = (dates - np.datetime64(COHORT_START)).astype(np.int64)
    return table[:, 0].astype(np.int64), days, table[:, 2].astype(np.float64), table[:, 3].astype(np.float64)


def load_cohort(path: Path) -> Cohort:
    customer, day, cds, dollars = _parse(path)
    ids, customer = np.unique(customer, return_inverse=True)
    n = ids.size
    calibration, holdout = day < PERIOD_DAYS, (day >= PERIOD_DAYS) & (day < 2 * PERIOD_DAYS)
    # Same-day transactions are one purchase occasion, as in Fader, Hardie & Lee.
    occasion = np.unique(customer[calibration] * (2 * PERIOD_DAYS) + day[calibration])
    occasion_customer, occasion_day = occasion // (2 * PERIOD_DAYS), occasion % (2 * PERIOD_DAYS)
    occasions = np.bincount(occasion_customer, minlength=n)
    first = np.full(n, PERIOD_DAYS)
    np.minimum.at(first, occasion_customer, occasion_day)
    last = np.zeros(n, dtype=np.int64)
    np.maximum.at(last, occasion_customer, occasion_day)
    if np.any(occasions == 0):
        raise LegatoError(
            f"{path}: some customers have no purchase in the first 39 weeks; not the CDNOW cohort", hint=HINT
        )
    spend = np.bincount(customer[calibration], weights=dollars[calibration], minlength=n)
    total_cds = np.bincount(customer[calibration], weights=cds[calibration], minlength=n)
    first_spend = np.bincount(
        customer[calibration],
        weights=dollars[calibration] * (day[calibration] == first[customer[calibration]]),
        minlength=n,
    )
    age = PERIOD_DAYS - first
    recency = last - first
    features = np.column_stack(
        [occasions - 1, recency, age, age - recency, spend, spend / occasions, total_cds, first_spend]
    ).astype(np.float64)
    bought = (np.bincount(customer[holdout], minlength=n) > 0).astype(np.int64)
    return Cohort(features, bought)


def expected_calibration_error(y: Any, p: Any, bins: int = 10) -> float:
    outcome, probability = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    which = np.minimum((probability * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins)
    gaps = np.abs(
        np.bincount(which, weights=outcome, minlength=bins) - np.bincount(which, weights=probability, minlength=bins)
    )
    return float(gaps.sum() / counts.sum())


def calibration_slope(y: Any, p: Any) -> float:
    probability = np.clip(np.asarray(p, dtype=np.float64), 1e-6, 1 - 1e-6)
    logit = np.log(probability / (1 - probability))[:, None]
    return float(LogisticRegression(C=1e6, max_iter=1000).fit(logit, np.asarray(y)).coef_[0, 0])


def _bgnbd_scores(train: FloatArray, test: FloatArray) -> tuple[FloatArray | None, str | None]:
    """BG/NBD expected holdout purchases per test customer, or (None, why not)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its import pokes pandas options deprecated in pandas 3
            from lifetimes import BetaGeoFitter
    except Exception as error:  # not installed, or broken against this numpy/pandas
        return None, f"lifetimes could not be imported: {type(error).__name__}: {error}"
    weeks = 7.0  # lifetimes fits best on weekly time, as Fader, Hardie & Lee do
    try:
        model = BetaGeoFitter(penalizer_coef=0.0)
        model.fit(train[:, 0], train[:, 1] / weeks, train[:, 2] / weeks)
        scores = model.conditional_expected_number_of_purchases_up_to_time(
            PERIOD_DAYS / weeks, test[:, 0], test[:, 1] / weeks, test[:, 2] / weeks
        )
        return np.asarray(scores, dtype=np.float64), None
    except Exception as error:
        return None, f"lifetimes BG/NBD failed: {type(error).__name__}: {error}"


@with_small_models
def run_cdnow(data_path: Path | None = None, *, seed: int = 0) -> dict[str, Any]:
    """Buy-again AUC and calibration of the three models (see the module docstring).

    ``data_path`` defaults to the copy that ships in the package (``legato/data/cdnow``).
    """
    given = shipped(CDNOW) if data_path is None else Path(data_path)
    path = find_file(given, ("CDNOW_master.txt", "cdnow/CDNOW_master.txt"), "the CDNOW file", HINT)
    cohort = load_cohort(path)
    order = np.random.default_rng(seed).permutation(cohort.bought_again.size)
    train, test = order[: order.size // 2], order[order.size // 2 :]
    X, y = cohort.features, cohort.bought_again

    probabilities: dict[str, FloatArray] = {}
    probabilities["legato"] = PurchasePropensity(random_state=seed).fit(X[train], y[train]).predict_proba(X[test])[:, 1]
    frequency, since_last = FEATURES.index("frequency"), FEATURES.index("days_since_last")
    rf = np.column_stack([np.log1p(X[:, frequency]), X[:, since_last]])
    baseline = make_pipeline(StandardScaler(), LogisticRegression()).fit(rf[train], y[train])
    probabilities["recency_frequency"] = baseline.predict_proba(rf[test])[:, 1]
    bgnbd, bgnbd_problem = _bgnbd_scores(X[train], X[test])

    auc: dict[str, float | None] = {name: float(roc_auc_score(y[test], p)) for name, p in probabilities.items()}
    auc["bgnbd"] = None if bgnbd is None else float(roc_auc_score(y[test], bgnbd))
    return {
        "auc": auc,
        "brier": {name: float(brier_score_loss(y[test], p)) for name, p in probabilities.items()} | {"bgnbd": None},
        "ece": {name: expected_calibration_error(y[test], p) for name, p in probabilities.items()} | {"bgnbd": None},
        "calibration_slope": {name: calibration_slope(y[test], p) for name, p in probabilities.items()}
        | {"bgnbd": None},
        "notes": {
            "bgnbd": bgnbd_problem
            or "BG/NBD ranks by expected holdout purchases (a count, not a probability): AUC only",
        },
        "settings": {
            "customers": int(y.size),
            "train_customers": int(train.size),
            "test_customers": int(test.size),
            "holdout_buy_rate": float(y.mean()),
            "calibration": f"{COHORT_START} + 39 weeks",
            "holdout": "the next 39 weeks",
            "seed": seed,
        },
    }


def render_table(result: dict[str, Any]) -> Table:
    settings = result["settings"]
    table = Table(
        title="CDNOW: will the customer buy again in the 39-week holdout?",
        caption=(
            f"{settings['test_customers']} test customers, holdout buy rate {number(settings['holdout_buy_rate'], 3)}; "
            f"bgnbd: {result['notes']['bgnbd']}"
        ),
    )
    for column in ("model", "AUC", "Brier", "ECE", "calibration slope"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name in ("legato", "recency_frequency", "bgnbd"):
        table.add_row(
            name,
            number(result["auc"][name]),
            number(result["brier"][name]),
            number(result["ece"][name]),
            number(result["calibration_slope"][name], 3),
        )
    return table
