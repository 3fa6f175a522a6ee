"""Contact guardrails over a whole batch of candidate decisions: consent, caps, quiet hours.

The database does the per-customer lookups in the same query that selects the audience
(:func:`contact_columns` adds one column per fact), and the rules then run as NumPy
operations over the batch. Each blocked decision gets a reason code, so reports can say
which rule stopped how many messages.

Consent is :mod:`legato.guard.consent`'s rule, compiled into the audience query; contact
points are the channel registry's (:mod:`legato.channels`).
"""

from __future__ import annotations

import hashlib

from dataclasses import dataclass
from typing import Any
from datetime import datetime, timedelta, timezone

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Select, String, and_, case, func, literal, or_, select, union_all
from sqlalchemy import cast as sa_cast

from legato.channels import REGISTRY, normalize_contact
from legato.deliver.outbox import OUTGOING
from legato.errors import Invalid, NotFound
from legato.guard.consent import ALLOWED, MARKETING, ConsentBlock, ConsentRule
from legato.guard.quiet_hours import apply_quiet_hours, candidate_zones, zone_named
from legato.playbook.models import FrequencyCap, Guardrails
from legato.store.audit import record
from legato.store.hints import not_indexed
from legato.store.schema import consents, customers, decisions, inbound_messages, outbox, review_items, suppressions, traits



@dataclass(frozen=True)
class ContactFacts:
    """Per customer of a batch, the facts the contact rules need, by channel and by cap rule."""

    reachable: dict[str, npt.NDArray[np.bool_]]
    consented: dict[str, npt.NDArray[np.bool_]]
    revoked: dict[str, npt.NDArray[np.bool_]]
    cap_counts: list[npt.NDArray[np.int64]]
    cap_oldest: list[npt.NDArray[np.datetime64]]
    cap_latest: list[npt.NDArray[np.datetime64]] | None = None
    cap_times: list[npt.NDArray[np.object_]] | None = None  # comma-joined send instants, for calendar caps
    zones: list[tuple[str, ...]] | None = None  # candidate local zones per customer
    suppressed: npt.NDArray[np.bool_] | None = None  # on the global suppression / do-not-contact list
    whatsapp_window: npt.NDArray[np.bool_] | None = None  # wrote to us on WhatsApp in the last 24 hours
    regions: npt.NDArray[np.str_] | None = None  # "US-FL", or "US" when the region is unknown
    undeliverable: dict[str, npt.NDArray[np.bool_]] | None = None  # the channel's contact point hard-bounced


@dataclass(frozen=True)
class ContactVerdict:
    allowed: npt.NDArray[np.bool_]
    send_at: npt.NDArray[np.datetime64]  # possibly delayed
    reasons: npt.NDArray[np.object_]  # None where allowed without change, else a reason code
    delayed: npt.NDArray[np.bool_]


# WhatsApp's customer service window: a business may send a freeform message (not an
# approved template) only within 24 hours of the customer's last message (Meta's WhatsApp
# Business Messaging Policy). The cycle asks it for a page (contact_columns), the dispatcher
# for each message at send time (legato.guard.standing), both with this one rule.
WHATSAPP_WINDOW = timedelta(hours=24)
OUTSIDE_WHATSAPP_WINDOW = "whatsapp_outside_service_window"


def in_whatsapp_window(last_message_at: datetime | None, now: datetime) -> bool:
    """Whether a customer who last wrote on WhatsApp at ``last_message_at`` may get a freeform message ``now``."""
    if last_message_at is None:
        return False
    if last_message_at.tzinfo is None:
        last_message_at = last_message_at.replace(tzinfo=timezone.utc)
    return last_message_at > now - WHATSAPP_WINDOW


