"""What the console's overview shows, in one call: every read it needs, from their owners.

- the playbook's KPIs per agent over whole UTC days, primary first, against their targets, with
  lift vs holdout and the daily series (:func:`legato.service.reports.kpis`, from the kept counts);
- each agent's lift per customer against its holdout with its 95% interval is :func:`lift_per_customer`
  (:func:`legato.service.reports.lift_report`, the randomization unit): it reads every decision of
  the period, which takes seconds at scale where the rest takes milliseconds, so the console
  loads it after the page (``/overview/lift``) rather than making the overview wait for it;
- the agents with their stage and status (:func:`legato.service.agents.list_agents`), and
  each one's stop-loss state: paused by its stop-loss or by a person, its last breach;
- anomalies the detector recorded whose review item is still open;
- the review queue's size by reason (the kept counts) and its oldest waiting item.

The period is the ``days`` whole UTC days up to the last cycle's day (included), not up to the
wall clock: a store whose cycles ran on a simulated clock (``legato demo``) shows its data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.monitor.kpis import KpiReport
from legato.playbook.models import Playbook
from legato.service.reports import LiftRow
from legato.store.schema import anomalies, audit_log, cycles, review_items
from legato.store.status import ReviewStatus
from legato.trust.track_record import AgentState

STOP_LOSS_ACTOR = "stop_loss"


@dataclass(frozen=True)
class QueueState:
    waiting: int  # open items (a person must act) and audit items (look after the fact)
    open: int
    by_reason: dict[str, int]  # open items by reason, most first
    oldest_id: int | None
    oldest_at: datetime | None
    oldest_reason: str | None


@dataclass(frozen=True)
class StopLossState:
    agent_id: str
    paused: bool
    paused_by: str | None  # "stop_loss" or a person's name, when paused
    paused_reason: str | None
    paused_at: datetime | None
    last_breach: datetime | None

    @property
    def by_stop_loss(self) -> bool:
        return self.paused and self.paused_by == STOP_LOSS_ACTOR


@dataclass(frozen=True)
class Overview:
    now: datetime
    last_cycle_at: datetime | None
    since: datetime
    until: datetime  # exclusive: midnight after the last cycle's day
    days: int
    playbook: Playbook | None
    kpis: KpiReport
    agents: list[AgentState]
    stop_loss: dict[str, StopLossState]
    open_anomalies: list[dict[str, Any]] = field(default_factory=list)
    queue: QueueState | None = None


def overview(engine: Engine, playbook: Playbook | None, *, now: datetime, days: int = 30) -> Overview:
    from legato.service import agents, reports

    since, until, last = period(engine, now=now, days=days)
    found = reports.kpis(engine, playbook, since=since, until=until)
    listed = agents.list_agents(engine)
    with engine.connect() as connection:
        states = _stop_loss(connection, listed)
        open_anomalies = _open_anomalies(connection)
        queue = _queue(connection)
    return Overview(now, last, since, until, days, playbook, found, listed, states, open_anomalies, queue)


def period(engine: Engine, *, now: datetime, days: int) -> tuple[datetime, datetime, datetime | None]:
    """The overview's period: ``days`` whole UTC days up to the last cycle's day; and the last cycle's instant."""
    last = _last_cycle_at(engine)
    end_day = (last or now).astimezone(timezone.utc).date() + timedelta(days=1)
    until = datetime.combine(end_day, time(0), tzinfo=timezone.utc)
    return until - timedelta(days=days), until, last


def lift_per_customer(engine: Engine, *, now: datetime, days: int = 30) -> tuple[datetime, datetime, dict[str, LiftRow]]:
    """Each agent's lift per customer vs its holdout over the overview's period: (since, until, agent → row)."""
    from legato.service import reports

    since, until, _ = period(engine, now=now, days=days)
    rows = reports.lift_report(engine, now=now, since=since, until=until, against=("holdout",))
    return since, until, {row.report.agent_id: row for row in rows}


