"""The monitors' alerts for every face: the incidents with each destination's delivery
(`legato alerts list`, GET /v1/alerts), and one delivery run (`legato alerts deliver`; the
cycle and the worker call :func:`legato.monitor.alert_delivery.deliver_alerts` themselves)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from legato.errors import Invalid
from legato.playbook.models import Playbook
from legato.store.status import AlertStatus


def listing(engine: Engine, *, agent_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
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
        found = list_alerts(connection, agent_id=agent_id, status=wanted)
        sent = deliveries(connection, [a.id for a in found]) if found else {}
    return [{**a.to_dict(), "deliveries": [d.to_dict() for d in sent.get(a.id, [])]} for a in found]


def deliver(engine: Engine, playbook: Playbook, now: datetime, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Send every alert delivery due at ``now``; what was sent, is to be retried, or failed, by destination."""
    from legato.monitor.alert_delivery import deliver_alerts

    return deliver_alerts(engine, playbook, now, environ=environ).to_dict()
