"""`legato report kpis` over 90 days × 10 agents of kept metrics (issue 14, part 1).

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/report_kpis.py`` (``--days``,
``--agents``, ``--repeat``, ``--postgres URL`` the server to make a scratch database on,
``--skip-postgres``). For each store a fresh store gets ``--agents`` agents × ``--days`` days of
metrics, written through their one writer (``legato.monitor.metrics.add``, a day at a time as
the writers would) with the cardinality of a busy programme: per agent and day 3 creatives ×
2 offers (and none) × 4 lifecycle stages, every count the writers keep, outcomes by arm,
suppressions under 4 reasons. Then, each ``--repeat`` times:

- **report**: ``legato.service.reports.kpis`` (read, aggregate, targets, lift vs holdout,
  the daily series) and printing it to a console that discards the text;
- **report --by creative**: the same, broken down;
- **command**: ``legato report kpis --database URL --playbook P`` as its own process, as a user
  runs it (Python's start and the imports included);
- **start**: ``legato --help`` as its own process: what any command costs before it does anything;
- **floor**: the report's SQL aggregate alone, by the driver (``sqlite3``/``psycopg``) with
  nothing else: what no report can go under.

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
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from legato.monitor import metrics
from legato.monitor.kpis import read
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
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE metrics")
        else:
            connection.exec_driver_sql("ANALYZE")
        stored = connection.execute(sa.select(sa.func.count()).select_from(metrics_table)).scalar_one()
    engine.dispose()
    return int(stored)


def floor_sql(url: str) -> str:
    """The report's aggregate as the driver runs it (no bounds: the whole period)."""
    engine = connect(url)
    with engine.connect() as connection:
        compiled = None
        original = connection.execute

        def capture(statement: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal compiled
            compiled = str(statement.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
            return original(statement, *args, **kwargs)

        connection.execute = capture  # type: ignore[method-assign]
        read(connection, agent_id=None, since=None, until=None, by=None)
    engine.dispose()
    assert compiled is not None
    return compiled


def time_floor(url: str, sql: str) -> tuple[float, int]:
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(sa.engine.make_url(url).database)
        started = time.perf_counter()
        rows = connection.execute(sql).fetchall()
        elapsed = time.perf_counter() - started
        connection.close()
        return elapsed, len(rows)
    import psycopg

    parts = sa.engine.make_url(url)
    with psycopg.connect(host=parts.host, port=parts.port or 5432, user=parts.username, dbname=parts.database) as connection:
        started = time.perf_counter()
        rows = connection.execute(sql).fetchall()  # type: ignore[arg-type]
        return time.perf_counter() - started, len(rows)


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


def time_command(url: str, playbook_path: Path, *, help_only: bool = False) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = ["--help"] if help_only else ["report", "kpis", "--database", url, "--playbook", str(playbook_path)]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", "from legato.cli.app import main; main()", *args],
        env=env, capture_output=True, text=True, check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"legato report kpis failed: {done.stderr or done.stdout}")
    return elapsed


def fresh_store(kind: str, folder: Path, postgres: str) -> str:
    if kind == "sqlite":
        return f"sqlite:///{folder / 'bench.db'}"
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    name = f"legato_bench_kpis_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(postgres).set(database=name).render_as_string(hide_password=False)


def drop_store(url: str, postgres: str) -> None:
    if url.startswith("postgresql"):
        admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{sa.engine.make_url(url).database}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"days": args.days, "agents": args.agents, "repeat": args.repeat, "target_seconds": TARGET_SECONDS, "stores": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        playbook_path = folder / "playbook.yaml"
        playbook_path.write_text(playbook_text(args.agents), encoding="utf-8")
        parse_playbook(playbook_path.read_text(encoding="utf-8"))  # the bench's own playbook must be valid
        for kind in ("sqlite", *(() if args.skip_postgres else ("postgresql",))):
            url = fresh_store(kind, folder, args.postgres)
            try:
                started = time.perf_counter()
                rows = fill(url, args.agents, args.days)
                filled = time.perf_counter() - started
                sql = floor_sql(url)
                floor, report, by_creative, command, start = [], [], [], [], []
                for _ in range(args.repeat):
                    f, result_rows = time_floor(url, sql)
                    floor.append(f)
                    r, groups = time_report(url, playbook_path, None)
                    report.append(r)
                    b, creative_groups = time_report(url, playbook_path, "creative")
                    by_creative.append(b)
                    command.append(time_command(url, playbook_path))
                    start.append(time_command(url, playbook_path, help_only=True))
                med = {name: statistics.median(values) for name, values in
                       (("floor", floor), ("report", report), ("by_creative", by_creative), ("command", command), ("start", start))}
                results["stores"][kind] = {
                    "metric_rows": rows, "fill_seconds": filled, "aggregate_rows": result_rows, "groups": groups,
                    "creative_groups": creative_groups,
                    **{f"{name}_seconds": value for name, value in med.items()},
                    **{f"{name}_runs": values for name, values in (("floor", floor), ("report", report), ("by_creative", by_creative), ("command", command), ("start", start))},
                    "report_over_floor": med["report"] / med["floor"], "by_creative_over_floor": med["by_creative"] / med["floor"],
                    "command_over_floor": med["command"] / med["floor"], "command_less_start_seconds": med["command"] - med["start"],
                    "met": med["report"] <= TARGET_SECONDS,
                }
            finally:
                drop_store(url, args.postgres)
    table = Table(title=f"legato report kpis: {args.agents} agents × {args.days} days (median of {args.repeat})", title_justify="left")
    for column in ("store", "metric rows", "floor (driver)", "report", "× floor", "--by creative", "× floor", "command (process)", "legato --help", "≤ 1 s"):
        table.add_column(column, justify="left" if column == "store" else "right")
    for kind, r in results["stores"].items():
        table.add_row(
            kind, f"{r['metric_rows']:,}", f"{r['floor_seconds'] * 1000:,.0f} ms", f"{r['report_seconds'] * 1000:,.0f} ms",
            f"{r['report_over_floor']:.1f}", f"{r['by_creative_seconds'] * 1000:,.0f} ms", f"{r['by_creative_over_floor']:.1f}",
            f"{r['command_seconds'] * 1000:,.0f} ms", f"{r['start_seconds'] * 1000:,.0f} ms", "yes" if r["met"] else "no",
        )
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    console.print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
