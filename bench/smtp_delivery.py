"""SMTP delivery benchmark (issue 13): e-mails a second through the dispatcher to a local SMTP
server over reused connections, as a ratio to bare smtplib sending the same messages in the
same run; and the outbox's claim and completion rows a second on SQLite and PostgreSQL, each
as a ratio to the bare driver doing the same row changes.

Run: ``flock /tmp/legato-bench.lock .venv/bin/python bench/smtp_delivery.py`` (``--messages
1000 --rows 5000`` for a quicker run; ``--postgres URL`` names the PostgreSQL server, default
the local one; ``--no-postgres`` skips it). Target: ≥ 500 e-mails/s.

The server is aiosmtpd in a process of its own on 127.0.0.1, counting every message and each
Message-ID once. The floor is bare smtplib sending the very bytes Legato composes (re-keyed),
one message at a time over one kept connection, and ``--connections`` connections at once
(threads); the best is the floor. Legato's figure is ``dispatch_due`` from a store holding a
cycle's decisions: claim, the send-time checks, rendering, composing, the SMTP dialogue and
the hand-over protocol (each message marked handed over, durably, in the transaction that
records the one before it on its connection). Every message must reach the server once.

Outbox rows: ``claim`` of pending rows in batches of 5,000 against a bare ``UPDATE … WHERE
id IN (SELECT … LIMIT)`` run through the driver; completion recorded per batch
(``record_sent``, one executemany) against a bare executemany of the same UPDATE; and the
hand-over step (one message's result and the next one's mark, one transaction each) against
a bare one-row UPDATE committed per row. Prints a table and writes
``bench/results/smtp_delivery.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import smtplib
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

TARGET = 500.0
RESULTS = Path(__file__).with_name("results") / "smtp_delivery.json"
AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEND = AT + timedelta(hours=2)
console = Console()

PLAYBOOK = """
brand:
  name: Mail Co
  legal: {sender_name: Mail Co, postal_address: "3 Pier Rd", support_contact: "help@mail.example", unsubscribe_url: "https://mail.example/u"}
objectives:
  - {id: grow, goal: engagement, why: benchmark, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: smtp, host: 127.0.0.1, port: PORT, connections: CONNECTIONS}
creatives:
  - id: hello
    channel: email
    subject: "Spring is here, {{ customer.id }}"
    body: "Hello {{ customer.id }}, our spring range is in. Unsubscribe: {{ unsubscribe_url }} Mail Co, {{ brand.postal_address }}"
    html: "<p>Hello <b>{{ customer.id }}</b>, our spring range is in.</p><p><a href=\\"{{ unsubscribe_url }}\\">Unsubscribe</a> Mail Co, {{ brand.postal_address }}</p>"
