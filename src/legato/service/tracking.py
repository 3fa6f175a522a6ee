"""Segment's tracking calls (identify, track, page, screen, group, alias) as Legato's customers
and events, through the one importer (:mod:`legato.service.imports`). docs/api.md has the
mapping; each rule is here once.

- **Who.** A call's customer is its ``userId``, else its ``anonymousId``, after links: an
  alias call links its ``previousId`` to its ``userId``, and a call carrying both ids links the
  anonymous one to the user (:mod:`legato.store.tracking`). Links in a request apply to all of
  its calls. Events stored before a link stay with the id they were stored under.
- **When.** An event's time is Segment's: ``receivedAt - (sentAt - timestamp)`` when the
  client sent ``sentAt`` (its clock's error taken out), else ``timestamp`` (or
  ``originalTimestamp``), else when the call was received.
- **What.** identify's traits become the customer's fields, consents and attributes; group
  sets the ``group_id`` attribute; track, page and screen become events (:data:`EVENT_TYPES`).
- **Once.** A messageId makes a call idempotent: a track's is its event's id, and the
  messageIds of identify, group and alias calls are kept (:func:`legato.store.tracking.claim`)
  in the same transaction as what they wrote. A repeated call changes nothing; a call the
  importer refused is not kept, so sending it again, fixed, works.

Everything a request brings is written in one transaction, or nothing of it; inside it, a
call the importer refuses is left out whole and the others are written.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine

from legato.clock import Clock, FixedClock, as_utc
from legato.playbook.models import Playbook
from legato.service import imports
from legato.store import tracking
from legato.store.ingest import ImportReport, transaction
from legato.store.ingest.consent import CONSENT_NAMES_HINT, NOT_A_CONSENT, is_consent_name

ID_LIMIT = 128  # characters of a customer id, an event id and a messageId, as the store keeps them


class CallType(StrEnum):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"


EVENTS = (CallType.TRACK, CallType.PAGE, CallType.SCREEN)
PROFILES = (CallType.IDENTIFY, CallType.GROUP)  # calls that write the customer row
KEPT = (CallType.IDENTIFY, CallType.GROUP, CallType.ALIAS)  # calls whose messageId is kept in seen_messages

# Segment's semantic events with a meaning in Legato: event name (lower case) -> (type, channel).
# Any other name is its own type in snake_case ("Signed Up" -> signed_up), which docs/events.md
# says is stored and counts as activity; a name that is already a Legato type is that type.
EVENT_TYPES: dict[str, tuple[str, str | None]] = {
    "order completed": ("purchase", None),
    "order refunded": ("refund", None),
    "email opened": ("open", "email"),
    "email link clicked": ("click", "email"),
    "email bounced": ("bounce", "email"),
    "email marked as spam": ("complaint", "email"),
    "unsubscribed": ("unsubscribe", None),  # every channel, unless properties.channel names one
    "email unsubscribed": ("unsubscribe", "email"),
    "push notification tapped": ("click", "push"),
}
PAGE_TYPE = "visit"  # page and screen calls
REVENUE = ("revenue", "total")  # a purchase's or refund's amount: properties.revenue, else properties.total
LIFTED = ("channel", "bounce_type", "decision_id")  # properties the importer reads as an event's own fields

# Traits that are customer fields under another name (Segment's reserved traits are camelCase).
FIELD_TRAITS = {"email": "email", "phone": "phone", "timezone": "time_zone", "time_zone": "time_zone", "timeZone": "time_zone",
                "country": "country", "region": "region"}
_SUBDIVISION = re.compile(r"^[A-Za-z0-9]{1,3}$")  # an address's state as a region code (FL, 75), not a name


@dataclass(frozen=True)
class Call:
    """One Segment call as the API received it (its index in the request's batch)."""

    index: int
    type: CallType
    user_id: str | None = None
    anonymous_id: str | None = None
    message_id: str | None = None
    timestamp: datetime | None = None  # originalTimestamp, else timestamp: the client's clock
    sent_at: datetime | None = None  # the call's sentAt, else its batch's
    traits: Mapping[str, Any] = field(default_factory=dict)
    event: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    name: str | None = None
    category: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    time_zone: str | None = None  # context.timezone: the device's zone
    timestamp_field: str = "timestamp"  # which field the client's time came from, for errors


@dataclass(frozen=True)
class CallError:
    """A refused call: its index, the field (as the call spells it: ``traits.email``) and why."""

    index: int
    field: str | None
    reason: str


@dataclass
class Received:
    received: int
    applied: int = 0
    duplicates: int = 0  # calls applied before (their messageId), or repeated in the request
    errors: list[CallError] = field(default_factory=list)
    not_regranted: list[CallError] = field(default_factory=list)  # consents the history kept revoked; the call applied
    customers_created: int = 0
    consents_revoked: int = 0
    events_written: int = 0  # track, page and screen calls stored as new events

    @property
    def rejected(self) -> int:
        return len({e.index for e in self.errors})


def occurred_at(call: Call, received_at: datetime) -> datetime:
    """When the call happened, Segment's way: the client's clock error (sentAt against
    receivedAt) taken out of its timestamp; without sentAt the timestamp as sent; without a
    timestamp, when it was received."""
    if call.timestamp is None:
        return received_at
    stamp = as_utc(call.timestamp)
    if call.sent_at is None:
        return stamp
    return received_at - (as_utc(call.sent_at) - stamp)


def event_type(name: str) -> tuple[str, str | None]:
    """A track call's event name as Legato's event type and the channel it is about."""
    spoken = " ".join(name.split()).lower()
    if spoken in EVENT_TYPES:
        return EVENT_TYPES[spoken]
    return re.sub(r"[^a-z0-9]+", "_", spoken).strip("_"), None


def receive(
    engine: Engine,
    calls: Sequence[Call],
    *,
    received_at: datetime,
    playbook: Playbook | None = None,
    create_customers: bool = True,
    source: str = "segment",
) -> Received:
    """Apply a request's calls in one transaction; returns what each did or why it was refused."""
    received_at = as_utc(received_at)
    result = Received(received=len(calls))
    chosen = _checked(calls, result, received_at)
    with transaction(engine, rows=len(chosen)) as connection:
        kept = [(c.message_id, c.type.value) for c in chosen if c.type in KEPT and c.message_id]
        claimed = tracking.claim(connection, kept, received_at) if kept else set()
        fresh = [c for c in chosen if c.type not in KEPT or not c.message_id or c.message_id in claimed]
        result.duplicates += len(chosen) - len(fresh)
        _link(connection, fresh, received_at)
        who = _customers_of(connection, fresh)
        clock = FixedClock(received_at)
        refused: set[int] = set()
        profiles = [c for c in fresh if c.type in PROFILES]
        for generation in _generations(profiles, who, received_at):
            refused |= _profiles(connection, generation, who, result, playbook, clock, source)
        events = [c for c in fresh if c.type in EVENTS]
        if events:
            refused |= _events(connection, events, who, result, received_at, create_customers, clock)
        back = [c.message_id for c in fresh if c.index in refused and c.type in KEPT and c.message_id]
        if back:
            tracking.release(connection, back)
    result.errors.sort(key=lambda e: (e.index, e.field or ""))
    result.applied = result.received - result.rejected - result.duplicates
    return result


def _checked(calls: Sequence[Call], result: Received, received_at: datetime) -> list[Call]:
    """The calls that can be applied: each names a customer within the store's limits; a
    messageId repeated in the request is a duplicate of its first call."""
    chosen: list[Call] = []
    seen: set[str] = set()
    for call in calls:
        problem = _problem(call, received_at)
        if problem is not None:
            result.errors.append(CallError(call.index, *problem))
            continue
        if call.message_id is not None:
            if call.message_id in seen:
                result.duplicates += 1
                continue
            seen.add(call.message_id)
        chosen.append(call)
    return chosen


def _problem(call: Call, received_at: datetime) -> tuple[str, str] | None:
    try:
        occurred_at(call, received_at)
    except OverflowError:  # a sentAt thousands of years from its timestamp: no date is that far
        return ("sentAt" if call.sent_at is not None else call.timestamp_field), (
            f"sentAt and {call.timestamp_field} are too far apart: the corrected time is out of range; check the client's clock"
        )
    if call.user_id is None and call.anonymous_id is None:
        return "userId", "a call needs a userId or an anonymousId: the customer it is about"
    for name, value in (("userId", call.user_id), ("anonymousId", call.anonymous_id), ("messageId", call.message_id),
                        ("previousId", call.previous_id), ("groupId", call.group_id)):
        if value is not None and not value.strip():
            return name, f"{name} is empty"
        if value is not None and len(value) > ID_LIMIT:
            return name, f"{name} is longer than {ID_LIMIT} characters"
    if call.type is CallType.IDENTIFY:
        for name in call.traits:
            if name.startswith("consent_") and not is_consent_name(name):
                return f"traits.{name}", f"{NOT_A_CONSENT}; {CONSENT_NAMES_HINT}"
            if name.startswith("consent_") and name.endswith("_at") and name != "consent_at" and name[: -len("_at")] not in call.traits:
                return f"traits.{name}", f"{name} dates a consent but the call has no trait {name[: -len('_at')]}"
    return None


def _link(connection: Connection, calls: Sequence[Call], now: datetime) -> None:
    """Alias calls in time order, then the anonymous ids of calls that carry both ids."""
    for call in sorted((c for c in calls if c.type is CallType.ALIAS), key=lambda c: (occurred_at(c, now), c.index)):
        assert call.previous_id is not None and call.user_id is not None
        tracking.link(connection, call.previous_id, call.user_id, tracking.ALIAS, now)
    both = {(c.anonymous_id, c.user_id) for c in calls if c.type is not CallType.ALIAS and c.anonymous_id and c.user_id}
    for anonymous, user in sorted(both):  # type: ignore[arg-type]
        tracking.link(connection, anonymous, user, tracking.CALL, now)  # type: ignore[arg-type]


def _customers_of(connection: Connection, calls: Sequence[Call]) -> dict[int, str]:
    """Each call's customer (by index): its userId, else its anonymousId, after links."""
    named = {c.index: (c.user_id if c.user_id is not None else c.anonymous_id) for c in calls if c.type is not CallType.ALIAS}
    links = tracking.resolve(connection, [n for n in named.values() if n is not None])
    return {index: links.get(name, name) for index, name in named.items() if name is not None}


def _generations(calls: Sequence[Call], who: Mapping[int, str], now: datetime) -> list[list[Call]]:
    """Profile calls in rounds that each touch a customer once, in time order: the importer
    takes one row per customer, and two identifies of one customer apply one after the other."""
    rounds: list[list[Call]] = []
    count: dict[str, int] = defaultdict(int)
    for call in sorted(calls, key=lambda c: (occurred_at(c, now), c.index)):
        customer = who[call.index]
        if count[customer] == len(rounds):
            rounds.append([])
        rounds[count[customer]].append(call)
        count[customer] += 1
    return rounds


def _profiles(connection: Connection, calls: Sequence[Call], who: Mapping[int, str], result: Received,
              playbook: Playbook | None, clock: Clock, source: str) -> set[int]:
    """identify and group calls as customer records, one per customer; the refused calls' indexes."""
    declared = set(playbook.attributes) if playbook is not None else set()
    records, origins = [], []
    for call in calls:
        record, origin = _profile(call, who[call.index], declared)
        records.append(record)
        origins.append((call, origin))
    report = imports.customer_records(connection, records, playbook=playbook, clock=clock, consent_source=f"{source}:{calls[0].type.value}")
    for error in report.errors:
        call, origin = origins[error.row]
        result.errors.append(CallError(call.index, origin.get(error.column or "", None), error.reason))
    for note in report.not_regranted:
        call, origin = origins[note.row]
        result.not_regranted.append(CallError(call.index, origin.get(note.column or "", None), note.reason))
    return {origins[e.row][0].index for e in report.errors}


def _profile(call: Call, customer: str, declared: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The customer record of an identify or group call, and where each of its columns came from."""
    origin = {"id": "userId" if call.user_id is not None else "anonymousId"}
    record: dict[str, Any] = {"id": customer}
    attributes: dict[str, Any] = {}
    if call.type is CallType.GROUP:
        attributes["group_id"] = call.group_id
        origin["group_id"] = "groupId"
    for raw, value in call.traits.items():
        name = raw.strip()
        if not name or name == "id" or value is None:
            continue  # traits.id is the userId again
        path = f"traits.{raw}"
        snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()  # firstName -> first_name
        target = FIELD_TRAITS.get(name) or (name if is_consent_name(name) else None)
        if target is None and snake in imports.CUSTOMER_FIELDS:
            target = snake
        if target is not None:
            record[target], origin[target] = value, path
            continue
        attribute = snake if snake in declared else name  # a declared attribute under Segment's camelCase name
        attributes[attribute], origin[attribute] = value, path
    address = call.traits.get("address")
    if isinstance(address, Mapping):
        for part, target in (("country", "country"), ("state", "region")):
            value = address.get(part)
            if target not in record and isinstance(value, str) and _SUBDIVISION.match(value.strip()) and (target == "region" or len(value.strip()) == 2):
                record[target], origin[target] = value, f"traits.address.{part}"
    if "time_zone" not in record and call.time_zone:
        record["time_zone"], origin["time_zone"] = call.time_zone, "context.timezone"
    if attributes:
        record["attributes"] = attributes
    return record, origin


def _events(connection: Connection, calls: Sequence[Call], who: Mapping[int, str], result: Received, now: datetime,
            create_customers: bool, clock: Clock) -> set[int]:
    """track, page and screen calls as events; the refused calls' indexes."""
    records, origins = [], []
    for call in calls:
        record, origin = _event(call, who[call.index], now)
        records.append(record)
        origins.append((call, origin))
    report: ImportReport = imports.event_records(connection, records, create_customers=create_customers, clock=clock)
    for error in report.errors:
        call, origin = origins[error.row]
        result.errors.append(CallError(call.index, origin.get(error.column or "", None), error.reason))
    result.duplicates += report.unchanged
    result.events_written += report.inserted
    result.customers_created += report.customers_created
    result.consents_revoked += report.consents_revoked
    return {origins[e.row][0].index for e in report.errors}


def _event(call: Call, customer: str, now: datetime) -> tuple[dict[str, Any], dict[str, str]]:
    """The event record of a track, page or screen call, and where each of its columns came from."""
    origin = {"id": "messageId", "customer_id": "userId" if call.user_id is not None else "anonymousId",
              "occurred_at": call.timestamp_field, "type": "event" if call.type is CallType.TRACK else "type"}
    properties = dict(call.properties)
    if call.type is CallType.TRACK:
        assert call.event is not None
        kind, channel = event_type(call.event)
        properties.setdefault("event", call.event)
    else:
        kind, channel = PAGE_TYPE, None
        for key, value in (("name", call.name), ("category", call.category)):
            if value is not None:
                properties.setdefault(key, value)
    record: dict[str, Any] = {
        # Without a messageId a call cannot be told from its repeat: it gets an id of its own.
        "id": call.message_id or uuid.uuid4().hex,
        "customer_id": customer,
        "type": kind,
        "occurred_at": occurred_at(call, now).astimezone(timezone.utc).isoformat(),
    }
    if kind in ("purchase", "refund"):
        for key in REVENUE:
            if properties.get(key) is not None:
                record["revenue"], origin["revenue"] = properties[key], f"properties.{key}"
                break
    for key in LIFTED:
        value = properties.get(key)
        if isinstance(value, str) or (key == "decision_id" and isinstance(value, int) and not isinstance(value, bool)):
            record[key] = properties.pop(key)
            origin[key] = f"properties.{key}"
    if channel is not None and "channel" not in record and "channel" not in properties:
        record["channel"] = channel
    if properties:
        record["properties"] = properties
    return record, origin
