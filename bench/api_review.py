"""Review queue over HTTP (issue 12): a page of a 1,000,000-item queue with its total, through `legato serve`.

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/api_review.py`` (``--items 100000``
for a quicker run; ``--database postgresql+psycopg://...`` to measure PostgreSQL, whose tables
are emptied first). The queue is seeded directly, set-based (``review_queue.fill``: one
INSERT ... SELECT over a generated series for the decisions, one for the review items, with a
real queue's priorities and ages), and its counts rebuilt by their owner
(``legato.trust.review.counts.recount``), since the seed bypasses the queue's writers.

Then, in the same run:

- **API**: ``legato serve`` as its own process (the real command, uvicorn, rate limit off,
  ``--workers`` processes), loaded by ``wrk`` on loopback with each ``--connections`` count: ``GET /v1/review/items?limit=100`` (the first page with the
  queue's total) and the same with ``agent=agent_3``, with a viewer key. wrk's latency
  percentiles and requests a second. Target: p99 < 50 ms.
- **floor**: the same page through the service layer in this process
  (``legato.service.review.page``), what the API adds nothing to.
- **CLI**: ``legato review list --limit 100 --json``, a process each time (start-up included).

Prints a table with the ratios and writes ``bench/results/api_review.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from stores import free_port  # noqa: E402 - what several benchmarks share
from review_queue import NOW, fill  # noqa: E402 - the seed of the review-queue benchmark

from legato.service import keys  # noqa: E402
from legato.service import review  # noqa: E402
from legato.store.db import connect  # noqa: E402
from legato.store.schema import metadata  # noqa: E402
from legato.trust.review import counts  # noqa: E402
from legato.trust.review.model import QueueFilter  # noqa: E402

TARGET_P99_MS = 50.0
RESULTS = Path(__file__).with_name("results") / "api_review.json"
LEGATO = [sys.executable, "-c", "from legato.cli.app import main; main()"]  # the `legato` command, from this checkout
console = Console(width=140)


def wrk(url: str, key: str, seconds: int, connections: int, threads: int) -> dict[str, Any]:
    """wrk's latency distribution and throughput for one URL."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: Bearer {key}", url],
        capture_output=True, text=True, check=True,
    ).stdout
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", out, re.M)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "p50_ms": percentiles["50"], "p90_ms": percentiles["90"], "p99_ms": percentiles["99"],
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": requests, "non_2xx": int(bad.group(1)) if bad else 0, "raw": out,
    }


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def timed(call: Any, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))], "min_ms": times[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--database", help="a PostgreSQL URL to measure instead of a fresh SQLite file (its tables are emptied)")
    parser.add_argument("--seconds", type=int, default=20, help="how long wrk loads each URL")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4], help="wrk's open connections: one run each")
    parser.add_argument("--workers", type=int, default=1, help="legato serve --workers")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=200, help="calls of the service-layer floor")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{Path(folder) / 'queue.db'}"
        engine = connect(url)
        if args.database:
            with engine.begin() as connection:
                connection.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t.name}"' for t in metadata.sorted_tables) + " RESTART IDENTITY CASCADE")
        seeded = fill(engine, args.items)
        started = time.perf_counter()
        with engine.begin() as connection:
            counts.recount(connection)  # the seed bypassed the queue's writers: its owner counts it once
        recounted = time.perf_counter() - started
        _, key = keys.create(engine, "bench", "viewer", by="bench", now=NOW)
        backend = engine.dialect.name

        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH")]))}
        log = Path(folder) / "serve.log"
        server = subprocess.Popen([*LEGATO, "serve", "--database", url, "--port", str(port), "--rate-limit", "0", "--workers", str(args.workers)],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("legato serve did not become ready")
                time.sleep(0.2)
            page = httpx.get(f"{base}/v1/review/items", params={"limit": 100}, headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
            assert page["total"] == args.items and len(page["items"]) == 100 and page["items"][0]["priority"] == 100, page.get("total")
            agent_page = httpx.get(f"{base}/v1/review/items", params={"limit": 100, "agent": "agent_3"},
                                   headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
            while log.read_text(errors="replace").count("Application startup complete") < args.workers:  # every worker, not the first
                if time.monotonic() > deadline + 60 or server.poll() is not None:
                    raise SystemExit("legato serve's workers did not all start")
                time.sleep(0.2)
            runs = []
            for connections in args.connections:
                threads = min(args.threads, connections)
                runs.append({
                    "connections": connections,
                    "api": wrk(f"{base}/v1/review/items?limit=100", key, args.seconds, connections, threads),
                    "api_agent": wrk(f"{base}/v1/review/items?limit=100&agent=agent_3", key, args.seconds, connections, threads),
                })
            api, api_agent = runs[-1]["api"], runs[-1]["api_agent"]
        finally:
            server.terminate()
            server.wait(timeout=30)

        floor = timed(lambda: review.page(engine, QueueFilter(), limit=100), args.repeat)
        floor_agent = timed(lambda: review.page(engine, QueueFilter(agent="agent_3"), limit=100), args.repeat)
        cli_times = []
        for _ in range(5):
            started = time.perf_counter()
            listed = subprocess.run([*LEGATO, "review", "list", "--limit", "100", "--json", "--database", url],
                                    env=env, capture_output=True, text=True, check=True)
            cli_times.append((time.perf_counter() - started) * 1000)
        assert json.loads(listed.stdout)["total"] == args.items
        cli = {"p50_ms": statistics.median(cli_times), "min_ms": min(cli_times)}
        engine.dispose()

    result = {
        "backend": backend, "items": args.items, "python": platform.python_version(), "cpus": os.cpu_count(),
        "measured_at": datetime.now(timezone.utc).isoformat(), "load_average": os.getloadavg(),
        "seed": "set-based INSERT ... SELECT (bench/review_queue.py fill), then counts.recount",
        "seed_seconds": round(seeded, 2), "recount_seconds": round(recounted, 2),
        "wrk": {"seconds": args.seconds, "connections": args.connections, "threads": args.threads}, "workers": args.workers,
        "target_p99_ms": TARGET_P99_MS, "meets_target": all(r["api"]["p99_ms"] < TARGET_P99_MS for r in runs),
        "runs": [{"connections": r["connections"], "api": {k: v for k, v in r["api"].items() if k != "raw"},
                  "api_agent": {k: v for k, v in r["api_agent"].items() if k != "raw"},
                  "api_p99_over_floor_p99": r["api"]["p99_ms"] / floor["p99_ms"]} for r in runs],
        "agent_filter_total": agent_page["total"],
        "api": {k: v for k, v in api.items() if k != "raw"}, "api_agent": {k: v for k, v in api_agent.items() if k != "raw"},
        "floor": floor, "floor_agent": floor_agent, "cli": cli,
        "ratios": {
            "api_p50_over_floor_p50": api["p50_ms"] / floor["p50_ms"], "api_p99_over_floor_p99": api["p99_ms"] / floor["p99_ms"],
            "cli_p50_over_api_p50": cli["p50_ms"] / api["p50_ms"],
        },
    }
    table = Table(title=f"review queue list: {args.items:,} open items on {backend}, page of 100 with its total, "
                        f"{args.workers} server process(es)", title_justify="left")
    for column in ("how", "p50 ms", "p99 ms", "req/s", "p50 vs floor", "p99 vs floor", "target"):
        table.add_column(column, justify="left" if column == "how" else "right")
    for run in runs:
        for label, found, base in (("first page", run["api"], floor), ("agent=agent_3", run["api_agent"], floor_agent)):
            table.add_row(f"API, wrk -c{run['connections']}, {label}", f"{found['p50_ms']:.2f}", f"{found['p99_ms']:.2f}",
                          f"{found['requests_per_s']:.0f}", f"{found['p50_ms'] / base['p50_ms']:.1f}×", f"{found['p99_ms'] / base['p99_ms']:.1f}×",
                          ("met" if found["p99_ms"] < TARGET_P99_MS else "missed") if label == "first page" else "")
    table.add_row("service layer (floor)", f"{floor['p50_ms']:.2f}", f"{floor['p99_ms']:.2f}", "", "1.0×", "1.0×", "")
    table.add_row("service layer, agent=agent_3", f"{floor_agent['p50_ms']:.2f}", f"{floor_agent['p99_ms']:.2f}", "", "1.0×", "1.0×", "")
    table.add_row("legato review list --json (process)", f"{cli['p50_ms']:.0f}", "", "", f"{cli['p50_ms'] / floor['p50_ms']:.0f}×", "", "")
    console.print(table)
    console.print(f"seed {seeded:.1f} s, recount {recounted:.1f} s; non-2xx answers: {sum(r['api']['non_2xx'] + r['api_agent']['non_2xx'] for r in runs)}; "
                  f"p99 {'meets' if result['meets_target'] else 'MISSES'} the target")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    path = RESULTS.with_name(f"api_review_{backend}_w{args.workers}.json")
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
