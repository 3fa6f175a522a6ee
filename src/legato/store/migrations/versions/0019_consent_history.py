"""consent history: every consent statement written, in order

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 16:00:00

``consent_history`` keeps each statement the consent owner (legato.guard.consent) writes to
``consents``, so a customer's consent can be read with how it came to be (imports, opt-out
replies, the unsubscribe link, changes over the HTTP API). The statements on file now are
its first rows; what they had replaced was not kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'consent_history',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('customer_id', sa.String(length=128), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('purpose', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('source', sa.String(length=128), nullable=False),
        sa.Column('stated_at', legato.store.types.UTCDateTime(), nullable=True),
        sa.Column('recorded_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('recorded_by', sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_consent_history_customer_id_customers'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_history')),
    )
    op.create_index('ix_consent_history_customer', 'consent_history', ['customer_id', 'channel', 'purpose', 'id'], unique=False)
    op.execute(
        "INSERT INTO consent_history (customer_id, channel, purpose, status, kind, source, stated_at, recorded_at) "
        "SELECT customer_id, channel, purpose, status, kind, source, stated_at, recorded_at FROM consents "
        "ORDER BY recorded_at, customer_id, channel, purpose"
    )


def downgrade() -> None:
    op.drop_index('ix_consent_history_customer', table_name='consent_history')
    op.drop_table('consent_history')
