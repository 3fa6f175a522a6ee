"""metrics kept as they happen, keyed by their decision

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-01 22:00:00

The ``metrics`` table of 0001 (day, agent, name) was never written: it is replaced by one
keyed by (agent, name, day, objective, channel, creative, offer, segment, arm, reason) that
``legato.monitor.metrics`` adds to in the transaction of each change it counts. Decisions
gain ``objective`` and ``segment`` (the customer's lifecycle stage when decided), which the
counts are keyed by. Stores with history fill the table with ``legato report kpis --rebuild``
(a recount from history), which this migration does not run: it records the schema only.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None

KEY = ['agent_id', 'name', 'day', 'objective', 'channel', 'creative', 'offer', 'segment', 'arm', 'reason']


def upgrade() -> None:
    op.drop_table('metrics')
    op.create_table(
        'metrics',
        sa.Column('agent_id', sa.String(length=128), nullable=False),
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('objective', sa.String(length=128), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('creative', sa.String(length=128), nullable=False),
        sa.Column('offer', sa.String(length=128), nullable=False),
        sa.Column('segment', sa.String(length=128), nullable=False),
        sa.Column('arm', sa.String(length=8), nullable=False),
        sa.Column('reason', sa.String(length=128), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name=op.f('pk_metrics')),
    )
    # ADD COLUMN in place on both databases: a nullable column needs no copy of the table.
    op.add_column('decisions', sa.Column('objective', sa.String(length=128), nullable=True))
    op.add_column('decisions', sa.Column('segment', sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('decisions') as batch:
        batch.drop_column('segment')
        batch.drop_column('objective')
    op.drop_table('metrics')
    op.create_table(
        'metrics',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('agent_id', sa.String(length=128), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_metrics')),
        sa.UniqueConstraint('day', 'agent_id', 'name', name=op.f('uq_metrics_day_agent_id_name')),
    )
