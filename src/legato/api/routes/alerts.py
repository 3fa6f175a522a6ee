"""Alerts: the incidents the monitors raised (one per incident), each with its deliveries.

Pages are by cursor (the last alert's id), oldest first, as decisions page by key: a busy
store's alerts grow without bound, and a page by offset would skip or repeat one raised meanwhile."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from legato.api.context import ApiContext, context
from legato.api.security import Ability, Caller, allow
from legato.service import alerts

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])


class AlertDelivery(BaseModel):
    phase: Literal["opened", "cleared"] = Field(description="the alert itself, or its follow-up when the incident cleared")
    destination: str = Field(description="log, a webhook's name, or NAME:address for e-mail")
    status: Literal["pending", "sending", "sent", "failed"]
    attempts: int
    due_at: datetime = Field(description="when it is (or was) next tried")
    sent_at: datetime | None
    last_error: str | None


class Alert(BaseModel):
    id: int
    incident: str = Field(description="what it is about, e.g. stop_loss:winback; one alert per incident")
    kind: Literal["stop_loss", "anomaly"]
    agent: str | None
    status: Literal["open", "cleared"]
    summary: str
    detail: dict[str, Any] = Field(description="the evidence (a stop-loss's breaches)")
    opened_at: datetime
    repeats: int = Field(description="times it was seen again while open (not alerted again)")
    cleared_at: datetime | None
    cleared_by: str | None
    deliveries: list[AlertDelivery]


class Alerts(BaseModel):
    alerts: list[Alert] = Field(description="oldest first")
    next_cursor: str | None = Field(description="Pass as `after` for the next page; null on the last page")


@router.get("", response_model=Alerts, summary="Alerts, open and cleared, with each destination's delivery")
def list_alerts(
    caller: Caller = Depends(allow(Ability.READ)),
    agent: str | None = Query(None, max_length=128, description="Only this agent's alerts"),
    status: Literal["open", "cleared"] | None = Query(None),
    limit: int = Query(100, ge=1, le=alerts.MAX_LIMIT),
    after: str | None = Query(None, min_length=1, max_length=16, description="The next_cursor of the previous page"),
    ctx: ApiContext = Depends(context),
) -> Alerts:
    found = alerts.page(ctx.engine, agent_id=agent, status=status, limit=limit, after=after)
    return Alerts(alerts=[Alert(**a) for a in found.items], next_cursor=found.next_cursor)
