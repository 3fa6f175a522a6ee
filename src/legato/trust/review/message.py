"""The message a reviewer sees: the decision's creative (or a reviewer's edit of it) rendered
for the customer and checked through the one check of a message (:mod:`legato.guard.message`),
the very check the cycle and the dispatcher run; purpose and channel are the creative's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row

from legato.deliver.render import edited_creative, variant_hash
from legato.deliver.render import Rendered
from legato.guard.findings import Finding, checked_text, layout
from legato.guard.message import MessageCheck, MessageChecker, Recipient, Variant, as_message
from legato.playbook.models import Creative, Playbook
from legato.store.playbook_versions import Versions
from legato.trust.review.model import ReviewConflict, ReviewInvalid, finding_dict

PREVIEW_TOKEN = "preview"  # the unsubscribe token before the message has an outbox row


def decision_playbook(connection: Connection, row: Row[Any], given: Playbook | None) -> Playbook | None:
    """The playbook an item's message is rendered and checked from: its decision's version;
    for an item without one (decided before versions were stored, or not a decision), ``given``."""
    version = getattr(row, "playbook_version_id", None)
    return Versions().for_decision(connection, version, given)


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


def render_and_check(playbook: Playbook, creative: Creative, row: Row[Any], customer: Row[Any] | None, token: str) -> MessageCheck:
    """The one check of the message for this item's customer, as the dispatcher runs it."""
    if customer is None:
        raise ReviewConflict(f"review item {row.id}: customer '{row.customer_id}' is no longer in the store", hint="reject the item")
    offers = {o.id: o for o in playbook.offers}
    if row.offer_id is not None and row.offer_id not in offers:
        raise ReviewInvalid(f"review item {row.id}: the playbook has no offer '{row.offer_id}'", hint="use the playbook the agent ran on")
    variant = Variant(creative, offers.get(row.offer_id or ""), variant_hash(creative, row.offer_id))
    recipient = Recipient(customer.id, customer.email, customer.phone, customer.attributes)
    return MessageChecker(playbook).check(variant, recipient=recipient, token=token)


def checked(check: MessageCheck, rendered: Rendered | None) -> str | None:
    """The text a finding's span indexes into (:func:`legato.guard.findings.checked_text`) for ``rendered``."""
    return checked_text(as_message(check.channel, check.purpose, rendered)) if rendered is not None else None


def finding_views(check: MessageCheck) -> list[dict[str, Any]]:
    """Each finding of ``check`` as a reviewer reads it: its rule and span, ``in`` the text the
    span indexes (``variant``: the message for a stand-in customer; ``copy``: this customer's),
    ``excerpt``, the words it points at in that text (empty where it could not be rendered),
    and ``whole``: it is about the body as a whole (something missing, such as the unsubscribe
    link), not about some of its words."""
    def view(finding: Finding, where: str, rendered: Rendered | None) -> dict[str, Any]:
        start, end = finding.span
        place = layout(as_message(check.channel, check.purpose, rendered)) if rendered is not None else None
        excerpt = place.text[start:end] if place is not None else ""
        whole = place is None or (start, end) == place.body or (start <= 0 and end >= len(place.text))
        return finding_dict(finding) | {"in": where, "excerpt": excerpt, "whole": whole}

    return [view(f, "variant", check.variant_text) for f in check.variant_findings] + [view(f, "copy", check.rendered) for f in check.copy_findings]
