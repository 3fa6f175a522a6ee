"""Hillstrom benchmark: whom to e-mail, with which message, judged on a real randomized test.

Kevin Hillstrom's MineThatData e-mail experiment (2008) assigned 64,000 customers at random,
1/3 each, to a Mens e-mail, a Womens e-mail or no e-mail. Because the assignment
probabilities are known, any per-customer policy can be evaluated without bias on held-out
rows by inverse propensity scoring (Horvitz & Thompson, 1952): V(π) = mean(1[π(x)=a]·r / (1/3)).

Protocol, repeated over ``n_splits`` random 50/50 splits (mean and standard deviation reported):

1. Policy value, target ``visit``. The learned policy is chosen *on the training half only*
   from three candidates (a two-model gradient-boosting uplift model acting greedily, and
   the ``lin_ucb`` and ``lin_ts`` policies updated with the training logs) by two-fold
   IPS on the training half, refitted on the whole half, then evaluated on the test half
   against e-mailing nobody, everybody with Mens, everybody with Womens, and random.
   The same again with a contact cost of ``contact_cost`` visits per e-mail: the policies
   learn from the net reward (visit − cost when an e-mail is sent), and a policy's value is
   its IPS visits minus the cost of the e-mails it sends (known exactly, so not estimated).
2. Uplift of Womens vs No E-Mail on ``visit``, following scikit-uplift's pipeline notebook
   (``notebooks/pipeline_usage_EN.ipynb``, scikit-uplift 0.1.0; it prints uplift@30% =
   0.0660, 0.0661 in other revisions) step by step:

   - rows: the Mens E-Mail rows dropped, treatment = Womens E-Mail, target ``visit``, the
     eight customer columns as features (``conversion`` and ``spend`` dropped);
   - split: ``train_test_split(rows, test_size=0.5, random_state=…)`` of those rows in file
     order (the notebook's one split is ``random_state=42``);
   - features: ``history_segment``, ``zip_code`` and ``channel`` (the object columns) by
     category_encoders' ``CatBoostEncoder`` with its defaults (ordered target statistics on
     the training rows in their shuffled order, prior = mean visit rate, a = 1; the full
     training statistics for the test rows), fitted on ``visit`` as the pipeline does; the
     five numeric columns as they are;
   - model: class transformation, unweighted as in scikit-uplift's ``ClassTransformation``,
     around ``XGBClassifier(max_depth=2, random_state=42)``. When XGBoost is installed (a
     benchmark-only extra) it is that very classifier with XGBoost 1.0's defaults (the
     notebook ran in April 2020: 100 trees, learning rate 0.3, exact splits, base score 0.5);
     this reproduces the notebook's printed 0.0660 on its split. Without XGBoost the booster
     is scikit-learn's histogram gradient boosting with the same settings as far as they
     map (min_child_weight = 1 read as at least 4 rows per leaf, the hessian p(1−p) being at
     most 1/4; 255 bins instead of exact splits); ``uplift_detail.booster`` says which ran.
     Nothing is tuned; the notebook's own settings are taken as they are;
   - metric: ``uplift_at_k(k=0.3, strategy="overall")`` and the normalized Qini
     coefficient on the test half.

   ``uplift_at_30`` is the mean over ``n_splits`` random splits (``random_state`` = the
   split's seed); ``uplift_detail.notebook_split`` is the notebook's exact split
   (``random_state=42``), the number to put next to the published one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.table import Table
from sklearn.model_selection import train_test_split

from legato.datasets import HILLSTROM, open_binary, shipped_file
from legato.decide.policies import LinTS, LinUCB
from legato.learn.bench._common import find_file, number, with_small_models
from legato.learn.uplift import ClassTransformationUplift, TwoModelUplift, qini_auc_score, uplift_at_k

PUBLISHED_UPLIFT_AT_30 = 0.0661
NOTEBOOK_SEED = 42  # train_test_split(..., random_state=42) in the notebook
# XGBClassifier(max_depth=2) with XGBoost ≥ 1.0's defaults, in scikit-learn's booster.
NOTEBOOK_BOOSTER: dict[str, Any] = {
    "max_iter": 100,
    "learning_rate": 0.3,
    "max_depth": 2,
    "l2_regularization": 1.0,
    "min_samples_leaf": 4,
}
NOTEBOOK_CATEGORICAL = (5, 6, 7)  # zip code, channel, history segment: the notebook's object columns
ARMS = ("No E-Mail", "Mens E-Mail", "Womens E-Mail")  # arm index 0, 1, 2
PROPENSITY = 1.0 / 3.0
BASELINES = ("no_email", "mens_all", "womens_all", "random")
CANDIDATES = ("two_model_gbm", "lin_ucb", "lin_ts")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class HillstromData:
    trees: FloatArray  # recency, history, mens, womens, newbie, zip code, channel, history segment
    categorical: tuple[int, ...]  # columns of ``trees`` holding category codes
    linear: FloatArray  # ones, scaled numbers and one-hot categories, for the linear policies
    arm: IntArray
    visit: FloatArray


def _read(path: Path) -> pa.Table:
    with open_binary(path) as raw:
        return pacsv.read_csv(raw)


def _codes(table: pa.Table, column: str) -> tuple[IntArray, list[str]]:
    values = table[column].combine_chunks().dictionary_encode()
    labels = [str(v) for v in values.dictionary.to_pylist()]
    order = np.argsort(labels)  # sorted labels: codes do not depend on row order
    rank = np.empty(len(labels), dtype=np.int64)
    rank[order] = np.arange(len(labels))
    return rank[values.indices.to_numpy()], sorted(labels)


def load_hillstrom(data_dir: Path | None = None) -> HillstromData:
    """The experiment's rows as arrays; the packaged copy unless ``data_dir`` says otherwise."""
    if data_dir is None:
        path = shipped_file(HILLSTROM)
    else:
        path = find_file(
            data_dir,
            ("hillstrom.csv", "hillstrom/hillstrom.csv"),
            "the Hillstrom file",
            "pass --data the hillstrom.csv file or the folder holding it, or omit --data to use the packaged copy",
        )
    table = _read(path)
    zip_code, _ = _codes(table, "zip_code")
    channel, _ = _codes(table, "channel")
    history_segment, _ = _codes(table, "history_segment")  # "1) $0 - $100" … sort in order
    segment, labels = _codes(table, "segment")
    arm = np.array([ARMS.index(label) for label in labels])[segment]
    number_columns = [
        table[name].to_numpy().astype(np.float64) for name in ("recency", "history", "mens", "womens", "newbie")
    ]
    trees = np.column_stack([*number_columns, zip_code, channel, history_segment]).astype(np.float64)
    recency, history = number_columns[0], number_columns[1]
    linear = np.column_stack(
        [
            np.ones(len(arm)),
            recency / 12.0,
            np.log1p(history) / np.log1p(history).max(),
            *number_columns[2:],
            np.eye(3)[zip_code],
            np.eye(3)[channel],
            np.eye(7)[history_segment],
        ]
    )
    return HillstromData(trees, (5, 6), linear, arm.astype(np.int64), table["visit"].to_numpy().astype(np.float64))


