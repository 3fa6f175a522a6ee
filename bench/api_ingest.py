"""Event ingest over HTTP (issue 12): batches of 100 events through `legato serve`, under wrk.

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/api_ingest.py`` (``--seconds`` per
run, ``--connections`` wrk keeps open, ``--workers`` server processes (``legato serve
--workers``), ``--rate`` events/s to offer on a schedule instead of flat out, ``--postgres URL`` the server
to make a scratch database on, ``--skip-postgres``). For each store (SQLite, PostgreSQL) a fresh store gets
10,000 customers and an ingest key, ``legato serve`` is started as its own process, and wrk
(a real load tool, its Lua script making every batch of 100 events with ids of their own)
posts to ``/v1/events/batch`` (Legato's shape) and to ``/v1/batch`` (Segment's: 100 track
calls) for ``--seconds`` each. Then the same number of events go through the importer
itself, ``legato.store.ingest.import_events``, in the same batches of 100 and as one file
(what ``legato import events`` does). Printed as a table with each HTTP figure's ratio to the
importer's batches of 100; written to ``bench/results/api_ingest_c<connections>_w<workers>[_r<rate>].json``.

Targets: ≥ 5,000 events/s sustained with p99 < 100 ms, on SQLite and on PostgreSQL. Flat out
(no ``--rate``) shows the most a server takes, and its p99 is mostly batches queueing behind one
another; ``--rate 5200`` shows the latency at the target's rate sustained. Every
request must have answered 200 and every event must be in the store, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
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

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stores import drop_store, free_port, fresh_store  # noqa: E402 - what several benchmarks share
from legato.service import keys
from legato.store.db import connect
from legato.store.ingest import import_customers, import_events
from legato.store.schema import events, metadata
from legato.store.status import KeyRole

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results") / "api_ingest.json"
AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
CUSTOMERS = 10_000
BATCH = 100
TARGET_RATE, TARGET_P99_MS = 5_000, 100.0

console = Console(width=120)

# One wrk thread's requests: each a batch of BATCH events with ids of their own (thread, request, position).
LUA = r"""
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local kinds = {"visit", "visit", "open", "click", "purchase", "visit", "purchase", "open", "visit", "click"}

local function legato(n)
  local parts = {}
  for i = 1, BATCH do
    local customer = string.format("C%06d", (n * 7919 + i * 104729) % CUSTOMERS)
    local kind = kinds[(i % 10) + 1]
    local revenue = ""
    if kind == "purchase" then revenue = string.format(',"revenue":%d.5', (n + i) % 200) end
    parts[i] = string.format('{"id":"%s-%d-%d-%d","customer_id":"%s","type":"%s","occurred_at":"2024-03-0%dT%02d:%02d:00Z"%s,"properties":{"source":"wrk"}}',
      RUN, tid, n, i, customer, kind, (i % 3) + 1, i % 24, n % 60, revenue)
  end
  return '{"batch":[' .. table.concat(parts, ",") .. ']}'
end

local names = {visit = "Product Viewed", open = "Email Opened", click = "Email Link Clicked", purchase = "Order Completed"}

local function segment(n)
  local parts = {}
  for i = 1, BATCH do
    local customer = string.format("C%06d", (n * 7919 + i * 104729) % CUSTOMERS)
    local kind = kinds[(i % 10) + 1]
    parts[i] = string.format('{"type":"track","userId":"%s","event":"%s","messageId":"%s-%d-%d-%d","timestamp":"2024-03-0%dT%02d:%02d:00Z","properties":{"revenue":%d.5}}',
      customer, names[kind], RUN, tid, n, i, (i % 3) + 1, i % 24, n % 60, (n + i) % 200)
  end
  return '{"batch":[' .. table.concat(parts, ",") .. '],"sentAt":"2024-03-04T08:00:00Z"}'
end

-- With RATE set (--rate), each thread (one connection each) sends on a schedule of its own, one
-- batch every INTERVAL ms, so the server is measured at a sustained offered rate rather than
-- flat out (where every batch waits behind the others and p99 is queueing). A thread that falls
-- behind sends at once until it has caught up, as wrk2 does.
if INTERVAL > 0 then
  local ffi = require("ffi")
  ffi.cdef[[ typedef struct { long tv_sec; long tv_usec; } legato_timeval; int gettimeofday(legato_timeval *t, void *tz); ]]
  local tv = ffi.new("legato_timeval")
  local next_at = nil
  delay = function()
    ffi.C.gettimeofday(tv, nil)
    local now = tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
    -- the threads' schedules are staggered evenly, so their batches do not all arrive at once
    if next_at == nil then next_at = now + (tid - 1) * INTERVAL / THREADS end
    next_at = next_at + INTERVAL
    if next_at <= now then return 0 end
    return next_at - now
  end
end

