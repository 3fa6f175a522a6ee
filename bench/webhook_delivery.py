"""Webhook delivery benchmark (issue 13): webhooks a second through the dispatcher to a local
receiver, as a ratio to bare httpx posting the same bodies in the same run.

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/webhook_delivery.py`` (``--messages
2000`` for a quicker run; ``--database postgresql+psycopg://...`` to measure PostgreSQL, whose
tables are emptied first). Target: ≥ 2,000 webhooks/s.

The receiver runs in a process of its own on 127.0.0.1: a small asyncio HTTP/1.1 server
(keep-alive) that verifies every request's signature with the ``standardwebhooks`` library,
as a real receiver does, and counts each ``webhook-id`` once. The floors post the very bodies
and signature headers Legato sends over kept-alive connections: bare httpx one request at a
time (the sequential floor) and ``--concurrency`` at a time (threads; the same-concurrency
floor), each through ``httpx.Client`` and straight through httpx's connection pool
(``httpx.HTTPTransport``), the best of each pair counting. Two more rows say where the limits
are: Legato's own HTTP/1.1 client (``deliver.http1``) posting the same requests without the
dispatcher, and a minimal socket client (requests built beforehand, one selector loop), whose
rate is the receiver's ceiling on this machine. Legato's figure is ``dispatch_due`` from a
store holding the messages of a cycle's decisions: claim, the send-time checks, rendering,
signing, the POSTs and the record of each result. Each row also gives the client's CPU time per
message (the process's own, the receiver's not counted): on a machine shared with other work
the rates move by half from run to run, the CPU time much less.
Every message must reach the receiver once, with a valid signature, or the run fails.
Prints a table and writes ``bench/results/webhook_delivery[_postgresql].json``.

Measured on the 2-core machine shared with other sessions (load 8 to 9), the median of three
runs (docs/architecture.md, "Webhooks, push and each channel's rate limit"): 1,185 webhooks/s
on SQLite, 1.56 × bare httpx one at a time and 1.14 × bare httpx 8 at a time, 297 µs of
dispatcher CPU a message against 415 to 643 µs a request for bare httpx; 864/s on PostgreSQL,
1.31 × and 0.89 ×, 351 µs; there the target is missed, as bare httpx reaches 800 to 1,100/s.
On the same machine quiet (load below 2): 3,938/s on SQLite (median of three; 1.38 × the
sequential bare floor, 2.52 × the same-concurrency one) and 2,221/s on PostgreSQL (one run;
0.78 × and 1.28 ×): the target met on both.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

TARGET = 2_000.0
RESULTS = Path(__file__).with_name("results") / "webhook_delivery.json"
AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEND = AT + timedelta(hours=2)
console = Console(width=150)

PLAYBOOK = """
brand:
  name: Hook Co
  legal: {sender_name: Hook Co, postal_address: "9 Harbour Road", support_contact: "help@hook.example", unsubscribe_url: "https://hook.example/u"}
attributes: {nickname: string}
objectives:
  - {id: grow, goal: engagement, why: benchmark, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  webhook: {kind: webhook, url: "URL", secret_env: BENCH_HOOK_SECRET, concurrency: CONCURRENCY}
creatives:
  - {id: ping, channel: webhook, purpose: transactional, body: "Hello {{ customer.nickname }}, your order shipped."}
agents:
  - id: notifier
    objective: grow
    audience: "true"
    actions: {creatives: [ping], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


# --- the receiver (its own process) -----------------------------------------------------


def receiver_main(secret: str, port_out: Any) -> None:
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    verifier = Webhook(secret)
    stats = {"requests": 0, "unique": 0, "rejected": 0}
    seen: set[str] = set()

    class Connection(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport, self.buffer = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buffer[:end].decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
                length = int(headers.get("content-length", "0"))
                if len(self.buffer) < end + 4 + length:
                    return
                body, self.buffer = self.buffer[end + 4 : end + 4 + length], self.buffer[end + 4 + length :]
                method, path = head[0].split(" ")[:2]
                if method == "GET" and path == "/stats":
                    out = json.dumps(stats).encode()
                    self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(out), out))
                    continue
                if method == "POST" and path == "/reset":
                    seen.clear()
                    stats.update(requests=0, unique=0, rejected=0)
                    self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                    continue
                stats["requests"] += 1
                try:
                    verifier.verify(body, headers, json_parse=False)
                except WebhookVerificationError:
                    stats["rejected"] += 1
                    self.transport.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                    continue
                key = headers["webhook-id"]
                if key not in seen:
                    seen.add(key)
                    stats["unique"] += 1
                self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Connection, "127.0.0.1", 0, backlog=1024)
        port_out.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(serve())


