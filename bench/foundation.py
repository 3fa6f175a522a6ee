"""Foundation benchmarks (issue 2): imports, segment evaluation and one cycle, on SQLite.

Run: ``.venv/bin/python bench/foundation.py`` (add ``--quick`` for a tenth of the sizes, or
``--database postgresql+psycopg://...`` to measure PostgreSQL instead). Prints a table and
writes ``bench/results/foundation.json``. Each figure is the wall time of the measured step
alone (set-up excluded), the median of ``--repeat`` runs where a step is cheap to repeat.

Targets (issue 2): 64,000 Hillstrom customers ≤ 3 s; 1,000,000 JSON Lines events ≤ 20 s
with traits kept current; a three-clause segment over 1,000,000 customers ≤ 2 s. Issue 9:
one cycle with two agents over 100,000 customers ≤ 3 s, over 1,000,000 customers ≤ 30 s
and ≤ 1 GB peak memory (``--steps cycle --cycle-customers 1000000``), reported with its
floor: the same run reading the audiences' columns and bulk-inserting the same decision and
outbox rows with no logic between (aim: the cycle ≤ 3× the floor). The cycle and the floor
each run in a fresh process, ``--repeat`` times alternately; medians are reported. The cycle's
peak memory is its process's own (``VmHWM``), not ``ru_maxrss``: see :func:`own_peak_mb`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import resource
import shutil
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


def own_peak_mb() -> float:
    """The peak resident memory of this process's own address space, in MB.

    Not ``ru_maxrss``: on Linux, ``exec`` keeps the high-water mark of the address space it
    replaces, so a child the bench spawns reports at least the set-up process's peak (at
    1,000,000 customers the set-up's 1.9 GB, whatever the child itself uses). ``VmHWM`` in
    ``/proc/self/status`` is the mark of the address space the child built after ``exec``.
    Elsewhere ``ru_maxrss`` is the best there is (kilobytes on Linux, bytes on macOS).
    """
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        found = None
    if found:
        return int(found.group(1)) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def _in_child(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``function`` in a fresh interpreter, so that its memory is its own (not the set-up's;
    measure it with :func:`own_peak_mb`)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, args)


def _cycle_child(url: str, folder: str) -> dict[str, Any]:
    engine = connect(url)
    playbook = parse_playbook(PLAYBOOK)
    seconds, report = timed(lambda: run_cycle(engine, playbook, FixedClock(AT), transports(playbook, Path(folder))))
    engine.dispose()
    return {
        "seconds": seconds,
        "peak_mb": own_peak_mb(),
        "decisions": sum(a.audience for a in report.agents.values()),
        "scheduled": sum(a.scheduled for a in report.agents.values()),
    }


CYCLE_TABLES = ("review_items", "outbox", "decisions", "cycle_partitions", "budget_reservations", "policy_states", "audit_log", "cycles")


def _floor_child(url: str) -> dict[str, Any]:
    """The same reads and writes as the cycle with no logic between them.

    Takes the decision and outbox rows the cycle wrote (untimed), removes them, then times:
    reading each agent's audience with the customer columns the cycle reads, and writing the
    same decision rows and outbox rows back, 50,000 per transaction, through the driver.
    """
    from legato.audience.fields import StoreResolver
    from legato.audience.sql import compile_expression
    from legato.store.bulk import insert_driver_rows
    from legato.store.fetch import fetch_columns
    from legato.store.schema import customers, decisions, outbox, review_items

    engine = connect(url)
    playbook = parse_playbook(PLAYBOOK)
    decision_columns = [c.name for c in decisions.c]
    outbox_columns = [c.name for c in outbox.c]
    with engine.begin() as connection:
        driver = connection.connection.driver_connection
        cursor = driver.cursor()  # type: ignore[union-attr]
        cursor.execute(f"SELECT {_as_driver_text(decisions, engine.dialect.name)} FROM decisions ORDER BY id")
        decided = cursor.fetchall()
        cursor.execute(f"SELECT {_as_driver_text(outbox, engine.dialect.name)} FROM outbox ORDER BY id")
        queued = cursor.fetchall()
        cursor.close()
        connection.execute(sa.delete(review_items))
        connection.execute(sa.delete(outbox))
        connection.execute(sa.delete(decisions))
    chunk = 50_000

    def work() -> int:
        read = 0
        for agent in playbook.agents:
            resolver = StoreResolver(playbook, AT, engine.dialect.name)
            query = (
                sa.select(customers.c.id, customers.c.time_zone, customers.c.email, customers.c.phone, customers.c.country, customers.c.region)
                .select_from(audience_from())
                .where(compile_expression(agent.audience, resolver, dialect_name=engine.dialect.name))
                .order_by(customers.c.id)
            )
            with engine.connect() as connection:
                _, n = fetch_columns(connection, query)
            read += n
        for start in range(0, len(decided), chunk):
            with engine.begin() as connection:
                insert_driver_rows(connection, decisions, decision_columns, decided[start : start + chunk])
        for start in range(0, len(queued), chunk):
            with engine.begin() as connection:
                insert_driver_rows(connection, outbox, outbox_columns, queued[start : start + chunk])
        return read

    seconds, read = timed(work)
    engine.dispose()
    return {"seconds": seconds, "read": read, "decisions": len(decided), "outbox": len(queued)}


def _as_driver_text(table: sa.Table, dialect: str) -> str:
    """The table's columns as COPY can write them back: JSON as text on PostgreSQL."""
    return ", ".join(f"{c.name}::text" if dialect == "postgresql" and isinstance(c.type, sa.JSON) else c.name for c in table.c)


