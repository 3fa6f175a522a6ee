"""Issue 10, items 1 and 2: one cycle at a time, and a killed cycle resumes instead of repeating.

Real `legato run` processes on SQLite and PostgreSQL, nothing shared with the test but the
database. The driver below is the CLI itself with two test settings made in the child: small
partitions, and optionally a pause after N partitions (it writes a marker file and waits for
a "go" file, or is killed where it stands).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.cycle.lease import LeaseHeld, LeaseLost, acquire, holder
from legato.store.db import connect
from legato.store.schema import budget_reservations, cycle_partitions, cycles, decisions, leases, outbox

from tests.world import PLAYBOOK, expected_eligible, load_customers

AT = "2024-03-04T10:00"  # inside the send window, so the cycle's dispatch sends what it decides
N = 2000
PAGE = 200  # ten partitions
SRC = str(Path(__file__).resolve().parents[2] / "src")

DRIVER = """
import os, sys, time
from pathlib import Path
import legato.cycle.run as run
run.PAGE = int(os.environ["TEST_PAGE"])
pause = int(os.environ.get("TEST_PAUSE_AFTER", "0"))
if pause:
    original = run._run_partition
    done = [0]
    def paused(*args, **kwargs):
        decided = original(*args, **kwargs)
        done[0] += 1
        if done[0] == pause:
            Path(os.environ["TEST_PAUSED"]).write_text(str(os.getpid()))
            go = Path(os.environ["TEST_GO"])
            while not go.exists():
                time.sleep(0.05)
        return decided
    run._run_partition = paused
before = os.environ.get("TEST_PAUSE_BEFORE")  # a step of the cycle: allocate_budget, dispatch_due
if before:
    step = getattr(run, before)
    def paused_before(*args, **kwargs):
        Path(os.environ["TEST_PAUSED"]).write_text(str(os.getpid()))
        go = Path(os.environ["TEST_GO"])
        while not go.exists():
            time.sleep(0.05)
        return step(*args, **kwargs)
    setattr(run, before, paused_before)
