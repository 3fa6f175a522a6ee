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

Every address and number has one form, made by :func:`normalize_contact` (the import, the
suppression list, the dispatcher's recipient all call it): phone numbers in E.164
(``+14155550100``, by the ``phonenumbers`` library); e-mail addresses trimmed and
lower-cased, local part included. RFC 5321 lets a mailbox's local part be case-sensitive,
but no mail provider in use treats it so, and the do-not-contact list has always matched
addresses without regard to case: one key for sending and for suppression is worth more
than a distinction nobody makes. Dots and ``+tags`` are kept (dropping them is one
provider's convention and would join other providers' distinct mailboxes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import TYPE_CHECKING

import phonenumbers

from legato.errors import Invalid, LegatoError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa


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
        """Where a message on this channel goes for one customer, in its one form
        (:func:`normalize_contact`); None when it cannot go."""
        if self.contact_field is None:
            return customer_id
        value = {"email": email, "phone": phone}[self.contact_field]
        if not value:
            return None
        # Imports store the one form already; a value stored before they did is put in it here.
        return contact_or_none(self.contact_field, value) or value

    def heading_limit_reason(self, length: int) -> str:
        if self.name == "email":
            return f"subject of {length} characters; keep it to {self.max_heading}"
        return f"{self.name} {self.heading} of {length} characters; lock screens cut it after {self.max_heading}"


class ContactError(Invalid):
    """An address or number that is not one: the reason, worded for a row error or a command."""


PHONE_HINT = "write it with its country code, e.g. +1 415 555 0100, or give the customer's country"


@lru_cache(maxsize=65_536)
def normalize_phone(value: str, country: str | None = None) -> str:
    """A phone number in E.164 (``+14155550100``). A number without ``+`` is read in
    ``country`` (ISO 3166-1 alpha-2), and refused when no country is given: Legato does not
    guess where a national number belongs."""
    text = value.strip()
    region = (country or "").strip().upper() or None
    if sum(char.isdigit() for char in text) < 3:
        raise ContactError(f"'{_short(text)}' is not a phone number", hint=PHONE_HINT)
    if not text.startswith(("+", "00")) and region is None:
        raise ContactError(f"'{_short(text)}' has no country code", hint=PHONE_HINT)
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ContactError(f"'{_short(text)}' is not a phone number", hint=PHONE_HINT) from None
    if not phonenumbers.is_valid_number(number):
        raise ContactError(f"'{_short(text)}' is not a valid phone number", hint=PHONE_HINT)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_email(value: str) -> str:
    """An e-mail address trimmed and lower-cased (see the module's note on the local part)."""
    text = value.strip().lower()
    if not re.match(EMAIL_PATTERN, text):
        raise ContactError(f"'{_short(text)}' is not an email address", hint="an address has one @ with text on either side, e.g. jane@example.com")
    return text


def normalize_emails(values: "pa.Array") -> "tuple[pa.Array, np.ndarray]":
    """:func:`normalize_email` over a column at once (an import of a million rows): the
    normalized text and a mask of the values that are not addresses (nulls stay null)."""
    import numpy as np
    import pyarrow.compute as pc

    text = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    shaped = pc.fill_null(pc.match_substring_regex(text, EMAIL_PATTERN), True)
    return text, ~np.asarray(shaped.to_numpy(zero_copy_only=False), dtype=bool)


def normalize_contact(field: str, value: str, country: str | None = None) -> str:
    """The one form of a value of a contact column (``email`` or ``phone``); :class:`ContactError` if it is none."""
    if field == "email":
        return normalize_email(value)
    if field == "phone":
        return normalize_phone(value, country)
    raise LegatoError(f"'{field}' is not a contact column", hint=f"use one of {', '.join(CONTACT_FIELDS)}")


def contact_or_none(field: str, value: str, country: str | None = None) -> str | None:
    """:func:`normalize_contact`, None for a value that is not an address or number."""
    try:
        return normalize_contact(field, value, country)
    except ContactError:
        return None


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


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
