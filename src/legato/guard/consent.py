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

from sqlalchemy import ColumnElement, Connection, and_, case, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from legato.playbook.models import Guardrails
from legato.store.schema import consent_history, consents

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
    """When a ``consents`` row's statement was made (the instant an implied consent's lifetime runs
    from): its own time, else when it was recorded."""
    return func.coalesce(consent.c.stated_at, consent.c.recorded_at)


ALLOWED = 0
_CODES = {ConsentBlock.REVOKED: 1, ConsentBlock.MISSING: 2}
_BY_CODE = {code: block for block, code in _CODES.items()}


def block_of(code: int) -> ConsentBlock | None:
    """A :meth:`ConsentRule.sql_verdict` value read back."""
    return None if code == ALLOWED else _BY_CODE[int(code)]


# --- history: which statement on file stands -------------------------------------------
#
# Each statement carries when the customer made it (``stated_at``: the file's consent date,
# the reply's or event's time; None when the source did not say). The latest wins, with one
# asymmetry, because a no stays a no: only an express consent dated after a revocation undoes
# it. An implied consent (a purchase) never does, and neither does a consent whose date is
# unknown, whatever its kind: re-importing the usual CRM file after a STOP re-grants nothing.
# A revocation of unknown date is taken to stand from when it was recorded, and it wins over
# any grant on file but an express one dated after it. Between grants the latest wins, an
# undated one never replaces a dated one, and an implied one never replaces an express one.


class Change(int, Enum):
    """What a new statement does to the one on file (the values are what :func:`sql_change` yields)."""

    KEEP = 0  # the statement on file stands (same, or newer)
    WRITE = 1  # the new statement replaces it
    REFUSED_IMPLIED = 2  # a grant of a revoked consent refused: implied consent never undoes a revocation
    REFUSED_UNDATED = 3  # refused: the grant has no date, so it cannot be shown to be newer
    REFUSED_OLDER = 4  # refused: the grant is dated at or before the revocation

    @property
    def refused(self) -> bool:
        return self.value >= Change.REFUSED_IMPLIED.value


@dataclass(frozen=True)
class Statement:
    """A consent statement: on file (with ``recorded_at``) or new."""

    status: str
    kind: str
    stated_at: datetime | None = None  # when the customer made it, per its source
    recorded_at: datetime | None = None  # when Legato recorded it (statements on file)

    @property
    def revoked_since(self) -> datetime | None:
        """When a revocation took effect: its own time, else when it was recorded."""
        return self.stated_at or self.recorded_at


def change(stored: Statement | None, new: Statement) -> Change:
    """What ``new`` does to the statement on file, ``stored`` (None: there is none)."""
    if stored is None:
        return Change.WRITE
    revoked, granted = ConsentStatus.REVOKED.value, ConsentStatus.GRANTED.value
    if stored.status == revoked:
        if new.status == revoked:
            later = new.stated_at is not None and (stored.revoked_since is None or new.stated_at > stored.revoked_since)
            return Change.WRITE if later else Change.KEEP
        if new.kind != ConsentKind.EXPRESS.value:
            return Change.REFUSED_IMPLIED
        if new.stated_at is None:
            return Change.REFUSED_UNDATED
        if stored.revoked_since is not None and new.stated_at <= stored.revoked_since:
            return Change.REFUSED_OLDER
        return Change.WRITE
    if new.status == revoked:
        # Only a newer express grant on file outlives a revocation.
        newer_express = (
            stored.kind == ConsentKind.EXPRESS.value
            and stored.stated_at is not None
            and new.stated_at is not None
            and stored.stated_at > new.stated_at
        )
        return Change.KEEP if newer_express else Change.WRITE
    assert new.status == granted and stored.status == granted
    if stored.kind == ConsentKind.EXPRESS.value and new.kind != ConsentKind.EXPRESS.value:
        return Change.KEEP  # an implied consent (a purchase) takes nothing from an express one
    if new.stated_at is None:
        return Change.WRITE if stored.stated_at is None and new.kind != stored.kind else Change.KEEP
    if stored.stated_at is None or new.stated_at > stored.stated_at:
        return Change.WRITE
    return Change.WRITE if new.stated_at == stored.stated_at and new.kind != stored.kind else Change.KEEP