agents:
  - id: mailer
    objective: grow
    audience: "true"
    actions: {creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


# --- the server (its own process) -------------------------------------------------------------


def server_main(port_out: Any, commands: Any) -> None:
    from aiosmtpd.controller import Controller

    stats = {"messages": 0, "unique": 0}
    seen: set[bytes] = set()
    lock = threading.Lock()

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            data = bytes(envelope.original_content)
            head = data.split(b"\r\n\r\n", 1)[0]
            key = next((line[11:].strip() for line in head.split(b"\r\n") if line[:11].lower() == b"message-id:"), b"")
            with lock:
                stats["messages"] += 1
                if key not in seen:
                    seen.add(key)
                    stats["unique"] += 1
            return "250 OK"

    import socket

    with socket.socket() as probe:  # aiosmtpd's controller needs a port it can connect to: a free one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Counting(), hostname="127.0.0.1", port=port, ready_timeout=30)
    controller.start()
    port_out.put(port)
    while True:
        command = commands.recv()
        if command == "stats":
            with lock:
                commands.send(dict(stats))
        elif command == "reset":
            with lock:
                seen.clear()
                stats.update(messages=0, unique=0)
            commands.send("ok")
        else:
            controller.stop()
            return


class Server:
    def __init__(self) -> None:
        context = mp.get_context("spawn")
        queue = context.Queue()
        self.commands, theirs = context.Pipe()
        self.process = context.Process(target=server_main, args=(queue, theirs), daemon=True)
        self.process.start()
        self.port = int(queue.get(timeout=60))

    def stats(self) -> dict[str, int]:
        self.commands.send("stats")
        return dict(self.commands.recv())

    def reset(self) -> None:
        self.commands.send("reset")
        self.commands.recv()

    def stop(self) -> None:
        self.commands.send("stop")
        self.process.join(10)


# --- the floor: bare smtplib --------------------------------------------------------------------


def bare(port: int, mails: list[tuple[str, bytes]], connections: int) -> float:
    """Seconds for smtplib to send every (recipient, bytes), over ``connections`` kept connections."""
    parts = [mails[i::connections] for i in range(connections)]
    clients = [smtplib.SMTP("127.0.0.1", port) for _ in parts]
    for client in clients:
        client.ehlo()  # connected and greeted first, as Legato's lanes are after their first message

    def send(client: smtplib.SMTP, part: list[tuple[str, bytes]]) -> None:
        for to, data in part:
            client.sendmail("help@mail.example", [to], data)

    started = time.perf_counter()
    if connections == 1:
        send(clients[0], parts[0])
    else:
        with ThreadPoolExecutor(connections) as pool:
            list(pool.map(send, clients, parts))
    seconds = time.perf_counter() - started
    for client in clients:
        client.quit()
    return seconds


# --- Legato: the dispatcher ------------------------------------------------------------------------


def legato_run(port: int, messages: int, connections: int, folder: Path) -> dict[str, Any]:
    from legato.clock import FixedClock
    from legato.cycle import run_cycle
    from legato.deliver.dispatch import dispatch_due, transports
    from legato.deliver.smtp import compose
    from legato.store.db import connect
    from legato.store.ingest import import_customers
    from legato.store.schema import outbox
    from legato.validation import parse_playbook

    engine = connect(f"sqlite:///{folder / 'legato.db'}")
    ids = [f"c{i:07d}" for i in range(messages)]
    import_customers(engine, pa.table({"id": ids, "email": [f"{c}@mail.example" for c in ids], "time_zone": ["UTC"] * messages}),
                     attribute_types={}, clock=FixedClock(AT))
    pb = parse_playbook(PLAYBOOK.replace("PORT", str(port)).replace("CONNECTIONS", str(connections)))
    sinks = transports(pb, folder)
    setup = time.perf_counter()
    run_cycle(engine, pb, FixedClock(AT), sinks)
    decided = time.perf_counter() - setup
    started = time.perf_counter()
    report = dispatch_due(engine, pb, FixedClock(SEND), sinks)
    seconds = time.perf_counter() - started
    sinks["email"].close()  # type: ignore[attr-defined]
    with engine.connect() as c:
        rows = c.execute(sa.select(outbox.c.message_id, outbox.c.customer_id, outbox.c.status)).all()
    engine.dispose()
    # The floor's messages: the same fields, composed the same way, under fresh ids (the server counts each once).
    mails = []
    for r in rows:
        message = {"message_id": f"bare-{r.message_id}", "to": f"{r.customer_id}@mail.example", "subject": f"Spring is here, {r.customer_id}",
                   "body": f"Hello {r.customer_id}, our spring range is in. Unsubscribe: https://mail.example/u?t=x Mail Co, 3 Pier Rd",
                   "html": f"<p>Hello <b>{r.customer_id}</b>, our spring range is in.</p>", "sent_at": SEND.isoformat(),
                   "headers": {"List-Unsubscribe": "<https://mail.example/u?t=x>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}}
        mails.append((message["to"], compose(message, "Mail Co <help@mail.example>", f"<bare-{r.message_id}@mail.example>")[1]))
    return {"seconds": seconds, "report": report.totals(), "sent_rows": sum(r.status == "sent" for r in rows), "cycle_seconds": decided, "mails": mails}


# --- the outbox: claims and completions -------------------------------------------------------


def outbox_rows(url: str, rows: int) -> dict[str, dict[str, float]]:
    """Rows a second for claim, batch completion and the hand-over step, with their bare floors."""
    from legato.deliver import outbox as writer
    from legato.store.db import connect
    from legato.store.schema import cycles, decisions, metadata, outbox

    engine = connect(url)

    def reset() -> None:
        with engine.begin() as c:
            if engine.dialect.name == "postgresql":
                c.execute(sa.text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables if t.name != "alembic_version") + " RESTART IDENTITY CASCADE"))
            else:
                for table in ("outbox", "decisions", "cycles"):
                    c.execute(sa.text(f"DELETE FROM {table}"))
            cycle = c.execute(sa.insert(cycles).values(at=AT, started_at=AT, status="finished").returning(cycles.c.id)).scalar_one()
            c.execute(sa.insert(decisions), [
                {"cycle_id": cycle, "agent_id": "mailer", "customer_id": f"c{i:07d}", "decided_at": AT, "action": "hello", "propensity": 1.0,
                 "findings": [], "route": "scheduled", "status": "scheduled", "holdout": False, "creative_id": "hello", "channel": "email",
                 "send_at": AT}
                for i in range(rows)
            ])
            writer.schedule_decided(c, decisions.c.id.is_not(None))

    def ids() -> list[int]:
        with engine.connect() as c:
            return list(c.execute(sa.select(outbox.c.id).order_by(outbox.c.id)).scalars())

    worker = writer.worker_id()
    result: dict[str, dict[str, float]] = {}
    # Claim: Legato's claim() against the bare statement through the driver.
    reset()
    started = time.perf_counter()
    claimed = 0
    while True:
        with engine.begin() as c:
            got = writer.claim(c, worker, SEND, 5_000)
        if not got:
            break
        claimed += len(got)
    legato_claim = claimed / (time.perf_counter() - started)
    reset()
    lock = " FOR UPDATE SKIP LOCKED" if engine.dialect.name == "postgresql" else ""
    bare_sql = (f"UPDATE outbox SET status = 'claimed', claimed_by = %(w)s, lease_expires_at = %(l)s, attempts = attempts + 1 "
                f"WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND send_at <= %(n)s ORDER BY send_at, id LIMIT 5000{lock}) RETURNING id")
    started = time.perf_counter()
    claimed_bare = 0
    with engine.connect() as c:
        raw = c.connection.dbapi_connection
        assert raw is not None
        sql = bare_sql if engine.dialect.name == "postgresql" else bare_sql.replace("%(w)s", ":w").replace("%(l)s", ":l").replace("%(n)s", ":n")
        while True:
            cursor = raw.cursor()
            params = {"w": worker, "l": SEND + timedelta(minutes=10), "n": SEND}
            if engine.dialect.name == "sqlite":
                params = {k: (v.isoformat(sep=" ") if isinstance(v, datetime) else v) for k, v in params.items()}
            cursor.execute(sql, params)
            got = cursor.fetchall()
            raw.commit()
            if not got:
                break
            claimed_bare += len(got)
    bare_claim = claimed_bare / (time.perf_counter() - started)
    result["claim"] = {"legato": legato_claim, "bare": bare_claim, "rows": float(claimed)}

    # Completion per batch: record_sent (executemany) against a bare executemany.
    reset()
    all_ids = ids()
    with engine.begin() as c:
        writer.claim(c, worker, SEND, rows)
    started = time.perf_counter()
    for start in range(0, len(all_ids), 5_000):
        with engine.begin() as c:
            writer.record_sent(c, worker, [{"o_id": o, "provider_id": f"<{o}@x>"} for o in all_ids[start:start + 5_000]], SEND)
    legato_done = len(all_ids) / (time.perf_counter() - started)
    reset()
    all_ids = ids()
    with engine.begin() as c:
        writer.claim(c, worker, SEND, rows)
    started = time.perf_counter()
    with engine.connect() as c:
        raw = c.connection.dbapi_connection
        assert raw is not None
        mark = "%s" if engine.dialect.name == "postgresql" else "?"
        for start in range(0, len(all_ids), 5_000):
            cursor = raw.cursor()
            cursor.executemany(f"UPDATE outbox SET status = 'sent', provider_id = {mark}, claimed_by = NULL WHERE id = {mark} AND status = 'claimed'",
                               [(f"<{o}@x>", o) for o in all_ids[start:start + 5_000]])
            raw.commit()
    bare_done = len(all_ids) / (time.perf_counter() - started)
    result["complete (batch)"] = {"legato": legato_done, "bare": bare_done, "rows": float(len(all_ids))}

    # The hand-over step: one result and the next mark, one transaction each.
    steps = min(rows, 3_000)
    reset()
    all_ids = ids()[:steps]
    with engine.begin() as c:
        writer.claim(c, worker, SEND, steps)
    started = time.perf_counter()
    with engine.connect() as c:
        previous = None
        for o in all_ids:
            with c.begin():
                if previous is not None:
                    writer.record_sent(c, worker, [{"o_id": previous, "provider_id": f"<{previous}@x>"}], SEND)
                writer.hand_over(c, worker, [o], SEND)
            previous = o
    legato_step = steps / (time.perf_counter() - started)
    reset()
    all_ids = ids()[:steps]
    started = time.perf_counter()
    with engine.connect() as c:
        raw = c.connection.dbapi_connection
        assert raw is not None
        mark = "%s" if engine.dialect.name == "postgresql" else "?"
        for o in all_ids:
            cursor = raw.cursor()
            cursor.execute(f"UPDATE outbox SET status = 'sent', provider_id = {mark} WHERE id = {mark}", (f"<{o}@x>", o))
            raw.commit()
    bare_step = steps / (time.perf_counter() - started)
    result["hand-over step"] = {"legato": legato_step, "bare": bare_step, "rows": float(steps)}
    engine.dispose()
    return result


def postgres_database(url: str) -> tuple[str, Any] | None:
    """A fresh database on the PostgreSQL server ``url`` names, and how to drop it; None if it does not answer."""
    from sqlalchemy.engine import make_url

    try:
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        name = f"legato_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        return None

    def drop() -> None:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rows", type=int, default=20_000, help="outbox rows for the claim and completion figures")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    server = Server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            legato = legato_run(server.port, args.messages, args.connections, Path(tmp))
        legato_stats = server.stats()
        mails = legato.pop("mails")
        floors = {}
        for connections in sorted({1, args.connections}):
            server.reset()
            floors[connections] = bare(server.port, mails, connections)
            floor_stats = server.stats()
            assert floor_stats["unique"] == len(mails) == floor_stats["messages"], floor_stats
    finally:
        server.stop()

    n = args.messages
    ok = legato_stats["unique"] == n == legato_stats["messages"] and legato["sent_rows"] == n
    legato_rate = n / legato["seconds"]
    bare_rates = {c: n / s for c, s in floors.items()}
    floor = max(bare_rates.values())
    table = Table(title=f"E-mails to a local SMTP server (aiosmtpd), {n:,} messages, SQLite store")
    for col in ("what", "e-mails/s", "× best bare smtplib"):
        table.add_column(col, justify="right" if col != "what" else "left")
    for c, rate in bare_rates.items():
        table.add_row(f"bare smtplib, {c} connection{'s' if c > 1 else ''}", f"{rate:,.0f}", f"{rate / floor:.2f}")
    table.add_row(f"legato dispatch_due, {args.connections} connections, hand-over protocol", f"{legato_rate:,.0f}", f"{legato_rate / floor:.2f}")
    console.print(table)
    verdict = "meets" if legato_rate >= TARGET else "misses"
    console.print(f"target ≥ {TARGET:,.0f}/s: {verdict}; every message once: {ok} (server: {legato_stats}); "
                  f"the cycle that decided them took {legato['cycle_seconds']:.1f} s (not counted)")

    outbox: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        outbox["sqlite"] = outbox_rows(f"sqlite:///{Path(tmp) / 'rows.db'}", args.rows)
    if not args.no_postgres:
        made = postgres_database(args.postgres)
        if made is None:
            console.print(f"PostgreSQL at {args.postgres} does not answer: its outbox figures are left out")
        else:
            url, drop = made
            try:
                outbox["postgresql"] = outbox_rows(url, args.rows)
            finally:
                drop()
    rows_table = Table(title=f"Outbox rows a second ({args.rows:,} rows; the hand-over step on {min(args.rows, 3_000):,})")
    for col in ("store", "what", "legato rows/s", "bare driver rows/s", "× bare"):
        rows_table.add_column(col, justify="left" if col in ("store", "what") else "right")
    for backend, figures in outbox.items():
        for what, f in figures.items():
            rows_table.add_row(backend, what, f"{f['legato']:,.0f}", f"{f['bare']:,.0f}", f"{f['legato'] / f['bare']:.2f}")
    console.print(rows_table)

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "smtp_delivery", "messages": n, "connections": args.connections,
        "legato_per_s": round(legato_rate, 1), "bare_smtplib_per_s": {str(c): round(r, 1) for c, r in bare_rates.items()},
        "ratio_to_best_bare": round(legato_rate / floor, 3), "target_per_s": TARGET, "meets_target": legato_rate >= TARGET,
        "delivered_once": ok, "server": legato_stats, "dispatch_report": legato["report"],
        "outbox_rows_per_s": {b: {w: {"legato": round(f["legato"], 1), "bare": round(f["bare"], 1), "ratio": round(f["legato"] / f["bare"], 3)}
                                  for w, f in figures.items()} for b, figures in outbox.items()},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_1m": os.getloadavg()[0]},
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, indent=2) + "\n")
    console.print(f"wrote {RESULTS}")
    if not ok:
        raise SystemExit("not every message reached the server exactly once")


if __name__ == "__main__":
    main()
