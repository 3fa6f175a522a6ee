"""`legato report kpis` over 90 days × 10 agents of kept metrics (issue 14, part 1).

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/report_kpis.py`` (``--days``,
``--agents``, ``--repeat``, ``--backend sqlite|postgresql|both``, ``--postgres URL`` a database
of the server to create the bench's scratch database from, dropped after). For each store a
fresh store gets ``--agents`` agents × ``--days`` days of metrics, written through their one
writer (``legato.monitor.metrics.add``, a day at a time as the writers would) with the
cardinality of a busy programme: per agent and day 3 creatives × 2 offers (and none) × 4
lifecycle stages, every count the writers keep, outcomes by arm, suppressions under 4
reasons. Then, each ``--repeat`` times, interleaved:

- **kpis**, and **kpis --by creative | offer | channel | segment**: ``legato.service.reports.kpis``
  (read, aggregate, targets, lift vs holdout, the daily series, the anomalies) and printing
  it to a console that discards the text;
- each one's **floor**: the statements that report ran, by the driver (``sqlite3``/``psycopg``),
  rows fetched and nothing else: what no report of that shape can go under;
- **command**: ``legato report kpis --database URL --playbook P`` (and with ``--by creative``)
  as its own process, as a user runs it, against **start**: ``legato --help`` as its own
  process, what any command costs before it does anything (Python's start and the imports).

Printed as a table (median of the repeats, and each one's ratio to the floor), written to
``bench/results/report_kpis.json``. Target: ≤ 1 s for the report over 90 days × 10 agents.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stores import drop_store, fresh_store  # noqa: E402 - what several benchmarks share
from legato.monitor import metrics
from legato.monitor.metrics import Arm, Key, Measure, Tally
from legato.store.db import connect
from legato.store.schema import metrics as metrics_table
from legato.validation import parse_playbook

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results") / "report_kpis.json"
FIRST_DAY = date(2024, 1, 1)
TARGET_SECONDS = 1.0
CREATIVES, OFFERS, STAGES = ("spring", "autumn", "basics"), ("free_shipping", "ten_off", ""), ("new", "active", "cooling", "lapsed")
REASONS = ("frequency_cap:email 1 per 3 days", "consent_missing:email", "budget", "quiet_hours")

console = Console(width=120)


def playbook_text(agents: int) -> str:
    """A playbook with the agents, creatives and offers the metrics name: the report's targets."""
    agent_lines = "\n".join(
        f"  - {{id: agent_{i:02d}, objective: {'grow' if i % 2 else 'sell'}, audience: 'true', actions: {{creatives: [spring, autumn, basics], offers: [free_shipping, ten_off], send_windows: ['09:00-17:00']}}}}"
        for i in range(agents)
    )
    return f"""
brand:
  name: Bench Co
  legal: {{sender_name: Bench Co, postal_address: "1 Main St", support_contact: "help@bench.example", unsubscribe_url: "https://bench.example/u"}}
objectives:
  - {{id: grow, goal: engagement, why: bench, stages: [new, active, cooling, lapsed], kpis: [{{metric: visit_rate, target: 0.1}}, {{metric: conversion_rate, target: 0.01}}], guardrail_kpis: [{{metric: unsubscribe_rate, max: 0.005}}]}}
  - {{id: sell, goal: retention, why: bench, stages: [new, active, cooling, lapsed], kpis: [{{metric: revenue_per_send, target: 0.5}}, {{metric: visit_rate, target: 0.1}}], guardrail_kpis: [{{metric: complaint_rate, max: 0.003}}]}}
lifecycle:
  - {{stage: new, when: "purchase_count = 0"}}
  - {{stage: active, when: "days_since_last_purchase <= 90"}}
  - {{stage: cooling, when: "days_since_last_purchase <= 240"}}
  - {{stage: lapsed, when: "true"}}
channels:
  email: {{kind: file, path: out/email.jsonl}}
offers:
  - {{id: free_shipping, kind: free_shipping, value: 0, cost: 4.0}}
  - {{id: ten_off, kind: percent_off, value: 10, cost: 6.0}}
creatives:
  - {{id: spring, channel: email, subject: "Spring", body: "Hello. Unsubscribe: {{{{ unsubscribe_url }}}} {{{{ brand.postal_address }}}}"}}
  - {{id: autumn, channel: email, subject: "Autumn", body: "Hello. Unsubscribe: {{{{ unsubscribe_url }}}} {{{{ brand.postal_address }}}}"}}
  - {{id: basics, channel: email, subject: "Basics", body: "Hello. Unsubscribe: {{{{ unsubscribe_url }}}} {{{{ brand.postal_address }}}}"}}
agents:
{agent_lines}
guardrails:
  consent:
    - {{channel: email, purpose: marketing}}
"""