from legato.cli.app import main
sys.argv = ["legato", *sys.argv[1:]]
main()
"""


def write_playbook(folder: Path, *, caps: bool = True, budget: str = "{}") -> Path:
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", budget)
    if not caps:
        text = text.replace("    - {channel: email, max: 1, days: 3, on_block: drop}\n", "    - {channel: email, max: 10, days: 1, on_block: drop}\n")
    path = folder / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Run:
    """One `legato run` in its own process."""

    def __init__(self, url: str, playbook: Path, folder: Path, *args: str, pause_after: int = 0, pause_before: str = "") -> None:
        self.paused = folder / f"paused-{time.monotonic_ns()}"
        self.go = folder / f"go-{time.monotonic_ns()}"
        env = {
            **os.environ,
            "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "LEGATO_SECRET": "a-test-secret-of-enough-length",
            "TEST_PAGE": str(PAGE),
            "TEST_PAUSE_AFTER": str(pause_after),
            "TEST_PAUSE_BEFORE": pause_before,
            "TEST_PAUSED": str(self.paused),
            "TEST_GO": str(self.go),
            "COLUMNS": "200",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-c", DRIVER, "run", str(playbook), "--database", url, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_paused(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.paused.exists():
            if self.process.poll() is not None:
                out, err = self.process.communicate()
                raise AssertionError(f"the run ended before pausing ({self.process.returncode}):\n{out}\n{err}")
            assert time.monotonic() < deadline, "the run did not pause in time"
            time.sleep(0.05)

    def release(self) -> None:
        self.go.write_text("go")

    def finish(self, timeout: float = 180) -> tuple[int, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out + err

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)  # reaped: the pid is gone, as after any crash


def per_customer(engine: Engine) -> tuple[Counter[str], Counter[str]]:
    with engine.connect() as c:
        made = Counter(c.execute(sa.select(decisions.c.customer_id)).scalars())
        messaged = Counter(c.execute(sa.select(outbox.c.customer_id)).scalars())
    return made, messaged


def sent_lines(folder: Path) -> Counter[str]:
    path = folder / "out" / "email.jsonl"
    if not path.exists():
        return Counter()
    return Counter(json.loads(line)["customer_id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


@pytest.fixture
def store(engine: Engine) -> Engine:
    load_customers(engine, n=N)
    return engine


def test_two_runs_at_once_send_each_customer_what_one_run_would(store: Engine, database_url: str, tmp_path: Path) -> None:
    """No caps to hide a second run: the second `legato run` is refused, naming the holder."""
    playbook = write_playbook(tmp_path, caps=False)
    first = Run(database_url, playbook, tmp_path, "--at", AT, pause_after=2)
    first.wait_paused()
    second = Run(database_url, playbook, tmp_path, "--at", AT)
    code, output = second.finish()
    assert code == 4, output  # Conflict
    assert "another cycle is running" in output and f"host {socket.gethostname()} pid {first.pid} since " in output, output
    assert "Traceback" not in output
    first.release()
    code, output = first.finish()
    assert code == 0, output

    eligible = expected_eligible(N)
    made, messaged = per_customer(store)
    assert set(made.values()) == {1}  # every customer in the audience decided once
    assert set(messaged) == eligible and set(messaged.values()) == {1}
    assert set(sent_lines(tmp_path).values()) == {1} and set(sent_lines(tmp_path)) == eligible
    with store.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(cycles)).scalar_one() == 1
        assert c.execute(sa.select(leases.c.token)).scalar_one() is None  # released


def test_a_second_run_can_wait_for_the_first(store: Engine, database_url: str, tmp_path: Path) -> None:
    """With --wait the second run starts its own cycle once the first has finished (caps keep it from messaging again)."""
    playbook = write_playbook(tmp_path)
    first = Run(database_url, playbook, tmp_path, "--at", AT, pause_after=1)
    first.wait_paused()
    second = Run(database_url, playbook, tmp_path, "--at", "2024-03-04T10:05", "--wait", "120")
    time.sleep(3)
    assert second.process.poll() is None  # waiting for the lease, not running beside the first
    with store.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(cycles)).scalar_one() == 1
    first.release()
    assert first.finish()[0] == 0
    code, output = second.finish()
    assert code == 0, output
    with store.connect() as c:
        rows = c.execute(sa.select(cycles.c.id, cycles.c.status).order_by(cycles.c.id)).all()
        assert [r.status for r in rows] == ["finished", "finished"]
        later = c.execute(sa.select(decisions.c.status, sa.func.count()).where(decisions.c.cycle_id == rows[1].id).group_by(decisions.c.status)).all()
    _, messaged = per_customer(store)
    assert set(messaged.values()) == {1}  # the later cycle's sends were capped, none was doubled
    assert "scheduled" not in dict(later) and "sent" not in dict(later)


def _reference(tmp_path: Path, playbook: Path) -> dict[str, tuple[str, str | None]]:
    """What one uninterrupted run decides for each customer (on a store of its own)."""
    folder = tmp_path / "reference"
    folder.mkdir()
    url = f"sqlite:///{folder / 'reference.db'}"
    engine = connect(url)
    load_customers(engine, n=N)
    own = folder / "playbook.yaml"  # its messages go to its own folder
    own.write_text(playbook.read_text(encoding="utf-8"), encoding="utf-8")
    code, output = Run(url, own, folder, "--at", AT).finish()
    assert code == 0, output
    with engine.connect() as c:
        decided = {r.customer_id: (r.status, r.action) for r in c.execute(sa.select(decisions.c.customer_id, decisions.c.status, decisions.c.action))}
    engine.dispose()
    return decided


def test_a_killed_cycle_resumes_and_is_not_repeated(store: Engine, database_url: str, tmp_path: Path) -> None:
    """SIGKILL after three of ten partitions; a rerun (later, as an on-call engineer would) finishes that cycle."""
    playbook = write_playbook(tmp_path, budget="{daily_sends: 500}")
    reference = _reference(tmp_path, playbook)
    killed = Run(database_url, playbook, tmp_path, "--at", AT, pause_after=3)
    killed.wait_paused()
    killed.kill()
    with store.connect() as c:
        assert c.execute(sa.select(cycles.c.status)).scalar_one() == "running"
        statuses = Counter(c.execute(sa.select(cycle_partitions.c.status)).scalars())
        assert statuses == {"done": 3, "pending": 7}
        assert c.execute(sa.select(leases.c.pid)).scalar_one() == killed.pid  # still "held" by the dead process

    # At once (the lease's holder is a dead pid on this host) and at a later clock time.
    started = time.monotonic()
    code, output = Run(database_url, playbook, tmp_path, "--at", "2024-03-04T10:30").finish()
    assert code == 0, output
    assert time.monotonic() - started < 60  # not waiting for the lease to expire
    assert "resumed cycle 1" in output and "3 partitions were already written" in output, output

    with store.connect() as c:
        rows = c.execute(sa.select(cycles.c.id, cycles.c.at, cycles.c.status)).all()
        assert [(r.id, r.status) for r in rows] == [(1, "finished")]
        assert rows[0].at == datetime(2024, 3, 4, 10, tzinfo=timezone.utc)  # its own time, not the rerun's
        assert set(c.execute(sa.select(cycle_partitions.c.status)).scalars()) == {"done"}
        reserved = c.execute(sa.select(budget_reservations.c.sends)).scalars().all()
        decided = {r.customer_id: (r.status, r.action) for r in c.execute(sa.select(decisions.c.customer_id, decisions.c.status, decisions.c.action))}
        reasons = Counter(
            reason for findings in c.execute(sa.select(decisions.c.findings)).scalars() for reason in (f.get("reason") if isinstance(f, dict) else f for f in findings or [])
        )
    made, messaged = per_customer(store)
    assert set(made.values()) == {1}
    assert reserved == [500]  # reserved once
    assert decided == reference  # the same decisions an uninterrupted cycle makes: streams and budget cut alike
    assert sum(1 for status, _ in decided.values() if status == "sent") == 500
    assert not any("frequency" in str(reason) for reason in reasons)  # no phantom cap blocks
    assert set(messaged.values()) == {1} and len(messaged) == 500
    assert set(sent_lines(tmp_path).values()) == {1} and len(sent_lines(tmp_path)) == 500


@pytest.mark.parametrize("step", ["allocate_budget", "dispatch_due"])
def test_a_cycle_killed_before_its_budget_or_its_dispatch_resumes_there(store: Engine, database_url: str, tmp_path: Path, step: str) -> None:
    """Killed after the plan, before the budget's reservation; or after every partition, before anything was sent."""
    playbook = write_playbook(tmp_path, budget="{daily_sends: 500}")
    killed = Run(database_url, playbook, tmp_path, "--at", AT, pause_before=step)
    killed.wait_paused()
    killed.kill()
    with store.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(budget_reservations)).scalar_one() == (0 if step == "allocate_budget" else 1)
        assert c.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status == "sent")).scalar_one() == 0
    code, output = Run(database_url, playbook, tmp_path, "--at", AT).finish()
    assert code == 0, output
    assert "resumed cycle 1" in output, output
    with store.connect() as c:
        assert c.execute(sa.select(cycles.c.status)).scalars().all() == ["finished"]
        assert c.execute(sa.select(budget_reservations.c.sends)).scalars().all() == [500]
        sent = c.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status == "sent")).scalar_one()
    made, messaged = per_customer(store)
    assert set(made.values()) == {1} and len(made) == sum(1 for i in range(N) if i % 4 != 3)  # the audience: gold customers
    assert sent == 500 and set(messaged.values()) == {1}
    assert set(sent_lines(tmp_path).values()) == {1} and len(sent_lines(tmp_path)) == 500


