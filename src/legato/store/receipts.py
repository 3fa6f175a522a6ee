"""Receipts of what providers sent: a webhook acted on once, however often it is delivered.

A provider retries a webhook whose answer it did not see (Twilio does, for its messaging
webhook), and two deliveries of one request may arrive at once. Each effect of such a request
takes a receipt — the provider, the provider's id of the request (Twilio's ``MessageSid``) and
the subject it acts on (the customer it is handled for; ``""`` for none) — as the **first
write of the effect's own transaction**. Only one transaction can insert it: on PostgreSQL a
second one waits on the key until the first commits and then inserts nothing; on SQLite the
writers take turns and the second finds it. The one that did not get it does nothing else,
and if the effect's transaction rolls back, its receipt goes with it, so a retry does it then.

This module is the one writer of ``provider_receipts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from legato.store.schema import provider_receipts

RECEIPT_CHARS = 128


@dataclass(frozen=True)
class Receipt:
    """A provider's id of one request it sent (e.g. ``Receipt("twilio", MessageSid)``)."""

    provider: str
    id: str

    def __post_init__(self) -> None:
        if not self.id.strip() or len(self.id) > RECEIPT_CHARS:
            raise ValueError(f"a provider's request id has 1 to {RECEIPT_CHARS} characters")


def take(connection: Connection, receipt: Receipt, subject: str, now: datetime) -> bool:
    """Take the receipt of ``receipt`` for ``subject``: True when this transaction is the first
    to act on it, False when it was acted on (or is being acted on, and then committed) already."""
    values = {"provider": receipt.provider, "receipt": receipt.id, "subject": subject, "received_at": now}
    insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(provider_receipts)
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT through SQLAlchemy.
    done = connection.execute(insert.values(**values).on_conflict_do_nothing().returning(provider_receipts.c.receipt))
    return done.first() is not None


def note(connection: Connection, receipt: Receipt, subject: str, inbound_message_id: int) -> None:
    """The inbound message a receipt's effect recorded (for the record, and to answer a repeat)."""
    connection.execute(
        sa.update(provider_receipts)
        .where(provider_receipts.c.provider == receipt.provider, provider_receipts.c.receipt == receipt.id, provider_receipts.c.subject == subject)
        .values(inbound_message_id=inbound_message_id)
    )


def recorded(connection: Connection, receipt: Receipt, subject: str) -> int | None:
    """The inbound message the first delivery of ``receipt`` recorded for ``subject``, if any."""
    return connection.execute(
        sa.select(provider_receipts.c.inbound_message_id)
        .where(provider_receipts.c.provider == receipt.provider, provider_receipts.c.receipt == receipt.id, provider_receipts.c.subject == subject)
    ).scalar_one_or_none()
