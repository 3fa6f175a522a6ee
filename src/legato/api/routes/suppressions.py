"""The suppression (do-not-contact) list: list it, add to it, take an entry off it.

Who added or removed an entry is the key's name in the audit log. An address or number is
listed in its one form (E.164, a lower-cased address), the form imports store, so any way of
writing it stops it. Taking an entry off grants nothing: marketing reaches the customer again
only as their consent allows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.guard.contact import Suppression
from legato.service import suppressions

router = APIRouter(prefix="/v1/suppressions", tags=["suppressions"])


class Kind(StrEnum):
    """What a person lists: no marketing on any channel to it."""

    CUSTOMER = "customer"
    EMAIL = "email"
    PHONE = "phone"


class ListedKind(StrEnum):
    CUSTOMER = "customer"
    EMAIL = "email"
    PHONE = "phone"
    UNDELIVERABLE = "undeliverable"  # an address or number that hard-bounced (listed by imports; a person may take it off)


Country = Field(None, min_length=2, max_length=2, pattern="^[A-Za-z]{2}$",
                description="The country (2 letters) a phone number without its country code is read in")


class Entry(BaseModel):
    kind: ListedKind
    value: str = Field(description="as listed: E.164 for a number, lower case for an address")
    reason: str
    added_at: datetime

    @classmethod
    def of(cls, entry: Suppression) -> Entry:
        return cls(kind=ListedKind(entry.kind), value=entry.value, reason=entry.reason, added_at=entry.added_at)


class EntryList(BaseModel):
    total: int = Field(description="entries of this kind in all")
    entries: list[Entry] = Field(description="the newest first")


class NewEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    value: str = Field(..., min_length=1, max_length=320, description="A customer id, an e-mail address or a phone number in any usual form")
    reason: str = Field(..., min_length=1, max_length=256, description="Why, e.g. 'national do-not-call registry' or 'legal hold' (audited)")
    country: str | None = Country


class Added(Entry):
    added: bool = Field(description="false when it was listed already (its own reason and date kept)")


@router.get("", response_model=EntryList, summary="The do-not-contact list, newest first")
def list_entries(
    caller: Caller = Depends(allow(Ability.READ)),
    kind: ListedKind | None = Query(None, description="Only this kind of entry"),
    limit: int = Query(100, ge=1, le=1000),
    ctx: ApiContext = Depends(context),
) -> EntryList:
    entries, total = suppressions.listing(ctx.engine, kind=kind.value if kind else None, limit=limit)
    return EntryList(total=total, entries=[Entry.of(e) for e in entries])


@router.post("", response_model=Added, status_code=201, responses={200: {"model": Added, "description": "listed already: unchanged"}},
             summary="Put a customer, an address or a number on the list; agents and the dispatcher honour it at once")
def add_entry(body: NewEntry, response: Response, caller: Caller = Depends(allow(Ability.STEER)), ctx: ApiContext = Depends(context)) -> Added:
    entry, added = suppressions.add_entry(ctx.engine, body.kind.value, body.value, body.reason, by=caller.name, now=ctx.now(), country=body.country)
    if not added:
        response.status_code = 200
    return Added(**Entry.of(entry).model_dump(), added=added)


@router.delete("/{kind}/{value}", response_model=Entry, responses=documented(404),
               summary="Take an entry off the list, recording who and why; this grants nothing")
def remove_entry(
    caller: Caller = Depends(allow(Ability.STEER)),
    kind: ListedKind = Path(..., description="customer, email, phone or undeliverable"),
    value: str = Path(..., min_length=1, max_length=320, description="The listed value, in any usual form"),
    reason: str = Query(..., min_length=1, max_length=256, description="Why, e.g. 'added by mistake, ticket 123' (audited)"),
    country: str | None = Query(None, min_length=2, max_length=2, pattern="^[A-Za-z]{2}$"),
    ctx: ApiContext = Depends(context),
) -> Entry:
    return Entry.of(suppressions.remove(ctx.engine, kind.value, value, reason, by=caller.name, now=ctx.now(), country=country))