def fill(url: str, agents: int, days: int, seed: int = 7) -> int:
    """The metrics of ``agents`` × ``days``, through the one writer, a day's tally per transaction."""
    engine = connect(url)
    rng = np.random.default_rng(seed)
    keys = 0
    for d in range(days):
        day = (FIRST_DAY + timedelta(days=d)).isoformat()
        tally = Tally()
        for a in range(agents):
            agent, objective = f"agent_{a:02d}", "grow" if a % 2 else "sell"
            for stage in STAGES:
                held = Key(agent, day, objective, "", "", "", stage)
                n_held = int(rng.integers(80, 120))
                tally.count(held, Measure.AUDIENCE, n_held)
                tally.count(held, Measure.HELD_OUT, n_held)
                tally.count(held, Measure.SETTLED, n_held, arm=Arm.HOLDOUT)
                tally.count(held, Measure.VISITED, int(rng.binomial(n_held, 0.06)), arm=Arm.HOLDOUT)
                tally.count(held, Measure.CONVERTED, int(rng.binomial(n_held, 0.005)), arm=Arm.HOLDOUT)
                for reason in REASONS:
                    tally.count(held, Measure.SUPPRESSED, int(rng.integers(5, 40)), reason=reason)
                for creative in CREATIVES:
                    for offer in OFFERS:
                        key = Key(agent, day, objective, "email", creative, offer, stage)
                        n = int(rng.integers(100, 400))
                        sent = n - int(rng.integers(0, 10))
                        visited, converted = int(rng.binomial(sent, 0.11)), int(rng.binomial(sent, 0.012))
                        revenue = float(converted * rng.uniform(20, 80))
                        for measure, value in (
                            (Measure.AUDIENCE, n), (Measure.DECIDED, n), (Measure.SCHEDULED, n - 20), (Measure.QUEUED, 20),
                            (Measure.APPROVED, 15), (Measure.REJECTED, 3), (Measure.EXPIRED, 2), (Measure.REVIEWED, 18),
                            (Measure.REVIEW_SECONDS, 18 * 3600.0), (Measure.SENT, sent), (Measure.FAILED, n - sent - 5),
                            (Measure.DELIVERED, sent - 3), (Measure.BOUNCED, 3),
                        ):
                            tally.count(key, measure, value)
                        for measure, value in (
                            (Measure.SETTLED, sent), (Measure.VISITED, visited), (Measure.CONVERTED, converted), (Measure.REVENUE, revenue),
                            (Measure.REVENUE_SQUARES, revenue * revenue / max(converted, 1)), (Measure.OFFER_COST, 5.0 * converted),
                            (Measure.OPENED, int(sent * 0.3)), (Measure.CLICKED, int(sent * 0.05)),
                            (Measure.UNSUBSCRIBED, int(rng.binomial(sent, 0.002))), (Measure.COMPLAINED, int(rng.binomial(sent, 0.0005))),
                        ):
                            tally.count(key, measure, value, arm=Arm.SENT)
                        tally.count(key, Measure.SETTLED, n - sent, arm=Arm.UNSENT)
        with engine.begin() as connection:
            metrics.add(connection, tally)
        keys += sum(1 for v in tally.counts.values() if v)
    with engine.connect() as connection:
        # Every table the report reads has its statistics, as autovacuum would give them in time
        # (metric_groups without them: PostgreSQL planned for 108 rows and sorted 111,661 on disk).
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
        stored = connection.execute(sa.select(sa.func.count()).select_from(metrics_table)).scalar_one()
    engine.dispose()
    return int(stored)


def floor_sql(url: str, playbook_path: Path, by: str | None) -> list[tuple[str, Any]]:
    """Every statement the report runs (``by``: broken down), as the driver received them."""
    from legato.service import reports
    from legato.validation import load_playbook

    engine = connect(url)
    playbook = load_playbook(playbook_path)
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", capture)
    reports.kpis(engine, playbook, by=by)
    engine.dispose()
    return seen


def time_floor(url: str, statements: list[tuple[str, Any]]) -> tuple[float, int]:
    """The report's statements run by the driver alone, rows fetched and nothing done with them."""
    rows = 0
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(sa.engine.make_url(url).database)
        started = time.perf_counter()
        for statement, parameters in statements:
            rows += len(connection.execute(statement, parameters).fetchall())
        elapsed = time.perf_counter() - started
        connection.close()
        return elapsed, rows
    import psycopg

    parts = sa.engine.make_url(url)
    with psycopg.connect(host=parts.host, port=parts.port or 5432, user=parts.username, dbname=parts.database) as connection:
        started = time.perf_counter()
        for statement, parameters in statements:
            rows += len(connection.execute(statement, parameters or None).fetchall())  # type: ignore[arg-type]
        return time.perf_counter() - started, rows


