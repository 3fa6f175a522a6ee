"""Legato's own ingest: customers and events, one at a time or in batches.

A record has the fields of a ``legato import`` file's row, with the file's other columns
nested (a customer's ``attributes``, an event's ``properties``), and goes through the same
importer (:func:`legato.service.imports.customer_records` / ``event_records``), so it gets
the same checks and the same row errors. The schema checks only the JSON types and the
names of the fields; the values (dates, addresses, countries, zones, consent words, amounts)
are checked by the importer, record by record:

- every record written (or already stored as it is): **200**;
- some records refused: **207**, with each refused record's index, field and reason; the
  others are written, and a refused record is left out whole (nothing of it is written);
- every record refused: **422** with the same problems; nothing was written.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue, create_model, field_validator

from legato.api.context import ApiContext, context
from legato.api.errors import ErrorBody, Problem, respond
from legato.api.observe import events_ingested
from legato.api.security import Ability, Caller, allow
from legato.api.settings import UnknownCustomers
from legato.channels import NAMES as CHANNELS
from legato.guard.consent import PURPOSES
from legato.service import imports
from legato.store.ingest import ImportReport

router = APIRouter(prefix="/v1", tags=["ingest"])

BATCH_LIMIT = 10_000  # records in one batch; the body limit (1 MB by default) usually comes first

CONSENT_VALUES = "express, implied, yes, true (granted) or revoked, no, false; a JSON boolean works too"
DATE = "ISO-8601 with a zone, e.g. 2024-03-01T09:00:00Z (no zone: UTC)"


class Status(StrEnum):
    ACCEPTED = "accepted"  # every record written, or already stored as it is
    PARTIAL = "partial"  # some records refused (207); the others written


class RecordProblem(BaseModel):
    """A refused record: its index in the batch (0 for a single record), where and why."""

    index: int
    field: str  # body.batch.3.occurred_at, body.attributes.tier
    reason: str


class Answer(BaseModel):
    status: Status
    received: int
    inserted: int
    unchanged: int = Field(description="Already stored as sent: a customer with nothing new, an event whose id is stored")
    rejected: int
    errors: list[RecordProblem] = Field(description="Every refused record, with the field and the reason")
    warnings: list[str] = Field(description="What was kept although it looks like a mistake (an attribute named like a field)")


class CustomersAnswer(Answer):
    updated: int
    not_regranted: list[RecordProblem] = Field(
        description="Consents the customer's history kept revoked (a revocation outlives any grant not dated after it); "
        "the record's other fields were written"
    )


class EventsAnswer(Answer):
    customers_created: int = Field(description="Customers created with only an id for their events (legato serve --unknown-customers create)")
    consents_revoked: int
    undeliverable: int


class _Customer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The customer's id (at most 128 characters)")
    email: str | None = None
    phone: str | None = Field(None, description="E.164, or national in the customer's country")
    time_zone: str | None = Field(None, description="An IANA zone, e.g. Europe/Paris")
    country: str | None = Field(None, description="ISO 3166-1 alpha-2, e.g. US")
    region: str | None = Field(None, description="A region code within the country, e.g. FL")
    consent_at: str | None = Field(None, description=f"When the consents below were given or revoked, unless each has its own _at: {DATE}")
    attributes: dict[str, JsonValue] | None = Field(
        None, description="Any other field (a file's other columns); the playbook's declared attributes are checked against their type"
    )

    @field_validator("attributes")
    @classmethod
    def _not_a_field(cls, attributes: dict[str, Any] | None) -> dict[str, Any] | None:
        for name in attributes or {}:
            if name in imports.CUSTOMER_FIELDS or name.startswith("consent_"):
                raise ValueError(f"{name!r} is a customer field, not an attribute: send it beside id")
            if not name.strip() or len(name) > 128:
                raise ValueError(f"{name[:60]!r}: an attribute's name has 1 to 128 characters")
        return attributes


_CONSENTS: dict[str, Any] = {}
for _channel in CHANNELS:
    for _purpose in PURPOSES:
        _CONSENTS[f"consent_{_channel}_{_purpose}"] = (str | bool | None, Field(None, description=f"{_purpose} on {_channel}: {CONSENT_VALUES}"))
        _CONSENTS[f"consent_{_channel}_{_purpose}_at"] = (str | None, Field(None, description=f"When that was given or revoked: {DATE}"))

Customer = create_model("Customer", __base__=_Customer, __doc__="A customer: the columns of `legato import customers`, other columns under attributes.", **_CONSENTS)


class Customers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: Annotated[list[Customer], Field(min_length=1, max_length=BATCH_LIMIT)]  # type: ignore[valid-type]


class Event(BaseModel):
    """An event: the columns of `legato import events`, other columns under properties (docs/events.md)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="The event's id; an id already stored is a duplicate delivery and changes nothing")
    customer_id: str
    type: str = Field(description="purchase, refund, visit, open, click, unsubscribe, complaint, bounce, or any one lower-case word")
    occurred_at: str = Field(description=DATE)
    revenue: float | None = Field(None, description="A purchase's amount; a refund's is stored negative")
    channel: str | None = Field(None, description="The channel an unsubscribe, complaint or bounce is about")
    bounce_type: str | None = Field(None, description="hard (the default) or soft")
    decision_id: str | int | None = Field(None, description="The decision whose message this event answers (a tracked link carries it)")
    properties: dict[str, JsonValue] | None = None

    @field_validator("properties")
    @classmethod
    def _not_a_field(cls, properties: dict[str, Any] | None) -> dict[str, Any] | None:
        for name in properties or {}:
            if name in imports.EVENT_FIELDS:
                raise ValueError(f"{name!r} is an event field, not a property: send it beside id")
        return properties