class Receiver:
    def __init__(self, secret: str) -> None:
        queue: Any = mp.get_context("spawn").Queue()
        self.process = mp.get_context("spawn").Process(target=receiver_main, args=(secret, queue), daemon=True)
        self.process.start()
        self.base = f"http://127.0.0.1:{queue.get(timeout=60)}"
        self.url = f"{self.base}/hooks"

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.base}/stats").json()

    def reset(self) -> None:
        httpx.post(f"{self.base}/reset")

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


# --- the floor: bare httpx ----------------------------------------------------------------


def bare(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int, layer: str = "client") -> float:
    """Seconds for httpx to POST every (body, headers), ``concurrency`` at a time: through one
    ``httpx.Client`` (``layer`` "client"), or straight through httpx's connection pool
    (``httpx.HTTPTransport``, "transport"), as Legato's webhook transport did before it had its own client."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    if layer == "client":
        client = httpx.Client(limits=limits, headers={"content-type": "application/json"})
        post = lambda r: client.post(url, content=r[0], headers=r[1]).raise_for_status()  # noqa: E731
        close = client.close
    else:
        pool = httpx.HTTPTransport(limits=limits)
        target = httpx.URL(url)

        def post(r: tuple[bytes, dict[str, str]]) -> None:
            answer = pool.handle_request(httpx.Request("POST", target, content=r[0], headers={"content-type": "application/json", **r[1]}))
            answer.read()
            answer.close()
            assert answer.status_code < 300, answer.status_code

        close = pool.close
    try:
        post(requests[0])  # connect first, as Legato's warm client has
        started = time.perf_counter()
        if concurrency == 1:
            for request in requests:
                post(request)
        else:
            with ThreadPoolExecutor(concurrency) as workers:
                list(workers.map(post, requests))
        return time.perf_counter() - started
    finally:
        close()


def bare_sockets(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int) -> float:
    """Seconds for a minimal client (requests built beforehand, ``concurrency`` sockets, one
    selector loop, answers only split at their blank line) to POST every request: close to
    the receiver's own ceiling, since this client costs a few µs a request."""
    import selectors
    import socket

    target = httpx.URL(url)
    built = [
        b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s" % (
            target.raw_path, target.netloc, b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()), len(body), body)
        for body, headers in requests
    ]
    socks = [socket.create_connection((target.host, target.port)) for _ in range(concurrency)]
    selector = selectors.DefaultSelector()
    pending = iter(built)
    buffers = {s: b"" for s in socks}
    in_flight = 0
    started = time.perf_counter()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        if (request := next(pending, None)) is not None:
            sock.sendall(request)
            in_flight += 1
    while in_flight:
        for key, _ in selector.select():
            sock = key.fileobj  # type: ignore[assignment]
            buffers[sock] += sock.recv(65536)
            while b"\r\n\r\n" in buffers[sock]:
                head, _, buffers[sock] = buffers[sock].partition(b"\r\n\r\n")
                assert b" 204 " in head.split(b"\r\n")[0], head
                in_flight -= 1
                if (request := next(pending, None)) is not None:
                    sock.sendall(request)
                    in_flight += 1
    seconds = time.perf_counter() - started
    for sock in socks:
        sock.close()
    return seconds


def bare_http1(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int) -> float:
    """Seconds for Legato's HTTP/1.1 client (``deliver.http1``), without the dispatcher, to POST every request."""
    from legato.deliver.http1 import Answer, Origin, Request

    origin = Origin(url, connections=concurrency, timeout=10)
    pending = iter(enumerate(requests))

    def take() -> Request | None:
        item = next(pending, None)
        return None if item is None else Request(item[0], {"content-type": "application/json", **item[1][1]}, item[1][0])

    def give(request: Any, answer: Any) -> None:
        assert isinstance(answer, Answer) and answer.status < 300, answer

    started = time.perf_counter()
    origin.exchange(take, give)
    seconds = time.perf_counter() - started
    origin.close()
    return seconds


