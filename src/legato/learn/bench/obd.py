"""Open Bandit Dataset benchmark: estimate a real policy's click rate from another policy's logs.

ZOZOTOWN logged the same fashion recommendation slots under two policies: uniform Random and
Bernoulli Thompson Sampling (BTS). From the Random logs alone we estimate the click rate BTS
would have had, with IPS, SNIPS and doubly robust estimators (:mod:`legato.learn.ope`), and
compare it with the click rate BTS actually had in its own logs (Saito, Aihara, Matsutani &
Narita, 2021, "Open Bandit Dataset and Pipeline: Towards Realistic and Reproducible
Off-Policy Evaluation", NeurIPS Datasets and Benchmarks).

BTS's action distribution comes from its Beta prior (``prior_bts.yaml``): per Monte Carlo
draw, one Beta sample per item, and the item at position p is the one with the p-th highest
sample (a top-3 ranking without replacement). π(item | position) is the share of draws that
put the item there. Each logged impression is one decision: its action is the item, its
context the position, its logged propensity the Random policy's ``propensity_score``.

The doubly robust estimator needs a reward model q̂(user, item, position): a logistic
regression on one-hot position, item and user features, cross-fitted over five folds
(Chernozhukov et al., 2018, "Double/debiased machine learning for treatment and structural
parameters") so that no impression is scored by a model that saw it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml
from rich.table import Table
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from legato.datasets import OBD, open_binary, shipped
from legato.errors import LegatoError
from legato.learn.bench._common import number, require_file, with_small_models
from legato.learn.ope import IPS, SNIPS, DoublyRobust

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

N_POSITIONS = 3
HINT = (
    "point --data at an Open Bandit Dataset folder holding random/CAMPAIGN/CAMPAIGN.csv, "
    "bts/CAMPAIGN/CAMPAIGN.csv, random/CAMPAIGN/item_context.csv and prior_bts.yaml "
    "(the CSV files may be .xz or .gz), or omit --data to use the packaged sample (campaign all)"
)


def bts_action_distribution(
    alpha: FloatArray, beta: FloatArray, n_simulations: int, seed: int, n_positions: int = N_POSITIONS
) -> FloatArray:
    """π(item | position), (n_items, n_positions), of Bernoulli TS ranking by Beta samples."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((alpha.size, n_positions))
    block = 10_000  # draws at a time: bounded memory whatever n_simulations is
    for start in range(0, n_simulations, block):
        size = min(block, n_simulations - start)
        samples = rng.beta(alpha, beta, size=(size, alpha.size))
        top = np.argpartition(-samples, n_positions - 1, axis=1)[:, :n_positions]
        ranked = np.take_along_axis(top, np.argsort(-np.take_along_axis(samples, top, axis=1), axis=1), axis=1)
        for position in range(n_positions):
            counts[:, position] += np.bincount(ranked[:, position], minlength=alpha.size)
    return counts / n_simulations


def _read_csv(path: Path, what: str) -> pa.Table:
    with open_binary(require_file(path, what, HINT)) as raw:
        return pacsv.read_csv(raw)


def _read_logs(path: Path) -> pa.Table:
    table = _read_csv(path, "an Open Bandit Dataset log")
    needed = {"item_id", "position", "click", "propensity_score"}
    missing = needed - set(table.column_names)
    if missing:
        raise LegatoError(f"{path} lacks the columns {', '.join(sorted(missing))}", hint=HINT)
    return table


def _one_hot(codes: IntArray, size: int) -> FloatArray:
    return np.eye(size)[codes]


def _category_codes(column: pa.ChunkedArray) -> tuple[IntArray, int]:
    encoded = column.combine_chunks().dictionary_encode()
    return encoded.indices.to_numpy().astype(np.int64), len(encoded.dictionary)


def _item_matrix(path: Path, n_items: int) -> FloatArray:
    """One row per item: one-hot item id, the numeric feature and one-hot categorical features."""
    table = _read_csv(path, "the item features file")
    items = table["item_id"].to_numpy().astype(np.int64)
    columns: list[FloatArray] = [np.eye(n_items)]
    for name in table.column_names:
        if not name.startswith("item_feature_"):
            continue
        column = table[name]
        if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
            values = np.zeros((n_items, 1))
            values[items, 0] = column.to_numpy()
            columns.append(values)
        else:
            codes, size = _category_codes(column)
            values = np.zeros((n_items, size))
            values[items] = _one_hot(codes, size)
            columns.append(values)
    return np.hstack(columns)


def _user_matrix(table: pa.Table) -> FloatArray:
    blocks = []
    for name in table.column_names:
        if name.startswith("user_feature_"):
            codes, size = _category_codes(table[name])
            blocks.append(_one_hot(codes, size))
    return np.hstack(blocks) if blocks else np.zeros((table.num_rows, 0))


