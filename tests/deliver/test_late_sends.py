"""A message whose send window has passed when it is dispatched goes in the agent's next window, or is dropped.

A message for a 09:00–11:00 window once went out at 15:00 local because the next run came late.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.store.schema import outbox
from legato.validation import parse_playbook
from tests.world import AT, PLAYBOOK, expected_eligible, load_customers

WINDOW = 'send_windows: ["09:00-11:00"]'


def _playbook(when_late: str | None = None) -> object:
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace('send_windows: ["09:00-17:00"]', WINDOW)
    if when_late:
        text = text.replace(WINDOW, f"{WINDOW}, when_late: {when_late}")
    return parse_playbook(text)


def _sent(tmp_path: Path) -> list[dict]:
    path = tmp_path / "out/email.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_late_run_moves_the_message_to_the_next_window_and_counts_it(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, 40)
    pb = _playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))  # scheduled for 09:00 UTC
    late = dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=7)), transports(pb, tmp_path))  # 15:00: the window closed at 11:00
    eligible = len(expected_eligible(40))
    assert late.totals()["sent"] == 0 and sum(late.late_moved.values()) == eligible
    assert late.to_dict()["late"] == {"moved_to_next_window": eligible, "dropped": 0}
    with engine.connect() as c:
        when = set(c.execute(sa.select(outbox.c.send_at).where(outbox.c.status == "pending")).scalars())
    assert {t.replace(tzinfo=None) for t in when} == {(AT + timedelta(days=1, hours=1)).replace(tzinfo=None)}  # 09:00 the next day
    assert _sent(tmp_path) == []
    on_time = dispatch_due(engine, pb, FixedClock(AT + timedelta(days=1, hours=1)), transports(pb, tmp_path))
    assert on_time.totals()["sent"] == eligible and len(_sent(tmp_path)) == eligible


def test_a_late_message_is_dropped_when_the_agent_says_so(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, 40)
    pb = _playbook("drop")
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    late = dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=7)), transports(pb, tmp_path))
    eligible = len(expected_eligible(40))
    assert late.totals() == {"sent": 0, "retry": 0, "dead": eligible} and sum(late.late_dropped.values()) == eligible
    assert all("send window (09:00-11:00 local) had passed" in e for e in late.errors)
    assert _sent(tmp_path) == []


def test_inside_the_window_nothing_changes(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, 40)
    pb = _playbook("drop")
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    report = dispatch_due(engine, pb, FixedClock(AT + timedelta(hours=2)), transports(pb, tmp_path))  # 10:00
    assert report.totals()["sent"] == len(expected_eligible(40)) and not report.late_moved and not report.late_dropped
