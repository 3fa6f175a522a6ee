"""`legato worker` as real processes on PostgreSQL: two over one outbox, and one SIGTERMed mid-run.

Each worker has its own folder and playbook, so its own JSON Lines file: the file transport
skips ids already in its own file, so a message sent twice by two workers would show as the
same message id in two files. The tests count message ids across the files.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

import legato
from legato.clock import SystemClock
from legato.store.ingest import import_customers
from legato.store.schema import cycle_slots, cycles, leases, outbox
from tests.schedules import slot_just_passed

SRC = str(Path(legato.__file__).resolve().parents[1])

PLAYBOOK = """
brand:
  name: Worker Co
  time_zone: Europe/Paris
  legal: {sender_name: Worker Co, postal_address: "4 Mill Lane", support_contact: "help@worker.example", unsubscribe_url: "https://worker.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
creatives:
  - {id: hello, channel: email, subject: "Hi", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: grow
    audience: "true"
    schedule: SCHEDULE
    actions: {creatives: [hello], send_windows: ["00:00-23:59"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def customers(engine: Engine, n: int) -> None:
    ids = [f"c{i:05d}" for i in range(n)]
    table = pa.table({"id": ids, "email": [f"{c}@people.example" for c in ids], "time_zone": ["UTC"] * n, "consent_email_marketing": ["express"] * n})
    import_customers(engine, table, clock=SystemClock())


class WorkerProcess:
    def __init__(self, url: str, folder: Path, schedule: str, *options: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "playbook.yaml").write_text(PLAYBOOK.replace("SCHEDULE", schedule), encoding="utf-8")
        self.folder = folder
        self.log = (folder / "worker.log").open("w", encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        command = [sys.executable, "-c", "from legato.cli.app import main; main()", "worker", "--database", url,
                   "--playbook", str(folder / "playbook.yaml"), "--poll", "0.2", *options]
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def lines(self) -> list[dict[str, object]]:
        log = (self.folder / "worker.log").read_text(encoding="utf-8")
        return [json.loads(line) for line in log.splitlines() if line.startswith("{")]

    def started(self) -> bool:
        return any(line["message"] == "worker started" for line in self.lines())

    def ids(self) -> list[str]:
        path = self.folder / "out/email.jsonl"
        return [json.loads(line)["message_id"] for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []

    def terminate(self, timeout: float = 30, how: int = signal.SIGTERM) -> int:
        self.process.send_signal(how)
        try:
            return self.process.wait(timeout)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line and not line.startswith("#")}


def statuses(engine: Engine) -> Counter[str]:
    with engine.connect() as c:
        return Counter(dict(c.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).tuples().all()))


def test_two_workers_over_one_outbox_run_the_slot_once_and_never_send_a_message_twice(engine: Engine, database_url: str, tmp_path: Path) -> None:
    n = 1_200
    customers(engine, n)
    # One schedule for both: two written a minute apart would name two slots, each due.
    schedule = slot_just_passed("Europe/Paris")
    workers = [WorkerProcess(database_url, tmp_path / name, schedule, "--batch", "20") for name in ("a", "b")]
    try:
        wait_for(lambda: statuses(engine)["sent"] == n, 90, f"{n} messages sent")
        codes = [w.terminate() for w in workers]
    finally:
        for w in workers:
            w.kill()
    assert codes == [0, 0]
    ids = [workers[0].ids(), workers[1].ids()]
    assert all(ids), "each worker sent part of the outbox"
    counted = Counter(ids[0] + ids[1])
    assert len(counted) == n and max(counted.values()) == 1  # never the same message twice
    with engine.connect() as c:
        assert set(counted) == set(c.execute(sa.select(outbox.c.message_id)).scalars())
        assert c.execute(sa.select(sa.func.count()).select_from(cycles)).scalar_one() == 1  # the slot ran once
        assert c.execute(sa.select(sa.func.count()).select_from(cycle_slots)).scalar_one() == 1
        assert c.execute(sa.select(leases.c.token).where(leases.c.name == "cycle")).scalar_one() is None
    assert statuses(engine) == {"sent": n}
    ran = [line for w in workers for line in w.lines() if line["message"] == "cycle finished"]
    assert len(ran) == 1 and ran[0]["agents"] == ["mailer"]


def test_a_worker_sigtermed_mid_run_exits_0_leaves_no_claim_and_a_restarted_worker_sends_the_rest(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    n = 2_000
    customers(engine, n)
    port = free_port()
    # The restarted worker's playbook has the same schedule: computed again a minute later, it
    # would name a new slot, due at once, and a second cycle would run.
    schedule = slot_just_passed("Europe/Paris")
    first = WorkerProcess(database_url, tmp_path / "first", schedule, "--batch", "25", "--metrics-port", str(port))
    try:
        wait_for(lambda: len(first.ids()) > 0, 90, "the first messages in the file")
        # A batch is counted once it is recorded, after the transport wrote it, and the cycle once
        # it has finished, which may be after its first messages went: wait for both counters.
        sent, finished = 'legato_worker_messages_total{channel="email",result="sent"}', 'legato_worker_cycles_total{outcome="finished"}'
        wait_for(lambda: scrape(port).get(sent, 0) > 0 and scrape(port).get(finished, 0) > 0, 60, "the worker's counters")
        metrics = scrape(port)  # prometheus-client's own server, in the worker
        assert metrics[finished] == 1
        assert metrics[sent] > 0
        assert 'legato_outbox_messages{status="pending"}' in metrics  # the backlog, read from the store
        assert first.terminate() == 0
    finally:
        first.kill()
    after_stop = statuses(engine)
    assert after_stop["claimed"] == 0 and 0 < after_stop["sent"] < n  # stopped mid-run, no claim left
    assert len(first.ids()) == after_stop["sent"]  # what it wrote, it recorded
    with engine.connect() as c:
        assert c.execute(sa.select(leases.c.token).where(leases.c.name == "cycle")).scalar_one() is None
    said = [line["message"] for line in first.lines()]
    assert said[-1] == "worker stopped" and "worker stopping" in said  # the batch in flight is logged in between
    second = WorkerProcess(database_url, tmp_path / "second", schedule, "--batch", "500")
    try:
        wait_for(lambda: statuses(engine)["sent"] == n, 90, "the rest sent")
        assert second.terminate(how=signal.SIGINT) == 0  # Ctrl-C stops it the same way
    finally:
        second.kill()
    counted = Counter(first.ids() + second.ids())
    assert len(counted) == n and max(counted.values()) == 1
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(cycles)).scalar_one() == 1  # the restart did not run the slot again
