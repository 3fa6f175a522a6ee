"""each alert's delivery to each destination

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-01 22:30:00

``alert_deliveries``: one row per alert (or its follow-up) and destination (the log, a Slack
webhook, an e-mail address), claimed before it is sent and stamped once the destination took
it, so no destination gets an alert twice and none is dropped. Its writer is
``legato.monitor.alert_delivery``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types
from legato.store.status import one_of

revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None

STATUSES = ('pending', 'sending', 'sent', 'failed')
PHASES = ('opened', 'cleared')


def upgrade() -> None:
    op.create_table(
        'alert_deliveries',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('alert_id', sa.Integer(), nullable=False),
        sa.Column('phase', sa.String(length=16), nullable=False),
        sa.Column('destination', sa.String(length=320), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('due_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('claimed_by', sa.String(length=128), nullable=True),
        sa.Column('claimed_until', legato.store.types.UTCDateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('sent_at', legato.store.types.UTCDateTime(), nullable=True),
        sa.Column('created_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.CheckConstraint(one_of('status', STATUSES), name=op.f('ck_alert_deliveries_status')),
        sa.CheckConstraint(one_of('phase', PHASES), name=op.f('ck_alert_deliveries_phase')),
        sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_alert_deliveries_alert_id_alerts')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_deliveries')),
        sa.UniqueConstraint('alert_id', 'phase', 'destination', name=op.f('uq_alert_deliveries_alert_id_phase_destination')),
    )
    op.create_index('ix_alert_deliveries_status_due_at', 'alert_deliveries', ['status', 'due_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_alert_deliveries_status_due_at', table_name='alert_deliveries')
    op.drop_table('alert_deliveries')
