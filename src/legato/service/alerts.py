"""The monitors' alerts for every face: the incidents with each destination's delivery
(`legato alerts list`, GET /v1/alerts), and one delivery run (`legato alerts deliver`; the
cycle and the worker call :func:`legato.monitor.alert_delivery.deliver_alerts` themselves)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from legato.errors import Invalid
from legato.playbook.models import Playbook
from legato.store.status import AlertStatus


MAX_LIMIT = 1000


@dataclass(frozen=True)
class AlertPage:
    items: list[dict[str, Any]]
    next_cursor: str | None  # the last alert's id; None on the last page


def page(engine: Engine, *, agent_id: str | None = None, status: str | None = None, limit: int = 100, after: str | None = None) -> AlertPage:
    """One page of :func:`listing`, oldest first: ``after`` is the previous page's ``next_cursor``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit {limit} is out of range", hint=f"ask for 1 to {MAX_LIMIT} alerts at a time")
    after_id = None
    if after is not None:
        if not after.isdigit() or not 0 < int(after) < 2**31:
            raise Invalid(f"'{after}' is not a page cursor", hint="use the next_cursor the previous page gave")
        after_id = int(after)
    found = listing(engine, agent_id=agent_id, status=status, after_id=after_id, limit=limit + 1)
    items = found[:limit]
    return AlertPage(items, str(items[-1]["id"]) if len(found) > limit else None)


def listing(
    engine: Engine, *, agent_id: str | None = None, status: str | None = None, after_id: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Each alert (oldest first) with its deliveries: where it went, or is still to go, and why not."""
    from legato.monitor.alert_delivery import deliveries
    from legato.monitor.alerts import list_alerts

    wanted = None
    if status is not None:
        try:
            wanted = AlertStatus(status)
        except ValueError:
            raise Invalid(f"status: no alert status '{status}'", hint=f"use one of: {', '.join(s.value for s in AlertStatus)}") from None
    with engine.connect() as connection:
        found = list_alerts(connection, agent_id=agent_id, status=wanted, after_id=after_id, limit=limit)
        sent = deliveries(connection, [a.id for a in found]) if found else {}
    return [{**a.to_dict(), "deliveries": [d.to_dict() for d in sent.get(a.id, [])]} for a in found]


def deliver(engine: Engine, playbook: Playbook, now: datetime, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Send every alert delivery due at ``now``; what was sent, is to be retried, or failed, by destination."""
    from legato.monitor.alert_delivery import deliver_alerts

    return deliver_alerts(engine, playbook, now, environ=environ).to_dict()
