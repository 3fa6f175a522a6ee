"""The console's overview served over HTTP with 90 days of data for 10 agents (issue 15).

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/console_overview.py`` (``--days``,
``--agents``, ``--items``, ``--repeat``). A fresh SQLite store gets:

- ``--agents`` × ``--days`` days of kept KPI counts, through their one writer, exactly as
  ``bench/report_kpis.py`` fills them (3 creatives × 3 offers × 4 lifecycle stages per agent and
  day, every count and outcome by arm, suppressions under 4 reasons);
- the agents (``trust.agent_state.create``), two of them paused with a reason
  (``service.agents.pause``: audit rows the stop-loss panel reads);
- ``--items`` open review items with their decisions (``bench/review_queue.py``'s set-based
  fill, then the queue's counts recounted by their owner), and the cycle they came from on the
  last day.

Then ``legato serve`` runs as its own process over the store, a session signs in through the
sign-in form, and, each ``--repeat`` times over one keep-alive HTTP client:

- **overview 30 d** / **overview 90 d**: ``GET /?days=30`` and ``GET /?days=90``, the whole page;
- **floor: /healthz**: the same client, the same server, an answer that does no work (what HTTP,
  uvicorn and the middleware cost);
- **floor: service**: :func:`legato.service.overview.overview` in this process on the same store,
  no HTTP, no rendering (what the page's reads cost).

Printed as a table (median and p90 in ms, each as a ratio to both floors), written to
``bench/results/console_overview.json``. Target: the overview ≤ 200 ms (median) over a store
holding 90 days: its default view (the last 30 days) and, stricter, the 90-day view, each
marked met or missed.
Lift per customer (``/overview/lift``) is not part of the overview's time: the page loads it
after it is shown (see docs/architecture.md, "The web console").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report_kpis  # noqa: E402  (the KPI counts, filled as that bench fills them)
import review_queue  # noqa: E402  (open review items, set-based)

from legato.store.db import connect  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results") / "console_overview.json"
TARGET_MS = 200.0
LEGATO = [sys.executable, "-c", "from legato.cli.app import main; main()"]
console = Console(width=120)


def timed(call: Any, repeat: int) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": statistics.median(times), "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))], "min_ms": times[0]}


def fill(url: str, agents: int, days: int, items: int) -> dict[str, float]:
    from legato.service import agents as agent_service
    from legato.store.schema import cycles
    from legato.trust import agent_state
    from legato.trust.review import counts

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    report_kpis.fill(url, agents, days)
    seconds["metrics"] = time.perf_counter() - started
    engine = connect(url)
    last_day = report_kpis.FIRST_DAY + timedelta(days=days - 1)
    at = datetime.combine(last_day, datetime.min.time(), tzinfo=timezone.utc) + timedelta(hours=8)
    started = time.perf_counter()
    review_queue.NOW = at  # the review items' cycle and ages end on the last day of the metrics
    review_queue.fill(engine, items)
    with engine.begin() as connection:
        counts.recount(connection)  # the set-based fill bypassed the queue's writers: its owner counts it once
        for a in range(agents):
            agent_state.create(connection, f"agent_{a:02d}", 1, at - timedelta(days=days))
        connection.execute(sa.update(cycles).values(at=at, started_at=at, finished_at=at + timedelta(minutes=5)))
    for a in (1, 4):
        agent_service.pause(engine, f"agent_{a:02d}", "bench", "the offer ran out", now=at + timedelta(hours=1))
    seconds["queue_agents"] = time.perf_counter() - started
    engine.dispose()
    return seconds


def sign_in(client: httpx.Client, key: str) -> None:
    form = client.get("/sign-in")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text[:500]
    done = client.post("/sign-in", data={"key": key, "csrf": token.group(1), "next": "/"})
    assert done.status_code == 303 and "legato_console" in client.cookies, (done.status_code, done.text[:500])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--items", type=int, default=10_000, help="open review items")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    from legato.service import keys
    from legato.service.overview import overview
    from legato.validation import load_playbook

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'bench.db'}"
        playbook_path = folder / "playbook.yaml"
        playbook_path.write_text(report_kpis.playbook_text(args.agents), encoding="utf-8")
        playbook = load_playbook(playbook_path)
        filled = fill(url, args.agents, args.days, args.items)
        engine = connect(url)
        _, key = keys.create(engine, "bench", "viewer", by="bench", now=datetime.now(timezone.utc))
        now = datetime.now(timezone.utc)
        service = {
            "30": timed(lambda: overview(engine, playbook, now=now, days=30), args.repeat),
            "90": timed(lambda: overview(engine, playbook, now=now, days=90), args.repeat),
        }
        found = overview(engine, playbook, now=now, days=90)
        assert len(found.kpis.groups) == args.agents and found.queue is not None and found.queue.open == args.items, found.queue

        port = review_queue_free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
        log = (folder / "serve.log").open("wb")
        server = subprocess.Popen([*LEGATO, "serve", "--database", url, "--playbook", str(playbook_path), "--port", str(port), "--rate-limit", "0"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=folder)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"legato serve did not become ready: {(folder / 'serve.log').read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
            with httpx.Client(base_url=base, timeout=30) as client:
                sign_in(client, key)
                page = client.get("/?days=90")
                assert page.status_code == 200 and page.text.count('class="agent card"') == args.agents, page.status_code
                size = len(page.content)
                for _ in range(3):  # warm: the first answers compile templates and statements
                    client.get("/?days=30"), client.get("/?days=90"), client.get("/healthz")
                http = {
                    "overview_30": timed(lambda: client.get("/?days=30").raise_for_status(), args.repeat),
                    "overview_90": timed(lambda: client.get("/?days=90").raise_for_status(), args.repeat),
                    "healthz": timed(lambda: client.get("/healthz").raise_for_status(), args.repeat),
                }
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
            log.close()
        engine.dispose()

    rows = []
    for label, name, days in (("overview 30 d (default)", "overview_30", "30"), ("overview 90 d", "overview_90", "90")):
        found_ms = http[name]
        rows.append({
            "how": label, **found_ms,
            "over_healthz": found_ms["p50_ms"] / http["healthz"]["p50_ms"],
            "over_service": found_ms["p50_ms"] / service[days]["p50_ms"],
            "service_p50_ms": service[days]["p50_ms"],
        })
    result = {
        "days": args.days, "agents": args.agents, "open_items": args.items, "repeat": args.repeat, "backend": "sqlite",
        "python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "measured_at": datetime.now(timezone.utc).isoformat(), "fill_seconds": filled, "page_bytes_90": size,
        "target_ms": TARGET_MS, "meets_target_default_view_30d": http["overview_30"]["p50_ms"] <= TARGET_MS,
        "meets_target_90d_view": http["overview_90"]["p50_ms"] <= TARGET_MS,
        "http": http, "service_floor": service, "rows": rows,
    }
    table = Table(title=f"console overview over HTTP: {args.agents} agents × {args.days} days of KPI counts, "
                        f"{args.items:,} open review items (SQLite), median of {args.repeat}", title_justify="left")
    for column in ("how", "p50 ms", "p90 ms", "vs /healthz", "vs service", "target"):
        table.add_column(column, justify="left" if column == "how" else "right")
    for row in rows:
        table.add_row(row["how"], f"{row['p50_ms']:.1f}", f"{row['p90_ms']:.1f}", f"{row['over_healthz']:.1f}×", f"{row['over_service']:.2f}×",
                      "met" if row["p50_ms"] <= TARGET_MS else "missed")
    table.add_row("floor: /healthz", f"{http['healthz']['p50_ms']:.2f}", f"{http['healthz']['p90_ms']:.2f}", "1.0×", "", "")
    for days in ("30", "90"):
        table.add_row(f"floor: service, {days} d", f"{service[days]['p50_ms']:.1f}", f"{service[days]['p90_ms']:.1f}", "", "1.00×", "")
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    console.print(f"written {RESULTS}")


def review_queue_free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