def contact_columns(
    query: Select[tuple[object, ...]],
    guardrails: Guardrails,
    channels: list[str],
    now: datetime,
    page: tuple[ColumnElement[str], ColumnElement[str]] | None = None,
    tagged: dict[str, list[str]] | None = None,
) -> Select[tuple[object, ...]]:
    """Add to an audience query (over ``customers``) the columns :func:`facts_from_columns` reads.

    ``tagged`` maps a tag to the ids of the creatives that carry it, for caps counted by tag.

    ``page`` bounds (exclusive low, inclusive high customer id) keep the per-customer counts
    to the page being read, so each page's query does not aggregate every recent send again.
    """
    # WhatsApp's 24-hour customer service window: opened by the customer's last message.
    replied = (
        select(literal(1))
        .where(
            inbound_messages.c.customer_id == customers.c.id,
            inbound_messages.c.channel == "whatsapp",
            inbound_messages.c.received_at > now - WHATSAPP_WINDOW,
        )
        .exists()
    )
    query = query.add_columns(
        case((replied, 1), else_=0).label("contact_whatsapp_window"),
        case((on_suppression_list(), 1), else_=0).label("contact_suppressed"),
        customers.c.time_zone.label("contact_zone"),
        customers.c.phone.label("contact_phone"),
        customers.c.country.label("contact_country"),
        customers.c.region.label("contact_region"),
    )
    for channel in channels:
        alias = consents.alias(f"consent_{channel}")
        query = query.outerjoin(
            alias,
            and_(alias.c.customer_id == customers.c.id, alias.c.channel == channel, alias.c.purpose == MARKETING),
        )
        spec = REGISTRY[channel]
        point = customers.c[spec.contact_field] if spec.contact_field else None
        # 1: reachable; 0: no contact point; 2: the contact point hard-bounced
        reachable = (
            case((point.is_(None), 0), (undeliverable(point, spec.contact_field), 2), else_=1) if point is not None else literal(1)
        )
        query = query.add_columns(
            reachable.label(f"reachable_{channel}"),
            ConsentRule.of(guardrails, channel).sql_verdict(alias, traits.c.purchase_count, now).label(f"consent_{channel}"),
        )
    for index, cap in enumerate(guardrails.frequency_caps):
        creatives = (tagged or {}).get(cap.tag, []) if cap.tag else None
        counted = _cap_counts(cap, now, page, creatives).alias(f"cap_{index}")
        query = query.outerjoin(counted, counted.c.customer_id == customers.c.id).add_columns(
            func.coalesce(counted.c.sent, 0).label(f"cap_count_{index}"),
            counted.c.oldest.label(f"cap_oldest_{index}"),
            counted.c.latest.label(f"cap_latest_{index}"),
            counted.c.times.label(f"cap_times_{index}"),
        )
    return query


def on_suppression_list() -> ColumnElement[bool]:
    """True for a customer whose id, e-mail address or phone number is on the suppression list."""
    return (
        select(literal(1))
        .where(
            or_(
                and_(suppressions.c.kind == "customer", suppressions.c.value == customers.c.id),
                and_(suppressions.c.kind == "email", suppressions.c.value == func.lower(customers.c.email)),
                and_(suppressions.c.kind == "phone", suppressions.c.value == customers.c.phone),
            )
        )
        .exists()
    )


SUPPRESSION_KINDS = ("customer", "email", "phone")  # the do-not-contact list: no marketing on any channel
UNDELIVERABLE = "undeliverable"  # an address or number that hard-bounced: no message of any purpose reaches it
# A device token FCM said is dead (UNREGISTERED, or not a valid registration token) is listed
# undeliverable too, as this prefix and a digest of the token (the token itself is the app's,
# not ours to keep twice): no push goes to it again, and a new token the app records (an
# import, an identify call) is another entry, so the customer is reachable again at once.
DEAD_TOKEN = "fcm-token:"


@dataclass(frozen=True)
class Suppression:
    kind: str
    value: str
    reason: str
    added_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "reason": self.reason, "added_at": self.added_at.isoformat()}


def _listed_form(kind: str, value: str, country: str | None, *, undeliverable: bool = False) -> str:
    kinds = (*SUPPRESSION_KINDS, UNDELIVERABLE) if undeliverable else SUPPRESSION_KINDS
    if kind not in kinds:
        raise Invalid(f"'{kind}' is not a suppression kind", hint=f"use {', '.join(kinds)}")
    if not value.strip():
        raise Invalid(f"the {kind} to list is empty", hint=f"give --{kind} VALUE")
    if kind == UNDELIVERABLE and value.strip().startswith(DEAD_TOKEN):  # a dead device token, as listed
        return value.strip()
    if kind == UNDELIVERABLE:  # an address that bounced: an e-mail address or a number
        return normalize_contact("email" if "@" in value else "phone", value, country)
    return value.strip() if kind == "customer" else normalize_contact(kind, value, country)