def _reward_model(
    users: FloatArray, items: FloatArray, item: IntArray, position: IntArray, click: FloatArray, seed: int
) -> FloatArray:
    """Cross-fitted q̂ for every item at each impression's own position: (n, n_items)."""
    n, n_items = item.size, items.shape[0]

    def design(rows: IntArray, item_ids: IntArray) -> FloatArray:
        return np.hstack([_one_hot(position[rows], N_POSITIONS), items[item_ids], users[rows]])

    predictions = np.zeros((n, n_items))
    if click.min() == click.max():  # nothing to learn: a constant model is the honest one
        return np.full((n, n_items), click.mean())
    for fit_rows, score_rows in KFold(5, shuffle=True, random_state=seed).split(np.arange(n)):
        if click[fit_rows].min() == click[fit_rows].max():
            predictions[score_rows] = click[fit_rows].mean()
            continue
        model = LogisticRegression(max_iter=2000).fit(design(fit_rows, item[fit_rows]), click[fit_rows])
        repeated = np.repeat(score_rows, n_items)
        every_item = np.tile(np.arange(n_items), score_rows.size)
        predictions[score_rows] = model.predict_proba(design(repeated, every_item))[:, 1].reshape(-1, n_items)
    return predictions


@with_small_models
def run_obd(
    data_dir: Path | None = None,
    campaign: str = "all",
    *,
    n_simulations: int = 100_000,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Estimate BTS's click rate from the Random logs and compare it with BTS's own logs.

    ``data_dir`` defaults to the sample that ships in the package (``legato/data/obd``).
    """
    data_dir = shipped(OBD) if data_dir is None else Path(data_dir)
    random_logs = _read_logs(data_dir / "random" / campaign / f"{campaign}.csv")
    bts_logs = _read_logs(data_dir / "bts" / campaign / f"{campaign}.csv")
    prior_path = require_file(data_dir / "prior_bts.yaml", "the BTS prior", HINT)
    prior = yaml.safe_load(prior_path.read_text())
    if campaign not in prior:
        raise LegatoError(
            f"{prior_path} has no prior for campaign {campaign!r}", hint=f"campaigns there: {', '.join(prior)}"
        )
    alpha = np.asarray(prior[campaign]["alpha"], dtype=np.float64)
    beta = np.asarray(prior[campaign]["beta"], dtype=np.float64)
    items = _item_matrix(data_dir / "random" / campaign / "item_context.csv", alpha.size)

    item = random_logs["item_id"].to_numpy().astype(np.int64)
    position = random_logs["position"].to_numpy().astype(np.int64)
    position = position - 1 if position.min() >= 1 else position  # the published files count from 1
    if position.min() < 0 or position.max() >= N_POSITIONS:
        raise LegatoError(
            f"positions must be 1..{N_POSITIONS}, found {position.min() + 1}..{position.max() + 1}", hint=HINT
        )
    click = random_logs["click"].to_numpy().astype(np.float64)
    logged = random_logs["propensity_score"].to_numpy().astype(np.float64)
    if item.max() >= alpha.size:
        raise LegatoError(f"the logs name item {item.max()} but the prior has {alpha.size} items", hint=HINT)

    distribution = bts_action_distribution(alpha, beta, n_simulations, seed)  # (items, positions)
    policy = distribution[:, position].T  # π(· | position of each impression): (n, items)
    target = policy[np.arange(item.size), item]
    q = _reward_model(_user_matrix(random_logs), items, item, position, click, seed)

    on_policy = float(bts_logs["click"].to_numpy().astype(np.float64).mean())
    estimates = {
        "ips": IPS(n_bootstrap, seed=seed).estimate(click, logged, target),
        "snips": SNIPS(n_bootstrap, seed=seed).estimate(click, logged, target),
        "dr": DoublyRobust(n_bootstrap, seed=seed).estimate(
            click, logged, target, actions=item, reward_predictions=q, policy_distribution=policy
        ),
    }
    return {
        "campaign": campaign,
        "on_policy_ctr": on_policy,
        "estimates": {
            name: {
                "value": estimate.value,
                "relative_error": abs(estimate.value - on_policy) / on_policy if on_policy > 0 else None,
                "ci_low": estimate.ci_low,
                "ci_high": estimate.ci_high,
                "std_error": estimate.std_error,
            }
            for name, estimate in estimates.items()
        },
        "random_ctr": float(click.mean()),
        "settings": {
            "impressions": int(item.size),
            "clicks": int(click.sum()),
            "n_simulations": n_simulations,
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "reward_model": "logistic regression on position, item and user one-hots, 5-fold cross-fitted",
        },
    }


def render_table(result: dict[str, Any]) -> Table:
    settings = result["settings"]
    table = Table(
        title=f"Open Bandit Dataset ({result['campaign']}): BTS click rate estimated from the Random logs",
        caption=(
            f"BTS's own logged click rate {number(result['on_policy_ctr'], 5)}; "
            f"Random's {number(result['random_ctr'], 5)}; "
            f"{settings['impressions']} impressions, {settings['clicks']} clicks: wide error bars"
        ),
    )
    for column, justify in (
        ("estimator", "left"),
        ("estimate", "right"),
        ("95% CI", "right"),
        ("relative error", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, estimate in result["estimates"].items():
        table.add_row(
            name.upper(),
            number(estimate["value"], 5),
            f"{number(estimate['ci_low'], 5)} – {number(estimate['ci_high'], 5)}",
            number(estimate["relative_error"], 3),
        )
    return table
