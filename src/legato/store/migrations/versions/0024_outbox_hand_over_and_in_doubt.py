"""outbox hand-over marks and messages in doubt

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 19:00:00

No SMTP server or SMS provider deduplicates, so a dispatcher killed after the provider
took a message and before the result was recorded cannot know whether it went. The
dispatcher now marks each message handed over (``handed_over_at``), durably, just before
handing it to such a provider, and clears the mark with its result; a claim whose holder died
with the mark set is in doubt (``in_doubt_at`` records when it was found so, and stays after
a resend). A channel's ``in_doubt: hold`` keeps such a message in the new status
``in_doubt`` for a person (legato.deliver.outbox). The CHECK on outbox.status gains it.

As in 0011/0013/0016, the values are written out here rather than read from legato.store.status.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types
from legato.store.rebuild import rebuild
from legato.store.status import one_of

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

CHECK = 'ck_outbox_status'
STATUSES = ('pending', 'claimed', 'sent', 'retry', 'dead', 'cancelled', 'in_doubt')
OLD_STATUSES = ('pending', 'claimed', 'sent', 'retry', 'dead', 'cancelled')  # as 0016 left them


def upgrade() -> None:
    def widen(batch):  # type: ignore[no-untyped-def]
        batch.drop_constraint(op.f(CHECK), type_='check')
        batch.add_column(sa.Column('handed_over_at', legato.store.types.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column('in_doubt_at', legato.store.types.UTCDateTime(), nullable=True))
        batch.create_check_constraint(op.f(CHECK), one_of('status', STATUSES))

    rebuild('outbox', widen)


def downgrade() -> None:
    # A message held in doubt goes back to a retry: resent (at least once), as before 0024.
    op.execute("UPDATE outbox SET status = 'retry', next_attempt_at = COALESCE(next_attempt_at, send_at) WHERE status = 'in_doubt'")

    def narrow(batch):  # type: ignore[no-untyped-def]
        batch.drop_constraint(op.f(CHECK), type_='check')
        batch.drop_column('in_doubt_at')
        batch.drop_column('handed_over_at')
        batch.create_check_constraint(op.f(CHECK), one_of('status', OLD_STATUSES))

    rebuild('outbox', narrow)