def add_suppression(
    engine: Any, kind: str, value: str, reason: str, now: datetime, *, country: str | None = None, by: str = "cli"
) -> str:
    """Put a customer id, e-mail address or phone number on the list (again: no change); audited.

    Addresses and numbers are put in their one form first (:func:`legato.channels.normalize_contact`),
    the form imports store, so ``+1 (415) 555-0100`` on the list stops ``+14155550100``;
    ``country`` reads a number written without its country code. Returns the value listed.
    """
    return list_entry(engine, kind, value, reason, now, country=country, by=by)[0].value


def list_entry(
    engine: Any, kind: str, value: str, reason: str, now: datetime, *, country: str | None = None, by: str = "cli"
) -> tuple[Suppression, bool]:
    """:func:`add_suppression`, answering with the entry as listed and whether it is new (an
    entry listed already keeps its own reason and date)."""
    if not reason.strip():
        raise Invalid("a suppression needs a reason", hint="say why, e.g. --reason 'asked by phone'")
    value = _listed_form(kind, value, country)
    with engine.begin() as connection:
        added = suppress(connection, kind, value, reason, now, by=by)
        row = connection.execute(select(suppressions).where(suppressions.c.kind == kind, suppressions.c.value == value)).one()
    return Suppression(row.kind, row.value, row.reason, row.added_at), added


def suppress(connection: Any, kind: str, value: str, reason: str, at: datetime, *, by: str) -> bool:
    """The one writer of new entries on the list: list ``value`` (already in its one form) as
    ``kind``, audited; False when it was listed already."""
    exists = connection.execute(select(suppressions.c.kind).where(suppressions.c.kind == kind, suppressions.c.value == value)).first()
    if exists is not None:
        return False
    connection.execute(suppressions.insert().values(kind=kind, value=value, reason=reason[:256], added_at=at))
    record(connection, at, by, "suppression_added", "suppression", f"{kind}:{value}", {"reason": reason})
    return True


def undeliverable(point: ColumnElement[Any], field: str) -> ColumnElement[bool]:
    """True where the contact point ``point`` (a customers column) is listed as undeliverable."""
    value = func.lower(point) if field == "email" else point
    return select(literal(1)).where(suppressions.c.kind == UNDELIVERABLE, suppressions.c.value == value).exists()


def dead_token_entry(token: str) -> str:
    """The suppression list's value for a push device token FCM reported dead."""
    return DEAD_TOKEN + hashlib.sha256(token.encode("utf-8")).hexdigest()


def dead_token(connection: Any, token: str) -> bool:
    """Whether FCM reported this device token dead (listed by :func:`suppress` through the dispatcher)."""
    value = dead_token_entry(token)
    return connection.execute(select(literal(1)).where(suppressions.c.kind == UNDELIVERABLE, suppressions.c.value == value)).first() is not None


def remove_suppression(engine: Any, kind: str, value: str, reason: str, by: str, now: datetime, *, country: str | None = None) -> Suppression:
    """Take an entry off the list, with who and why in the audit log; returns what was listed.

    Marketing may reach the contact point again only as its consent allows: removing it from
    the list grants nothing.
    """
    if not by.strip() or not reason.strip():
        raise Invalid("taking an entry off the do-not-contact list needs who and why", hint="give --by NAME and --reason TEXT")
    value = _listed_form(kind, value, country, undeliverable=True)
    with engine.begin() as connection:
        row = connection.execute(select(suppressions).where(suppressions.c.kind == kind, suppressions.c.value == value)).first()
        if row is None:
            raise NotFound(f"{kind} {value} is not on the suppression list", hint="see the list with `legato suppress list`")
        connection.execute(suppressions.delete().where(suppressions.c.kind == kind, suppressions.c.value == value))
        record(connection, now, by.strip(), "suppression_removed", "suppression", f"{kind}:{value}",
               {"reason": reason, "listed_reason": row.reason, "listed_at": row.added_at.isoformat()})
    return Suppression(row.kind, row.value, row.reason, row.added_at)


