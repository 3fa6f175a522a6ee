"""Segment's HTTP Tracking API as request bodies: the six calls, the batch, and Segment's limits.

The models follow Segment's spec (camelCase, as its libraries send it). Fields outside the
spec are accepted and ignored, as Segment does (libraries add their own: ``_metadata``,
``writeKey``, RudderStack's ``rudderId``...), and named in the answer's ``warnings`` so a
misspelt ``userid`` is seen. A body that breaks the schema (a wrong type, a track without its
``event``, a batch item without its ``type``) is 422 for the whole request; Segment's size
limits are 400 (32 KB a call, 2,500 calls and 500 KB a batch, the last checked before the
body is read: 413). :func:`calls` turns a body into :class:`legato.service.tracking.Call`.
"""

from __future__ import annotations

import difflib
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from legato.api.errors import ApiError
from legato.service.tracking import Call, CallType

CALL_LIMIT = 32 * 1024  # bytes of one call, alone or in a batch (Segment's)
BATCH_CALLS = 2_500  # calls in one batch (Segment's)
# Fields Segment's and RudderStack's libraries send that Legato has no use for: not warned about.
LIBRARY_FIELDS = {"writeKey", "version", "_metadata", "channel", "rudderId", "request_ip", "requestId", "projectId", "sessionId", "options"}

Id = Annotated[str | int, Field(description="A string; a number is taken as its digits")]


class _Call(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: Id | None = Field(None, description="Your id for the customer: Legato's customer id")
    anonymousId: Id | None = Field(None, description="The device's id, the customer's until an identify or alias links it to a userId")
    messageId: str | None = Field(None, description="Makes the call idempotent: a messageId applied before changes nothing")
    timestamp: datetime | None = Field(None, description="When it happened, on the client's clock (ISO-8601)")
    originalTimestamp: datetime | None = Field(None, description="The same, as Segment's libraries name it; wins over timestamp")
    sentAt: datetime | None = Field(None, description="When the client sent it, on its clock: corrects the clock's error")
    receivedAt: datetime | None = Field(None, description="Ignored: Legato's own clock says when a call was received")
    context: dict[str, JsonValue] | None = Field(None, description="Only context.timezone is read (identify: the customer's zone)")
    integrations: dict[str, JsonValue] | None = Field(None, description="Ignored")


class Identify(_Call):
    type: Literal["identify"] = "identify"
    traits: dict[str, JsonValue] | None = Field(None, description="Customer fields, consents and attributes (docs/api.md)")


class Track(_Call):
    type: Literal["track"] = "track"
    event: str = Field(..., min_length=1, description="The event's name: Order Completed is a purchase (docs/api.md)")
    properties: dict[str, JsonValue] | None = None


class Page(_Call):
    type: Literal["page"] = "page"
    name: str | None = None
    category: str | None = None
    properties: dict[str, JsonValue] | None = None


class Screen(_Call):
    type: Literal["screen"] = "screen"
    name: str | None = None
    category: str | None = None
    properties: dict[str, JsonValue] | None = None


class Group(_Call):
    type: Literal["group"] = "group"
    groupId: Id = Field(..., description="The customer's group: their group_id attribute")
    traits: dict[str, JsonValue] | None = Field(None, description="The group's traits: not stored")


class Alias(_Call):
    type: Literal["alias"] = "alias"
    previousId: Id = Field(..., description="The id that from now on stands for userId")
    userId: Id = Field(..., description="The customer previousId stands for")  # type: ignore[assignment]


AnyCall = Annotated[Identify | Track | Page | Screen | Group | Alias, Field(discriminator="type")]


class Batch(BaseModel):
    model_config = ConfigDict(extra="allow")

    batch: list[AnyCall] = Field(..., description="The calls, each with its type")
    sentAt: datetime | None = Field(None, description="When the client sent the batch: each call's sentAt unless it has its own")
    context: dict[str, JsonValue] | None = Field(None, description="Merged into each call's context")
    integrations: dict[str, JsonValue] | None = None


class CallProblem(BaseModel):
    """A refused call: its index in the batch (0 for a single call), where and why."""

    index: int
    field: str  # body.batch.3.traits.email
    reason: str


class Answer(BaseModel):
    """Segment's answer (``success``) and what Legato did with each call."""

    success: bool = Field(description="true when every call was applied (Segment's libraries read only the status)")
    received: int
    applied: int = Field(description="Calls written, or already stored as sent")
    duplicates: int = Field(description="Calls whose messageId was applied before, or repeated in the request: nothing changed")
    rejected: int
    errors: list[CallProblem] = Field(description="Every refused call, with the field and the reason; nothing of it was written")
    not_regranted: list[CallProblem] = Field(description="Consent grants the customer's history kept revoked; the call's other traits were written")
    customers_created: int = Field(description="Customers created with only an id for their events (legato serve --unknown-customers create)")
    warnings: list[str] = Field(description="Fields outside Segment's spec, ignored")


def calls(body: BaseModel, where: str) -> list[Call]:
    """The body's calls for the service: one call (``where`` "body") or a batch's ("body.batch")."""
    if isinstance(body, Batch):
        return [_call(item, i, body.sentAt, body.context) for i, item in enumerate(body.batch)]
    return [_call(body, 0, None, None)]


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)


