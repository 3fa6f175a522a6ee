"""Foundation benchmarks (issue 2): imports, segment evaluation and one cycle, on SQLite.

Run: ``.venv/bin/python bench/foundation.py`` (add ``--quick`` for a tenth of the sizes, or
``--database postgresql+psycopg://...`` to measure PostgreSQL instead). Prints a table and
writes ``bench/results/foundation.json``. Each figure is the wall time of the measured step
alone (set-up excluded), the median of ``--repeat`` runs where a step is cheap to repeat.

Targets (issue 2): 64,000 Hillstrom customers ≤ 3 s; 1,000,000 JSON Lines events ≤ 20 s
with traits kept current; a three-clause segment over 1,000,000 customers ≤ 2 s; one
``legato run`` cycle over 100,000 customers with two agents ≤ 10 s. Issue 3 adds a cycle
over 1,000,000 customers ≤ 60 s: ``--steps cycle --cycle-customers 1000000``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

import sqlalchemy as sa

from legato.audience.fields import audience_from
from legato.audience.segments import condition
from legato.clock import FixedClock
from legato.demo import demo_customers, hillstrom_table
from legato.deliver.dispatch import transports
from legato.cycle import run_cycle
from legato.validation import parse_playbook
from legato.store.db import connect
from legato.store.ingest import import_customers, import_events

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEGMENT = 'days_since_last_purchase > 60 and lifetime_spend >= 100 and country in ("US", "CA")'
RESULTS = Path(__file__).with_name("results") / "foundation.json"

console = Console()


def fresh_url(folder: Path, name: str, database: str | None) -> str:
    if database:
        engine = connect(database)
        from legato.store.schema import metadata

        with engine.begin() as connection:
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        engine.dispose()
        return database
    return f"sqlite:///{folder / name}"


def synthetic_customers(n: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = np.char.add("C", np.char.zfill(np.arange(n).astype(str), 8))
    countries = np.array(["US", "CA", "GB", "DE", "FR"])[rng.integers(0, 5, n)]
    return pa.table(
        {
            "id": ids,
            "email": np.char.add(np.char.lower(ids), "@example.com"),
            "time_zone": np.array(["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London"])[rng.integers(0, 4, n)],
            "country": countries,
            "consent_email_marketing": np.where(rng.random(n) < 0.95, "express", "revoked"),
            "tier": np.array(["gold", "silver", "bronze"])[rng.integers(0, 3, n)],
            "newbie": rng.random(n) < 0.3,
        }
    )


def synthetic_events(n_events: int, n_customers: int, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    customer = rng.integers(0, n_customers, n_events)
    seconds = rng.integers(0, 400 * 86_400, n_events)
    occurred = np.datetime64(AT.replace(tzinfo=None), "s") - seconds.astype("timedelta64[s]")
    kinds = np.array(["purchase", "visit", "open", "click"])[rng.choice(4, n_events, p=[0.3, 0.3, 0.25, 0.15])]
    revenue = np.where(kinds == "purchase", np.round(rng.gamma(2.0, 40.0, n_events), 2), np.nan)
    return pa.table(
        {
            "id": np.char.add("E", np.arange(n_events).astype(str)),
            "customer_id": np.char.add("C", np.char.zfill(customer.astype(str), 8)),
            "type": kinds,
            "occurred_at": np.datetime_as_string(occurred, unit="s", timezone="UTC"),
            "revenue": pa.array(revenue, mask=np.isnan(revenue)),
        }
    )


def write_jsonl(table: pa.Table, path: Path) -> None:
    columns = table.to_pydict()
    keys = list(columns)
    with path.open("w", encoding="utf-8") as out:
        for values in zip(*columns.values()):
            out.write(json.dumps({k: v for k, v in zip(keys, values) if v is not None}) + "\n")


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


PLAYBOOK = """
brand:
  name: Bench Co
  legal: {sender_name: Bench Co, postal_address: "1 Main St, Springfield", support_contact: "help@bench.example", unsubscribe_url: "https://bench.example/u"}
attributes: {tier: string, newbie: boolean}
objectives:
  - {id: grow, goal: engagement, why: benchmark, stages: [new, active, lapsed], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: new, when: "newbie"}
  - {stage: active, when: "days_since_last_purchase <= 90"}
  - {stage: lapsed, when: "true"}
offers:
  - {id: ship, kind: free_shipping, value: 8, cost: 3}
channels:
  email: {kind: file, path: out/email.jsonl}