# --- Legato: the dispatcher -----------------------------------------------------------------


def legato_run(url: str, database: str | None, messages: int, concurrency: int, folder: Path) -> dict[str, Any]:
    from legato.clock import FixedClock
    from legato.cycle import run_cycle
    from legato.deliver.dispatch import dispatch_due, transports
    from legato.store.db import connect
    from legato.store.ingest import import_customers
    from legato.store.schema import metadata, outbox
    from legato.validation import parse_playbook

    engine = connect(database or f"sqlite:///{folder / 'legato.db'}")
    if database:
        with engine.begin() as c:
            c.execute(sa.text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables if t.name != "alembic_version") + " RESTART IDENTITY CASCADE"))
    ids = [f"c{i:07d}" for i in range(messages)]
    import_customers(engine, pa.table({"id": ids, "time_zone": ["UTC"] * messages, "nickname": ["Sam"] * messages}),
                     attribute_types={"nickname": "string"}, clock=FixedClock(AT))
    pb = parse_playbook(PLAYBOOK.replace("URL", url).replace("CONCURRENCY", str(concurrency)))
    sinks = transports(pb, folder)
    setup = time.perf_counter()
    run_cycle(engine, pb, FixedClock(AT), sinks)
    decided = time.perf_counter() - setup
    started, cpu = time.perf_counter(), time.process_time()
    report = dispatch_due(engine, pb, FixedClock(SEND), sinks)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    with engine.connect() as c:
        sent_rows = c.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status == "sent")).scalar_one()
    bodies = _sample_requests(engine, sinks["webhook"], messages)
    engine.dispose()
    return {"seconds": seconds, "cpu_us_per_message": round(cpu / messages * 1e6), "report": report.totals(), "sent_rows": sent_rows, "cycle_seconds": decided, "requests": bodies,
            "backend": "postgresql" if database else "sqlite"}


