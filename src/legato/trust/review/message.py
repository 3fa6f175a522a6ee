"""The message a reviewer sees: the decision's creative (or a reviewer's edit of it) rendered
for the customer exactly as the dispatcher renders it, and checked as the dispatcher checks it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from legato.deliver.dispatch import customer_context, edited_creative, message_context
from legato.deliver.render import CreativeTemplate, variant_hash
from legato.guard.content import ContentChecker, Finding, Message
from legato.playbook.models import Creative, Playbook
from legato.trust.review.model import ReviewConflict, ReviewInvalid

PREVIEW_TOKEN = "preview"  # the unsubscribe token before the message has an outbox row


def current_creative(playbook: Playbook, row: Row[Any]) -> Creative:
    creative = next((c for c in playbook.creatives if c.id == row.creative_id), None)
    if creative is None:
        raise ReviewInvalid(
            f"review item {row.id}: the playbook has no creative '{row.creative_id}'",
            hint="use the playbook the agent ran on (--playbook)",
        )
    return edited_creative(creative, row.content_override) if row.content_override else creative


def playbook_hash(playbook: Playbook, row: Row[Any]) -> str | None:
    creative = next((c for c in playbook.creatives if c.id == row.creative_id), None)
    return variant_hash(creative, row.offer_id) if creative else None


def original_hash(row: Row[Any]) -> str | None:
    return (row.content_override or {}).get("original_hash", row.content_hash)


def render_and_check(playbook: Playbook, creative: Creative, row: Row[Any], customer: Row[Any] | None, token: str) -> tuple[Any, list[Finding]]:
    """Render as the dispatcher does, then run the content checks the dispatcher runs."""
    if customer is None:
        raise ReviewConflict(f"review item {row.id}: customer '{row.customer_id}' is no longer in the store", hint="reject the item")
    offers = {o.id: o for o in playbook.offers}
    if row.offer_id is not None and row.offer_id not in offers:
        raise ReviewInvalid(f"review item {row.id}: the playbook has no offer '{row.offer_id}'", hint="use the playbook the agent ran on")
    person = customer_context(customer.id, customer.email, customer.phone, customer.attributes)
    rendered = CreativeTemplate(creative).render(message_context(playbook, person, offers.get(row.offer_id or ""), token))
    channel = creative.channel.value
    findings = ContentChecker.for_playbook(playbook).check(
        Message(channel=channel, body=rendered.body, subject=rendered.subject, title=rendered.title),
        offer_id=row.offer_id,
        # As the engine checks variants: fit to be the first SMS to a number (the strictest rules).
        first_sms=channel in ("sms", "whatsapp"),
        allowed_personal=[v for v in (customer.email, customer.phone) if v],
    )
    return rendered, findings
