"""Decision throughput: how many customers per second a contextual policy decides for.

One batch of ``customers`` × ``features`` (first column ones, the rest standard normal), and
``actions`` actions. Every policy first learns from the same 10,000 logged decisions, then
decides for the batch:

- Legato: ``lin_ts`` (and ``lin_ucb``) ``decide`` on the whole batch, actions *and*
  propensities and expected values; median of ``repeats`` runs;
- MABWiser (Strong et al., 2021, "MABWiser: Parallelizable Contextual Multi-Armed Bandits",
  IJAIT): ``MAB.predict`` with ``LinTS`` and ``LinUCB``, actions only, the faster of
  ``n_jobs`` 1 and 2;
- Vowpal Wabbit (Langford et al.) ``--cb_explore_adf`` with customer × action interactions,
  ``predict`` one multi-line example at a time (its Python API), examples formatted before
  the clock starts so that only VW's own parsing and prediction are timed.

Peers are slower, so they first run on a subsample of ``peer_sample`` customers; a peer
whose rate says the whole batch takes at most ``full_batch_seconds`` is then measured on the
whole batch (a small sample sits in cache and would flatter it), the others' rate is
extrapolated from the subsample (VW and MABWiser's LinTS work row by row, so their rate
hardly depends on the batch size). Both peers are benchmark-only extras; a peer that is not
installed or fails is reported as null with the reason.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.table import Table

from legato.decide.policies import LinTS, LinUCB

FloatArray = npt.NDArray[np.float64]
TRAINING_ROWS = 10_000


def _data(customers: int, actions: int, features: int, seed: int) -> tuple[FloatArray, FloatArray, Any, Any]:
    rng = np.random.default_rng(seed)
    batch = rng.standard_normal((customers, features))
    batch[:, 0] = 1.0
    history = rng.standard_normal((TRAINING_ROWS, features))
    history[:, 0] = 1.0
    logged = rng.integers(0, actions, size=TRAINING_ROWS)
    # A reward with a real per-action signal, so posteriors are not flat.
    weights = rng.normal(0, 0.05, size=(features, actions))
    clicks = rng.random(TRAINING_ROWS) < np.clip(0.1 + (history @ weights)[np.arange(TRAINING_ROWS), logged], 0, 1)
    return batch, history, logged, clicks.astype(np.float64)


def _legato(
    policy: LinTS | LinUCB, batch: FloatArray, history: FloatArray, logged: Any, clicks: Any, repeats: int, seed: int
) -> dict[str, Any]:
    policy.update(history, logged, clicks, np.full(logged.size, 1.0 / policy.n_actions))
    rng = np.random.default_rng(seed)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.decide(batch, rng)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"decisions_per_s": batch.shape[0] / median, "seconds": median, "runs": seconds}


def _timed_rate(predict: Any, rows: FloatArray) -> float:
    start = time.perf_counter()
    predict(rows)
    return float(rows.shape[0] / (time.perf_counter() - start))


def _mabwiser(
    kind: str,
    batch: FloatArray,
    sample_size: int,
    history: FloatArray,
    logged: Any,
    clicks: Any,
    actions: int,
    seed: int,
    full_batch_seconds: float,
) -> dict[str, Any]:
    try:
        from mabwiser.mab import MAB, LearningPolicy
    except Exception as error:
        return {"decisions_per_s": None, "reason": f"mabwiser could not be imported: {type(error).__name__}: {error}"}
    learning = (
        LearningPolicy.LinTS(alpha=1.0, l2_lambda=1.0)
        if kind == "lin_ts"
        else LearningPolicy.LinUCB(alpha=1.0, l2_lambda=1.0)
    )
    sample = batch[:sample_size]
    rates: dict[int, float] = {}
    try:
        models = {}
        for jobs in (1, 2):
            models[jobs] = MAB(arms=list(range(actions)), learning_policy=learning, seed=seed, n_jobs=jobs)
            models[jobs].fit(logged, clicks, history)
            # Best of two: the first call also pays one-off set-up costs.
            rates[jobs] = max(_timed_rate(models[jobs].predict, sample) for _ in range(2))
        jobs = max(rates, key=lambda key: rates[key])
        measured_on = sample.shape[0]
        # A peer fast enough is measured on the whole batch: a small sample sits in cache
        # and would flatter it.
        if batch.shape[0] > sample.shape[0] and batch.shape[0] / rates[jobs] <= full_batch_seconds:
            rates[jobs] = _timed_rate(models[jobs].predict, batch)
            measured_on = batch.shape[0]
    except Exception as error:
        return {"decisions_per_s": None, "reason": f"mabwiser failed: {type(error).__name__}: {error}"}
    return {"decisions_per_s": rates[jobs], "n_jobs": jobs, "measured_on": measured_on}


def _vw_example(row: FloatArray, actions: int, label: tuple[int, float] | None = None) -> list[str]:
    lines = ["shared |s " + " ".join(f"f{j}:{value:.6g}" for j, value in enumerate(row))]
    for action in range(actions):
        # VW minimises cost: a click is cost -1, with the logging propensity 1/K.
        prefix = f"0:{-label[1]}:{1.0 / actions} " if label is not None and label[0] == action else ""
        lines.append(f"{prefix}|a a{action}")
    return lines


def _vw(sample: FloatArray, history: FloatArray, logged: Any, clicks: Any, actions: int) -> dict[str, Any]:
    try:
        import vowpalwabbit
    except Exception as error:
        return {
            "decisions_per_s": None,
            "reason": f"vowpalwabbit could not be imported: {type(error).__name__}: {error}",
        }
    try:
        workspace = vowpalwabbit.Workspace("--cb_explore_adf --epsilon 0.05 -q sa --quiet")
        for row, action, click in zip(history, logged, clicks, strict=True):
            workspace.learn(_vw_example(row, actions, (int(action), float(click))))
        examples = [_vw_example(row, actions) for row in sample]
        start = time.perf_counter()
        for example in examples:
            workspace.predict(example)
        rate = sample.shape[0] / (time.perf_counter() - start)
        workspace.finish()
    except Exception as error:
        return {"decisions_per_s": None, "reason": f"vowpalwabbit failed: {type(error).__name__}: {error}"}
    return {"decisions_per_s": rate, "measured_on": sample.shape[0]}


def run_throughput(
    customers: int = 1_000_000,
    actions: int = 24,
    features: int = 20,
    *,
    peer_sample: int = 20_000,
    repeats: int = 3,
    seed: int = 0,
    peers: bool = True,
    full_batch_seconds: float = 10.0,
) -> dict[str, Any]:
    batch, history, logged, clicks = _data(customers, actions, features, seed)
    legato_ts = _legato(LinTS(actions), batch, history, logged, clicks, repeats, seed)
    legato_ucb = _legato(LinUCB(actions), batch, history, logged, clicks, repeats, seed)
    sample = batch[: min(peer_sample, customers)]
    skipped: dict[str, Any] = {"decisions_per_s": None, "reason": "peers not measured (peers=False)"}
    mab_ts = (
        _mabwiser("lin_ts", batch, sample.shape[0], history, logged, clicks, actions, seed, full_batch_seconds)
        if peers
        else skipped
    )
    mab_ucb = (
        _mabwiser("lin_ucb", batch, sample.shape[0], history, logged, clicks, actions, seed, full_batch_seconds)
        if peers
        else skipped
    )
    vw = _vw(sample, history, logged, clicks, actions) if peers else skipped

    peer_rates = [
        rate for rate in (mab_ts["decisions_per_s"], mab_ucb["decisions_per_s"], vw["decisions_per_s"]) if rate
    ]
    fastest_peer = max(peer_rates) if peer_rates else None

    def ratio(rate: float | None, other: float | None) -> float | None:
        return rate / other if rate and other else None

    return {
        "customers": customers,
        "actions": actions,
        "decisions_per_s": {
            "legato": legato_ts["decisions_per_s"],
            "mabwiser": mab_ts["decisions_per_s"],
            "vw": vw["decisions_per_s"],
            "legato_lin_ucb": legato_ucb["decisions_per_s"],
            "mabwiser_lin_ucb": mab_ucb["decisions_per_s"],
        },
        "seconds_for_customers": {"legato": legato_ts["seconds"], "legato_lin_ucb": legato_ucb["seconds"]},
        "ratio": {
            "lin_ts_vs_mabwiser_lin_ts": ratio(legato_ts["decisions_per_s"], mab_ts["decisions_per_s"]),
            "lin_ucb_vs_mabwiser_lin_ucb": ratio(legato_ucb["decisions_per_s"], mab_ucb["decisions_per_s"]),
            "lin_ts_vs_vw": ratio(legato_ts["decisions_per_s"], vw["decisions_per_s"]),
            "lin_ts_vs_fastest_peer": ratio(legato_ts["decisions_per_s"], fastest_peer),
            "lin_ucb_vs_fastest_peer": ratio(legato_ucb["decisions_per_s"], fastest_peer),
        },
        "details": {
            "legato": legato_ts,
            "legato_lin_ucb": legato_ucb,
            "mabwiser": mab_ts,
            "mabwiser_lin_ucb": mab_ucb,
            "vw": vw,
        },
        "settings": {
            "features": features,
            "peer_sample": int(sample.shape[0]),
            "peer_rates": "see details[*].measured_on: the whole batch, or peer_sample customers extrapolated",
            "legato_outputs": "actions, propensities and expected values",
            "peer_outputs": "actions only (MABWiser); a probability mass function (VW)",
            "cpus": os.cpu_count(),
            "repeats": repeats,
            "seed": seed,
        },
    }


def render_table(result: dict[str, Any]) -> Table:
    settings, details = result["settings"], result["details"]
    table = Table(
        title=(
            f"Decisions per second: {result['customers']:,} customers × {result['actions']} actions"
            f" × {settings['features']} features"
        ),
        caption=(
            "peers measured on "
            + ", ".join(
                f"{label} {details[key]['measured_on']:,}"
                for key, label in (("mabwiser", "MABWiser LinTS"), ("mabwiser_lin_ucb", "LinUCB"), ("vw", "VW"))
                if details[key].get("measured_on")
            )
            + f" customers (rates extrapolated where fewer than the batch); {settings['cpus']} CPUs"
        ),
    )
    for column in ("engine / policy", "decisions/s", "Legato's speed-up"):
        table.add_column(column, justify="left" if column == "engine / policy" else "right")
    rates, ratios = result["decisions_per_s"], result["ratio"]

    def rate(value: float | None, key: str) -> str:
        return f"{value:,.0f}" if value else f"n/a ({details[key].get('reason', '')})"

    def times(value: float | None) -> str:
        return f"{value:.1f}×" if value else "n/a"

    seconds = result["seconds_for_customers"]
    table.add_row("Legato lin_ts", rate(rates["legato"], "legato"), f"{seconds['legato']:.2f} s for the batch")
    table.add_row(
        "Legato lin_ucb",
        rate(rates["legato_lin_ucb"], "legato_lin_ucb"),
        f"{seconds['legato_lin_ucb']:.2f} s for the batch",
    )
    table.add_row("MABWiser LinTS", rate(rates["mabwiser"], "mabwiser"), times(ratios["lin_ts_vs_mabwiser_lin_ts"]))
    table.add_row(
        "MABWiser LinUCB",
        rate(rates["mabwiser_lin_ucb"], "mabwiser_lin_ucb"),
        times(ratios["lin_ucb_vs_mabwiser_lin_ucb"]),
    )
    table.add_row("Vowpal Wabbit cb_explore_adf", rate(rates["vw"], "vw"), times(ratios["lin_ts_vs_vw"]))
    return table
