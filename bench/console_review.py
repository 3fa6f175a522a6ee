"""The console's review inbox (issue 15): its pages over a queue of 100,000 open items, through `legato serve`.

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/console_review.py`` (``--items 1000000``
for the review-queue benchmarks' size; ``--database postgresql+psycopg://...`` to measure
PostgreSQL, whose tables are emptied first). The queue is seeded as ``bench/review_queue.py``
seeds it (``fill``: set-based INSERT ... SELECT, a real queue's priorities and ages) and its
counts rebuilt by their owner (``legato.trust.review.counts.recount``).

``legato serve`` runs as its own process (the real command, rate limit off); a reviewer signs
in through the console's own sign-in form (its CSRF cookie and field), as a browser does.
Each page is fetched ``--repeat`` times in a row over one keep-alive connection, after a few
warm-up requests, and timed from the request to the last byte of the answer:

- **console** ``GET /review`` (the first 50 items, the filter's total, the totals by reason and
  agent), ``GET /review?agent=agent_3``, ``GET /review?older_than_hours=24`` (a total the
  counts do not keep: counted over the items), and ``GET /review/{id}`` (one item with the
  items before and after it in the queue; the seed has no playbook, so nothing is rendered).
- **floor**, in the same run and on the same server: the API's ``GET /v1/review/items`` for
  the same filter and page size (the same service call, answered as JSON): what the console
  adds is the ratio.

Target: every console page's p99 ≤ 300 ms. Prints a table and writes
``bench/results/console_review.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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
from review_queue import NOW, fill  # noqa: E402 - the seed of the review-queue benchmarks

from legato.service import keys  # noqa: E402
from legato.store.db import connect  # noqa: E402
from legato.store.schema import metadata  # noqa: E402
from legato.trust.review import counts  # noqa: E402

TARGET_MS = 300.0
PAGE = 50  # the console's page of the queue (legato.console.pages.review.PAGE_SIZE)
RESULTS = Path(__file__).with_name("results") / "console_review.json"
LEGATO = [sys.executable, "-c", "from legato.cli.app import main; main()"]  # the `legato` command, from this checkout
console = Console(width=140)


def timed(client: httpx.Client, path: str, repeat: int, check: Any) -> dict[str, float]:
    for _ in range(3):  # warm-up: templates compiled, statements prepared
        check(client.get(path))
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        answer.read()
        times.append((time.perf_counter() - started) * 1000)
        check(answer)
    times.sort()
    return {"p50_ms": statistics.median(times), "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))],
            "min_ms": times[0], "max_ms": times[-1], "bytes": len(answer.content)}


def sign_in(base: str, key: str) -> httpx.Client:
    """A browser's way in: the sign-in form's double-submit token, then the key."""
    client = httpx.Client(base_url=base, timeout=60)
    form = client.get("/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if form.status_code != 200 or token is None:
        raise SystemExit(f"the sign-in form did not come: {form.status_code}")
    answer = client.post("/sign-in", data={"csrf": token.group(1), "key": key, "next": "/review"}, headers={"Origin": base})
    if answer.status_code != 303 or "legato_console" not in client.cookies:
        raise SystemExit(f"signing in failed: {answer.status_code} {answer.text[:200]}")
    return client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--database", help="a PostgreSQL URL to measure instead of a fresh SQLite file (its tables are emptied)")
    parser.add_argument("--repeat", type=int, default=100, help="requests per page")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{Path(folder) / 'queue.db'}"
        engine = connect(url)
        if args.database:
            with engine.begin() as connection:
                connection.exec_driver_sql("TRUNCATE " + ", ".join(f'"{t.name}"' for t in metadata.sorted_tables) + " RESTART IDENTITY CASCADE")
        seeded = fill(engine, args.items)
        with engine.begin() as connection:
            counts.recount(connection)  # the seed bypassed the queue's writers: its owner counts it once
        _, key = keys.create(engine, "bench-reviewer", "reviewer", by="bench", now=NOW)
        backend = engine.dialect.name
        engine.dispose()

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH")]))}
        log = Path(folder) / "serve.log"
        server = subprocess.Popen([*LEGATO, "serve", "--database", url, "--port", str(port), "--rate-limit", "0"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"))
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("legato serve did not become ready:\n" + log.read_text(errors="replace")[-2000:])
                time.sleep(0.2)
            browser = sign_in(base, key)
            api = httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"})

            def page_ok(answer: httpx.Response) -> None:
                if answer.status_code != 200 or "Review" not in answer.text:
                    raise SystemExit(f"{answer.request.url}: {answer.status_code} {answer.text[:300]}")

            def api_ok(answer: httpx.Response) -> None:
                if answer.status_code != 200:
                    raise SystemExit(f"{answer.request.url}: {answer.status_code} {answer.text[:300]}")

            first = api.get("/v1/review/items", params={"limit": PAGE}).json()
            assert first["total"] == args.items and len(first["items"]) == PAGE, first.get("total")
            listed = browser.get("/review")
            assert f"{args.items:,} items open" in listed.text, "the console's total is the queue's"
            item = first["items"][PAGE // 2]["id"]
            cases = [
                ("first page", "/review", f"/v1/review/items?limit={PAGE}"),
                ("agent=agent_3", "/review?agent=agent_3", f"/v1/review/items?limit={PAGE}&agent=agent_3"),
                ("waiting ≥ 24 h (counted over the items)", "/review?older_than_hours=24", f"/v1/review/items?limit={PAGE}&older_than_hours=24"),
                ("one item", f"/review/{item}", f"/v1/review/items/{item}"),
            ]
            runs = []
            for label, page_path, api_path in cases:
                runs.append({"page": label, "console_path": page_path, "api_path": api_path,
                             "console": timed(browser, page_path, args.repeat, page_ok),
                             "floor_api": timed(api, api_path, args.repeat, api_ok)})
        finally:
            server.terminate()
            server.wait(timeout=30)

    for run in runs:
        run["ratio_p50"] = run["console"]["p50_ms"] / run["floor_api"]["p50_ms"]
        run["ratio_p99"] = run["console"]["p99_ms"] / run["floor_api"]["p99_ms"]
        run["meets_target"] = run["console"]["p99_ms"] <= TARGET_MS
    result = {
        "backend": backend, "items": args.items, "python": platform.python_version(), "cpus": os.cpu_count(),
        "measured_at": datetime.now(timezone.utc).isoformat(), "load_average": os.getloadavg(),
        "seed": "set-based INSERT ... SELECT (bench/review_queue.py fill), then counts.recount", "seed_seconds": round(seeded, 2),
        "repeat": args.repeat, "page_size": PAGE, "target_p99_ms": TARGET_MS,
        "floor": "the API's /v1/review/items (or /items/{id}) for the same filter and page size, same server, same run",
        "meets_target": all(run["meets_target"] for run in runs), "runs": runs,
    }
    table = Table(title=f"console review inbox: {args.items:,} open items on {backend}, `legato serve`, one connection",
                  title_justify="left")
    for column in ("page", "console p50 ms", "console p99 ms", "API p50 ms (floor)", "API p99 ms", "p50 ratio", "p99 ratio", f"≤ {TARGET_MS:.0f} ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for run in runs:
        c, f = run["console"], run["floor_api"]
        table.add_row(run["page"], f"{c['p50_ms']:.1f}", f"{c['p99_ms']:.1f}", f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}",
                      f"{run['ratio_p50']:.2f}×", f"{run['ratio_p99']:.2f}×", "met" if run["meets_target"] else "missed")
    console.print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
