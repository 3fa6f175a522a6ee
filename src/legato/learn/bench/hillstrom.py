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
   (class transformation + gradient boosting, 50/50 split; published uplift@30% = 0.0661 on
   its one split, with XGBoost): uplift@30% ("overall" strategy) and the normalized Qini
   coefficient on the test half. The boosting is :class:`ClassTransformationUplift` with
   its defaults, not tuned to this data.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv
from rich.table import Table

from legato.decide.policies import LinTS, LinUCB
from legato.learn.bench._common import find_file, number, small_models
from legato.learn.uplift import ClassTransformationUplift, TwoModelUplift, qini_auc_score, uplift_at_k

PUBLISHED_UPLIFT_AT_30 = 0.0661
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
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as raw:
            return pacsv.read_csv(raw)
    return pacsv.read_csv(path)


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
        path = Path(str(files("legato").joinpath("data/hillstrom.csv.gz")))
    else:
        path = find_file(
            data_dir,
            ("hillstrom.csv", "hillstrom.csv.gz", "hillstrom/hillstrom.csv"),
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


def _summary(values: list[float]) -> dict[str, float]:
    array = np.asarray(values)
    return {"value": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else 0.0}


def run_hillstrom(
    data_dir: Path | None = None,
    seed: int = 0,
    *,
    n_splits: int = 5,
    contact_cost: float = 0.03,
    sample: int | None = None,
) -> dict[str, Any]:
    """Run the benchmark (see the module docstring); ``sample`` keeps a random subset of rows (for tests)."""
    with small_models():
        return _run_hillstrom(data_dir=data_dir, seed=seed, n_splits=n_splits, contact_cost=contact_cost, sample=sample)


def _run_hillstrom(
    data_dir: Path | None = None,
    seed: int = 0,
    *,
    n_splits: int = 5,
    contact_cost: float = 0.03,
    sample: int | None = None,
) -> dict[str, Any]:
    data = load_hillstrom(data_dir)
    rng = np.random.default_rng(seed)
    rows = np.arange(data.arm.size)
    if sample is not None and sample < rows.size:
        rows = np.sort(rng.choice(rows, size=sample, replace=False))
    runs: dict[str, list[dict[str, Any]]] = {"policies": [], "policies_with_cost": []}
    uplift_30: list[float] = []
    qini: list[float] = []
    for split in range(n_splits):
        split_seed = seed * 1000 + split
        order = np.random.default_rng(split_seed).permutation(rows)
        train, test = np.sort(order[: order.size // 2]), np.sort(order[order.size // 2 :])
        plain, costly = _policy_values(data, train, test, (0.0, contact_cost), split_seed)
        runs["policies"].append(plain)
        runs["policies_with_cost"].append(costly)
        # The notebook's two segments: Womens (treated) vs No E-Mail (control), own 50/50 split.
        pair = order[data.arm[order] != 1]
        fit_rows, eval_rows = pair[: pair.size // 2], pair[pair.size // 2 :]
        model = ClassTransformationUplift(categorical_features=list(data.categorical), random_state=split_seed)
        model.fit(data.trees[fit_rows], (data.arm[fit_rows] == 2).astype(int), data.visit[fit_rows])
        uplift = model.predict_uplift(data.trees[eval_rows])
        treated = (data.arm[eval_rows] == 2).astype(int)
        uplift_30.append(uplift_at_k(data.visit[eval_rows], uplift, treated, k=0.3))
        qini.append(qini_auc_score(data.visit[eval_rows], uplift, treated))

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
        "published_uplift_at_30": PUBLISHED_UPLIFT_AT_30,
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
            f"± {number(result['uplift_detail']['uplift_at_30_std'])} "
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
