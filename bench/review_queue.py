"""Review queue benchmark (issue 5): the first page of a 1,000,000-item queue.

Run: ``.venv/bin/python bench/review_queue.py`` (``--items 100000`` for a quicker run, or
``--database postgresql+psycopg://...`` to measure PostgreSQL; its tables are emptied
first). The queue is written set-based (one INSERT ... SELECT over a generated series for
the decisions, one for the review items), with priorities as a real queue has them (mostly
stage-0 items at 50, content escalations at 70, escalated items at 75, a few urgent at 100)
and creation times spread over two weeks in no particular id order. Then
``list_items(limit=100)`` is timed, median of ``--repeat`` runs, with the query plan.
Prints a table and writes ``bench/results/review_queue.json``. Target: ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from legato.store.db import connect
from legato.store.schema import cycles, metadata
from legato.trust import review
from legato.trust.review import counts
from legato.trust.review import list_items
from legato.trust.review.model import QueueFilter
from legato.trust.review.queue import list_page

NOW = datetime(2024, 3, 18, 8, 0, tzinfo=timezone.utc)
TWO_WEEKS_S = 14 * 24 * 3600
TARGET_MS = 100.0
RESULTS = Path(__file__).with_name("results") / "review_queue.json"
console = Console()

# n runs 1..items. Multiplying by a prime and reducing spreads values across ids, so neither
# priority nor age follows the insertion order; agents take turns in blocks of 100 ids. Shares: 80% at 50, 12% at 70, 6% at 75, 2% at 100.
PRIORITY = "CASE WHEN (n * 37) % 100 < 80 THEN 50 WHEN (n * 37) % 100 < 92 THEN 70 WHEN (n * 37) % 100 < 98 THEN 75 ELSE 100 END"
AGE_S = f"(n * 7919) % {TWO_WEEKS_S}"
ROLE = "CASE WHEN (n * 37) % 100 >= 92 AND (n * 37) % 100 < 98 THEN 'legal' END"


def fill(engine: sa.Engine, items: int) -> float:
    """Write ``items`` decisions and open review items; returns the seconds it took."""
    started = time.perf_counter()
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        series = f"WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < {items}) "
        source = "FROM seq"
        now = f"'{NOW:%Y-%m-%d %H:%M:%S}'"
        created = f"strftime('%Y-%m-%d %H:%M:%S', {now}, '-' || ({AGE_S}) || ' seconds') || '.000000'"
        due = f"strftime('%Y-%m-%d %H:%M:%S', {now}, '-' || ({AGE_S}) || ' seconds', '+48 hours') || '.000000'"
        customer = "'C' || printf('%08d', n)"
    else:
        series = ""
        source = f"FROM generate_series(1::bigint, {items}) AS seq(n)"
        now = f"TIMESTAMPTZ '{NOW.isoformat()}'"
        created = f"{now} - make_interval(secs => {AGE_S})"
        due = f"{created} + INTERVAL '48 hours'"
        customer = "'C' || lpad(n::text, 8, '0')"
    with engine.begin() as connection:
        connection.execute(sa.insert(cycles).values(id=1, at=NOW, started_at=NOW, finished_at=NOW, status="finished"))
        connection.execute(sa.text(
            series
            + "INSERT INTO decisions (id, cycle_id, agent_id, customer_id, decided_at, action, creative_id, channel, send_at, "
            "propensity, holdout, findings, route, status, content_hash) "
            f"SELECT n, 1, 'agent_' || ((n / 100) % 5), {customer}, {created}, 'email:hello', 'hello', 'email', {created}, "
            f"0.5, {'0' if sqlite else 'false'}, '[]', 'queued', 'queued', 'h' || (n % 17) {source}"
        ))
        connection.execute(sa.text(
            series
            + "INSERT INTO review_items (id, decision_id, agent_id, reason, priority, status, created_at, due_at, assigned_role, content_hash) "
            f"SELECT n, n, 'agent_' || ((n / 100) % 5), 'trust_stage_0', {PRIORITY}, 'open', {created}, {due}, {ROLE}, 'h' || (n % 17) {source}"
        ))
        if not sqlite:  # keep the sequences ahead of the explicit ids
            for table in ("cycles", "decisions", "review_items"):
                connection.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    if not sqlite:  # what autovacuum does soon after a bulk load; SQLite is measured without statistics
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE decisions, review_items")
    return time.perf_counter() - started


def plan(engine: sa.Engine) -> str:
    query = review.queue_query(status="open", limit=100)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as connection:
        return " | ".join(str(row[-1]).strip() for row in connection.exec_driver_sql(prefix + sql))


def timed(call: Any, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--database", help="a PostgreSQL URL to measure instead of a fresh SQLite file (its tables are emptied)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        engine = connect(args.database or f"sqlite:///{Path(folder) / 'queue.db'}")
        if args.database:
            with engine.begin() as connection:
                names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
                connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        setup = fill(engine, args.items)
        with engine.begin() as connection:
            counts.recount(connection)  # the seed bypassed the queue's writers, which keep its totals
        cold_started = time.perf_counter()
        first = list_items(engine, limit=100)
        cold_ms = (time.perf_counter() - cold_started) * 1000
        assert len(first) == 100 and first[0].priority == 100
        order = [(-item.priority, item.created_at, item.id) for item in first]
        assert order == sorted(order), "the queue is not highest priority first, then oldest first"
        measured = {
            "list_items(limit=100)": timed(lambda: list_items(engine, limit=100), args.repeat),
            "list_items(limit=100, agent='agent_3')": timed(lambda: list_items(engine, limit=100, agent="agent_3"), args.repeat),
            "list_items(limit=100, role='legal')": timed(lambda: list_items(engine, limit=100, role="legal"), args.repeat),
            # What `legato review list` reads: the page and the filter's total.
            "list_page(limit=100) + total": timed(lambda: list_page(engine, QueueFilter(), limit=100), args.repeat),
            "list_page(limit=100, agent='agent_3') + total": timed(lambda: list_page(engine, QueueFilter(agent="agent_3"), limit=100), args.repeat),
        }
        query_plan = plan(engine)
        backend = engine.dialect.name
        engine.dispose()

    main_row = measured["list_items(limit=100)"]
    result = {
        "backend": backend,
        "items": args.items,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "measured_at": datetime.now(timezone.utc).isoformat(),
        "setup_seconds": round(setup, 2),
        "cold_first_call_ms": round(cold_ms, 2),
        "target_ms": TARGET_MS,
        "median_ms": round(main_row["median_ms"], 3),
        "meets_target": main_row["median_ms"] <= TARGET_MS,
        "calls": {name: {k: round(v, 3) for k, v in row.items()} for name, row in measured.items()},
        "plan": query_plan,
    }
    table = Table(title=f"review queue: {args.items:,} open items on {backend} (median of {args.repeat})", title_justify="left")
    for column in ("call", "median ms", "min ms", "max ms", "target ms"):
        table.add_column(column, justify="left" if column == "call" else "right")
    for name, row in measured.items():
        target = f"{TARGET_MS:g}" if name == "list_items(limit=100)" else ""
        table.add_row(name, f"{row['median_ms']:.2f}", f"{row['min_ms']:.2f}", f"{row['max_ms']:.2f}", target)
    console.print(table)
    console.print(f"set-up {setup:.1f} s; first call {cold_ms:.1f} ms; plan: {query_plan}")
    if not args.database:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
