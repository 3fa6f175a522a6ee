"""Alerts: the incidents the monitors raised (one per incident), each with its deliveries."""

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


@router.get("", response_model=Alerts, summary="Alerts, open and cleared, with each destination's delivery")
def list_alerts(
    caller: Caller = Depends(allow(Ability.READ)),
    agent: str | None = Query(None, max_length=128, description="Only this agent's alerts"),
    status: Literal["open", "cleared"] | None = Query(None),
    ctx: ApiContext = Depends(context),
) -> Alerts:
    return Alerts(alerts=[Alert(**a) for a in alerts.listing(ctx.engine, agent_id=agent, status=status)])