def test_a_lease_whose_holder_died_is_taken_over(engine: Engine) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = datetime.now(timezone.utc)
    with engine.begin() as c:
        c.execute(
            sa.insert(leases).values(
                name="cycle", token="dead", host=socket.gethostname(), pid=gone.pid, acquired_at=now, renewed_at=now, expires_at=now + timedelta(hours=1)
            )
        )
    assert holder(engine) is None  # a dead pid on this host holds nothing
    lease = acquire(engine)
    try:
        with engine.connect() as c:
            row = c.execute(sa.select(leases)).one()
        assert row.pid == os.getpid() and row.token == lease.token
    finally:
        lease.release()


def test_a_lease_held_elsewhere_is_named_until_it_expires(engine: Engine) -> None:
    now = datetime.now(timezone.utc)
    with engine.begin() as c:
        c.execute(
            sa.insert(leases).values(
                name="cycle", token="elsewhere", host="worker-7", pid=4242, acquired_at=now - timedelta(minutes=5), renewed_at=now, expires_at=now + timedelta(seconds=30), cycle_id=12
            )
        )
    started = time.monotonic()
    with pytest.raises(LeaseHeld, match=r"held by host worker-7 pid 4242 since .* UTC, running cycle 12"):
        acquire(engine, wait=1.0)
    assert time.monotonic() - started >= 1.0  # it waited
    with engine.begin() as c:
        c.execute(sa.update(leases).values(expires_at=now - timedelta(seconds=1)))  # its holder stopped renewing
    lease = acquire(engine)
    lease.release()


