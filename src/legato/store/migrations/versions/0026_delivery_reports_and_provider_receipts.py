"""what a provider reported after it took a message; receipts of the webhooks acted on

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01 22:00:00

``outbox.delivery`` holds what the provider reported about a message it took (delivered,
opened, failed; NULL until a report comes), with a CHECK of exactly those values; a report
never takes it back (``legato.deliver.outbox.record_delivery``). ``provider_receipts`` holds
the provider's id of each webhook request acted on, per subject (``legato.store.receipts``):
a text Twilio delivers twice is handled once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types
from legato.store.rebuild import rebuild
from legato.store.status import one_of

revision = '0026'
down_revision = '0025'
branch_labels = None
depends_on = None

CHECK = 'ck_outbox_delivery'
DELIVERIES = ('delivered', 'opened', 'failed')


def upgrade() -> None:
    def widen(batch):  # type: ignore[no-untyped-def]
        batch.add_column(sa.Column('delivery', sa.String(length=16), nullable=True))
        batch.create_check_constraint(op.f(CHECK), one_of('delivery', DELIVERIES))

    rebuild('outbox', widen)
    op.create_table(
        'provider_receipts',
        sa.Column('provider', sa.String(length=16), nullable=False),
        sa.Column('receipt', sa.String(length=128), nullable=False),
        sa.Column('subject', sa.String(length=128), nullable=False),
        sa.Column('received_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('inbound_message_id', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('provider', 'receipt', 'subject', name=op.f('pk_provider_receipts')),
    )


def downgrade() -> None:
    op.drop_table('provider_receipts')

    def narrow(batch):  # type: ignore[no-untyped-def]
        batch.drop_constraint(op.f(CHECK), type_='check')
        batch.drop_column('delivery')

    rebuild('outbox', narrow)