def list_suppressions(engine: Any, *, kind: str | None = None, limit: int = 100) -> tuple[list[Suppression], int]:
    """The newest entries first (up to ``limit``), and how many there are in all."""
    if kind is not None and kind not in (*SUPPRESSION_KINDS, UNDELIVERABLE):
        raise Invalid(f"'{kind}' is not a suppression kind", hint=f"use {', '.join((*SUPPRESSION_KINDS, UNDELIVERABLE))}")
    where = [suppressions.c.kind == kind] if kind is not None else []
    with engine.connect() as connection:
        rows = connection.execute(
            select(suppressions).where(*where).order_by(suppressions.c.added_at.desc(), suppressions.c.kind, suppressions.c.value).limit(limit)
        ).all()
        total = connection.execute(select(func.count()).select_from(suppressions).where(*where)).scalar_one()
    return [Suppression(r.kind, r.value, r.reason, r.added_at) for r in rows], int(total)


def _cap_counts(
    cap: FrequencyCap,
    now: datetime,
    page: tuple[ColumnElement[str], ColumnElement[str]] | None,
    creatives: list[str] | None = None,
) -> Select[tuple[object, ...]]:
    """Messages in the cap's window per customer: sent or on their way in the outbox (pending,
    claimed or waiting to be retried: ``legato.deliver.outbox.OUTGOING``), and those
    waiting for a person's approval (approving them must not break the cap)."""
    since = now - timedelta(days=cap.lookback_days)
    # Bounded to a page, the customer index must drive these, not the status one (see store.hints).
    sent_status = outbox.c.status if page is None else not_indexed(outbox.c.status)
    review_status = review_items.c.status if page is None else not_indexed(review_items.c.status)
    outgoing = select(outbox.c.customer_id, outbox.c.send_at).where(outbox.c.send_at > since, sent_status.in_(OUTGOING))
    waiting = (
        select(decisions.c.customer_id, decisions.c.send_at)
        .join(review_items, review_items.c.decision_id == decisions.c.id)
        .where(review_status == "open", decisions.c.send_at > since)
    )
    if cap.channel != "any":
        outgoing = outgoing.where(outbox.c.channel == cap.channel.value)
        waiting = waiting.where(decisions.c.channel == cap.channel.value)
    if creatives is not None:  # a tag's cap counts only that tag's creatives
        outgoing = outgoing.join(decisions, decisions.c.id == outbox.c.decision_id).where(decisions.c.creative_id.in_(creatives))
        waiting = waiting.where(decisions.c.creative_id.in_(creatives))
    if page is not None:
        low, high = page
        outgoing = outgoing.where(outbox.c.customer_id > low, outbox.c.customer_id <= high)
        waiting = waiting.where(decisions.c.customer_id > low, decisions.c.customer_id <= high)
    contacts = union_all(outgoing, waiting).subquery()
    return select(
        contacts.c.customer_id,
        func.count().label("sent"),
        func.min(contacts.c.send_at).label("oldest"),
        func.max(contacts.c.send_at).label("latest"),
        # Calendar caps need the instants themselves: which fall in the customer's local day or week.
        func.aggregate_strings(sa_cast(contacts.c.send_at, String), ",").label("times"),
    ).group_by(contacts.c.customer_id)


def facts_from_columns(
    columns: dict[str, npt.NDArray[np.generic]], guardrails: Guardrails, channels: list[str]
) -> ContactFacts:
    """Read the columns added by :func:`contact_columns` out of a fetched batch."""
    countries = [c or "" for c in columns["contact_country"].tolist()]
    regions = np.array(
        [region_code(country, region) for country, region in zip(countries, columns["contact_region"].tolist(), strict=True)],
        dtype=str,
    )
    zones = None
    if guardrails.quiet_hours or any(cap.calendar for cap in guardrails.frequency_caps):
        zones = [
            candidate_zones(zone, phone, country)
            for zone, phone, country in zip(columns["contact_zone"].tolist(), columns["contact_phone"].tolist(), countries, strict=True)
        ]
    return ContactFacts(
        suppressed=columns["contact_suppressed"].astype(bool),
        whatsapp_window=columns["contact_whatsapp_window"].astype(bool),
        zones=zones,
        regions=regions,
        reachable={c: columns[f"reachable_{c}"].astype(np.int64) == 1 for c in channels},
        undeliverable={c: columns[f"reachable_{c}"].astype(np.int64) == 2 for c in channels},
        # The consent rule's SQL verdict per channel: ALLOWED (0), else the code of why not.
        consented={c: columns[f"consent_{c}"].astype(np.int64) == ALLOWED for c in channels},
        revoked={c: columns[f"consent_{c}"].astype(np.int64) == ConsentBlock.REVOKED.code for c in channels},
        cap_counts=[columns[f"cap_count_{i}"].astype(np.int64) for i in range(len(guardrails.frequency_caps))],
        cap_oldest=[_to_datetime64(columns[f"cap_oldest_{i}"]) for i in range(len(guardrails.frequency_caps))],
        cap_latest=[_to_datetime64(columns[f"cap_latest_{i}"]) for i in range(len(guardrails.frequency_caps))],
        cap_times=[columns[f"cap_times_{i}"] for i in range(len(guardrails.frequency_caps))],
    )


