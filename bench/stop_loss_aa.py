"""Stop-loss A/A and power (issue 14, part 3): how often the sequential tests fire with no effect, and with one.

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/stop_loss_aa.py [--seeds N]``.
Prints a table and writes ``bench/results/stop_loss_aa.json``.

Each row simulates the tests' inputs for N seeds at once (NumPy): 30 daily looks at daily
binomial counts, exactly as :mod:`legato.monitor.stop_loss` reads them (cumulative since the
epoch for the mSPRT against the holdout; daily counts restarted and summed for a tripwire's
Shiryaev–Roberts statistic), with the rule's minimum sample. A/A rows put the truth on the
null's boundary (treated = holdout; the rate exactly at the limit), the hardest case for a
one-sided test; the naive row reads a fixed-sample one-sided z-test every day on the same
A/A data. The share of seeds that fired at least once is given with its Clopper–Pearson 95%
interval, and for power rows the median day of the first alarm.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from legato.monitor.sequential import clopper_pearson, holdout_log_lr, shiryaev_roberts, tripwire_threshold  # noqa: E402

RESULTS = Path(__file__).with_name("results") / "stop_loss_aa.json"
LOOKS = 30
ALPHA = 0.05


def guardrail(seeds: int, rng: np.random.Generator, p_t: float, p_c: float, *, harm_above: bool, sends: int, held: int, min_sends: int) -> np.ndarray:
    xt = np.cumsum(rng.binomial(sends, p_t, (seeds, LOOKS)), axis=1)
    xc = np.cumsum(rng.binomial(held, p_c, (seeds, LOOKS)), axis=1)
    nt, nc = np.cumsum(np.full((seeds, LOOKS), sends), axis=1), np.cumsum(np.full((seeds, LOOKS), held), axis=1)
    log_lr = holdout_log_lr(nt, xt, xt, nc, xc, xc, margin=0.0, harm_above=harm_above, binary=True, tuned_n=min_sends)
    return np.asarray((log_lr >= np.log(1 / ALPHA)) & (nt >= min_sends) & (nc >= 100))


def naive(seeds: int, rng: np.random.Generator, p: float, sends: int, held: int) -> np.ndarray:
    xt = np.cumsum(rng.binomial(sends, p, (seeds, LOOKS)), axis=1)
    xc = np.cumsum(rng.binomial(held, p, (seeds, LOOKS)), axis=1)
    nt, nc = np.cumsum(np.full((seeds, LOOKS), sends), axis=1), np.cumsum(np.full((seeds, LOOKS), held), axis=1)
    pt, pc = xt / nt, xc / nc
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (pt - pc) / np.sqrt(pt * (1 - pt) / nt + pc * (1 - pc) / nc)
    return np.asarray(z < -1.645)


def tripwire(seeds: int, rng: np.random.Generator, rates: np.ndarray, limit: float, *, sends: int, min_sends: int) -> np.ndarray:
    x = rng.binomial(sends, np.broadcast_to(rates, (seeds, LOOKS)))
    n = np.full((seeds, LOOKS), sends)
    return np.asarray(shiryaev_roberts(x, n, limit, min_trials=min_sends) >= tripwire_threshold(ALPHA))


def row(name: str, kind: str, alarms: np.ndarray) -> dict[str, Any]:
    fired = alarms.any(axis=1)
    k, n = int(fired.sum()), len(fired)
    low, high = clopper_pearson(k, n)
    first = np.argmax(alarms, axis=1)[fired] + 1
    return {"case": name, "kind": kind, "seeds": n, "fired": k, "rate": k / n, "ci_low": low, "ci_high": high,
            "median_first_look": float(np.median(first)) if k else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    s, rng = args.seeds, np.random.default_rng(args.seed)
    spike = np.where(np.arange(LOOKS) >= 9, 0.008, 0.002)
    rows = [
        row("conversion 2% = holdout, harm: lower (2,000 sends + 220 holdout a day)", "A/A", guardrail(s, rng, 0.02, 0.02, harm_above=False, sends=2000, held=220, min_sends=2000)),
        row("unsubscribes 0.2% = holdout, harm: higher", "A/A", guardrail(s, rng, 0.002, 0.002, harm_above=True, sends=2000, held=220, min_sends=2000)),
        row("visits 15% = holdout, harm: lower (200 + 25 a day)", "A/A", guardrail(s, rng, 0.15, 0.15, harm_above=False, sends=200, held=25, min_sends=500)),
        row("naive daily z-test, conversion 2% = holdout", "A/A (naive)", naive(s, rng, 0.02, 2000, 220)),
        row("complaints at the 0.3% limit (6,000 a day)", "A/A", tripwire(s, rng, np.full(LOOKS, 0.003), 0.003, sends=6000, min_sends=500)),
        row("unsubscribes at a 1% limit (100 a day)", "A/A", tripwire(s, rng, np.full(LOOKS, 0.01), 0.01, sends=100, min_sends=100)),
        row("unsubscribes 0.2% against a 0.3% limit (the world's rate)", "A/A", tripwire(s, rng, np.full(LOOKS, 0.002), 0.003, sends=6000, min_sends=500)),
        row("conversion 40% lower than holdout", "power", guardrail(s, rng, 0.012, 0.02, harm_above=False, sends=2000, held=220, min_sends=2000)),
        row("unsubscribes 0.2% then 0.8% from day 10, 0.3% limit", "power", tripwire(s, rng, spike, 0.003, sends=6000, min_sends=500)),
        row("complaints 0.45% against the 0.3% limit (6,000 a day)", "power", tripwire(s, rng, np.full(LOOKS, 0.0045), 0.003, sends=6000, min_sends=500)),
    ]
    console = Console()
    table = Table("case", "kind", "seeds", "fired", "95% interval", "median first look", title=f"stop-loss over {LOOKS} daily looks, alpha {ALPHA}",
                  title_justify="left")
    for r in rows:
        table.add_row(r["case"], r["kind"], f"{r['seeds']:,}", f"{r['rate']:.2%}", f"[{r['ci_low']:.2%}, {r['ci_high']:.2%}]",
                      "-" if r["median_first_look"] is None else f"{r['median_first_look']:g}")
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"looks": LOOKS, "alpha": ALPHA, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {RESULTS}", highlight=False)


if __name__ == "__main__":
    main()