def _value(chosen: IntArray, arm: IntArray, visit: FloatArray, contact_cost: float) -> float:
    """Visits per customer of a deterministic policy, minus its contact costs.

    The visits are estimated by IPS on the uniformly randomized log; the cost of the
    policy's own e-mails is known exactly, so it is subtracted exactly rather than
    estimated (same expectation, less variance).
    """
    visits = float(np.mean((chosen == arm) * visit / PROPENSITY))
    return visits - contact_cost * float(np.mean(chosen != 0))


def _costs(contact_cost: float) -> FloatArray:
    return np.array([0.0, contact_cost, contact_cost])


def _choose(
    candidate: str, data: HillstromData, train: IntArray, test: IntArray, contact_costs: tuple[float, ...], seed: int
) -> list[IntArray]:
    """The actions one candidate policy, trained on ``train``, takes for ``test``, per contact cost."""
    if candidate == "two_model_gbm":
        # The outcome models do not depend on the cost, only the decision rule does: fit once.
        model = TwoModelUplift(categorical_features=list(data.categorical), random_state=seed)
        model.fit(data.trees[train], data.arm[train], data.visit[train])
        outcomes = model.predict_outcomes(data.trees[test])
        return [np.argmax(outcomes - _costs(cost), axis=1) for cost in contact_costs]
    chosen = []
    for cost in contact_costs:
        policy = LinUCB(3) if candidate == "lin_ucb" else LinTS(3)
        net = data.visit[train] - _costs(cost)[data.arm[train]]
        policy.update(data.linear[train], data.arm[train], net, np.full(train.size, PROPENSITY))
        chosen.append(policy.decide(data.linear[test], np.random.default_rng(seed)).actions)
    return chosen


