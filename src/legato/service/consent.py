"""A customer's consent per channel and purpose: read it with its history, and change it with a source.

Every statement goes through the one consent owner (:mod:`legato.guard.consent`), which
decides whether it stands: a revocation is never undone but by an express consent dated
after it, an implied consent takes nothing from an express one, an older statement does not
replace a newer one. A grant the owner refuses is a :class:`~legato.errors.Conflict` that
says why and what would re-grant; a statement the owner keeps out (older than the one on
file) changes nothing and says so. A revocation of marketing cancels the customer's messages
on that channel that are waiting to go, as an opt-out reply does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.channels import NAMES as CHANNELS
from legato.deliver import outbox
from legato.errors import Conflict, Invalid, NotFound
from legato.guard import consent as owner
from legato.guard.consent import MARKETING, PURPOSES, Change, ConsentKind, ConsentStatus, Recorded, Statement
from legato.store.audit import record
from legato.store.schema import customers


class Outcome(StrEnum):
    WRITTEN = "written"  # the statement now stands
    KEPT = "kept"  # the statement on file stands: the one given is not newer, or is implied over express


@dataclass(frozen=True)
class Consent:
    """One channel and purpose: the statement that stands, and every statement written, oldest first."""

    current: Recorded
    history: list[Recorded] = field(default_factory=list)


@dataclass(frozen=True)
class Changed:
    outcome: Outcome
    consent: Consent
    cancelled: int  # messages waiting to go on the channel, cancelled by a revocation of marketing
    reason: str | None = None  # why a kept statement changed nothing


def consents(engine: Engine, customer_id: str) -> list[Consent]:
    """The customer's consent per channel and purpose with its history (404 for an unknown customer)."""
    with engine.connect() as connection:
        _known(connection, customer_id)
        return _consents(connection, customer_id)


def change(
    engine: Engine,
    customer_id: str,
    channel: str,
    purpose: str,
    status: str,
    *,
    source: str,
    by: str,
    now: datetime,
    kind: str = ConsentKind.EXPRESS.value,
    stated_at: datetime | None = None,
) -> Changed:
    """Record a statement the customer made (``stated_at``: when; a revocation without one is
    taken as made now, a grant without one is undated and cannot undo a revocation)."""
    if channel not in CHANNELS:
        raise Invalid(f"'{channel}' is not a channel", hint=f"use one of {', '.join(CHANNELS)}")
    if purpose not in PURPOSES:
        raise Invalid(f"'{purpose}' is not a consent purpose", hint=f"use one of {', '.join(PURPOSES)}")
    if status not in (ConsentStatus.GRANTED.value, ConsentStatus.REVOKED.value):
        raise Invalid(f"'{status}' is not a consent status", hint="use granted or revoked")
    if kind not in (ConsentKind.EXPRESS.value, ConsentKind.IMPLIED.value):
        raise Invalid(f"'{kind}' is not a kind of consent", hint="use express or implied")
    if not source.strip():
        raise Invalid("a consent statement needs its source", hint="say where the customer said it, e.g. 'phone call, ticket 123'")
    if stated_at is not None and stated_at > now:
        raise Invalid(f"stated_at ({stated_at.isoformat()}) is after now ({now.isoformat()})",
                      hint="give when the customer said it; a statement cannot be dated in the future")
    revoking = status == ConsentStatus.REVOKED.value
    if revoking:
        # A revocation is a revocation whatever kind is given; it stands from when it was said.
        new = Statement(status, ConsentKind.EXPRESS.value, stated_at or now)
    else:
        new = Statement(status, kind, stated_at)
    with engine.begin() as connection:
        _known(connection, customer_id)
        on_file = owner.stored(connection, customer_id, channel, purpose)
        done = owner.state(connection, customer_id, channel, purpose, new, source=source.strip(), now=now, by=by)
        if done.refused:
            assert on_file is not None
            raise Conflict(
                f"consent for {purpose} on {channel} stays revoked: {_refused_because(done, on_file, new)}",
                hint="only an express consent the customer gave after revoking re-grants it: send kind express with stated_at, when they gave it",
            )
        cancelled = 0
        revoked_now = revoking and not owner.granted(connection, customer_id, channel, purpose)
        if revoked_now and purpose == MARKETING:
            cancelled = outbox.cancel_for_customer(connection, customer_id, channel)
        outcome = Outcome.WRITTEN if done is Change.WRITE else Outcome.KEPT
        record(connection, now, by, "consent_changed", "customer", customer_id, {
            "channel": channel, "purpose": purpose, "status": status, "kind": new.kind, "source": source.strip(),
            "stated_at": new.stated_at.isoformat() if new.stated_at else None, "outcome": outcome.value, "cancelled": cancelled,
        })
        current = next(c for c in _consents(connection, customer_id) if (c.current.channel, c.current.purpose) == (channel, purpose))
    reason = None if outcome is Outcome.WRITTEN else _kept_because(on_file, new)
    return Changed(outcome, current, cancelled, reason)


def _known(connection: sa.Connection, customer_id: str) -> None:
    if connection.execute(sa.select(customers.c.id).where(customers.c.id == customer_id)).first() is None:
        raise NotFound(f"unknown customer '{customer_id}'", hint="import the customer first (legato import customers, or POST /v1/customers)")


def _consents(connection: sa.Connection, customer_id: str) -> list[Consent]:
    history: dict[tuple[str, str], list[Recorded]] = {}
    for entry in owner.history_of(connection, customer_id):
        history.setdefault((entry.channel, entry.purpose), []).append(entry)
    return [Consent(current, history.get((current.channel, current.purpose), [])) for current in owner.on_file(connection, customer_id)]


def _refused_because(done: Change, on_file: Statement, new: Statement) -> str:
    since = on_file.revoked_since
    revoked = f"the revocation of {since:%Y-%m-%d %H:%M} UTC" if since else "the revocation on file"
    if done is Change.REFUSED_IMPLIED:
        return f"an implied consent does not undo {revoked}"
    if done is Change.REFUSED_UNDATED:
        return f"the grant has no date (stated_at), so it cannot be shown to come after {revoked}"
    assert new.stated_at is not None
    return f"the grant is dated {new.stated_at:%Y-%m-%d %H:%M} UTC, not after {revoked}"


def _kept_because(on_file: Statement | None, new: Statement) -> str:
    if on_file is None:
        return "the statement on file stands"
    if on_file.status == new.status == ConsentStatus.GRANTED.value and on_file.kind == ConsentKind.EXPRESS.value and new.kind != ConsentKind.EXPRESS.value:
        return "an implied consent takes nothing from the express consent on file"
    if new.stated_at is None:
        return "the statement has no date, so it cannot be shown to be newer than the one on file (give stated_at)"
    if on_file.status == ConsentStatus.GRANTED.value and new.status == ConsentStatus.REVOKED.value:
        return "the customer gave an express consent after this revocation; that consent stands"
    return "the statement on file is as new or newer"
