"""Anomaly detection (issue 14, part 2): detection rate and false alarms on simulated daily KPI series.

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/anomaly_detection.py [--series N]``.
Prints a table and writes ``bench/results/anomaly_detection.json``.

**The series.** 84 days (12 weeks) of a rate: trials a day around a mean (small 80, medium
800, large 6,000, ±30% day to day), a weekly pattern (weekend days 25-30% lower, Tuesday and
Wednesday higher), and day-to-day variation a binomial does not explain (the rate times a
lognormal with σ 0.1). Base rates: 0.2% (unsubscribes), 2% (conversions), 10% (visits).
Each series gets one fault at a random day between 35 and 75, or none:

- *spike*: the rate ×3 on that day only; *drop*: ×0.3 on that day only;
- *level shift*: ×1.5 from that day on (detected if flagged within 7 days of the shift).

**Measures.** Each detector scores every day from day 15 on, learning each day after scoring
it (``learn_one``/``score_one``). Detection rate = faults flagged (on the day; for a shift
within 7 days) / faults. False alarms = flags on days without a fault (before a shift, and
every day of the clean series), per 1,000 days scored, and the share of clean series with at
least one false alarm over their 70 days. Compared with a naive z-score (mean and standard
deviation of the last 56 days' rates, |z| > 3, no weekday pattern, no count awareness).
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

from legato.monitor.anomaly import SeasonalRateDetector  # noqa: E402

RESULTS = Path(__file__).with_name("results") / "anomaly_detection.json"
DAYS = 84
WEEKLY = np.array([1.0, 1.1, 1.1, 1.0, 0.95, 0.75, 0.7])  # Monday first
SIZES = {"small": 80, "medium": 800, "large": 6000}
RATES = {"0.2%": 0.002, "2%": 0.02, "10%": 0.10}
KINDS = ("none", "spike", "drop", "level_shift")
FACTOR = {"spike": 3.0, "drop": 0.3, "level_shift": 1.5}
SHIFT_WINDOW = 7


class NaiveZ:
    """The baseline: a z-score of the day's rate against the last 56 days' mean and deviation."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def learn_one(self, weekday: int, events: float, trials: float | None) -> None:
        if trials:
            self.rates = (self.rates + [events / trials])[-56:]

    def score_one(self, weekday: int, events: float, trials: float | None) -> bool | None:
        if len(self.rates) < 14 or not trials:
            return None
        sd = float(np.std(self.rates))
        return bool(sd > 0 and abs(events / trials - float(np.mean(self.rates))) / sd > 3.0)


def simulate(rng: np.random.Generator, size: int, rate: float, kind: str) -> tuple[np.ndarray, np.ndarray, int]:
    start = int(rng.integers(35, 76))
    days = np.arange(DAYS)
    p = rate * WEEKLY[days % 7] * rng.lognormal(0.0, 0.1, DAYS)
    if kind in ("spike", "drop"):
        p[start] *= FACTOR[kind]
    elif kind == "level_shift":
        p[start:] *= FACTOR[kind]
    n = np.maximum(1, np.round(size * rng.uniform(0.7, 1.3, DAYS))).astype(int)
    return rng.binomial(n, np.minimum(p, 1.0)), n, start


def run_one(detector: Any, events: np.ndarray, trials: np.ndarray) -> np.ndarray:
    flags = np.zeros(DAYS, bool)
    for day in range(DAYS):
        score = detector.score_one(day % 7, float(events[day]), float(trials[day]))
        if score is not None:
            flags[day] = score if isinstance(score, bool) else score.anomaly
        detector.learn_one(day % 7, float(events[day]), float(trials[day]))
    return flags


def measure(series: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for size_name, size in SIZES.items():
        for rate_name, rate in RATES.items():
            rng = np.random.default_rng([seed, size, int(rate * 1e4)])
            tallies = {name: {"detected": {k: 0 for k in KINDS[1:]}, "faults": {k: 0 for k in KINDS[1:]}, "false": 0, "clean_days": 0,
                              "clean_series_alarmed": 0, "clean_series": 0} for name in ("seasonal_robust", "naive_z")}
            for i in range(series):
                kind = KINDS[i % len(KINDS)]
                events, trials, start = simulate(rng, size, rate, kind)
                for name, detector in (("seasonal_robust", SeasonalRateDetector()), ("naive_z", NaiveZ())):
                    flags = run_one(detector, events, trials)
                    t = tallies[name]
                    scored = np.zeros(DAYS, bool)
                    scored[14:] = True
                    clean = scored.copy()
                    if kind in ("spike", "drop"):
                        clean[start] = False
                        t["faults"][kind] += 1
                        t["detected"][kind] += int(flags[start])
                    elif kind == "level_shift":
                        clean[start:] = False
                        t["faults"][kind] += 1
                        t["detected"][kind] += int(flags[start : start + SHIFT_WINDOW].any())
                    t["false"] += int((flags & clean).sum())
                    t["clean_days"] += int(clean.sum())
                    if kind == "none":
                        t["clean_series"] += 1
                        t["clean_series_alarmed"] += int((flags & clean).any())
            for name, t in tallies.items():
                rows.append({
                    "detector": name, "size": size_name, "trials_per_day": size, "rate": rate_name,
                    **{f"detected_{k}": t["detected"][k] / max(t["faults"][k], 1) for k in KINDS[1:]},
                    "detection_rate": sum(t["detected"].values()) / max(sum(t["faults"].values()), 1),
                    "false_alarms_per_1000_days": 1000 * t["false"] / max(t["clean_days"], 1),
                    "clean_series_with_a_false_alarm": t["clean_series_alarmed"] / max(t["clean_series"], 1),
                    "series": series,
                })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=200, help="series per size and rate (a quarter of each kind)")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rows = measure(args.series, args.seed)
    console = Console()
    table = Table("detector", "trials/day", "rate", "spike ×3", "drop ×0.3", "shift ×1.5", "detected", "false/1000 days", "clean series alarmed",
                  title=f"anomaly detection, {args.series} series of {DAYS} days per row", title_justify="left")
    for r in rows:
        table.add_row(r["detector"], f"{r['trials_per_day']:,}", r["rate"], f"{r['detected_spike']:.0%}", f"{r['detected_drop']:.0%}",
                      f"{r['detected_level_shift']:.0%}", f"{r['detection_rate']:.0%}", f"{r['false_alarms_per_1000_days']:.1f}",
                      f"{r['clean_series_with_a_false_alarm']:.0%}")
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"days": DAYS, "weekly": WEEKLY.tolist(), "rows": rows}, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {RESULTS}", highlight=False)


if __name__ == "__main__":
    main()