def _select(data: HillstromData, train: IntArray, contact_costs: tuple[float, ...], seed: int) -> list[str]:
    """Per contact cost, the candidate with the best two-fold IPS value inside the training half."""
    folds = np.array_split(np.random.default_rng(seed).permutation(train), 2)
    scores = np.zeros((len(contact_costs), len(CANDIDATES)))
    for column, candidate in enumerate(CANDIDATES):
        for fit_rows, eval_rows in ((folds[0], folds[1]), (folds[1], folds[0])):
            for row, (cost, chosen) in enumerate(
                zip(contact_costs, _choose(candidate, data, fit_rows, eval_rows, contact_costs, seed), strict=True)
            ):
                scores[row, column] += _value(chosen, data.arm[eval_rows], data.visit[eval_rows], cost) / 2
    return [CANDIDATES[int(best)] for best in scores.argmax(axis=1)]


def _policy_values(
    data: HillstromData, train: IntArray, test: IntArray, contact_costs: tuple[float, ...], seed: int
) -> list[dict[str, Any]]:
    """Per contact cost: baseline values, every candidate's value, and the selected one's."""
    arm = data.arm[test]
    chosen = {name: _choose(name, data, train, test, contact_costs, seed) for name in CANDIDATES}
    selected = _select(data, train, contact_costs, seed)
    runs = []
    for index, cost in enumerate(contact_costs):
        visit = data.visit[test]
        values = {
            "no_email": _value(np.zeros(test.size, dtype=np.int64), arm, visit, cost),
            "mens_all": _value(np.ones(test.size, dtype=np.int64), arm, visit, cost),
            "womens_all": _value(np.full(test.size, 2, dtype=np.int64), arm, visit, cost),
            # Uniform random: every logged action has probability 1/3 under it (weight 1),
            # and it e-mails two customers in three.
            "random": float(visit.mean()) - cost * 2.0 / 3.0,
        }
        candidates = {name: _value(actions[index], arm, visit, cost) for name, actions in chosen.items()}
        runs.append(
            {
                "values": values,
                "candidates": candidates,
                "selected": selected[index],
                "learned": candidates[selected[index]],
            }
        )
    return runs


