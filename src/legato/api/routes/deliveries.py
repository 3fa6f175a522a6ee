"""Delivery status and e-mail events from any provider: one callback route, one service function.

``POST /v1/deliveries/events`` takes what a provider (an e-mail service's webhook, an SMTP
bounce processor, a feedback loop, a relay of Twilio's callbacks) says happened to a
message: delivered, failed, bounced (hard or soft), complained, opened or clicked. Each
becomes an event attributed to the message's decision, once (a repeat answers the same
with ``new: false``), and bounces and complaints act on the lists and consent at once
(:mod:`legato.service.deliveries`, which Twilio's own status callbacks call too).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, model_validator

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.service import deliveries
from legato.service.deliveries import Bounce, Delivery, Report

router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])


class DeliveryReport(BaseModel):
    """What happened to one message, named by Legato's message id or the provider's id."""

    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(None, min_length=1, max_length=128,
                                   description="Legato's id of the message (the e-mail's Message-ID local part, the webhook-id, the outbox's message_id)")
    provider_id: str | None = Field(None, min_length=1, max_length=128, description="Or the provider's id the message was sent under (e.g. a MessageSid)")
    type: Report = Field(description="delivered, failed, bounced, complained, opened or clicked")
    bounce: Bounce | None = Field(None, description="bounced only: hard (the default; the address becomes undeliverable) or soft (nothing changes)")
    reason: str | None = Field(None, max_length=2000, description="The provider's words: an SMTP reply, an error code (kept with the event)")
    occurred_at: datetime | None = Field(None, description="When it happened per the provider (ISO-8601 with a zone); else when it is reported")
    event_id: str | None = Field(None, min_length=1, max_length=128, description="The provider's id of this report: a repeat with the same id changes nothing")
    url: str | None = Field(None, min_length=1, max_length=2000, description="clicked only: the link that was followed")

    @model_validator(mode="after")
    def _one_message(self) -> DeliveryReport:
        if (self.message_id is None) == (self.provider_id is None):
            raise ValueError("name the message by message_id or by provider_id: one of them")
        return self


class Recorded(BaseModel):
    event_id: str
    event_type: str = Field(description="The event stored: delivered, delivery_failed, bounce, complaint, open or click")
    message_id: str
    decision_id: int = Field(description="The decision the event is attributed to")
    customer_id: str
    channel: str
    new: bool = Field(description="false: this report was recorded before; nothing changed now")
    consents_revoked: int = Field(description="Marketing consents a complaint revoked")
    undeliverable: int = Field(description="Addresses a hard bounce listed as undeliverable")
    suppressed: int = Field(description="Addresses a complaint put on the do-not-contact list")
    cancelled: int = Field(description="The customer's waiting messages on the channel, cancelled")


@router.post("/events", response_model=Recorded, responses=documented(404),
             summary="What happened to a message (delivered, failed, bounced, complained, opened, clicked): an event of its decision, once")
def report_delivery(body: DeliveryReport, caller: Caller = Depends(allow(Ability.INGEST)), ctx: ApiContext = Depends(context)) -> Recorded:
    done = deliveries.record(
        ctx.engine,
        Delivery(
            body.type, message_id=body.message_id, provider_id=body.provider_id, reason=body.reason, bounce=body.bounce,
            occurred_at=body.occurred_at, event_id=body.event_id, url=body.url, source=f"api:{caller.name}",
        ),
        now=ctx.now(),
    )
    return Recorded(**done.to_dict())


class RecordedList(BaseModel):
    recorded: list[Recorded] = Field(description="Each report the e-mail held (none for a delay notice)")


@router.post("/returned-mail", response_model=RecordedList, responses=documented(404),
             openapi_extra={"requestBody": {"required": True, "content": {"message/rfc822": {"schema": {"type": "string", "format": "binary"}}}}},
             summary="A bounce (RFC 3464) or feedback-loop complaint (RFC 5965) e-mail as it arrived: the reports it holds, recorded")
async def returned_mail(request: Request, caller: Caller = Depends(allow(Ability.INGEST)), ctx: ApiContext = Depends(context)) -> RecordedList:
    raw = await request.body()
    done = await run_in_threadpool(deliveries.record_report_email, ctx.engine, raw, now=ctx.now())
    return RecordedList(recorded=[Recorded(**r.to_dict()) for r in done])