creatives:
  - {id: a, channel: email, subject: "Hello", body: "Hi {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
  - {id: b, channel: email, subject: "News", body: "News for {{ customer.tier }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: winback
    objective: grow
    audience: 'lifecycle_stage = "lapsed" or tier = "gold"'
    actions: {creatives: [a, b], offers: [ship], send_windows: ["09:00-11:00", "18:00-20:00"]}
    holdout: 0.1
    trust_stage: 2
  - id: welcome
    objective: grow
    audience: 'lifecycle_stage in ("new", "active")'
    actions: {creatives: [a, b], send_windows: ["10:00-12:00"]}
    holdout: 0.1
    trust_stage: 0
guardrails:
  consent:
    - {channel: email, purpose: marketing}
  frequency_caps:
    - {channel: email, max: 2, days: 7}
    - {channel: any, max: 3, days: 14}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every size, for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the repeatable steps (median reported)")
    parser.add_argument("--database", help="a PostgreSQL URL to measure instead of SQLite (its tables are emptied!)")
    parser.add_argument("--cycle-customers", type=int, default=100_000)
    parser.add_argument(
        "--steps", default="customers,events,segment,cycle", help="comma-separated subset of: customers,events,segment,cycle"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    n_events = int(1_000_000 * scale)
    n_segment = int(1_000_000 * scale)
    n_cycle = int(args.cycle_customers * scale)
    rows: list[dict[str, Any]] = []

    with tempfile.TemporaryDirectory(prefix="legato-bench-") as tmp:
        folder = Path(tmp)
        clock = FixedClock(AT)

        steps = set(args.steps.split(","))
        playbook = parse_playbook(PLAYBOOK)
        attribute_types = {"tier": "string", "newbie": "boolean"}

        if "customers" in steps:  # 1. the Hillstrom customers
            hill_customers, _ = demo_customers(hillstrom_table(), AT)
            times = []
            for attempt in range(args.repeat):
                engine = connect(fresh_url(folder, f"hill{attempt}.db", args.database))
                seconds, report = timed(lambda: import_customers(engine, hill_customers, clock=clock))
                assert report.inserted == hill_customers.num_rows, report
                times.append(seconds)
                engine.dispose()
            rows.append({"step": "import Hillstrom customers", "size": hill_customers.num_rows, "seconds": statistics.median(times), "target_s": 3.0})

        if "events" in steps:  # 2. 1M JSON Lines events into a store of 100k customers, traits kept current
            engine = connect(fresh_url(folder, "events.db", args.database))
            n_customers = max(n_events // 10, 1000)
            import_customers(engine, synthetic_customers(n_customers), clock=clock, attribute_types=attribute_types)
            path = folder / "events.jsonl"
            write_jsonl(synthetic_events(n_events, n_customers), path)
            seconds, report = timed(lambda: import_events(engine, path, clock=clock))
            assert report.inserted == n_events and report.rejected == 0, report
            rows.append({"step": "import events (JSON Lines)", "size": n_events, "seconds": seconds, "target_s": 20.0 * scale})
            seconds, report = timed(lambda: import_events(engine, path, clock=clock))
            assert report.inserted == 0 and report.unchanged == n_events, report
            rows.append({"step": "re-import the same events (all duplicates)", "size": n_events, "seconds": seconds, "target_s": None})
            engine.dispose()

        if "segment" in steps:  # 3. a three-clause segment over 1M customers
            engine = connect(fresh_url(folder, "segment.db", args.database))
            import_customers(engine, synthetic_customers(n_segment), clock=clock, attribute_types=attribute_types)
            import_events(engine, synthetic_events(n_segment, n_segment, seed=3), clock=clock)
            query = sa.select(sa.func.count()).select_from(audience_from()).where(condition(playbook, SEGMENT, AT, engine.dialect.name))
            times = []
            for _ in range(args.repeat):
                with engine.connect() as connection:
                    seconds, size = timed(lambda: connection.execute(query).scalar_one())
                times.append(seconds)
            rows.append({"step": f"segment: {SEGMENT}", "size": n_segment, "seconds": statistics.median(times), "target_s": 2.0 * scale, "matched": size})
            engine.dispose()

        if "cycle" in steps:  # 4. one cycle with two agents
            engine = connect(fresh_url(folder, "cycle.db", args.database))
            import_customers(engine, synthetic_customers(n_cycle, seed=5), clock=clock, attribute_types=attribute_types)
            import_events(engine, synthetic_events(n_cycle * 2, n_cycle, seed=6), clock=clock)
            seconds, report = timed(lambda: run_cycle(engine, playbook, clock, transports(playbook, folder)))
            decided = sum(a.audience for a in report.agents.values())
            target = 10.0 * n_cycle / 100_000 if n_cycle <= 100_000 else 60.0 * n_cycle / 1_000_000
            rows.append({"step": "one cycle, two agents", "size": n_cycle, "seconds": seconds, "target_s": target, "decisions": decided})
            engine.dispose()

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = Table(title=f"Legato foundation benchmarks ({'PostgreSQL' if args.database else 'SQLite'}{', quick' if args.quick else ''})", title_justify="left")
    for column in ("step", "size", "seconds", "target s", "rows/s", "met"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in rows:
        target = row["target_s"]
        met = "-" if target is None else ("yes" if row["seconds"] <= target else "NO")
        table.add_row(row["step"], f"{row['size']:,}", f"{row['seconds']:.2f}", "-" if target is None else f"{target:g}", f"{row['size'] / row['seconds']:,.0f}", met)
    console.print(table)
    console.print(f"peak memory (max RSS of this process): {peak_mb:,.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "backend": "postgresql" if args.database else "sqlite",
                "quick": args.quick,
                "python": sys.version.split()[0],
                "measured_at": datetime.now(timezone.utc).isoformat(),
                "peak_rss_mb": round(peak_mb, 1),
                "steps": rows,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
