"""alerts the monitors raise, and the anomalies KPI series show

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-01 22:00:00

``alerts``: one row per incident (a stop-loss breach, an anomaly), open until it clears; at
most one open row per incident (a partial unique index), so a repeat is counted, not sent
again. ``anomalies``: each day a KPI series left its expected range, once per agent, series
and day. Their writers are ``legato.monitor.alerts`` and ``legato.monitor.anomaly``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types
from legato.store.status import one_of

revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None

STATUSES = ('open', 'cleared')
KINDS = ('stop_loss', 'anomaly')


def upgrade() -> None:
    op.create_table(
        'alerts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('incident', sa.String(length=200), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('agent_id', sa.String(length=128), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('summary', sa.Text(), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('opened_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('last_seen_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('repeats', sa.Integer(), server_default='0', nullable=False),
        sa.Column('cleared_at', legato.store.types.UTCDateTime(), nullable=True),
        sa.Column('cleared_by', sa.String(length=128), nullable=True),
        sa.Column('delivered_at', legato.store.types.UTCDateTime(), nullable=True),
        sa.Column('cleared_delivered_at', legato.store.types.UTCDateTime(), nullable=True),
        sa.CheckConstraint(one_of('status', STATUSES), name=op.f('ck_alerts_status')),
        sa.CheckConstraint(one_of('kind', KINDS), name=op.f('ck_alerts_kind')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    )
    op.create_index(
        'uq_alerts_open_incident', 'alerts', ['incident'], unique=True,
        sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"),
    )
    op.create_table(
        'anomalies',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('agent_id', sa.String(length=128), nullable=False),
        sa.Column('series', sa.String(length=64), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('observed', sa.Float(), nullable=False),
        sa.Column('expected', sa.Float(), nullable=False),
        sa.Column('low', sa.Float(), nullable=False),
        sa.Column('high', sa.Float(), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('sample', sa.Float(), nullable=False),
        sa.Column('found_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('review_item_id', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_anomalies')),
        sa.UniqueConstraint('agent_id', 'series', 'day', name=op.f('uq_anomalies_agent_id_series_day')),
    )


def downgrade() -> None:
    op.drop_table('anomalies')
    op.drop_index('uq_alerts_open_incident', table_name='alerts')
    op.drop_table('alerts')