def _restore(url: str, pristine: Path | None) -> None:
    """Back to the state before the cycle: the file copy on SQLite, deleted rows on PostgreSQL."""
    if pristine is not None:
        target = Path(sa.engine.make_url(url).database or "")
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(pristine, target)
        return
    engine = connect(url)
    with engine.begin() as connection:
        for name in CYCLE_TABLES:
            connection.execute(sa.text(f"DELETE FROM {name}"))
    engine.dispose()


def cycle_and_floor(url: str, folder: Path, n: int, repeat: int, sqlite: bool) -> list[dict[str, Any]]:
    """The cycle and its floor, ``repeat`` times each, alternating, each in a fresh process."""
    pristine = None
    if sqlite:
        pristine = folder / "cycle-pristine.db"
        engine = connect(url)
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()
        shutil.copyfile(Path(sa.engine.make_url(url).database or ""), pristine)
    cycles_run, floors = [], []
    for _ in range(repeat):
        _restore(url, pristine)
        cycles_run.append(_in_child(_cycle_child, url, str(folder)))
        floors.append(_in_child(_floor_child, url))
    cycle_s = statistics.median(c["seconds"] for c in cycles_run)
    floor_s = statistics.median(f["seconds"] for f in floors)
    peak = statistics.median(c["peak_mb"] for c in cycles_run)
    target = 3.0 * n / 100_000 if n <= 100_000 else 30.0 * n / 1_000_000
    return [
        {
            "step": "one cycle, two agents",
            "size": n,
            "seconds": cycle_s,
            "target_s": target,
            "decisions": cycles_run[0]["decisions"],
            "peak_mb": round(peak, 1),
            "runs_s": [round(c["seconds"], 3) for c in cycles_run],
            "floor_multiple": round(cycle_s / floor_s, 2),
        },
        {
            "step": "floor: read audiences, insert the same rows",
            "size": n,
            "seconds": floor_s,
            "target_s": None,
            "decisions": floors[0]["decisions"],
            "outbox": floors[0]["outbox"],
            "runs_s": [round(f["seconds"], 3) for f in floors],
        },
    ]


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

        if "cycle" in steps:  # 4. one cycle with two agents, and the floor for the same work
            url = fresh_url(folder, "cycle.db", args.database)
            engine = connect(url)
            import_customers(engine, synthetic_customers(n_cycle, seed=5), clock=clock, attribute_types=attribute_types)
            import_events(engine, synthetic_events(n_cycle * 2, n_cycle, seed=6), clock=clock)
            engine.dispose()
            rows.extend(cycle_and_floor(url, folder, n_cycle, args.repeat, args.database is None))

    peak_mb = own_peak_mb()
    table = Table(title=f"Legato foundation benchmarks ({'PostgreSQL' if args.database else 'SQLite'}{', quick' if args.quick else ''})", title_justify="left")
    for column in ("step", "size", "seconds", "target s", "rows/s", "× floor", "peak MB", "met"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in rows:
        target = row["target_s"]
        met = "-" if target is None else ("yes" if row["seconds"] <= target and row.get("peak_mb", 0) <= 1024 else "NO")
        table.add_row(
            row["step"],
            f"{row['size']:,}",
            f"{row['seconds']:.2f}",
            "-" if target is None else f"{target:g}",
            f"{row['size'] / row['seconds']:,.0f}",
            f"{row['floor_multiple']:.2f}" if "floor_multiple" in row else "-",
            f"{row['peak_mb']:,.0f}" if "peak_mb" in row else "-",
            met,
        )
    console.print(table)
    console.print(
        f"peak memory of this process (set-up included): {peak_mb:,.0f} MB; the cycle runs in a fresh process, its own peak is in its row "
        "(target 1,024 MB). × floor: the cycle's median over the floor's median, measured alternately in the same run."
    )
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
