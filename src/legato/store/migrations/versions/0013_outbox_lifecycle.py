"""outbox lifecycle: claimed with a lease, retried with backoff, dead with a reason

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 13:00:00

The dispatcher marked a message sent in the transaction that wrote it to its transport, so
one failing channel rolled back every channel's batch, and a message whose template failed
for one customer stopped all dispatch. A message now goes pending → claimed (a dispatcher's
worker id and a lease: claimed_by, lease_expires_at) → sent (provider_id) | retry
(next_attempt_at, the last error) | dead (the reason); cancelled stays. Messages that had
failed are dead. The CHECK on outbox.status (0011) is replaced by one of the new values.

As in 0011, the value lists are written out here rather than read from legato.store.status.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from legato.store.rebuild import rebuild

import legato.store.types

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

CHECK = 'ck_outbox_status'
STATUSES = ('pending', 'claimed', 'sent', 'retry', 'dead', 'cancelled')
OLD_STATUSES = ('pending', 'sent', 'failed', 'cancelled')  # as 0011 left them
COLUMN_NAMES = ('claimed_by', 'lease_expires_at', 'next_attempt_at', 'provider_id')


def columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column('claimed_by', sa.String(length=128), nullable=True),
        sa.Column('lease_expires_at', legato.store.types.UTCDateTime(), nullable=True),
        sa.Column('next_attempt_at', legato.store.types.UTCDateTime(), nullable=True),
        sa.Column('provider_id', sa.String(length=255), nullable=True),
    ]
INDEX = 'ix_outbox_status_next_attempt'


def condition(allowed: tuple[str, ...]) -> str:
    return f"status IN ({', '.join(repr(v) for v in allowed)})"


def _rebuild(change) -> None:  # type: ignore[no-untyped-def]
    """Apply ``change`` to a batch of ``outbox``, keeping its indexes (legato.store.rebuild)."""
    rebuild('outbox', change)


def upgrade() -> None:
    def widen(batch):  # type: ignore[no-untyped-def]
        batch.drop_constraint(op.f(CHECK), type_='check')
        for column in columns():
            batch.add_column(column)

    _rebuild(widen)
    op.execute("UPDATE outbox SET status = 'dead' WHERE status = 'failed'")

    def constrain(batch):  # type: ignore[no-untyped-def]
        batch.create_check_constraint(op.f(CHECK), condition(STATUSES))

    _rebuild(constrain)
    op.create_index(INDEX, 'outbox', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    op.drop_index(INDEX, table_name='outbox')

    def loosen(batch):  # type: ignore[no-untyped-def]
        batch.drop_constraint(op.f(CHECK), type_='check')

    _rebuild(loosen)
    # Claimed and retrying messages were on their way: pending again; dead ones had failed.
    op.execute("UPDATE outbox SET status = 'pending' WHERE status IN ('claimed', 'retry')")
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'dead'")

    def narrow(batch):  # type: ignore[no-untyped-def]
        for name in reversed(COLUMN_NAMES):
            batch.drop_column(name)
        batch.create_check_constraint(op.f(CHECK), condition(OLD_STATUSES))

    _rebuild(narrow)