def _call(item: Any, index: int, batch_sent: datetime | None, batch_context: dict[str, Any] | None) -> Call:
    context = {**(batch_context or {}), **(item.context or {})}
    zone = context.get("timezone")
    original = item.originalTimestamp is not None
    return Call(
        index=index,
        type=CallType(item.type),
        user_id=_text(item.userId),
        anonymous_id=_text(item.anonymousId),
        message_id=item.messageId,
        timestamp=item.originalTimestamp if original else item.timestamp,
        timestamp_field="originalTimestamp" if original else "timestamp",
        sent_at=item.sentAt or batch_sent,
        traits=getattr(item, "traits", None) or {} if item.type == "identify" else {},
        event=getattr(item, "event", None),
        properties=getattr(item, "properties", None) or {},
        name=getattr(item, "name", None),
        category=getattr(item, "category", None),
        group_id=_text(getattr(item, "groupId", None)),
        previous_id=_text(getattr(item, "previousId", None)),
        time_zone=zone if isinstance(zone, str) else None,
    )


def check_limits(body: BaseModel) -> None:
    """Segment's limits on what one request carries: 400 with the call that breaks them."""
    if not isinstance(body, Batch):
        return  # a single call's 32 KB is its route's body limit (413, limits.BodyLimit)
    if len(body.batch) > BATCH_CALLS:
        raise ApiError(400, "too_large", f"the batch has {len(body.batch):,} calls; Segment's limit is {BATCH_CALLS:,} a batch",
                       hint="send the calls in several batches")
    for index, item in enumerate(body.batch):
        size = len(json.dumps(item.model_dump(mode="json", exclude_none=True), separators=(",", ":")).encode())
        if size > CALL_LIMIT:
            raise ApiError(400, "too_large", f"body.batch.{index} is {size:,} bytes; Segment's limit is 32 KB a call; nothing was written",
                           hint="send less in that call's traits or properties")


def warnings(body: BaseModel, where: str) -> list[str]:
    """Fields outside Segment's spec, each with the field it may have meant."""
    found: list[str] = []
    items = [(f"{where}.{i}", item) for i, item in enumerate(body.batch)] if isinstance(body, Batch) else [(where, body)]
    if isinstance(body, Batch):
        found += _unknown(body, "body")
    for path, item in items:
        found += _unknown(item, path)
    return found


def _unknown(model: BaseModel, path: str) -> list[str]:
    known = list(type(model).model_fields)
    notes = []
    for name in sorted(model.model_extra or {}):
        if name in LIBRARY_FIELDS:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75) or [k for k in known if k.lower() == name.lower()]
        meant = f" (did you mean {close[0]}?)" if close else ""
        notes.append(f"{path}.{name} is not a field of Segment's spec and was ignored{meant}")
    return notes