class Events(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch: Annotated[list[Event], Field(min_length=1, max_length=BATCH_LIMIT)]


RULES = (
    "The schema checks the JSON types and the field names (an unknown field is 422); the importer checks the values, "
    "record by record, as `legato import` does. **200**: every record written or already stored as sent. **207**: some "
    "records refused, each in `errors` with its index, field and reason; a refused record is left out whole and the "
    "others are written. **422**: every record refused (or the body does not match the schema): nothing written."
)


def _responses(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {
        207: {"model": model, "description": "some records refused: each with its index, field and reason; the others written"},
        422: {"model": ErrorBody, "description": "the body does not match the schema, or every record was refused (each with its field): nothing written"},
    }


@router.post("/customers", response_model=CustomersAnswer, responses=_responses(CustomersAnswer), summary="Add or update one customer", description=RULES)
def add_customer(body: Customer, request: Request, caller: Caller = Depends(allow(Ability.INGEST)),  # type: ignore[valid-type]
                 ctx: ApiContext = Depends(context)) -> JSONResponse:
    return _customers(request, ctx, caller, [body], "body")


@router.post("/customers/batch", response_model=CustomersAnswer, responses=_responses(CustomersAnswer),
             summary="Add or update customers: the ones with a problem are refused, each with its field; the others written",
             description=RULES)
def add_customers(body: Customers, request: Request, caller: Caller = Depends(allow(Ability.INGEST)),
                  ctx: ApiContext = Depends(context)) -> JSONResponse:
    return _customers(request, ctx, caller, body.batch, "body.batch", body)


@router.post("/events", response_model=EventsAnswer, responses=_responses(EventsAnswer), summary="Add one event", description=RULES)
def add_event(body: Event, request: Request, caller: Caller = Depends(allow(Ability.INGEST)), ctx: ApiContext = Depends(context)) -> JSONResponse:
    return _events(request, ctx, [body], "body")


@router.post("/events/batch", response_model=EventsAnswer, responses=_responses(EventsAnswer),
             summary="Add events: the ones with a problem are refused, each with its field; the others written",
             description=RULES)
def add_events(body: Events, request: Request, caller: Caller = Depends(allow(Ability.INGEST)), ctx: ApiContext = Depends(context)) -> JSONResponse:
    return _events(request, ctx, body.batch, "body.batch", body)


def _records(records: list[Any], batch: BaseModel | None) -> list[dict[str, Any]]:
    """The records as dicts without the fields left out: a batch's in one call of its serializer
    (a call per record cost a millisecond for a hundred)."""
    if batch is not None:
        return batch.model_dump(exclude_none=True)["batch"]
    return [r.model_dump(exclude_none=True) for r in records]


def _customers(request: Request, ctx: ApiContext, caller: Caller, records: list[Any], at: str, batch: BaseModel | None = None) -> JSONResponse:
    report = imports.customer_records(
        ctx.engine, _records(records, batch), playbook=ctx.playbook_or_none(),
        clock=ctx.settings.clock, consent_source=f"api:{caller.name}",
    )
    answer = CustomersAnswer(
        **_common(report, "customers", at), updated=report.updated,
        not_regranted=[_problem("customers", at, e.row, e.column, e.reason) for e in report.not_regranted],
    )
    return _answer(request, answer, len(records))


def _events(request: Request, ctx: ApiContext, records: list[Event], at: str, batch: BaseModel | None = None) -> JSONResponse:
    create = ctx.settings.unknown_customers is UnknownCustomers.CREATE
    report = imports.event_records(ctx.engine, _records(records, batch), create_customers=create, clock=ctx.settings.clock)
    events_ingested(request, report.inserted, source="legato")
    answer = EventsAnswer(
        **_common(report, "events", at), customers_created=report.customers_created,
        consents_revoked=report.consents_revoked, undeliverable=report.undeliverable,
    )
    return _answer(request, answer, len(records))


def _common(report: ImportReport, kind: str, at: str) -> dict[str, Any]:
    return {
        "status": Status.PARTIAL if report.rejected else Status.ACCEPTED,
        "received": report.rows_read,
        "inserted": report.inserted,
        "unchanged": report.unchanged,
        "rejected": report.rejected,
        "errors": [_problem(kind, at, e.row, e.column, e.reason) for e in report.errors],
        "warnings": [
            f"{imports.record_field(kind, w.column)} looks like {w.field} but was kept as {'an attribute' if kind == 'customers' else 'a property'}; "
            f"send it as {w.field}"
            for w in report.column_warnings
        ],
    }


def _path(kind: str, at: str, index: int, column: str | None) -> str:
    """``body.batch.3.attributes.tier``: a batch's record by index, a single record as the body."""
    where = at if at == "body" else f"{at}.{index}"
    field = imports.record_field(kind, column)
    return f"{where}.{field}" if field else where


def _problem(kind: str, at: str, index: int, column: str | None, reason: str) -> RecordProblem:
    return RecordProblem(index=index, field=_path(kind, at, index, column), reason=reason)


def _answer(request: Request, answer: Answer, received: int) -> JSONResponse:
    if answer.rejected == 0:
        return JSONResponse(answer.model_dump(mode="json"))
    if answer.rejected < received:
        return JSONResponse(answer.model_dump(mode="json"), status_code=207)
    problems = [Problem(field=p.field, reason=p.reason) for p in answer.errors]
    return respond(
        request, 422, "invalid", f"every record was refused ({answer.rejected} of {received}); nothing was written",
        hint="fix each field listed in problems and send the records again", problems=problems,
    )
