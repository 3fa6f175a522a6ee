"""Closed-loop runs: agents decide, the dispatcher sends, a simulated world answers, agents learn.

Used by ``legato simulate`` and ``legato demo``. Each simulated day runs one cycle at 08:00
UTC, then dispatches hour by hour; after each hour the world's outcome events for that hour
are imported through the ordinary event import, so attribution and learning see exactly
what they would see from a real event feed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.channels import Transport
from legato.deliver.dispatch import dispatch_due
from legato.cycle import CycleReport, run_cycle
from legato.learn.simulator import ARMS, HillstromWorld, Sent
from legato.playbook.models import Playbook
from legato.store.ingest import import_events
from legato.store.schema import decisions, outbox
from legato.store.status import OutboxStatus


@dataclass
class Day:
    number: int
    cycle: CycleReport
    sent: Counter[str] = field(default_factory=Counter)
    outcome_events: int = 0


def simulate(
    engine: Engine,
    playbook: Playbook,
    world: HillstromWorld,
    arms: dict[str, str],
    start: datetime,
    days: int,
    transports: dict[str, Transport],
    *,
    on_day: Callable[[Day], None] | None = None,
    alerts: bool = False,
) -> list[Day]:
    """Run ``days`` simulated days from ``start``; ``arms`` maps creative ids to world arms.

    The monitors' alerts are kept (and logged) but not sent unless ``alerts``: a simulated
    incident must not reach the marketer's Slack (a test sends them to a local receiver)."""
    clock = FixedClock(start)
    arm_index = {creative: ARMS.index(arm) for creative, arm in arms.items()}
    history: list[Day] = []
    for number in range(1, days + 1):
        day_start = start + timedelta(days=number - 1)
        clock.set(day_start)
        day = Day(number=number, cycle=run_cycle(engine, playbook, clock, transports, alerts=alerts))
        for agent_id, report in day.cycle.agents.items():
            day.sent[agent_id] += report.sent
        for hour in range(24):
            begin = day_start + timedelta(hours=hour)
            end = begin + timedelta(hours=1)
            clock.set(end)
            delivered = dispatch_due(engine, playbook, clock, transports)
            day.sent.update(delivered.sent)
            outcomes = world.step(begin, end, _sent_between(engine, begin, end, arm_index))
            if outcomes.num_rows:
                day.outcome_events += import_events(engine, outcomes, clock=clock).inserted
        history.append(day)
        if on_day:
            on_day(day)
    return history


def monitors(engine: Engine, day: Day) -> dict[str, dict[str, object]]:
    """What the monitors saw and did on a simulated day, per agent of its cycle or in the store.

    ``anomalies`` and ``breaches`` found by the day's cycle, whether the agent is paused and its
    stage after the day, and the alerts raised for it that day.
    """
    from legato.monitor.alerts import list_alerts
    from legato.trust.track_record import list_agents

    end = day.cycle.at + timedelta(days=1)
    with engine.connect() as connection:
        alerts = [a for a in list_alerts(connection) if day.cycle.at <= a.opened_at < end]
    seen: dict[str, dict[str, object]] = {}
    for state in list_agents(engine):
        report = day.cycle.agents.get(state.id)
        seen[state.id] = {
            "anomalies": [a.to_dict() for a in report.anomalies] if report else [],
            "breaches": [b.to_dict() for b in report.stop_loss] if report else [],
            "paused": state.status == "paused",
            "stage": state.trust_stage,
            "alerts": sum(1 for a in alerts if a.agent_id == state.id),
        }
    return seen


def _sent_between(engine: Engine, begin: datetime, end: datetime, arm_index: dict[str, int]) -> Sent:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                outbox.c.customer_id,
                outbox.c.sent_at,
                decisions.c.creative_id,
                decisions.c.offer_id,
                decisions.c.action,
            )
            .join(decisions, decisions.c.id == outbox.c.decision_id)
            .where(outbox.c.status == OutboxStatus.SENT, outbox.c.sent_at > begin, outbox.c.sent_at <= end)
        ).all()
    rows = [r for r in rows if r.creative_id in arm_index]
    return Sent(
        customer_id=np.array([r.customer_id for r in rows], dtype=str),
        arm=np.array([arm_index[r.creative_id] for r in rows], dtype=np.int64),
        sent_at=np.array([r.sent_at.replace(tzinfo=None) for r in rows], dtype="datetime64[us]"),
        evening=np.array([int(r.action.rsplit("/", 1)[-1][:2]) >= 17 for r in rows], dtype=bool),
        offer=np.array([r.offer_id is not None for r in rows], dtype=bool),
    )
