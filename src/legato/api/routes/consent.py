"""A customer's consent per channel and purpose: read it with its history, change it with a source.

Every change goes through the one consent owner (:mod:`legato.service.consent` →
:mod:`legato.guard.consent`): a revocation is never undone but by an express consent dated
after it (409 says why otherwise), an older statement does not replace a newer one (200,
``kept``, with the reason). Who recorded it is the key's name.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.channels import NAMES
from legato.clock import as_utc
from legato.guard.consent import Recorded
from legato.service import consent
from legato.service.consent import Outcome

router = APIRouter(prefix="/v1/customers", tags=["consent"])

CustomerId = Path(..., min_length=1, max_length=128, description="The customer's id")

Channel = StrEnum("Channel", {name: name for name in NAMES})  # type: ignore[misc]


class Purpose(StrEnum):
    MARKETING = "marketing"
    TRANSACTIONAL = "transactional"


class Status(StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"


class Kind(StrEnum):
    EXPRESS = "express"
    IMPLIED = "implied"  # an existing business relationship (a purchase): lapses after the consent rule's lifetime


class Statement(BaseModel):
    """A statement as it was written."""

    status: Status
    kind: Kind
    source: str
    stated_at: datetime | None = Field(description="when the customer said it, per its source; None when it did not say")
    recorded_at: datetime
    recorded_by: str | None = Field(description="the key's name when a person recorded it over the API")

    @classmethod
    def of(cls, entry: Recorded) -> Statement:
        return cls(status=Status(entry.status), kind=Kind(entry.kind), source=entry.source, stated_at=entry.stated_at,
                   recorded_at=entry.recorded_at, recorded_by=entry.recorded_by)


class ConsentState(BaseModel):
    """The statement that stands for one channel and purpose, and every statement written, oldest first."""

    channel: str
    purpose: Purpose
    status: Status
    kind: Kind
    source: str
    stated_at: datetime | None
    recorded_at: datetime
    expires_at: datetime | None
    history: list[Statement]

    @classmethod
    def of(cls, found: consent.Consent) -> ConsentState:
        c = found.current
        return cls(channel=c.channel, purpose=Purpose(c.purpose), status=Status(c.status), kind=Kind(c.kind), source=c.source,
                   stated_at=c.stated_at, recorded_at=c.recorded_at, expires_at=c.expires_at, history=[Statement.of(h) for h in found.history])


class CustomerConsents(BaseModel):
    customer_id: str
    consents: list[ConsentState]


class ConsentChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Channel  # type: ignore[valid-type]
    purpose: Purpose = Purpose.MARKETING
    status: Status
    kind: Kind = Field(Kind.EXPRESS, description="For a grant; a revocation is always recorded as express")
    stated_at: datetime | None = Field(None, description="When the customer said it (UTC unless an offset is given); a revocation "
                                                         "without it is taken as said now, a grant without it cannot undo a revocation")
    source: str = Field(..., min_length=1, max_length=100, description="Where the customer said it, e.g. 'phone call, ticket 123'")


class ConsentChanged(BaseModel):
    outcome: Outcome
    reason: str | None = Field(description="why nothing changed, when the statement on file stands")
    cancelled_messages: int = Field(description="messages on the channel waiting to go, cancelled by a revocation of marketing")
    consent: ConsentState


@router.get("/{customer_id}/consents", response_model=CustomerConsents, responses=documented(404),
            summary="A customer's consent per channel and purpose, with every statement written")
def read_consents(customer_id: str = CustomerId, caller: Caller = Depends(allow(Ability.READ)), ctx: ApiContext = Depends(context)) -> CustomerConsents:
    return CustomerConsents(customer_id=customer_id, consents=[ConsentState.of(c) for c in consent.consents(ctx.engine, customer_id)])


@router.post("/{customer_id}/consents", response_model=ConsentChanged, responses=documented(404, 409),
             summary="Record a consent statement the customer made, with its source")
def change_consent(body: ConsentChange, customer_id: str = CustomerId, caller: Caller = Depends(allow(Ability.STEER)),
                   ctx: ApiContext = Depends(context)) -> ConsentChanged:
    done = consent.change(
        ctx.engine, customer_id, str(body.channel), body.purpose.value, body.status.value, source=body.source, by=caller.name, now=ctx.now(),
        kind=body.kind.value, stated_at=as_utc(body.stated_at) if body.stated_at else None,
    )
    return ConsentChanged(outcome=done.outcome, reason=done.reason, cancelled_messages=done.cancelled, consent=ConsentState.of(done.consent))
