"""The one registry of channels: how each reaches a customer and what its messages must fit.

Every rule that differs by channel reads it here: which customer column holds the address
and what a valid one looks like (imports, the cycle's reachability, the dispatcher's
recipient), the length limits the content checks apply, and the rules a first message on
the channel must follow (a first text names the brand and says how to stop).

Sources for the limits: e-mail, RFC 5322 §2.1.1 asks for lines of at most 78 characters
and longer subjects are cut off in most inboxes; push, what common lock screens show before
truncating (a display limit, not a standard); WhatsApp, the body of a message template,
which marketing outside the 24-hour window must use, holds at most 1,024 characters (Meta
WhatsApp Business Platform, template components); SMS, a message of more than three parts
is costly and often split badly by handsets (parts are counted by :mod:`legato.guard.sms`).
First-text rules: CTIA Messaging Principles and Best Practices.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from legato.errors import LegatoError


class FirstMessageRule(str, Enum):
    """What the first message to an address on a channel must carry."""

    BRAND = "brand"  # the sender's name
    STOP = "stop"  # how to opt out, e.g. "Reply STOP to opt out"


@dataclass(frozen=True)
class Channel:
    name: str
    # The customers column holding the address; None where the customer id is the address
    # (push and webhook reach an app or system that knows the customer).
    contact_field: str | None = None
    contact_pattern: str | None = None  # a regular expression a valid address matches
    contact_max_length: int | None = None  # the column's length in the store
    heading: str | None = None  # "subject" or "title": the part shown above the body
    heading_label: str | None = None  # how the checked text and `legato check message` spell it
    max_heading: int | None = None
    max_body: int | None = None  # characters
    max_segments: int | None = None  # SMS parts
    first_message: frozenset[FirstMessageRule] = frozenset()

    def address(self, customer_id: str, email: str | None, phone: str | None) -> str | None:
        """Where a message on this channel goes for one customer; None when it cannot go."""
        if self.contact_field is None:
            return customer_id
        return {"email": email, "phone": phone}[self.contact_field] or None

    def heading_limit_reason(self, length: int) -> str:
        if self.name == "email":
            return f"subject of {length} characters; keep it to {self.max_heading}"
        return f"{self.name} {self.heading} of {length} characters; lock screens cut it after {self.max_heading}"


# A deliberately loose shape: one "@" with something on either side. Deliverability is the
# provider's to judge; this keeps typing slips (a name in the e-mail column) out of the store.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"

REGISTRY: dict[str, Channel] = {
    "email": Channel(
        "email", contact_field="email", contact_pattern=EMAIL_PATTERN, contact_max_length=320,
        heading="subject", heading_label="Subject:", max_heading=78,
    ),
    "sms": Channel(
        "sms", contact_field="phone", contact_max_length=32, max_segments=3,
        first_message=frozenset({FirstMessageRule.BRAND, FirstMessageRule.STOP}),
    ),
    "push": Channel("push", heading="title", heading_label="Title:", max_heading=50, max_body=150),
    "whatsapp": Channel("whatsapp", contact_field="phone", contact_max_length=32, max_body=1024),
    "webhook": Channel("webhook"),
}
NAMES: tuple[str, ...] = tuple(REGISTRY)
CONTACT_FIELDS: dict[str, int] = {
    spec.contact_field: spec.contact_max_length for spec in REGISTRY.values() if spec.contact_field and spec.contact_max_length
}


def channel(name: str) -> Channel:
    """The registry entry of ``name``; an unknown channel is a :class:`LegatoError` naming the known ones."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise LegatoError(f"unknown channel '{name}'", hint=f"use one of {', '.join(NAMES)}")
    return spec
