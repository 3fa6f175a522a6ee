"""The alerts the monitors raise: one row per incident, the seam that delivering them fills.

A stop-loss breach or an anomaly calls :func:`raise_alert` with an incident key (such as
``stop_loss:winback_email``); while that incident is open, raising it again only counts a
repeat (the partial unique index on open incidents makes the database refuse a second row
whoever writes it), so one incident is one alert. :func:`clear_alert` ends it (a person
resumed the agent), which is when a follow-up goes out. Delivering alerts (a Slack-compatible
webhook, e-mail, the log: issue 14 part 4) is not built here: it reads :func:`undelivered`
and stamps the rows it sent. Every alert is also logged (``legato.monitor.alerts`` logger) the
moment it is raised, so nothing raised goes unseen meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.schema import alerts
from legato.store.status import AlertKind, AlertStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alert:
    id: int
    incident: str
    kind: AlertKind
    agent_id: str | None
    status: AlertStatus
    summary: str
    detail: dict[str, Any]
    opened_at: datetime
    repeats: int
    cleared_at: datetime | None
    cleared_by: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "incident": self.incident, "kind": self.kind.value, "agent": self.agent_id, "status": self.status.value,
                "summary": self.summary, "detail": self.detail, "opened_at": self.opened_at.isoformat(), "repeats": self.repeats,
                "cleared_at": self.cleared_at.isoformat() if self.cleared_at else None, "cleared_by": self.cleared_by}


def raise_alert(
    connection: Connection, incident: str, kind: AlertKind, summary: str, detail: Mapping[str, Any], now: datetime, *, agent_id: str | None = None
) -> tuple[int, bool]:
    """Open the incident's alert, or count a repeat of the open one; (alert id, whether it is new)."""
    current = connection.execute(
        sa.select(alerts.c.id).where(alerts.c.incident == incident, alerts.c.status == AlertStatus.OPEN).with_for_update()
    ).scalar_one_or_none()
    if current is not None:
        connection.execute(sa.update(alerts).where(alerts.c.id == current).values(repeats=alerts.c.repeats + 1, last_seen_at=now))
        return int(current), False
    alert_id = connection.execute(
        sa.insert(alerts)
        .values(incident=incident, kind=AlertKind(kind), agent_id=agent_id, status=AlertStatus.OPEN, summary=summary, detail=dict(detail),
                opened_at=now, last_seen_at=now, repeats=0)
        .returning(alerts.c.id)
    ).scalar_one()
    log.warning("alert %s: %s", incident, summary)
    return int(alert_id), True


def clear_alert(connection: Connection, incident: str, now: datetime, *, by: str) -> int | None:
    """End the incident's open alert (its follow-up is then due); the alert's id, or None if none was open."""
    current = connection.execute(
        sa.select(alerts.c.id).where(alerts.c.incident == incident, alerts.c.status == AlertStatus.OPEN).with_for_update()
    ).scalar_one_or_none()
    if current is None:
        return None
    connection.execute(sa.update(alerts).where(alerts.c.id == current).values(status=AlertStatus.CLEARED, cleared_at=now, cleared_by=by))
    log.warning("alert %s cleared by %s", incident, by)
    return int(current)


def list_alerts(
    connection: Connection, *, agent_id: str | None = None, status: AlertStatus | None = None, alert_ids: list[int] | None = None,
    after_id: int | None = None, limit: int | None = None,
) -> list[Alert]:
    """Alerts oldest first; ``after_id`` and ``limit``: a page by key (the id), never by offset."""
    query = sa.select(alerts).order_by(alerts.c.id)
    if after_id is not None:
        query = query.where(alerts.c.id > after_id)
    if limit is not None:
        query = query.limit(limit)
    if alert_ids is not None:
        query = query.where(alerts.c.id.in_(alert_ids))
    if agent_id is not None:
        query = query.where(alerts.c.agent_id == agent_id)
    if status is not None:
        query = query.where(alerts.c.status == status)
    return [
        Alert(r.id, r.incident, AlertKind(r.kind), r.agent_id, AlertStatus(r.status), r.summary, dict(r.detail), r.opened_at, r.repeats, r.cleared_at, r.cleared_by)
        for r in connection.execute(query)
    ]


def undelivered(connection: Connection) -> list[Alert]:
    """Alerts whose opening, or whose clearing, no channel has delivered yet (for part 4's sender)."""
    pending = sa.or_(alerts.c.delivered_at.is_(None), sa.and_(alerts.c.status == AlertStatus.CLEARED, alerts.c.cleared_delivered_at.is_(None)))
    ids = list(connection.execute(sa.select(alerts.c.id).where(pending)).scalars())
    return list_alerts(connection, alert_ids=ids) if ids else []  # read only those: delivery asks every second in a worker


def mark_delivered(connection: Connection, alert_id: int, cleared: bool, now: datetime) -> None:
    """Every destination of the alert's opening (or, ``cleared``, of its follow-up) is settled:
    sent, or given up and shown as failed (legato.monitor.alert_delivery keeps each one's record)."""
    column = alerts.c.cleared_delivered_at if cleared else alerts.c.delivered_at
    connection.execute(sa.update(alerts).where(alerts.c.id == alert_id, column.is_(None)).values({column.key: now}))


def incident_key(kind: AlertKind, agent_id: str, what: str | None = None) -> str:
    """The incident an alert is about: one stop-loss incident per agent, one anomaly per agent and series."""
    return f"{kind.value}:{agent_id}" + (f":{what}" if what else "")


def counts(connection: Connection) -> dict[tuple[str, str], int]:
    """Alerts by (kind, status), every pair present (0 when none): an alert is never deleted,
    so a kind's sum over status is every incident ever raised (``/metrics``)."""
    found = {(str(k), str(s)): 0 for k in AlertKind for s in AlertStatus}
    for kind, status, n in connection.execute(sa.select(alerts.c.kind, alerts.c.status, sa.func.count()).group_by(alerts.c.kind, alerts.c.status)):
        found[(str(kind), str(status))] = int(n)
    return found