def sql_change(stored: Any, new: Any) -> ColumnElement[Any]:
    """:func:`change` over an outer join: ``stored`` a ``consents`` alias, ``new`` any table
    with ``status``, ``kind`` and ``stated_at`` columns; yields a :class:`Change` value."""
    revoked, express = ConsentStatus.REVOKED.value, ConsentKind.EXPRESS.value
    since = func.coalesce(stored.c.stated_at, stored.c.recorded_at)
    grant_of_revoked = case(
        (new.c.kind != express, literal(Change.REFUSED_IMPLIED.value)),
        (new.c.stated_at.is_(None), literal(Change.REFUSED_UNDATED.value)),
        (new.c.stated_at <= since, literal(Change.REFUSED_OLDER.value)),
        else_=literal(Change.WRITE.value),
    )
    revocation_of_granted = case(
        (
            and_(stored.c.kind == express, stored.c.stated_at.is_not(None), new.c.stated_at.is_not(None), stored.c.stated_at > new.c.stated_at),
            literal(Change.KEEP.value),
        ),
        else_=literal(Change.WRITE.value),
    )
    grant_of_granted = case(
        (and_(stored.c.kind == express, new.c.kind != express), literal(Change.KEEP.value)),
        (new.c.stated_at.is_(None), case((and_(stored.c.stated_at.is_(None), new.c.kind != stored.c.kind), literal(Change.WRITE.value)), else_=literal(Change.KEEP.value))),
        (or_(stored.c.stated_at.is_(None), new.c.stated_at > stored.c.stated_at), literal(Change.WRITE.value)),
        (and_(new.c.stated_at == stored.c.stated_at, new.c.kind != stored.c.kind), literal(Change.WRITE.value)),
        else_=literal(Change.KEEP.value),
    )
    return case(
        (stored.c.status.is_(None), literal(Change.WRITE.value)),
        (
            stored.c.status == revoked,
            case(
                (new.c.status == revoked, case((and_(new.c.stated_at.is_not(None), new.c.stated_at > since), literal(Change.WRITE.value)), else_=literal(Change.KEEP.value))),
                else_=grant_of_revoked,
            ),
        ),
        (new.c.status == revoked, revocation_of_granted),
        else_=grant_of_granted,
    )


def refusal_reason(change_: Change, cell: str, stated_at: datetime | None, revoked_since: datetime | None, source: str) -> str:
    """Why a grant was not written over a revocation, worded for an import's report."""
    since = f"revoked {_day(revoked_since)} ({_source_words(source)})"
    rule = "only an express consent dated after the revocation re-grants it"
    if change_ is Change.REFUSED_IMPLIED:
        return f"not re-granted: '{cell}' is an implied consent and consent was {since}; {rule}"
    if change_ is Change.REFUSED_UNDATED:
        return f"not re-granted: '{cell}' has no date and consent was {since}; {rule} (give its date in consent_<channel>_<purpose>_at or consent_at)"
    return f"not re-granted: '{cell}' is dated {_day(stated_at)}, not after consent was {since}; {rule}"


def _day(at: datetime | None) -> str:
    return "at an unknown time" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")


_SOURCE_WORDS = {
    "inbound:opt_out": "an opt-out reply",
    "unsubscribe_link": "the unsubscribe link",
}


def _source_words(source: str) -> str:
    if source in _SOURCE_WORDS:
        return _SOURCE_WORDS[source]
    if source.startswith("review:"):
        return f"opt-out confirmed by {source.split(':', 1)[1]}"
    if source.startswith("event:"):
        return f"{source.split(':')[1]} event"
    if source.startswith("import:"):
        return f"imported from {source.split(':', 1)[1]}"
    return source


# --- the one writer of consent statements -------------------------------------------------


def revoke(connection: Connection, customer_id: str, channel: str, at: datetime, *, source: str, purpose: str = MARKETING) -> Change:
    """Record that the customer revoked ``purpose`` on ``channel`` at ``at``; what it did.

    Every revocation goes through here: a STOP reply, a person's confirmation, the unsubscribe
    link, an imported ``unsubscribe`` or ``complaint`` event. A revocation older than an express
    consent on file dated after it changes nothing (the customer said yes again since)."""
    new = Statement(ConsentStatus.REVOKED.value, ConsentKind.EXPRESS.value, at)
    return state(connection, customer_id, channel, purpose, new, source=source, now=at)


def stored(connection: Connection, customer_id: str, channel: str, purpose: str) -> Statement | None:
    """The statement on file for the customer's ``purpose`` on ``channel``, if any."""
    key = and_(consents.c.customer_id == customer_id, consents.c.channel == channel, consents.c.purpose == purpose)
    row = connection.execute(select(consents.c.status, consents.c.kind, consents.c.stated_at, consents.c.recorded_at).where(key)).first()
    return Statement(row.status, row.kind, row.stated_at, row.recorded_at) if row else None