def _to_datetime64(values: npt.NDArray[np.generic]) -> npt.NDArray[np.datetime64]:
    if values.dtype.kind == "M":
        return values.astype("datetime64[us]")
    return np.array(
        [np.datetime64(v.replace(tzinfo=None), "us") if v is not None else np.datetime64("NaT") for v in values],
        dtype="datetime64[us]",
    )


def unreachable_reasons(
    facts: ContactFacts,
    channel: str,
    promotional: npt.NDArray[np.bool_],
    templates: npt.NDArray[np.bool_] | None = None,
) -> npt.NDArray[np.object_]:
    """Why each customer cannot be sent ``channel`` at all now (None where they can).

    These are the facts no send time or cap changes: the suppression list, a contact point
    (one that hard-bounced is ``undeliverable`` for every purpose),
    consent, and for WhatsApp messages that are not pre-approved templates (``templates``
    False) the 24-hour service window. The engine uses them to offer a policy only the
    channels a customer can receive; :func:`check_contacts` applies them to the channel chosen.
    """
    n = len(promotional)
    reasons = np.full(n, None, dtype=object)

    def mark(mask: npt.NDArray[np.bool_], reason: str) -> None:
        reasons[mask & (reasons == None)] = reason  # noqa: E711 - elementwise on objects

    if facts.suppressed is not None:
        mark(promotional & facts.suppressed, "do_not_contact")
    if channel in facts.reachable:
        if facts.undeliverable is not None and channel in facts.undeliverable:
            mark(facts.undeliverable[channel], f"undeliverable:{channel}")
        mark(~facts.reachable[channel], f"no_contact_point:{channel}")
        mark(promotional & facts.revoked[channel], ConsentBlock.REVOKED.reason(channel))
        mark(promotional & ~facts.consented[channel], ConsentBlock.MISSING.reason(channel))
    if channel == "whatsapp" and facts.whatsapp_window is not None and templates is not None:
        # Outside the 24-hour window WhatsApp accepts only pre-approved templates (Meta's Business Policy).
        mark(~templates & ~facts.whatsapp_window, OUTSIDE_WHATSAPP_WINDOW)
    return reasons


