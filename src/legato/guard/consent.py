"""The one consent rule: may a message of this purpose go to this customer on this channel?

The cycle asks it for a whole page of customers at once, compiled to SQL
(:meth:`ConsentRule.sql_verdict` in the audience query); the dispatcher asks it again for
each message at send time and the review queue for the item a person looks at, in Python
(:meth:`ConsentRule.verdict`). Both forms are written here, side by side, and a conformance
test runs one table of consent histories through all three callers.

The rule (see docs/architecture.md, "Consent"):

- Only marketing needs consent; a transactional message (an order update) needs none.
- A revoked consent always blocks: an objection to direct marketing is absolute (GDPR
  Art. 21(3)), and it wins over a soft opt-in.
- A channel the playbook has no consent rule for needs none (CAN-SPAM's opt-out regime).
- Otherwise the customer needs a granted consent that has not expired and, under
  ``require: express``, of the express kind. An implied consent holds for
  :data:`IMPLIED_CONSENT_LIFETIME` (730 days, CASL's two years) from when it was given, or
  for the consent rule's ``implied_lifetime_days`` in the playbook; the rule applies it
  when it is asked, so changing the playbook changes it for every consent on file.
- ``existing_customer_exception``: with no statement on file at all, a past purchase counts
  as consent (ePrivacy Art. 13(2) "soft opt-in"). A statement on file, even an expired or
  implied one under ``require: express``, is the customer's answer and is not overridden.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_

from legato.playbook.models import Guardrails

MARKETING = "marketing"
TRANSACTIONAL = "transactional"
PURPOSES = (MARKETING, TRANSACTIONAL)

# CASL treats implied consent (an existing business relationship) as valid for two years
# from the purchase or inquiry that created it; 730 days is that period without leap days.
IMPLIED_CONSENT_LIFETIME = timedelta(days=730)


class ConsentStatus(str, Enum):
    GRANTED = "granted"
    REVOKED = "revoked"


class ConsentKind(str, Enum):
    EXPRESS = "express"
    IMPLIED = "implied"


class ConsentBlock(str, Enum):
    """Why the rule refuses a message; the reason codes say ``consent_revoked:sms`` and so on."""

    REVOKED = "consent_revoked"
    MISSING = "no_consent"

    def reason(self, channel: str) -> str:
        return f"{self.value}:{channel}"

    @property
    def code(self) -> int:
        """How :meth:`ConsentRule.sql_verdict` spells it: a small integer, cheap to read back by the million."""
        return _CODES[self]

    def explanation(self) -> str:
        if self is ConsentBlock.REVOKED:
            return "the customer revoked consent"
        return "no valid consent"


@dataclass(frozen=True)
class ConsentRecord:
    """The customer's statement on file for one channel and purpose (a ``consents`` row)."""

    status: str
    kind: str
    expires_at: datetime | None = None  # an expiry the source stated (imports state none)
    given_at: datetime | None = None  # when it was given: an implied consent's lifetime runs from it


@dataclass(frozen=True)
class ConsentRule:
    """The consent the playbook asks of one channel's marketing."""

    channel: str
    required: bool = False  # the playbook has a consent rule for the channel's marketing
    express_only: bool = False
    soft_opt_in: bool = False
    implied_lifetime: timedelta = IMPLIED_CONSENT_LIFETIME

    @classmethod
    def of(cls, guardrails: Guardrails, channel: str) -> ConsentRule:
        rule = next((r for r in guardrails.consent if r.channel.value == channel and r.purpose.value == MARKETING), None)
        if rule is None:
            return cls(channel)
        lifetime = timedelta(days=rule.implied_lifetime_days) if rule.implied_lifetime_days else IMPLIED_CONSENT_LIFETIME
        return cls(
            channel, required=True, express_only=rule.require == "express", soft_opt_in=rule.existing_customer_exception,
            implied_lifetime=lifetime,
        )

    # --- in Python: one message at a time ------------------------------------------------

    def verdict(self, purpose: str, record: ConsentRecord | None, purchases: int | None, now: datetime) -> ConsentBlock | None:
        """None when a message of ``purpose`` may go; else why not."""
        if purpose != MARKETING:
            return None
        if record is not None and record.status == ConsentStatus.REVOKED.value:
            return ConsentBlock.REVOKED
        if not self.required:
            return None
        if record is None:
            return None if self.soft_opt_in and (purchases or 0) > 0 else ConsentBlock.MISSING
        valid = (
            record.status == ConsentStatus.GRANTED.value
            and (record.expires_at is None or record.expires_at > now)
            and (
                record.kind != ConsentKind.IMPLIED.value
                or record.given_at is None
                or record.given_at > now - self.implied_lifetime
            )
            and (not self.express_only or record.kind == ConsentKind.EXPRESS.value)
        )
        return None if valid else ConsentBlock.MISSING

    # --- in SQL: a page of customers at once ----------------------------------------------

    def sql_verdict(self, consent: Any, purchases: ColumnElement[Any], now: datetime) -> ColumnElement[Any]:
        """The same rule for marketing over an outer-joined ``consents`` alias: ``ALLOWED`` (0)
        where it allows, else the :attr:`ConsentBlock.code`. ``purchases`` is the purchase count column."""
        revoked = consent.c.status == ConsentStatus.REVOKED.value
        if not self.required:
            return case((revoked, literal(ConsentBlock.REVOKED.code)), else_=literal(ALLOWED))
        valid = and_(
            consent.c.status == ConsentStatus.GRANTED.value,
            or_(consent.c.expires_at.is_(None), consent.c.expires_at > now),
            or_(consent.c.kind != ConsentKind.IMPLIED.value, given_at(consent) > now - self.implied_lifetime),
        )
        if self.express_only:
            valid = and_(valid, consent.c.kind == ConsentKind.EXPRESS.value)
        if self.soft_opt_in:
            valid = or_(valid, and_(consent.c.status.is_(None), func.coalesce(purchases, 0) > 0))
        return case(
            (revoked, literal(ConsentBlock.REVOKED.code)),
            (valid, literal(ALLOWED)),
            else_=literal(ConsentBlock.MISSING.code),
        )


def given_at(consent: Any) -> ColumnElement[Any]:
    """When a ``consents`` row's statement was made (the instant an implied consent's lifetime runs from)."""
    return consent.c.recorded_at


ALLOWED = 0
_CODES = {ConsentBlock.REVOKED: 1, ConsentBlock.MISSING: 2}
_BY_CODE = {code: block for block, code in _CODES.items()}


def block_of(code: int) -> ConsentBlock | None:
    """A :meth:`ConsentRule.sql_verdict` value read back."""
    return None if code == ALLOWED else _BY_CODE[int(code)]