def state(
    connection: Connection, customer_id: str, channel: str, purpose: str, new: Statement, *, source: str, now: datetime, by: str | None = None
) -> Change:
    """Write one statement if :func:`change` lets it through (recorded ``now``, in the history
    too); what it did. A refused grant (:attr:`Change.refused`) writes nothing: the caller says
    why with :func:`refusal_reason`. The one writer of a single statement: a revocation
    (:func:`revoke`) or a person's change over the HTTP API (``by``: who recorded it)."""
    key = and_(consents.c.customer_id == customer_id, consents.c.channel == channel, consents.c.purpose == purpose)
    on_file = stored(connection, customer_id, channel, purpose)
    done = change(on_file, new)
    if done is Change.WRITE:
        values = dict(status=new.status, kind=new.kind, source=source[:128], recorded_at=now, stated_at=new.stated_at, expires_at=None)
        if on_file is None:
            connection.execute(consents.insert().values(customer_id=customer_id, channel=channel, purpose=purpose, **values))
        else:
            connection.execute(consents.update().where(key).values(**values))
        connection.execute(
            consent_history.insert().values(
                customer_id=customer_id, channel=channel, purpose=purpose, status=new.status, kind=new.kind,
                source=source[:128], stated_at=new.stated_at, recorded_at=now, recorded_by=by,
            )
        )
    return done


@dataclass(frozen=True)
class Recorded:
    """A statement as the store holds it: on file (``consents``) or in the history."""

    channel: str
    purpose: str
    status: str
    kind: str
    source: str
    stated_at: datetime | None
    recorded_at: datetime
    expires_at: datetime | None = None  # statements on file only
    recorded_by: str | None = None  # history only: who recorded it, when a person did


def on_file(connection: Connection, customer_id: str) -> list[Recorded]:
    """The customer's statements that stand, by channel and purpose."""
    rows = connection.execute(
        select(consents).where(consents.c.customer_id == customer_id).order_by(consents.c.channel, consents.c.purpose)
    )
    return [Recorded(r.channel, r.purpose, r.status, r.kind, r.source, r.stated_at, r.recorded_at, r.expires_at) for r in rows]


def history_of(connection: Connection, customer_id: str) -> list[Recorded]:
    """Every statement written for the customer, oldest first (since migration 0019; before it, the ones then on file)."""
    h = consent_history
    rows = connection.execute(select(h).where(h.c.customer_id == customer_id).order_by(h.c.channel, h.c.purpose, h.c.id))
    return [Recorded(r.channel, r.purpose, r.status, r.kind, r.source, r.stated_at, r.recorded_at, None, r.recorded_by) for r in rows]


def granted(connection: Connection, customer_id: str, channel: str, purpose: str = MARKETING) -> bool:
    """Whether the statement on file for the customer's ``purpose`` on ``channel`` is a grant."""
    key = and_(consents.c.customer_id == customer_id, consents.c.channel == channel, consents.c.purpose == purpose)
    return connection.execute(select(consents.c.status).where(key)).scalar_one_or_none() == ConsentStatus.GRANTED.value


def write_statements(connection: Connection, staged: Any, now: datetime) -> int:
    """Write the statements of ``staged`` (columns customer_id, channel, purpose, status, kind,
    stated_at, source; one row per customer, channel and purpose) that :func:`sql_change` lets
    through, in one statement, each in the history too; returns how many. An import's consents
    go through here."""
    stored = consents.alias("stored")
    keys = and_(stored.c.customer_id == staged.c.customer_id, stored.c.channel == staged.c.channel, stored.c.purpose == staged.c.purpose)
    values = {
        "customer_id": staged.c.customer_id, "channel": staged.c.channel, "purpose": staged.c.purpose, "status": staged.c.status,
        "kind": staged.c.kind, "source": staged.c.source, "recorded_at": literal(now, consents.c.recorded_at.type),
        "expires_at": literal(None, consents.c.expires_at.type), "stated_at": staged.c.stated_at,
    }

    def written(names: list[str]) -> Any:
        return select(*(values[n] for n in names)).select_from(staged.outerjoin(stored, keys)).where(sql_change(stored, staged) == Change.WRITE.value)

    # The history first: once the statements are written, sql_change would compare them with themselves.
    history = [n for n in values if n != "expires_at"]
    connection.execute(consent_history.insert().from_select(history, written(history)))
    names = list(values)
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(consents).from_select(names, written(names))
    insert = insert.on_conflict_do_update(
        index_elements=["customer_id", "channel", "purpose"],
        set_={name: insert.excluded[name] for name in names[3:]},
    )
    return int(connection.execute(insert).rowcount or 0)