def _last_cycle_at(engine: Engine) -> datetime | None:
    with engine.connect() as connection:
        found = connection.execute(sa.select(sa.func.max(cycles.c.at))).scalar()
    if found is not None and found.tzinfo is None:
        found = found.replace(tzinfo=timezone.utc)
    return found


def _stop_loss(connection: sa.Connection, listed: list[AgentState]) -> dict[str, StopLossState]:
    breach = sa.or_(audit_log.c.action == "stop_loss_breach",
                    sa.and_(audit_log.c.action == "agent_paused", audit_log.c.actor == STOP_LOSS_ACTOR))
    last_breach = dict(connection.execute(
        sa.select(audit_log.c.entity_id, sa.func.max(audit_log.c.at)).where(audit_log.c.entity == "agent", breach).group_by(audit_log.c.entity_id)
    ).all())
    paused = [a.id for a in listed if a.status == "paused"]
    pauses: dict[str, Any] = {}
    if paused:
        newest = (
            sa.select(audit_log.c.entity_id, sa.func.max(audit_log.c.id).label("id"))
            .where(audit_log.c.entity == "agent", audit_log.c.action == "agent_paused", audit_log.c.entity_id.in_(paused))
            .group_by(audit_log.c.entity_id).subquery()
        )
        for row in connection.execute(sa.select(audit_log).join(newest, newest.c.id == audit_log.c.id)):
            pauses[row.entity_id] = row
    states = {}
    for agent in listed:
        pause = pauses.get(agent.id)
        detail = (pause.detail or {}) if pause is not None else {}
        states[agent.id] = StopLossState(
            agent.id, agent.status == "paused", pause.actor if pause is not None else None,
            detail.get("reason") if isinstance(detail, dict) else None,
            _utc(pause.at) if pause is not None else None, _utc(last_breach.get(agent.id)),
        )
    return states


def stop_loss(engine: Engine, agent_id: str) -> StopLossState | None:
    """One agent's stop-loss state (an agent's page)."""
    from legato.service import agents

    listed = [a for a in agents.list_agents(engine) if a.id == agent_id]
    with engine.connect() as connection:
        return _stop_loss(connection, listed).get(agent_id)


def _open_anomalies(connection: sa.Connection) -> list[dict[str, Any]]:
    query = (
        sa.select(anomalies, review_items.c.status.label("item_status"))
        .join(review_items, review_items.c.id == anomalies.c.review_item_id)
        .where(review_items.c.status.in_([ReviewStatus.OPEN, ReviewStatus.AUDIT]))
        .order_by(anomalies.c.day.desc(), anomalies.c.id.desc())
        .limit(50)
    )
    return [dict(row._mapping) for row in connection.execute(query)]


def _queue(connection: sa.Connection) -> QueueState:
    from legato.trust.review.queue import waiting_by_reason

    waiting = waiting_by_reason(connection)
    open_by_reason: dict[str, int] = {}
    for (status, reason), n in waiting.items():
        if status == ReviewStatus.OPEN:
            open_by_reason[reason] = open_by_reason.get(reason, 0) + n
    oldest = connection.execute(
        sa.select(review_items.c.id, review_items.c.created_at, review_items.c.reason)
        .where(review_items.c.status == ReviewStatus.OPEN)
        .order_by(review_items.c.created_at, review_items.c.id).limit(1)
    ).first()
    return QueueState(
        sum(waiting.values()), sum(open_by_reason.values()), dict(sorted(open_by_reason.items(), key=lambda kv: -kv[1])),
        oldest.id if oldest else None, _utc(oldest.created_at) if oldest else None, oldest.reason if oldest else None,
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def escalated(engine: Engine, agent_id: str, *, since: datetime, until: datetime) -> dict[str, int]:
    """The agent's items that went to a person in [since, until), by reason, most first (an agent's day)."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(review_items.c.reason, sa.func.count())
            .where(review_items.c.agent_id == agent_id, review_items.c.created_at >= since, review_items.c.created_at < until)
            .group_by(review_items.c.reason)
        ).all()
    return dict(sorted(((str(r), int(n)) for r, n in rows), key=lambda kv: -kv[1]))