def test_a_holder_whose_lease_was_taken_over_writes_nothing_more(engine: Engine) -> None:
    old = acquire(engine, ttl=60)
    old._stop.set()  # as if frozen: no more renewals
    with engine.begin() as c:
        c.execute(sa.update(leases).values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    new = acquire(engine)
    try:
        with pytest.raises(LeaseLost):
            with engine.begin() as c:
                c.execute(sa.insert(cycles).values(at=datetime.now(timezone.utc), started_at=datetime.now(timezone.utc), status="running"))
                old.fence(c)
        with engine.connect() as c:
            assert c.execute(sa.select(sa.func.count()).select_from(cycles)).scalar_one() == 0
    finally:
        new.release()


def test_a_resumed_cycle_learns_stop_losses_and_versions_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cycle_at: datetime, write_decisions: Callable[..., None]
) -> None:
    """The plan step's writes (settling, a learned policy version) are not made again on resume.

    The first attempt fails in its third partition (an exception leaves the store as a kill
    does: every transaction before it committed, the partition's own rolled back). A stop-loss
    breach now pauses the agent in the plan, so it has no partitions to resume: this agent's
    3% of 100 sends against 2% is short of a credible breach (legato.monitor.stop_loss), and
    the stop-loss writes nothing on either attempt.
    """
    import legato.cycle.run as run
    from legato.clock import FixedClock
    from legato.cycle import run_cycle
    from legato.deliver.dispatch import transports
    from legato.store.schema import audit_log, policy_states
    from legato.decide.features import encode_context
    from legato.validation import parse_playbook

    monkeypatch.setattr(run, "PAGE", 50)
    load_customers(engine, n=400)
    write_decisions("sent", 3, unsubscribed=True)
    write_decisions("sent", 97)  # settled: 3% unsubscribed, over the stop-loss's 2% but not credibly
    # Sent before this cycle and settled by its plan: the policy learns from them (a new version).
    write_decisions("sent", 40, settled_at=None, action="hello/no_offer/09:00-17:00", context=encode_context(np.ones((40, 4))), reward=None)
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("    policy: {name: uniform_random}", "    policy: {name: beta_thompson}").replace("do_nothing: false", "do_nothing: true")
    text = text.replace("    budget: ", "    stop_loss: [{metric: unsubscribe_rate, max: 0.02, min_sends: 100, demote_to: 1}]\n    budget: ", 1)
    pb = parse_playbook(text)
    now = cycle_at + timedelta(days=9)
    original = run._run_partition
    calls = [0]

    def failing(*args: object, **kwargs: object) -> int:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("the machine went away")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(run, "_run_partition", failing)
    with pytest.raises(RuntimeError):
        run_cycle(engine, pb, FixedClock(now), transports(pb, tmp_path))

    def facts() -> tuple[int, int, int, int]:
        with engine.connect() as c:
            versions = c.execute(sa.select(sa.func.count()).select_from(policy_states)).scalar_one()
            breaches = c.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action == "stop_loss_breach")).scalar_one()
            settled = c.execute(sa.select(sa.func.count()).select_from(decisions).where(decisions.c.settled_at.is_not(None))).scalar_one()
            stage = c.execute(sa.text("SELECT trust_stage FROM agents WHERE id = 'mailer'")).scalar_one()
        return versions, breaches, settled, stage

    before = facts()
    assert before == (2, 0, 140, 2)  # a fresh and a learned version, no demotion, the 40 settled
    monkeypatch.setattr(run, "_run_partition", original)
    report = run_cycle(engine, pb, FixedClock(now), transports(pb, tmp_path))
    assert report.resumed is not None and report.resumed.partitions_kept == 2
    assert report.agents["mailer"].stage == 2 and report.agents["mailer"].settled == 0
    assert facts() == before  # no second version or settling
    with engine.connect() as c:
        cycle_id = c.execute(sa.select(sa.func.max(cycles.c.id))).scalar_one()
        assert c.execute(sa.select(cycles.c.status).where(cycles.c.id == cycle_id)).scalar_one() == "finished"
        made = Counter(c.execute(sa.select(decisions.c.customer_id).where(decisions.c.cycle_id == cycle_id)).scalars())
    assert len(made) > 0 and set(made.values()) == {1}


def test_a_holder_renews_its_lease_while_it_works(engine: Engine) -> None:
    lease = acquire(engine, ttl=0.4)  # renewed every 0.1 s
    try:
        with engine.connect() as c:
            first = c.execute(sa.select(leases.c.renewed_at)).scalar_one()
        time.sleep(1.0)
        with engine.connect() as c:
            row = c.execute(sa.select(leases.c.renewed_at, leases.c.expires_at)).one()
        assert row.renewed_at > first and row.expires_at > datetime.now(timezone.utc)
        assert holder(engine) is not None and holder(engine).pid == os.getpid()  # type: ignore[union-attr]
    finally:
        lease.release()
    assert holder(engine) is None