def time_report(url: str, playbook_path: Path, by: str | None) -> tuple[float, int]:
    from legato.cli.kpis_output import print_kpis
    from legato.cli import kpis_output
    from legato.service import reports
    from legato.validation import load_playbook

    engine = connect(url)
    playbook = load_playbook(playbook_path)
    quiet = Console(file=io.StringIO(), width=80)
    kpis_output.console = quiet  # the text is made, then thrown away
    started = time.perf_counter()
    found = reports.kpis(engine, playbook, by=by)
    print_kpis(found)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return elapsed, len(found.groups)


def time_command(url: str, playbook_path: Path, *, help_only: bool = False, by: str | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["--help"] if help_only else ["report", "kpis", "--database", url, "--playbook", str(playbook_path), *(["--by", by] if by else [])]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "from legato.cli.app import main; main()", *args],
        env=env, capture_output=True, text=True, check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"legato report kpis failed: {done.stderr or done.stdout}")
    return elapsed


MODES: tuple[str | None, ...] = (None, "creative", "offer", "channel", "segment")


def mode_name(by: str | None) -> str:
    return "report" if by is None else f"by_{by}"


def measure(url: str, playbook_path: Path, repeat: int) -> dict[str, Any]:
    """Each mode's report and floor, the command and ``legato --help``, ``repeat`` times, interleaved."""
    statements = {by: floor_sql(url, playbook_path, by) for by in MODES}
    runs: dict[str, list[float]] = {name: [] for by in MODES for name in (mode_name(by), f"{mode_name(by)}_floor")}
    runs.update(command=[], command_by_creative=[], start=[])
    shape: dict[str, Any] = {}
    for _ in range(repeat):
        for by in MODES:
            floor, floor_rows = time_floor(url, statements[by])
            runs[f"{mode_name(by)}_floor"].append(floor)
            elapsed, groups = time_report(url, playbook_path, by)
            runs[mode_name(by)].append(elapsed)
            shape[mode_name(by)] = {"groups": groups, "floor_rows": floor_rows, "statements": len(statements[by])}
        runs["command"].append(time_command(url, playbook_path))
        runs["command_by_creative"].append(time_command(url, playbook_path, by="creative"))
        runs["start"].append(time_command(url, playbook_path, help_only=True))
    med = {name: statistics.median(values) for name, values in runs.items()}
    figures: dict[str, Any] = {"runs": runs, "modes": {}}
    for by in MODES:
        name = mode_name(by)
        figures["modes"][name] = {
            **shape[name], "seconds": med[name], "floor_seconds": med[f"{name}_floor"], "over_floor": med[name] / med[f"{name}_floor"],
            "met": med[name] <= TARGET_SECONDS,
        }
    for name in ("command", "command_by_creative", "start"):
        figures[f"{name}_seconds"] = med[name]
    # The process's floor is Python's start and the imports (legato --help): what any command costs.
    figures["command_over_start"] = med["command"] / med["start"]
    figures["command_by_creative_over_start"] = med["command_by_creative"] / med["start"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL server's database to create (and drop) the bench's own database from")
    args = parser.parse_args()
    kinds = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    results: dict[str, Any] = {"days": args.days, "agents": args.agents, "repeat": args.repeat, "target_seconds": TARGET_SECONDS, "stores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        playbook_path = folder / "playbook.yaml"
        playbook_path.write_text(playbook_text(args.agents), encoding="utf-8")
        parse_playbook(playbook_path.read_text(encoding="utf-8"))  # the bench's own playbook must be valid
        for kind in kinds:
            url = fresh_store(kind, folder, args.postgres, "kpis")
            try:
                started = time.perf_counter()
                rows = fill(url, args.agents, args.days)
                results["stores"][kind] = {"metric_rows": rows, "fill_seconds": time.perf_counter() - started, **measure(url, playbook_path, args.repeat)}
            finally:
                drop_store(url, args.postgres)
    table = Table(title=f"legato report kpis: {args.agents} agents × {args.days} days (median of {args.repeat})", title_justify="left")
    for column in ("store", "report", "groups", "floor (driver)", "report", "× floor", "≤ 1 s"):
        table.add_column(column, justify="left" if column in ("store", "report") else "right")
    for kind, r in results["stores"].items():
        for i, (name, m) in enumerate(r["modes"].items()):
            shown = "kpis" if name == "report" else f"kpis --by {name.removeprefix('by_')}"
            table.add_row(
                f"{kind} ({r['metric_rows']:,} rows)" if i == 0 else "", shown, f"{m['groups']}", f"{m['floor_seconds'] * 1000:,.0f} ms",
                f"{m['seconds'] * 1000:,.0f} ms", f"{m['over_floor']:.1f}", "yes" if m["met"] else "no",
            )
        for name, shown in (("command", "legato report kpis (process)"), ("command_by_creative", "… --by creative (process)")):
            table.add_row("", shown, "", f"{r['start_seconds'] * 1000:,.0f} ms (--help)", f"{r[f'{name}_seconds'] * 1000:,.0f} ms",
                          f"{r[f'{name}_over_start']:.1f}", "")
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    console.print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