def check_contacts(
    channels: npt.NDArray[np.object_],
    send_at: npt.NDArray[np.datetime64],
    facts: ContactFacts,
    guardrails: Guardrails,
    marketing: npt.NDArray[np.bool_] | None = None,
    tags: list[tuple[str, ...]] | None = None,
    templates: npt.NDArray[np.bool_] | None = None,
) -> ContactVerdict:
    """Apply the contact rules to proposed sends; rows whose channel is None are not sends.

    Marketing consent, caps and quiet hours apply to marketing messages only (``marketing``,
    default all); a transactional message (an order update) still needs a contact point.
    """
    n = len(channels)
    promotional = np.ones(n, dtype=bool) if marketing is None else marketing
    reasons = np.full(n, None, dtype=object)
    allowed = np.ones(n, dtype=bool)
    delayed = np.zeros(n, dtype=bool)
    send_at = send_at.copy()
    sends = channels != None  # noqa: E711 - elementwise comparison on an object array

    def block(mask: npt.NDArray[np.bool_], reason: str | npt.NDArray[np.object_]) -> None:
        hit = mask & allowed & sends
        reasons[hit] = reason if isinstance(reason, str) else reason[hit]
        allowed[hit] = False

    for channel in {c for c in channels[sends].tolist()}:
        on_channel = channels == channel
        standing = unreachable_reasons(facts, channel, promotional, templates)
        block(on_channel & (standing != None), standing)  # noqa: E711 - elementwise on objects
    for index, cap in enumerate(guardrails.frequency_caps):
        applies = sends if cap.channel == "any" else channels == cap.channel.value
        applies = applies & promotional & _in_region(facts, cap.region, n)
        if cap.tag is not None:
            carries = np.array([cap.tag in t for t in tags], dtype=bool) if tags is not None else np.zeros(n, dtype=bool)
            applies = applies & carries
        if cap.calendar is not None:
            over, until = _calendar_over(cap, applies & allowed, send_at, facts, index)
            later = over & (cap.on_block == "delay")
            send_at[later] = until[later]
            delayed |= later
            reasons[later] = f"delayed:frequency_cap:{cap.label}"
            block(over & ~later, f"frequency_cap:{cap.label}")
            continue
        over = applies & (facts.cap_counts[index] >= cap.max) & allowed
        if cap.on_block == "delay" and cap.max > 0:
            until = facts.cap_oldest[index] + np.timedelta64(int(cap.days * 86_400_000_000), "us")
            later = over & ~np.isnat(until)
            if facts.cap_latest is not None:
                # One message already waits at or after this send time: a second would only
                # pile up behind it, so this one is dropped rather than delayed.
                latest = facts.cap_latest[index]
                later &= np.isnat(latest) | (latest < send_at)
            send_at[later] = np.maximum(send_at[later], until[later])
            delayed |= later
            reasons[later] = f"delayed:frequency_cap:{cap.label}"
            over = over & ~later
        block(over, f"frequency_cap:{cap.label}")
    for rule in guardrails.quiet_hours:
        applies = allowed & promotional & (channels == rule.channel.value) & _in_region(facts, rule.region, n)
        if not applies.any() or facts.zones is None:
            continue
        quiet, resume = apply_quiet_hours(rule, applies, send_at, facts.zones)
        if rule.on_block == "delay":
            send_at[quiet] = resume[quiet]
            delayed |= quiet
            reasons[quiet] = f"delayed:quiet_hours:{rule.label}"
        else:
            block(quiet, f"quiet_hours:{rule.label}")
    return ContactVerdict(allowed=allowed, send_at=send_at, reasons=reasons, delayed=delayed)


def _calendar_over(
    cap: FrequencyCap, rows: npt.NDArray[np.bool_], send_at: npt.NDArray[np.datetime64], facts: ContactFacts, index: int
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.datetime64]]:
    """Rows whose local calendar day/week of the proposed send already holds ``max`` messages,
    and when the next such window starts. Only customers with recent messages are looked at."""
    over = np.zeros(len(rows), dtype=bool)
    until = send_at.copy()
    assert facts.cap_times is not None and facts.zones is not None
    times = facts.cap_times[index]
    for i in np.flatnonzero(rows & (facts.cap_counts[index] >= cap.max)).tolist():
        if not times[i]:
            continue
        zone = zone_named(facts.zones[i][0])
        proposed = send_at[i].astype("datetime64[us]").astype(datetime).replace(tzinfo=timezone.utc).astimezone(zone)
        start = proposed.replace(hour=0, minute=0, second=0, microsecond=0)
        if cap.calendar == "week":
            start = start - timedelta(days=start.weekday())
        end = start + timedelta(days=7 if cap.calendar == "week" else 1)  # aware arithmetic: wall clock kept
        sent = [_instant(text) for text in str(times[i]).split(",")]
        if sum(start <= t < end for t in sent) >= cap.max:
            over[i] = True
            until[i] = np.datetime64(end.astimezone(timezone.utc).replace(tzinfo=None), "us")
    return over, until


def _instant(text: str) -> datetime:
    value = datetime.fromisoformat(text.strip())
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def region_code(country: str | None, region: str | None) -> str:
    """A customer's place as rules name it: "US-FL", or "US" when the region is unknown."""
    return f"{country or ''}-{region}" if region else (country or "")


def in_region(code: str, rule_region: str) -> bool:
    """Whether a customer's region code is inside a rule's ("US" holds "US-FL"; "US-FL" only itself)."""
    return code == rule_region if "-" in rule_region else code.split("-")[0] == rule_region


def _in_region(facts: ContactFacts, region: str | None, n: int) -> npt.NDArray[np.bool_]:
    if region is None:
        return np.ones(n, dtype=bool)
    assert facts.regions is not None
    # in_region over the whole batch at once
    if "-" in region:
        return facts.regions == region
    return (facts.regions == region) | np.char.startswith(facts.regions, region + "-")