request = function()
  counter = counter + 1
  local body
  if SHAPE == "segment" then body = segment(counter) else body = legato(counter) end
  return wrk.format("POST", PATH, {["Content-Type"] = "application/json", ["Authorization"] = AUTH}, body)
end
"""


def load_customers(url: str) -> str:
    engine = connect(url)
    ids = [f"C{i:06d}" for i in range(CUSTOMERS)]
    import_customers(engine, pa.table({"id": ids, "email": [f"{c.lower()}@bench.example" for c in ids]}))
    key = keys.create(engine, "bench", KeyRole.INGEST, by="bench", now=AT)[1]
    engine.dispose()
    return key


def start_server(url: str, port: int, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-c", "from legato.cli.app import main; main()", "serve", "--port", str(port), "--database", url,
               "--rate-limit", "0", "--workers", str(workers)]
    server = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"legato serve stopped: {log.read_text()[-2000:]}")
        # Every worker has said it started (the parent binds the port before any can answer).
        if log.read_text(errors="replace").count("Application startup complete") >= workers:
            return server
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("legato serve did not start")


def stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def wrk(url: str, shape: str, key: str, run: str, seconds: int, connections: int, folder: Path, rate: float = 0) -> dict[str, Any]:
    script = folder / f"{shape}.lua"
    path = "/v1/batch" if shape == "segment" else "/v1/events/batch"
    auth = "Bearer " + key
    # At an offered rate each connection is a thread of its own, sending a batch every INTERVAL ms.
    interval = connections * BATCH * 1000 / rate if rate else 0
    script.write_text(f'RUN = "{run}"\nSHAPE = "{shape}"\nPATH = "{path}"\nAUTH = "{auth}"\nBATCH = {BATCH}\nCUSTOMERS = {CUSTOMERS}\n'
                      f'INTERVAL = {interval}\nTHREADS = {connections}\n' + LUA)
    threads = connections if rate else min(2, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", str(script), url]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return parse_wrk(output)


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> dict[str, Any]:
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    seconds = _ms(re.search(r"requests in ([\d.]+(?:us|ms|s|m))", output).group(1)) / 1000  # type: ignore[union-attr]
    percentiles = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.M)}
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests": requests, "seconds": seconds, "requests_per_s": requests / seconds,
        "events_per_s": requests * BATCH / seconds, "p50_ms": percentiles.get("50"), "p99_ms": percentiles.get("99"),
        "non_2xx": int(refused.group(1)) if refused else 0, "socket_errors": errors.group(1) if errors else None,
    }


def stored_events(url: str) -> int:
    engine = connect(url)
    with engine.connect() as connection:
        count = int(connection.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())
    engine.dispose()
    return count


def importer_batches(url: str, total: int) -> dict[str, Any]:
    """The same number of events through import_events, BATCH at a time, one after another."""
    engine = connect(url)
    rng = np.random.default_rng(5)
    times: list[float] = []
    started = time.perf_counter()
    for n in range(total // BATCH):
        customer = rng.integers(0, CUSTOMERS, BATCH)
        kinds = np.array(["visit", "open", "click", "purchase"])[rng.integers(0, 4, BATCH)]
        table = pa.table({
            "id": [f"lib-{n}-{i}" for i in range(BATCH)], "customer_id": [f"C{c:06d}" for c in customer], "type": kinds,
            "occurred_at": ["2024-03-02T09:00:00Z"] * BATCH,
            "revenue": pa.array(np.where(kinds == "purchase", 20.5, np.nan), mask=kinds != "purchase"),
        })
        start = time.perf_counter()
        import_events(engine, table)
        times.append(time.perf_counter() - start)
    elapsed = time.perf_counter() - started
    engine.dispose()
    return {"events": total, "seconds": elapsed, "events_per_s": total / elapsed,
            "p50_ms": statistics.median(times) * 1000, "p99_ms": float(np.percentile(times, 99)) * 1000}


def importer_file(url: str, total: int, folder: Path) -> dict[str, Any]:
    """The same number of events as one JSON Lines file: what `legato import events FILE` does."""
    path = folder / "events.jsonl"
    rng = np.random.default_rng(9)
    with path.open("w") as out:
        for i in range(total):
            out.write(json.dumps({"id": f"file-{i}", "customer_id": f"C{int(rng.integers(0, CUSTOMERS)):06d}", "type": "visit",
                                  "occurred_at": "2024-03-02T10:00:00Z"}) + "\n")
    engine = connect(url)
    start = time.perf_counter()
    import_events(engine, path)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return {"events": total, "seconds": elapsed, "events_per_s": total / elapsed}


def measure(kind: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    url = fresh_store(kind, folder, args.postgres, "ingest")
    try:
        key = load_customers(url)
        port = free_port()
        server = start_server(url, port, folder / f"serve-{kind}.log", args.workers)
        found: dict[str, Any] = {}
        try:
            base = f"http://127.0.0.1:{port}"
            wrk(base, "legato", key, "warm", 3, args.connections, folder)  # warm-up: connections, plans, caches
            before = stored_events(url)
            for shape in ("legato", "segment"):
                found[shape] = wrk(base, shape, key, f"run{shape}", args.seconds, args.connections, folder, args.rate)
                after = stored_events(url)
                found[shape]["stored"] = after - before
                before = after
        finally:
            stop(server)
        total = max(found["legato"]["requests"] * BATCH, BATCH * 50)
        found["importer_batches"] = importer_batches(url, total)
        found["importer_file"] = importer_file(url, total, folder)
        return found
    finally:
        drop_store(url, args.postgres)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="legato serve --workers")
    parser.add_argument("--rate", type=float, default=0,
                        help="events/s to offer in all (batches on a schedule, as wrk2 does); 0: as fast as the server answers")
    parser.add_argument("--postgres", default=os.environ.get("LEGATO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    results: dict[str, Any] = {"batch": BATCH, "seconds": args.seconds, "connections": args.connections, "workers": args.workers, "offered_rate": args.rate,
                               "cpus": os.cpu_count(), "measured_at": datetime.now(timezone.utc).isoformat(),
                               "load_average_before": os.getloadavg(), "customers": CUSTOMERS,
                               "target": {"events_per_s": TARGET_RATE, "p99_ms": TARGET_P99_MS}, "stores": {}}
    kinds = ["sqlite"] if args.skip_postgres else ["sqlite", "postgresql"]
    with tempfile.TemporaryDirectory() as scratch:
        for kind in kinds:
            console.print(f"[bold]{kind}[/bold]: {args.seconds} s of wrk per shape, {args.connections} connections, {args.workers} server process(es)")
            results["stores"][kind] = measure(kind, args, Path(scratch))
    results["load_average_after"] = os.getloadavg()  # the machine is shared: a busy one shows here
    failed = report(results)
    RESULTS.parent.mkdir(exist_ok=True)
    offered = f"_r{args.rate:.0f}" if args.rate else ""
    path = RESULTS.with_name(f"api_ingest_c{args.connections}_w{args.workers}{offered}.json")
    path.write_text(json.dumps(results, indent=2) + "\n")
    console.print(f"written to {path.relative_to(ROOT)}")
    if failed:
        sys.exit("; ".join(failed))


def report(results: dict[str, Any]) -> list[str]:
    offered = f", {results['offered_rate']:,.0f} events/s offered" if results.get("offered_rate") else ", flat out"
    table = Table(title=f"Event ingest, batches of {BATCH}, wrk -c{results['connections']}{offered}, {results['workers']} server process(es) "
                        f"(target ≥ {TARGET_RATE:,} events/s, p99 < {TARGET_P99_MS:.0f} ms)")
    for column in ("store", "path", "events/s", "p50 ms", "p99 ms", "× importer (batches)", "target"):
        table.add_column(column, justify="left" if column in ("store", "path") else "right")
    failed: list[str] = []
    for kind, found in results["stores"].items():
        base = found["importer_batches"]["events_per_s"]
        for shape, label in (("legato", "POST /v1/events/batch"), ("segment", "POST /v1/batch (Segment)")):
            run = found[shape]
            met = run["events_per_s"] >= TARGET_RATE and (run["p99_ms"] or 1e9) < TARGET_P99_MS
            # wrk counts the answers it read before its time was up; requests still in flight then are
            # written too, so the store holds at least that many events, in whole batches.
            if run["non_2xx"] or run["socket_errors"] or run["stored"] < run["requests"] * BATCH or run["stored"] % BATCH:
                failed.append(f"{kind} {shape}: {run['non_2xx']} refused, {run['stored']} of {run['requests'] * BATCH} events stored")
            table.add_row(kind, label, f"{run['events_per_s']:,.0f}", f"{run['p50_ms']:.1f}", f"{run['p99_ms']:.1f}",
                          f"{run['events_per_s'] / base:.2f}", "met" if met else "missed")
        batches, whole = found["importer_batches"], found["importer_file"]
        table.add_row(kind, "import_events, batches of 100", f"{base:,.0f}", f"{batches['p50_ms']:.1f}", f"{batches['p99_ms']:.1f}", "1.00", "")
        table.add_row(kind, f"import_events, one file of {whole['events']:,}", f"{whole['events_per_s']:,.0f}", "", "",
                      f"{whole['events_per_s'] / base:.2f}", "")
    console.print(table)
    console.print(f"load average before {results['load_average_before'][0]:.1f}, after {results['load_average_after'][0]:.1f} "
                  f"({results['cpus']} cpus)")
    return failed


if __name__ == "__main__":
    main()