def _sample_requests(engine: sa.Engine, hook: Any, messages: int) -> list[tuple[bytes, dict[str, str]]]:
    """The bodies Legato sent (rebuilt from the same messages' fields) with fresh signatures, for the floor."""
    from legato.store.schema import outbox

    with engine.connect() as c:
        rows = c.execute(sa.select(outbox.c.message_id, outbox.c.decision_id, outbox.c.customer_id)).all()
    out = []
    for r in rows:
        message = {"message_id": f"bare-{r.message_id}", "decision_id": r.decision_id, "agent_id": "notifier", "channel": "webhook",
                   "to": r.customer_id, "customer_id": r.customer_id, "subject": None, "title": None,
                   "body": "Hello Sam, your order shipped.", "headers": {}, "sent_at": SEND.isoformat()}
        body = hook.body(message)
        out.append((body.encode(), hook.headers(message["message_id"], body)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", default=None, help="PostgreSQL URL (its tables are emptied); SQLite in a temporary folder by default")
    args = parser.parse_args()

    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    os.environ["BENCH_HOOK_SECRET"] = secret
    receiver = Receiver(secret)
    n, conc = args.messages, args.concurrency
    try:
        with tempfile.TemporaryDirectory() as tmp:
            legato = legato_run(receiver.url, args.database, n, conc, Path(tmp))
        legato_stats = receiver.stats()
        requests = legato.pop("requests")
        seconds: dict[str, float] = {}
        runs = [(f"httpx.{layer}x{c}", lambda layer=layer, c=c: bare(receiver.url, requests, c, "client" if layer == "Client" else "transport"))
                for layer in ("Client", "HTTPTransport") for c in (1, conc)]
        runs += [(f"legato_http1x{conc}", lambda: bare_http1(receiver.url, requests, conc)),
                 (f"socketsx{conc}", lambda: bare_sockets(receiver.url, requests, conc))]
        cpu: dict[str, float] = {}
        for name, run in runs:
            receiver.reset()
            before = time.process_time()
            seconds[name] = run()
            cpu[name] = (time.process_time() - before) / n * 1e6  # the client's CPU a request (the receiver is another process)
            floor_stats = receiver.stats()
            assert floor_stats["unique"] == len(requests) and floor_stats["rejected"] == 0, (name, floor_stats)
    finally:
        receiver.stop()

    ok = legato_stats["unique"] == n and legato_stats["rejected"] == 0 and legato_stats["requests"] == n and legato["sent_rows"] == n
    legato_rate = n / legato["seconds"]
    rates = {name: n / s for name, s in seconds.items()}
    sequential = max(rates["httpx.Clientx1"], rates["httpx.HTTPTransportx1"])
    same = max(rates[f"httpx.Clientx{conc}"], rates[f"httpx.HTTPTransportx{conc}"])
    best = max(sequential, same)
    ceiling = rates[f"socketsx{conc}"]
    ratios = {"to_best_bare_httpx": legato_rate / best, "to_sequential_bare_httpx": legato_rate / sequential,
              "to_same_concurrency_bare_httpx": legato_rate / same, "to_receiver_ceiling": legato_rate / ceiling}
    table = Table(title=f"Webhooks to a local receiver verifying every signature ({n:,} messages, {legato['backend']})")
    for col in ("what", "webhooks/s", "× best bare httpx", "× receiver ceiling", "client CPU µs/message"):
        table.add_column(col, justify="right" if col != "what" else "left")
    names = {f"httpx.Clientx{c}": f"bare httpx.Client, {c} at a time" for c in (1, conc)}
    names |= {f"httpx.HTTPTransportx{c}": f"bare httpx.HTTPTransport, {c} at a time" for c in (1, conc)}
    names |= {f"legato_http1x{conc}": f"bare legato.deliver.http1, {conc} at a time", f"socketsx{conc}": f"minimal socket client, {conc} at a time (receiver ceiling)"}
    for name, rate in rates.items():
        table.add_row(names[name], f"{rate:,.0f}", f"{rate / best:.2f}", f"{rate / ceiling:.2f}", f"{cpu[name]:,.0f}")
    table.add_row(f"legato dispatch_due, {conc} at a time", f"{legato_rate:,.0f}", f"{legato_rate / best:.2f}", f"{legato_rate / ceiling:.2f}",
                  f"{legato['cpu_us_per_message']:,}")
    console.print(table)
    verdict = "meets" if legato_rate >= TARGET else "misses"
    console.print(f"target ≥ {TARGET:,.0f}/s: {verdict}; × sequential bare httpx {ratios['to_sequential_bare_httpx']:.2f}, "
                  f"× bare httpx {conc} at a time {ratios['to_same_concurrency_bare_httpx']:.2f}; dispatcher CPU "
                  f"{legato['cpu_us_per_message']} µs/message; every message once, signatures valid: {ok} "
                  f"(receiver: {legato_stats}); the cycle that decided them took {legato['cycle_seconds']:.1f} s (not counted); "
                  f"load {os.getloadavg()[0]:.1f}")
    results = RESULTS if legato["backend"] == "sqlite" else RESULTS.with_name(f"webhook_delivery_{legato['backend']}.json")
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps({
        "benchmark": "webhook_delivery", "messages": n, "concurrency": conc, "backend": legato["backend"],
        "legato_per_s": round(legato_rate, 1), "legato_cpu_us_per_message": legato["cpu_us_per_message"],
        "floors_per_s": {name: round(r, 1) for name, r in rates.items()},
        "floors_client_cpu_us_per_message": {name: round(c) for name, c in cpu.items()},
        **{f"ratio_{k}": round(v, 3) for k, v in ratios.items()},
        "target_per_s": TARGET, "meets_target": legato_rate >= TARGET,
        "delivered_once_all_verified": ok, "receiver": legato_stats, "dispatch_report": legato["report"],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_1m": os.getloadavg()[0]},
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2) + "\n")
    console.print(f"wrote {results}")
    if not ok:
        raise SystemExit("not every message reached the receiver exactly once with a valid signature")


if __name__ == "__main__":
    main()
