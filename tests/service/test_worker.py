"""`legato worker`'s loops in one process, on SQLite and PostgreSQL, at simulated times.

A schedule slot runs once whoever sees it due (two workers here share a store); only the
agents whose slot is due run; a cycle asked to stop between partitions stays running and the
next worker finishes it, for the agents of its slot only; a stopping dispatcher claims no
more and leaves no claim behind. Real processes: ``test_worker_processes.py``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run as cycle_run
from legato.deliver.dispatch import transports
from legato.service.worker import Worker
from legato.store.schema import cycle_partitions, cycle_slots, cycles, decisions, outbox
from legato.validation import parse_playbook
from tests.world import PLAYBOOK, load_customers

MONDAY = datetime(2024, 3, 4, 7, 30, tzinfo=timezone.utc)  # 08:30 in Paris


def two_agents(mailer: str = "daily 08:00", other: str | None = None, window: str = "00:00-23:59") -> Any:
    """The shared world with a second agent; ``mailer`` runs at 08:00 Paris time."""
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("  name: Test Co\n", "  name: Test Co\n  time_zone: Europe/Paris\n", 1)
    text = text.replace("    holdout: 0\n", f"    holdout: 0\n    schedule: {mailer}\n", 1)
    text = text.replace('["09:00-17:00"]', f'["{window}"]')
    second = (
        "  - id: second\n    objective: grow\n    audience: 'tier = \"bronze\"'\n"
        f"    actions: {{creatives: [hello], send_windows: [\"{window}\"], do_nothing: false}}\n"
        "    policy: {name: uniform_random}\n    holdout: 0\n    trust_stage: 3\n"
    )
    if other is not None:
        second += f"    schedule: {other}\n"
    return parse_playbook(text.replace("guardrails:\n", second + "guardrails:\n", 1))


def worker(engine: Engine, playbook: Any, folder: Path, clock: FixedClock, **options: Any) -> Worker:
    return Worker(engine, playbook, transports(playbook, folder), clock=clock, **options)


def ran(engine: Engine) -> list[tuple[str, datetime, int]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.select(cycle_slots.c.agent_id, cycle_slots.c.slot_at, cycle_slots.c.cycle_id).order_by(cycle_slots.c.slot_at))]


def cycle_agents_decided(engine: Engine) -> dict[int, set[str]]:
    with engine.connect() as c:
        rows = c.execute(sa.select(decisions.c.cycle_id, decisions.c.agent_id).distinct()).all()
    found: dict[int, set[str]] = {}
    for cycle_id, agent in rows:
        found.setdefault(cycle_id, set()).add(agent)
    return found


def test_a_slot_runs_once_whichever_worker_sees_it_due_and_the_next_slot_runs_once_again(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    playbook = two_agents()
    clock = FixedClock(MONDAY)
    first, second = worker(engine, playbook, tmp_path / "a", clock), worker(engine, playbook, tmp_path / "b", clock)
    report = first.cycle_once()
    assert report is not None and set(report.agents) == {"mailer"}
    assert second.cycle_once() is None and first.cycle_once() is None  # the slot ran: nobody runs it again
    paris_8 = datetime(2024, 3, 4, 7, 0, tzinfo=timezone.utc)
    assert ran(engine) == [("mailer", paris_8, report.cycle_id)]
    clock.advance(timedelta(hours=12))  # 20:30 in Paris: still Monday's slot
    assert second.cycle_once() is None
    clock.set(datetime(2024, 3, 5, 7, 0, tzinfo=timezone.utc))  # Tuesday 08:00 Paris: due at its instant
    again = second.cycle_once()
    assert again is not None and first.cycle_once() is None
    assert [(a, s) for a, s, _ in ran(engine)] == [("mailer", paris_8), ("mailer", paris_8 + timedelta(days=1))]
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(cycles)).scalar_one() == 2


def test_only_the_agents_whose_slot_is_due_run_and_an_unscheduled_agent_is_left_to_legato_run(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    playbook = two_agents(mailer="daily 08:00", other="every 6h")
    clock = FixedClock(MONDAY)  # 07:30 UTC: mailer's 08:00 Paris (07:00 UTC) and second's 06:00 UTC are due
    one = worker(engine, playbook, tmp_path, clock)
    report = one.cycle_once()
    assert set(report.agents) == {"mailer", "second"}  # both due: one cycle
    clock.set(datetime(2024, 3, 4, 12, 0, tzinfo=timezone.utc))  # second's 12:00 slot only
    report = one.cycle_once()
    assert set(report.agents) == {"second"}
    assert list(cycle_agents_decided(engine).values()) == [{"mailer", "second"}, {"second"}]
    unscheduled = two_agents(mailer="daily 08:00", other=None)
    clock.set(datetime(2024, 3, 5, 7, 0, tzinfo=timezone.utc))
    assert set(worker(engine, unscheduled, tmp_path, clock).cycle_once().agents) == {"mailer"}


def test_a_cycle_asked_to_stop_between_partitions_is_finished_by_the_next_worker_for_its_slot_only(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cycle_run, "PAGE", 10)  # 40 customers: 4 partitions
    load_customers(engine)
    playbook = two_agents(mailer="daily 08:00", other=None)
    clock = FixedClock(MONDAY)
    stopping = worker(engine, playbook, tmp_path, clock)

    def one_partition_done() -> bool:  # asked to stop once the first partition is written
        with engine.connect() as c:
            return bool(c.execute(sa.select(sa.func.count()).select_from(cycle_partitions).where(cycle_partitions.c.status == "done")).scalar_one())

    monkeypatch.setattr(Worker, "stopping", property(lambda self: self is stopping and one_partition_done()))
    assert stopping.cycle_once() is None  # interrupted: it stays running
    assert stopping.figures.cycles["interrupted"] == 1
    with engine.connect() as c:
        assert c.execute(sa.select(cycles.c.status)).scalar_one() == "running"
        part = c.execute(sa.select(sa.func.count()).select_from(decisions)).scalar_one()
    assert 0 < part
    next_one = worker(engine, playbook, tmp_path, clock)
    report = next_one.cycle_once()
    assert report.resumed is not None and set(report.agents) == {"mailer"}  # "second" has no slot in this cycle
    assert next_one.cycle_once() is None  # and the slot is not run again
    with engine.connect() as c:
        assert c.execute(sa.select(cycles.c.status)).scalar_one() == "finished"
        per_customer = c.execute(sa.select(decisions.c.customer_id, sa.func.count()).group_by(decisions.c.customer_id)).all()
    assert {agent for agents in cycle_agents_decided(engine).values() for agent in agents} == {"mailer"}
    assert len(per_customer) == 30 and {n for _, n in per_customer} == {1}  # one decision for every gold customer


def test_a_stopping_worker_claims_no_more_and_leaves_no_claim(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    playbook = two_agents(window="09:00-17:00")  # decided at 07:30 UTC, due at 09:00
    clock = FixedClock(MONDAY)
    one = worker(engine, playbook, tmp_path, clock, chunk=5)
    assert one.cycle_once().dispatch.totals() == {"sent": 0, "retry": 0, "dead": 0}
    batches: list[dict[str, int]] = []
    one.listeners.append(lambda message, fields: (batches.append({k: fields[k] for k in ("sent", "retry", "dead")}), one.stop()) if message == "dispatched" else None)
    clock.set(datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc))
    one.dispatch_once()
    assert batches == [{"sent": 5, "retry": 0, "dead": 0}]  # the batch in flight went; no other was claimed
    assert one.figures.messages == {("email", "sent"): 5}
    with engine.connect() as c:
        statuses = dict(c.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).tuples().all())
    assert statuses == {"sent": 5, "pending": 19}
    lines = (tmp_path / "out/email.jsonl").read_text(encoding="utf-8").splitlines()
    assert len({json.loads(line)["message_id"] for line in lines}) == len(lines) == 5
    later = worker(engine, playbook, tmp_path, clock)  # another worker sends the rest
    assert later.dispatch_once().totals() == {"sent": 19, "retry": 0, "dead": 0}


def test_the_live_status_shows_the_schedules_the_backlog_and_the_messages_by_channel(engine: Engine, tmp_path: Path) -> None:
    from rich.console import Console

    from legato.cli.worker import _Status

    load_customers(engine)
    playbook = two_agents(mailer="daily 08:00", other=None, window="09:00-17:00")
    clock = FixedClock(MONDAY)
    one = worker(engine, playbook, tmp_path, clock)
    one.cycle_once()
    clock.set(datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc))
    one.dispatch_once()
    screen = Console(width=120, record=True)
    screen.print(_Status(one))
    text = screen.export_text()
    assert "daily 08:00" in text and "2024-03-05 07:00" in text  # mailer's next slot: Tuesday 08:00 in Paris
    assert "none (legato run)" in text  # "second" has no schedule
    assert "backlog" in text and "sent" in text and "email" in text and "24" in text


def test_the_workers_log_lines_are_json_with_their_fields(engine: Engine, tmp_path: Path) -> None:
    import io
    import logging

    from legato.api.observe import JsonLines

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    logger = logging.getLogger("legato.worker")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        load_customers(engine)
        one = worker(engine, two_agents(), tmp_path, FixedClock(MONDAY))
        one.cycle_once()
        one.dispatch_once()
    finally:
        logger.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finished = next(line for line in lines if line["message"] == "cycle finished")
    assert finished["logger"] == "legato.worker" and finished["agents"] == ["mailer"] and finished["decided"] == {"mailer": 24}
    sent = next(line for line in lines if line["message"] == "dispatched")
    assert sent["by_channel"] == {"email": {"sent": 24}} and sent["sent"] == 24
