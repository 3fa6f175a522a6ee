"""the kept metrics summed over their breakdown, per agent, name and day

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-01 23:05:00

``metric_totals`` holds what ``metrics`` holds summed over objective, channel, creative, offer
and segment: ``legato.monitor.metrics`` adds to both in the same transaction, so a report
without a breakdown reads a few rows per agent and day. Filled here from the counts already kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'metric_totals',
        sa.Column('agent_id', sa.String(length=128), nullable=False),
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('arm', sa.String(length=8), nullable=False),
        sa.Column('reason', sa.String(length=128), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('agent_id', 'name', 'day', 'arm', 'reason', name=op.f('pk_metric_totals')),
    )
    op.execute(
        "INSERT INTO metric_totals (agent_id, name, day, arm, reason, value) "
        "SELECT agent_id, name, day, arm, reason, sum(value) FROM metrics GROUP BY agent_id, name, day, arm, reason"
    )


def downgrade() -> None:
    op.drop_table('metric_totals')
