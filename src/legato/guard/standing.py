"""Can this one customer be sent this message now? The dispatcher asks it for each message at
send time, the review queue for the item a person looks at.

The answer is the cycle's, one customer at a time: the suppression list, the contact point
(:mod:`legato.channels`) and the consent rule (:mod:`legato.guard.consent`), giving the same
reason codes in the same order as :func:`legato.guard.contact.unreachable_reasons` gives a
whole page. Then, for marketing, a reply of the customer's that may be an opt-out and waits
for a person (:data:`legato.trust.optout.POSSIBLE_OPT_OUT`): marketing to them pauses until
the person decides. (The cycle leaves such a customer alone altogether, as it does anyone
whose message waits for a person: ``awaiting_review`` in its audience query.)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, select

from legato.channels import REGISTRY
from legato.guard.consent import MARKETING, ConsentRecord, ConsentRule, given_at
from legato.guard.contact import OUTSIDE_WHATSAPP_WINDOW, in_whatsapp_window, on_suppression_list, undeliverable
from legato.playbook.models import Guardrails
from legato.store.schema import consents, customers, inbound_messages, review_items, traits
from legato.store.status import ReviewKind, ReviewStatus

POSSIBLE_OPT_OUT = "possible_opt_out"  # legato.trust.optout.POSSIBLE_OPT_OUT (guard does not import trust)


def standing_columns(channel: ColumnElement[str]) -> list[ColumnElement[Any]]:
    """The facts :func:`standing_reason` reads, as columns of a query over ``customers``
    (joined with :func:`standing_joins`) for a message on ``channel``."""
    consent = _SEND_TIME_CONSENT
    return [
        customers.c.id.label("standing_customer"),
        customers.c.email.label("standing_email"),
        customers.c.phone.label("standing_phone"),
        consent.c.status.label("standing_consent_status"),
        consent.c.kind.label("standing_consent_kind"),
        consent.c.expires_at.label("standing_consent_expires_at"),
        given_at(consent).label("standing_consent_given_at"),
        traits.c.purchase_count.label("standing_purchases"),
        on_suppression_list().label("standing_suppressed"),
        _unclear_opt_out_open().label("standing_unclear_opt_out"),
        undeliverable(customers.c.email, "email").label("standing_undeliverable_email"),
        undeliverable(customers.c.phone, "phone").label("standing_undeliverable_phone"),
        _last_whatsapp_message(channel).label("standing_whatsapp_last"),
    ]


def _last_whatsapp_message(channel: ColumnElement[str]) -> ColumnElement[Any]:
    """When the customer last wrote on WhatsApp (for a WhatsApp message only): its service window."""
    last = (
        select(func.max(inbound_messages.c.received_at))
        .where(inbound_messages.c.customer_id == customers.c.id, inbound_messages.c.channel == "whatsapp")
        .scalar_subquery()
    )
    return case((channel == "whatsapp", last), else_=None)


def _unclear_opt_out_open() -> ColumnElement[bool]:
    """Whether a reply of the customer's that may be an opt-out waits for a person."""
    return exists(
        select(review_items.c.id)
        .join(inbound_messages, inbound_messages.c.id == review_items.c.inbound_message_id)
        .where(
            inbound_messages.c.customer_id == customers.c.id,
            review_items.c.kind == ReviewKind.CONVERSATION,
            review_items.c.status == ReviewStatus.OPEN,
            review_items.c.reason == POSSIBLE_OPT_OUT,
        )
    )


_SEND_TIME_CONSENT = consents.alias("send_time_consent")


def standing_joins(source: Any, channel: ColumnElement[str]) -> Any:
    """``source`` (which holds ``customers``) outer-joined with the marketing consent on
    ``channel`` and the customer's traits."""
    consent = _SEND_TIME_CONSENT
    return source.outerjoin(traits, traits.c.customer_id == customers.c.id).outerjoin(
        consent, and_(consent.c.customer_id == customers.c.id, consent.c.channel == channel, consent.c.purpose == MARKETING)
    )


def standing_reason(
    guardrails: Guardrails, row: Any, channel: str, purpose: str, now: datetime, *, template: bool | None = None
) -> str | None:
    """Why one customer cannot be sent a message of ``purpose`` on ``channel`` now (None if they can).

    The same reasons, in the same order, as :func:`unreachable_reasons` gives the cycle:
    the suppression list, the contact point (missing, or hard-bounced), the consent rule,
    then for WhatsApp, when ``template`` says whether the creative is an approved template,
    the 24-hour service window (a freeform message decided inside it may be due after it closed).
    """
    marketing = purpose == MARKETING
    if marketing and row.standing_suppressed:
        return "do_not_contact"
    spec = REGISTRY[channel]
    if spec.address(row.standing_customer, row.standing_email, row.standing_phone) is None:
        return f"no_contact_point:{channel}"
    if spec.contact_field is not None and getattr(row, f"standing_undeliverable_{spec.contact_field}"):
        return f"undeliverable:{channel}"
    status = row.standing_consent_status
    record = (
        ConsentRecord(status, row.standing_consent_kind, row.standing_consent_expires_at, row.standing_consent_given_at)
        if status
        else None
    )
    block = ConsentRule.of(guardrails, channel).verdict(purpose, record, row.standing_purchases, now)
    if block is not None:
        return block.reason(channel)
    if channel == "whatsapp" and template is False and not in_whatsapp_window(getattr(row, "standing_whatsapp_last", None), now):
        return OUTSIDE_WHATSAPP_WINDOW
    if marketing and getattr(row, "standing_unclear_opt_out", False):
        return POSSIBLE_OPT_OUT
    return None


def standing_now(connection: Any, guardrails: Guardrails, customer_id: str, channel: str, purpose: str, now: datetime) -> str | None:
    """:func:`standing_reason` for one customer read from the store (the review queue's question)."""
    query = select(*standing_columns(literal(channel))).select_from(standing_joins(customers, literal(channel)))
    row = connection.execute(query.where(customers.c.id == customer_id)).first()
    if row is None:
        return "customer_unknown"
    return standing_reason(guardrails, row, channel, purpose, now)


STANDING_TEXT = {
    "do_not_contact": "the customer is on the do-not-contact list",
    "consent_revoked": "the customer revoked consent",
    "no_consent": "no valid consent",
    "no_contact_point": "the customer has no contact point for the channel",
    "undeliverable": "the customer's address or number on the channel hard-bounced",
    "customer_unknown": "the customer is no longer in the store",
    POSSIBLE_OPT_OUT: "a reply of the customer's that may be an opt-out waits for a person",
    OUTSIDE_WHATSAPP_WINDOW: "the customer last wrote on WhatsApp more than 24 hours ago and the creative is not an approved template",
}


def explain(reason: str) -> str:
    """A reason code of :func:`standing_reason` in words."""
    return STANDING_TEXT.get(reason.split(":", 1)[0], reason)
