"""`legato worker` takes a newer playbook while it runs: an upload to the store (started without
``--playbook``) or an edit of its ``--playbook`` file, between two cycles, and its sending after
the batch in flight. One that cannot be used is named in a warning and the old one keeps running.

Real processes: the worker is a process of its own; uploads go through the service
(``service.playbooks.upload``, what POST /v1/playbooks calls) from this process. Each playbook
version writes its e-mails to its own file channel (``out/v1.jsonl``, ``out/v2.jsonl``), so the
files show which transports sent what: a message in both files went twice, one in neither was
lost. The channel's ``rate_limit`` keeps the sending going for several seconds, so the new
playbook arrives in the middle of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

import legato
from legato.clock import SystemClock
from legato.service import playbooks
from legato.store.ingest import import_customers
from legato.store.schema import cycles, decisions, outbox
from tests.schedules import slot_just_passed

SRC = str(Path(legato.__file__).resolve().parents[1])
N = 300

HEAD = """
brand:
  name: Swap Co
  legal: {sender_name: Swap Co, postal_address: "5 Quay St", support_contact: "help@swap.example", unsubscribe_url: "https://swap.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/PATH.jsonl, rate_limit: RATE}
creatives:
  - {id: hello, channel: email, subject: "Hi", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
  - {id: welcome, channel: email, subject: "Welcome", body: "Welcome {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
"""

AGENT = """  - id: ID
    objective: grow
    audience: "true"
    schedule: SCHEDULE
    actions: {creatives: [CREATIVE], send_windows: ["00:00-23:59"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


def playbook(path: str, rate: int, schedule: str, *agents: tuple[str, str]) -> str:
    text = HEAD.replace("PATH", path).replace("RATE", str(rate))
    for agent_id, creative in agents:
        text += AGENT.replace("ID", agent_id).replace("CREATIVE", creative).replace("SCHEDULE", schedule)
    return text


def customers(engine: Engine) -> None:
    ids = [f"c{i:04d}" for i in range(N)]
    table = pa.table({"id": ids, "email": [f"{c}@people.example" for c in ids], "time_zone": ["UTC"] * N, "consent_email_marketing": ["express"] * N})
    import_customers(engine, table, clock=SystemClock())


def upload(engine: Engine, text: str) -> int:
    return playbooks.upload(engine, text, by="ana", now=datetime.now(timezone.utc)).version.id


class Worker:
    """``legato worker`` in its own process, started in ``folder`` (an uploaded playbook's file
    channels write there), its JSON log lines in ``folder/worker.log``."""

    def __init__(self, url: str, folder: Path, *options: str) -> None:
        self.folder = folder
        self.log = (folder / "worker.log").open("w", encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        env.pop("LEGATO_TEST_NO_SUCH_SECRET", None)
        command = [sys.executable, "-c", "from legato.cli.app import main; main()", "worker", "--database", url, "--poll", "0.2", "--batch", "10", *options]
        self.process = subprocess.Popen(command, cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def lines(self) -> list[dict[str, Any]]:
        text = (self.folder / "worker.log").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{") and line.endswith("}")]

    def said(self, start: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if str(line["message"]).startswith(start)]

    def ids(self, name: str) -> list[str]:
        path = self.folder / "out" / f"{name}.jsonl"
        return [json.loads(line)["message_id"] for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def wait_for(condition: Callable[[], Any], what: str, worker: Worker, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if worker.process.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.process.returncode}) while waiting for {what}:\n" + (worker.folder / "worker.log").read_text())
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n" + (worker.folder / "worker.log").read_text()[-4000:])
        time.sleep(0.05)


def sent(engine: Engine, agent: str | None = None) -> set[str]:
    query = sa.select(outbox.c.message_id).join(decisions, decisions.c.id == outbox.c.decision_id).where(outbox.c.status == "sent")
    if agent is not None:
        query = query.where(decisions.c.agent_id == agent)
    with engine.connect() as c:
        return {str(m) for m in c.execute(query).scalars()}


def each_once(worker: Worker, *files: str) -> Counter[str]:
    counted = Counter(m for name in files for m in worker.ids(name))
    assert max(counted.values()) == 1, "a message was written twice"
    return counted


def test_a_worker_without_playbook_takes_a_newer_upload_between_cycles_and_after_the_batch_in_flight_and_keeps_its_playbook_when_one_cannot_be_built(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    customers(engine)
    schedule = slot_just_passed()
    first = upload(engine, playbook("v1", 40, schedule, ("mailer", "hello")))
    worker = Worker(database_url, tmp_path)
    try:
        wait_for(lambda: len(worker.ids("v1")) >= 20, "the first e-mails through version 1's channel", worker)
        started = worker.said("worker started")
        assert started[0]["playbook"]["version"] == first

        # Version 2 while version 1's messages are going out: another file for the channel, and a new agent.
        second = upload(engine, playbook("v2", 400, schedule, ("mailer", "hello"), ("greeter", "welcome")))
        wait_for(lambda: len(sent(engine)) == 2 * N, "both agents' messages sent", worker)
        (switched,) = worker.said("now running playbook")
        assert switched["message"] == f"now running playbook version {second}"
        assert switched["playbook"]["version"] == second and switched["playbook"]["uploaded_by"] == "ana"
        assert switched["previous"]["version"] == first and "greeter" in switched["scheduled"]
        # Version 1's transports sent until the batch in flight was recorded, version 2's the rest.
        before, after = worker.ids("v1"), worker.ids("v2")
        counted = each_once(worker, "v1", "v2")
        assert set(counted) == sent(engine)  # none lost, none twice
        assert set(before) <= sent(engine, "mailer") and before and set(after) & sent(engine, "mailer"), "version 2's transports took over in the middle of the sending"
        assert sent(engine, "greeter") <= set(after)  # the new agent's cycle ran with version 2, and sent through it
        with engine.connect() as c:
            ran = dict(c.execute(sa.select(cycles.c.id, cycles.c.playbook_version_id).order_by(cycles.c.id)).tuples().all())
        assert list(ran.values()) == [first, second]  # the greeter's slot ran under version 2, mailer's not again

        # Version 3 needs a secret the worker's environment lacks: named, and version 2 keeps running.
        broken = upload(engine, playbook("v2", 400, schedule, ("mailer", "hello"), ("greeter", "welcome")).replace(
            "email: {kind: file, path: out/v2.jsonl, rate_limit: 400}",
            "email: {kind: smtp, host: 127.0.0.1, port: 2525, username: swap, password_env: LEGATO_TEST_NO_SUCH_SECRET}"))
        wait_for(lambda: worker.said(f"playbook version {broken} cannot be built"), "the warning about version 3", worker)
        (warned,) = worker.said(f"playbook version {broken} cannot be built")
        assert warned["level"] == "warning" and warned["message"].endswith(f"still running version {second}")
        assert "LEGATO_TEST_NO_SUCH_SECRET" in warned["reason"] and warned["running"]["version"] == second

        # Version 4 (a third agent) is taken from version 2, which ran meanwhile; version 3's warning was said once.
        fourth = upload(engine, playbook("v2", 400, schedule, ("mailer", "hello"), ("greeter", "welcome"), ("closer", "hello")))
        wait_for(lambda: len(sent(engine)) == 3 * N, "the third agent's messages sent", worker)
        assert [line["playbook"]["version"] for line in worker.said("now running playbook")] == [second, fourth]
        assert worker.said("now running playbook")[-1]["previous"]["version"] == second
        assert len(worker.said(f"playbook version {broken} cannot be built")) == 1
        assert set(each_once(worker, "v1", "v2")) == sent(engine)
        assert worker.stop() == 0
    finally:
        worker.kill()


def test_a_worker_watches_its_playbook_file_an_invalid_edit_is_named_at_its_line_and_the_old_playbook_keeps_sending(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    customers(engine)
    schedule = slot_just_passed()
    file = tmp_path / "playbook.yaml"
    valid = playbook("v1", 30, schedule, ("mailer", "hello"))
    file.write_text(valid, encoding="utf-8")

    def save(text: str) -> None:  # as an editor saves: the whole file at once
        (tmp_path / "playbook.yaml.swp").write_text(text, encoding="utf-8")
        os.replace(tmp_path / "playbook.yaml.swp", file)

    worker = Worker(database_url, tmp_path, "--playbook", str(file))
    try:
        wait_for(lambda: len(worker.ids("v1")) >= 20, "the first e-mails", worker)
        broken = valid.replace("rate_limit: 30}", "rate_limit: fast}")
        line = next(number for number, text in enumerate(broken.splitlines(), 1) if "rate_limit: fast" in text)
        save(broken)
        wait_for(lambda: worker.said("the playbook changed but cannot be used"), "the warning about the edit", worker)
        (warned,) = worker.said("the playbook changed but cannot be used")
        assert f"{file}:{line}:" in warned["reason"] and "rate_limit" in warned["reason"]
        assert warned["running"]["file"] == str(file)
        at_warning = len(worker.ids("v1"))
        wait_for(lambda: len(worker.ids("v1")) > at_warning + 10, "more e-mails through the playbook it had", worker)
        assert worker.said("now running playbook") == []

        save(playbook("v2", 400, schedule, ("mailer", "hello")))
        wait_for(lambda: len(sent(engine)) == N, "every message sent", worker)
        (switched,) = worker.said("now running playbook")
        assert switched["message"].startswith(f"now running playbook {file} (sha256 ") and switched["playbook"]["source"] == "file"
        counted = each_once(worker, "v1", "v2")
        assert set(counted) == sent(engine) and worker.ids("v2"), "none lost, none twice, the rest through the edited channel"
        assert len(worker.said("the playbook changed but cannot be used")) == 1
        assert worker.stop() == 0
    finally:
        worker.kill()