def catboost_encode(
    train_codes: IntArray, train_y: FloatArray, test_codes: IntArray, a: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    """Ordered target statistics, as category_encoders' ``CatBoostEncoder`` (defaults) computes them.

    Prokhorenkova et al. (2018), "CatBoost: unbiased boosting with categorical features"
    (NeurIPS): a training row gets (Σ y of the *earlier* rows of its category + prior) /
    (their count + a), so its own label never leaks into its feature; a test row gets the
    same with every training row of its category; an unseen category gets the prior (the
    mean of y).
    """
    prior = float(train_y.mean())
    train = np.empty(train_codes.size)
    test = np.full(test_codes.size, prior)
    for category in np.unique(train_codes):
        rows = np.flatnonzero(train_codes == category)  # in row order
        y = train_y[rows]
        train[rows] = (np.cumsum(y) - y + prior) / (np.arange(rows.size) + a)
        test[test_codes == category] = (y.sum() + prior) / (rows.size + a)
    return train, test


def _xgboost() -> Any:
    """The xgboost module if it is installed (benchmark-only extra), else None."""
    try:
        import xgboost  # type: ignore[import-not-found,unused-ignore]
    except Exception:
        return None
    return xgboost


def booster_name() -> str:
    xgboost = _xgboost()
    if xgboost is not None:
        return f"xgboost {xgboost.__version__} XGBClassifier(max_depth=2), 1.0 defaults"
    return "scikit-learn HistGradientBoostingClassifier (xgboost not installed)"


def _notebook_uplift(data: HillstromData, pair: IntArray, seed: int) -> dict[str, Any]:
    """uplift@30% and Qini of the notebook's pipeline on one split of ``pair`` (Womens and No
    E-Mail rows, in file order), with ``random_state=seed``."""
    fit_rows, eval_rows = train_test_split(pair, test_size=0.5, random_state=seed)
    x_fit, x_eval = data.trees[fit_rows].copy(), data.trees[eval_rows].copy()
    visit_fit = data.visit[fit_rows]
    for column in NOTEBOOK_CATEGORICAL:
        x_fit[:, column], x_eval[:, column] = catboost_encode(
            x_fit[:, column].astype(np.int64), visit_fit, x_eval[:, column].astype(np.int64)
        )
    treated_fit = (data.arm[fit_rows] == 2).astype(int)
    xgboost = _xgboost()
    if xgboost is not None:
        # scikit-uplift's ClassTransformation: z = 1 when y == t, unweighted; uplift = 2P(z) − 1.
        classifier = xgboost.XGBClassifier(
            max_depth=2, random_state=NOTEBOOK_SEED, n_estimators=100, learning_rate=0.3,
            tree_method="exact", base_score=0.5, n_jobs=1,
        )
        classifier.fit(x_fit, (visit_fit == treated_fit).astype(int))
        uplift = 2.0 * classifier.predict_proba(x_eval)[:, 1] - 1.0
    else:
        model = ClassTransformationUplift(balanced=False, random_state=seed, **NOTEBOOK_BOOSTER)
        model.fit(x_fit, treated_fit, visit_fit)
        uplift = model.predict_uplift(x_eval)
    treated = (data.arm[eval_rows] == 2).astype(int)
    return {
        "uplift_at_30": uplift_at_k(data.visit[eval_rows], uplift, treated, k=0.3),
        "qini": qini_auc_score(data.visit[eval_rows], uplift, treated),
        "train_rows": int(fit_rows.size),
        "test_rows": int(eval_rows.size),
        "random_state": seed,
    }


def _summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {"value": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else 0.0}


@with_small_models
def run_hillstrom(
    data_dir: Path | None = None,
    seed: int = 0,
    *,
    n_splits: int = 5,
    contact_cost: float = 0.03,
    sample: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); ``sample`` keeps a random subset of rows (for tests)."""
    data = load_hillstrom(data_dir)
    rng = np.random.default_rng(seed)
    rows = np.arange(data.arm.size)
    if sample is not None and sample < rows.size:
        rows = np.sort(rng.choice(rows, size=sample, replace=False))
    runs: dict[str, list[dict[str, Any]]] = {"policies": [], "policies_with_cost": []}
    pair = rows[data.arm[rows] != 1]  # Womens and No E-Mail rows, in file order
    uplift_30: list[float] = []
    qini: list[float] = []
    for split in range(n_splits):
        split_seed = seed * 1000 + split
        order = np.random.default_rng(split_seed).permutation(rows)
        train, test = np.sort(order[: order.size // 2]), np.sort(order[order.size // 2 :])
        plain, costly = _policy_values(data, train, test, (0.0, contact_cost), split_seed)
        runs["policies"].append(plain)
        runs["policies_with_cost"].append(costly)
        # The notebook's two segments, Womens (treated) vs No E-Mail (control), its pipeline.
        scores = _notebook_uplift(data, pair, split_seed)
        uplift_30.append(scores["uplift_at_30"])
        qini.append(scores["qini"])
    notebook = _notebook_uplift(data, pair, NOTEBOOK_SEED)

    result: dict[str, Any] = {}
    for key, split_runs in runs.items():
        table = {"learned": _summary([run["learned"] for run in split_runs])}
        table.update({name: _summary([run["values"][name] for run in split_runs]) for name in BASELINES})
        result[key] = table
        best_single = max(("no_email", "mens_all", "womens_all"), key=lambda name: table[name]["value"])
        result[f"{key}_detail"] = {
            "candidates": {name: _summary([run["candidates"][name] for run in split_runs]) for name in CANDIDATES},
            "selected": [run["selected"] for run in split_runs],
            "best_single_arm": best_single,
            # Paired over splits: the same test rows judge both, so this spread is the honest one.
            "learned_minus_best_single": _summary([run["learned"] - run["values"][best_single] for run in split_runs]),
        }
    result["uplift_at_30"] = float(np.mean(uplift_30))
    result["qini"] = float(np.mean(qini))
    result["uplift_detail"] = {
        "uplift_at_30_std": float(np.std(uplift_30, ddof=1)) if n_splits > 1 else 0.0,
        "qini_std": float(np.std(qini, ddof=1)) if n_splits > 1 else 0.0,
        "uplift_at_30_per_split": [float(v) for v in uplift_30],
        "qini_per_split": [float(v) for v in qini],
        "notebook_split": notebook,
        "booster": booster_name(),
        "published_uplift_at_30": PUBLISHED_UPLIFT_AT_30,
        "protocol": (
            "scikit-uplift pipeline notebook: Womens vs No E-Mail, target visit, train_test_split 50/50, "
            "CatBoostEncoder on history_segment/zip_code/channel, unweighted class transformation, "
            "gradient boosting as XGBClassifier(max_depth=2) (scikit-learn's, XGBoost ≥ 1.0 defaults), "
            "uplift_at_k(k=0.3, strategy='overall')"
        ),
    }
    result["settings"] = {
        "rows": int(rows.size),
        "splits": n_splits,
        "seed": seed,
        "contact_cost": contact_cost,
        "target": "visit",
        "estimator": "IPS with assignment probability 1/3 on the held-out half",
    }
    return result


def render_table(result: dict[str, Any]) -> Table:
    settings = result["settings"]
    table = Table(
        title=f"Hillstrom: policy value (visits per customer, IPS, mean ± std over {settings['splits']} splits)",
        caption=(
            f"uplift@30% (Womens vs No E-Mail) {number(result['uplift_at_30'])} "
            f"± {number(result['uplift_detail']['uplift_at_30_std'])} over the splits, "
            f"{number(result['uplift_detail']['notebook_split']['uplift_at_30'])} on the notebook's split "
            f"(published {PUBLISHED_UPLIFT_AT_30}); Qini {number(result['qini'])}; "
            f"learned = {', '.join(result['policies_detail']['selected'])} / "
            f"{', '.join(result['policies_with_cost_detail']['selected'])} per split"
        ),
    )
    table.add_column("policy")
    table.add_column("value", justify="right")
    table.add_column(f"value with cost {settings['contact_cost']}/e-mail", justify="right")
    for name in ("learned", *BASELINES):
        plain, costly = result["policies"][name], result["policies_with_cost"][name]
        table.add_row(
            name,
            f"{number(plain['value'])} ± {number(plain['std'])}",
            f"{number(costly['value'])} ± {number(costly['std'])}",
        )
    plain = result["policies_detail"]["learned_minus_best_single"]
    costly = result["policies_with_cost_detail"]["learned_minus_best_single"]
    table.add_row(
        "learned − best single arm (paired)",
        f"{plain['value']:+.4f} ± {number(plain['std'])}",
        f"{costly['value']:+.4f} ± {number(costly['std'])}",
    )
    return table
