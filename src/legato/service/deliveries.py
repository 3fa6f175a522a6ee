"""What comes back after a message left: its delivery status, bounces, complaints, opens and clicks.

:func:`record` is the one entry for every provider: the generic callback route
(``POST /v1/deliveries/events``), the SMTP bounce processing (a DSN mailed back, and a 5xx
the server answered during the session, which the dispatcher records in the transaction of
the message's result), Twilio's status callbacks
(``/v1/twilio/...``) and the open pixel and click links of ``legato serve`` all call it. It
finds the message (by Legato's message id, or by the provider's id the outbox recorded when
the message was sent), makes the report an **event of the message's customer attributed to
its decision** (``properties.decision_id``, so the outcome is credited to that decision and
no other) and writes it through the event importer (:mod:`legato.service.imports`), the
one owner of events, in one transaction with its effects:

=============  ===============  ==================================================================
report         event type       what it does at once
=============  ===============  ==================================================================
delivered      ``delivered``    nothing (the record that it arrived)
failed         ``delivery_failed``  nothing: a message the provider gave up on; when the address
                                is the cause (no such mailbox, no such number) report ``bounced``
bounced        ``bounce``       hard (the default): the address or number on the message's
                                channel becomes **undeliverable** (no message of any purpose
                                reaches it, :func:`legato.guard.contact.suppress`) and the
                                customer's waiting messages on that channel are cancelled;
                                soft: nothing
complained     ``complaint``    marketing consent on the channel is **revoked**
                                (:func:`legato.guard.consent.revoke`), the address goes on the
                                do-not-contact list, waiting messages on it are cancelled
opened         ``open``         nothing; credited to the decision as an open
clicked        ``click``        nothing; credited to the decision as a click (``properties.url``)
=============  ===============  ==================================================================

**Once.** Each report has an event id: the provider's own (``event_id``: its callback's id) or
one made from the message and the report (``delivered`` and ``failed`` once per message, a
bounce once per message and kind, a complaint once, an open once, a click once per link), so
a callback delivered twice, a pixel loaded on every reading and a link clicked again change
nothing the second time and answer the same (``new`` is False). Consent and the lists follow
the importer's rules: a revocation older than an express consent given since changes nothing.

**The message's state follows, forward only.** A new report moves the outbox row's
``delivery`` (:func:`legato.deliver.outbox.record_delivery`, its one writer) in the same
transaction: delivered → ``delivered``; failed and a hard bounce → ``failed``, with the
provider's words in the row's ``error``, and the decision of a sent message becomes
``failed`` too (:func:`legato.deliver.dispatch.delivery_failed`, the owner of a dispatched
decision's status); opened and clicked → ``opened``. Reports arrive out of order (a
``sent`` after ``delivered``, a ``delivered`` after ``failed``): the first of delivered and
failed stands and a late one only adds its event, so the state never goes backwards.

A report about a message the store does not hold is :class:`~legato.errors.NotFound` (nothing
written); one whose values are wrong is :class:`~legato.errors.Invalid` naming the field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from legato.clock import FixedClock, as_utc
from legato.deliver import outbox as outbox_writer
from legato.errors import Invalid, LegatoError, NotFound
from legato.monitor import metrics
from legato.service import imports
from legato.store.audit import record as audit
from legato.store.ingest import transaction
from legato.store.schema import outbox
from legato.store.status import DeliveryStatus


class Report(StrEnum):
    """What a provider says happened to a message."""

    DELIVERED = "delivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    OPENED = "opened"
    CLICKED = "clicked"


class Bounce(StrEnum):
    HARD = "hard"  # permanent: the address does not exist or refuses for good (SMTP 5xx)
    SOFT = "soft"  # temporary: a full mailbox, a server away (SMTP 4xx); changes nothing


# The event type each report is stored as (docs/events.md): bounce and complaint are the
# importer's own types, so an event file, Segment's "Email Bounced" and a callback act alike.
EVENT_TYPES: dict[Report, str] = {
    Report.DELIVERED: "delivered",
    Report.FAILED: "delivery_failed",
    Report.BOUNCED: "bounce",
    Report.COMPLAINED: "complaint",
    Report.OPENED: "open",
    Report.CLICKED: "click",
}
# The state each report moves the message to (a soft bounce moves nothing: the provider may still deliver it).
DELIVERY_OF: dict[Report, DeliveryStatus] = {
    Report.DELIVERED: DeliveryStatus.DELIVERED,
    Report.FAILED: DeliveryStatus.FAILED,
    Report.BOUNCED: DeliveryStatus.FAILED,
    Report.OPENED: DeliveryStatus.OPENED,
    Report.CLICKED: DeliveryStatus.OPENED,
}
REASON_CHARS = 500  # of a provider's reason kept with the event
URL_CHARS = 2_000  # of a clicked link kept with the event
ID_CHARS = 128  # of an event id (the store's limit)


@dataclass(frozen=True)
class Delivery:
    """One report about one message. Name the message by ``message_id`` (Legato's, which the
    message carried: the SMTP Message-ID's local part, the webhook-id, the tracked link's
    token) or by ``provider_id`` (the provider's id the outbox recorded when it was sent,
    e.g. Twilio's MessageSid)."""

    report: Report | str
    message_id: str | None = None
    provider_id: str | None = None
    reason: str | None = None  # the provider's words: an SMTP reply, an error code
    bounce: Bounce | str | None = None  # bounced only: hard (the default) or soft
    occurred_at: datetime | None = None  # when it happened per the provider; else when it was reported
    event_id: str | None = None  # the provider's id of this report, if it has one: makes a repeat a duplicate
    url: str | None = None  # clicked: the link followed
    source: str = "api"  # who reported it, e.g. "smtp", "twilio", "api:<key name>", "pixel"


@dataclass(frozen=True)
class Recorded:
    """What :func:`record` did: the event, the message and decision it is attributed to, and
    its effects (all 0 for a report that was recorded before)."""

    event_id: str
    event_type: str
    message_id: str
    decision_id: int
    customer_id: str
    channel: str
    new: bool  # False: the same report was recorded before; nothing changed now
    consents_revoked: int = 0
    undeliverable: int = 0  # addresses listed undeliverable (a hard bounce)
    suppressed: int = 0  # addresses put on the do-not-contact list (a complaint)
    cancelled: int = 0  # the customer's waiting messages on the channel, cancelled
    delivery: str | None = None  # the message's delivery state after this report (outbox.delivery)
    decision_failed: bool = False  # this report made the sent message's decision failed

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def record(engine: Engine | Connection, delivery: Delivery, *, now: datetime) -> Recorded:
    """Record one report about a message as an event attributed to its decision, with its
    effects on consent and the lists, in one transaction (see the module docstring): its own
    on an engine, the caller's on a connection (the dispatcher records a bounce it was
    answered during the session with the message's result).

    The same report arriving twice at once (a provider retrying a callback it thinks timed
    out, a pixel loaded by two readers) collides on the event's id; on an engine the second
    is then tried again and finds the first: a duplicate, ``new`` False."""
    if isinstance(engine, Connection):
        return _record(engine, delivery, now)
    try:
        return _record(engine, delivery, now)
    except IntegrityError:
        return _record(engine, delivery, now)


def _record(engine: Engine | Connection, delivery: Delivery, now: datetime) -> Recorded:
    report, bounce = _checked(delivery)
    occurred = as_utc(delivery.occurred_at) if delivery.occurred_at is not None else now
    with transaction(engine) as connection:
        message = _message(connection, delivery)
        event_id = (delivery.event_id.strip() if delivery.event_id else None) or _event_id(message.message_id, report, bounce, delivery.url)
        properties: dict[str, Any] = {"decision_id": str(message.decision_id), "message_id": message.message_id, "source": delivery.source[:64]}
        if delivery.reason:
            properties["reason"] = delivery.reason.strip()[:REASON_CHARS]
        if delivery.url:
            properties["url"] = delivery.url[:URL_CHARS]
        event: dict[str, Any] = {
            "id": event_id[:ID_CHARS],
            "customer_id": message.customer_id,
            "type": EVENT_TYPES[report],
            "occurred_at": occurred.isoformat(),
            "channel": message.channel,
            "decision_id": str(message.decision_id),
            "properties": properties,
        }
        if report is Report.BOUNCED:
            event["bounce_type"] = bounce.value if bounce else Bounce.HARD.value
        rows = [{k: v for k, v in event.items() if k != "properties"} | properties]
        imported = imports.event_records(connection, rows, clock=FixedClock(now))
        if imported.errors:  # the importer's own checks: a value it refuses, named
            error = imported.errors[0]
            raise Invalid(f"the {report.value} report cannot be recorded: {error.reason}", hint=f"check {error.column or 'the report'}; nothing was written")
        new = imported.inserted == 1
        if new:  # counted with the report, in its transaction (a repeat was counted the first time)
            metrics.count_delivery(connection, int(message.decision_id), event["type"])
        cancelled = 0
        stops = report is Report.COMPLAINED or (report is Report.BOUNCED and bounce is not Bounce.SOFT)
        if new and stops:
            # Nothing more goes to an address that bounced or complained: what waits is cancelled
            # now (the dispatcher's check at send time would refuse it anyway).
            cancelled = outbox_writer.cancel_for_customer(connection, message.customer_id, message.channel)
        state = DELIVERY_OF.get(report) if bounce is not Bounce.SOFT else None
        moved = outbox_writer.Delivered(False, DeliveryStatus(message.delivery) if message.delivery else None, None)
        if new and state is not None:
            moved = outbox_writer.record_delivery(connection, message.message_id, state, error=f"{report.value}: {properties.get('reason') or 'no reason given'}"[:REASON_CHARS])
        failed = moved.moved and moved.state is DeliveryStatus.FAILED and moved.status == outbox_writer.SENT
        if failed:
            from legato.deliver.dispatch import delivery_failed

            delivery_failed(connection, [int(message.decision_id)])
        if new and report in (Report.BOUNCED, Report.COMPLAINED, Report.FAILED):
            audit(connection, now, delivery.source[:64], f"delivery_{report.value}", "outbox", message.message_id,
                  {"channel": message.channel, "reason": properties.get("reason"), "bounce": event.get("bounce_type"),
                   "consents_revoked": imported.consents_revoked, "undeliverable": imported.undeliverable,
                   "suppressed": imported.suppressed, "cancelled": cancelled,
                   "delivery": moved.state.value if moved.state else None, "state_moved": moved.moved})
    return Recorded(
        event_id=event["id"], event_type=event["type"], message_id=message.message_id, decision_id=int(message.decision_id),
        customer_id=message.customer_id, channel=message.channel, new=new, consents_revoked=imported.consents_revoked,
        undeliverable=imported.undeliverable, suppressed=imported.suppressed, cancelled=cancelled,
        delivery=moved.state.value if moved.state else None, decision_failed=failed,
    )


def find_message(engine: Engine | Connection, *, message_id: str | None = None, provider_id: str | None = None) -> Any:
    """The outbox row a report names (message_id, decision_id, customer_id, channel, status, delivery), or None."""
    if (message_id is None) == (provider_id is None):
        raise Invalid("name the message by message_id or by provider_id (one of them)", hint="send the message_id the message carried")
    where = outbox.c.message_id == message_id if message_id is not None else outbox.c.provider_id == provider_id
    query = sa.select(outbox.c.message_id, outbox.c.decision_id, outbox.c.customer_id, outbox.c.channel, outbox.c.status,
                      outbox.c.delivery).where(where).limit(1)
    if isinstance(engine, Connection):
        return engine.execute(query).first()
    with engine.connect() as connection:
        return connection.execute(query).first()


def _message(connection: Connection, delivery: Delivery) -> Any:
    found = find_message(connection, message_id=delivery.message_id, provider_id=delivery.provider_id)
    if found is None:
        named = f"message {delivery.message_id}" if delivery.message_id is not None else f"provider id {delivery.provider_id}"
        raise NotFound(f"no message with {named} in the outbox", hint="send the id the message carried (its message_id) or the provider id it was sent under; nothing was written")
    return found


def _checked(delivery: Delivery) -> tuple[Report, Bounce | None]:
    try:
        report = Report(delivery.report)
    except ValueError:
        raise Invalid(f"'{delivery.report}' is not a delivery report", hint=f"use one of {', '.join(r.value for r in Report)}") from None
    bounce = None
    if delivery.bounce is not None:
        if report is not Report.BOUNCED:
            raise Invalid(f"bounce is for a bounced report, not {report.value}", hint="leave bounce out, or report bounced")
        try:
            bounce = Bounce(str(delivery.bounce).lower())
        except ValueError:
            raise Invalid(f"'{delivery.bounce}' is not a kind of bounce", hint="use hard (permanent, 5xx) or soft (temporary, 4xx)") from None
    if report is Report.CLICKED and not delivery.url:
        raise Invalid("a clicked report names the link that was followed (url)", hint="send the url")
    for name in ("message_id", "provider_id", "event_id"):
        value = getattr(delivery, name)
        if value is not None and (not value.strip() or len(value) > ID_CHARS):
            raise Invalid(f"{name} must have 1 to {ID_CHARS} characters", hint=f"send the {name} as the provider gave it")
    return report, bounce


def _event_id(message_id: str, report: Report, bounce: Bounce | None, url: str | None) -> str:
    """The id of a report without one of its own: the same report about the same message is
    the same event (a click once per link)."""
    if report is Report.BOUNCED:
        return f"{report.value}:{(bounce or Bounce.HARD).value}:{message_id}"
    if report is Report.CLICKED:
        return f"{report.value}:{hashlib.sha256((url or '').encode()).hexdigest()[:16]}:{message_id}"
    return f"{report.value}:{message_id}"


# --- opens and clicks: what legato serve's pixel and redirect links report -----------------


def opened(engine: Engine, token: str, *, now: datetime) -> Recorded:
    """The open pixel of a message was loaded: an ``open`` event of its decision, once per
    message. ``token`` is the message's signed token; a token that fails is
    :class:`~legato.errors.Invalid` and records nothing."""
    message_id = _token_message(engine, token)
    return record(engine, Delivery(Report.OPENED, message_id=message_id, source="open pixel"), now=now)


def click_target(engine: Engine, token: str, url: str, signature: str) -> str:
    """The address a tracked link leads to, once its token and the target's signature check out
    (:func:`legato.deliver.tokens.verify_link`); else :class:`~legato.errors.Invalid`: an altered
    target would make the redirect send anyone anywhere under the brand's name."""
    from legato.deliver.tokens import ring_for, verify_link

    message_id = _token_message(engine, token)
    if not url.startswith(("https://", "http://")) or not verify_link(message_id, url, signature, ring_for(engine)):
        raise Invalid("this link is not valid: its target was altered or its signature is wrong", hint="use the link exactly as the message gave it; nothing was recorded")
    return url


def _token_message(engine: Engine, token: str) -> str:
    from legato.deliver.tokens import ring_for
    from legato.trust.inbound import verified_message

    with engine.connect() as connection:
        return str(verified_message(connection, token, ring_for(engine), what="this link").message_id)


# --- e-mail that comes back: bounce reports (RFC 3464) and spam complaints (RFC 5965) ------


def from_report_email(raw: bytes) -> list[Delivery]:
    """The delivery reports in an e-mail a mail server or a mailbox provider sent back:

    - a **bounce** (a DSN, ``multipart/report; report-type=delivery-status``, RFC 3464): each
      recipient's ``Action: failed`` is ``bounced``, hard for a ``5.x.x`` status and soft for
      ``4.x.x``; ``delivered`` is ``delivered``; ``delayed`` and ``relayed`` say nothing yet;
    - a **complaint** (an ARF feedback report, ``report-type=feedback-report``, RFC 5965, as
      feedback loops send them): ``Feedback-Type: abuse`` is ``complained``.

    The message is the one whose ``Message-ID`` the report quotes (the returned headers or
    message): Legato's e-mail carries ``<message id@domain>``. An e-mail that is no such
    report, or quotes no Message-ID of ours, yields nothing; :class:`~legato.errors.Invalid`
    says which.
    """
    try:
        return _from_report_email(raw)
    except LegatoError:
        raise
    except Exception as exc:  # noqa: BLE001 - mail from outside can be broken in any way: say so, never a traceback
        raise Invalid(f"this e-mail cannot be read as a report: {type(exc).__name__}: {exc}"[:300],
                      hint="send the bounce or feedback report as it arrived, headers and all") from None


def _from_report_email(raw: bytes) -> list[Delivery]:
    import email
    from email.message import Message
    from email.policy import compat32

    parsed = email.message_from_bytes(raw, policy=compat32)
    if parsed.get_content_type() != "multipart/report":
        raise Invalid("this e-mail is not a delivery or feedback report (multipart/report)",
                      hint="send the bounce (RFC 3464) or the feedback-loop report (RFC 5965) as it arrived, headers and all")
    kind = (parsed.get_param("report-type") or "").lower()
    original: str | None = None
    fields: list[Message] = []
    for part in parsed.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            original = original or _quoted_message_id(part)
        elif ctype in ("message/delivery-status", "message/feedback-report"):
            fields.extend(_field_groups(part))
    if original is None:
        raise Invalid("the report quotes no Message-ID of the message it is about",
                      hint="forward the report with the returned headers (text/rfc822-headers or message/rfc822) attached")
    message_id = original.strip().strip("<>").split("@", 1)[0]
    reason_of = lambda group: (group.get("Diagnostic-Code") or group.get("Status") or "").strip() or None  # noqa: E731
    found: list[Delivery] = []
    if kind == "feedback-report":
        for group in fields:
            if (group.get("Feedback-Type") or "").strip().lower() == "abuse":
                found.append(Delivery(Report.COMPLAINED, message_id=message_id, reason="spam complaint (feedback loop)", source="feedback loop"))
                break
        return found
    for group in fields:
        action = (group.get("Action") or "").strip().lower()
        status = (group.get("Status") or "").strip()
        if action == "failed":
            bounce = Bounce.SOFT if status.startswith("4") else Bounce.HARD
            found.append(Delivery(Report.BOUNCED, message_id=message_id, bounce=bounce, reason=reason_of(group), source="bounce report"))
        elif action == "delivered":
            found.append(Delivery(Report.DELIVERED, message_id=message_id, reason=reason_of(group), source="bounce report"))
    return found


def record_report_email(engine: Engine, raw: bytes, *, now: datetime) -> list[Recorded]:
    """Record what a bounce or feedback e-mail reports (:func:`from_report_email`), each through :func:`record`."""
    return [record(engine, delivery, now=now) for delivery in from_report_email(raw)]


def _quoted_message_id(part: Any) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822: the message itself
        for inner in payload:
            if inner.get("Message-ID"):
                return str(inner.get("Message-ID"))
        return None
    import email
    from email.policy import compat32

    text = part.get_payload(decode=True) or b""
    headers = email.message_from_bytes(text if isinstance(text, bytes) else str(text).encode(), policy=compat32)
    value = headers.get("Message-ID")
    return str(value) if value else None


def _field_groups(part: Any) -> list[Any]:
    """The groups of fields of a delivery-status or feedback-report part (per message, then per recipient)."""
    import email
    from email.policy import compat32

    payload = part.get_payload()
    if isinstance(payload, list):
        return list(payload)
    text = part.get_payload(decode=True) or b""
    blocks = [b for b in text.replace(b"\r\n", b"\n").split(b"\n\n") if b.strip()]
    return [email.message_from_bytes(block, policy=compat32) for block in blocks]
