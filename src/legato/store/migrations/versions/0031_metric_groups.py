"""the kept metrics summed per breakdown member (creative, offer, channel, segment) and day

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-02 02:10:00

``metric_groups`` holds what ``metrics`` holds summed over every dimension but one:
``legato.monitor.metrics`` adds to it in the same transaction as to ``metrics``, so
``legato report kpis --by`` aggregates a few hundred rows per agent and day in index order
instead of sorting every key. Filled here from the counts already kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0031'
down_revision = '0030'
branch_labels = None
depends_on = None

DIMENSIONS = ('creative', 'offer', 'channel', 'segment')


def upgrade() -> None:
    op.create_table(
        'metric_groups',
        sa.Column('dimension', sa.String(length=16), nullable=False),
        sa.Column('agent_id', sa.String(length=128), nullable=False),
        sa.Column('grp', sa.String(length=128), nullable=False),
        sa.Column('name', sa.String(length=32), nullable=False),
        sa.Column('arm', sa.String(length=8), nullable=False),
        sa.Column('reason', sa.String(length=128), nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('dimension', 'agent_id', 'grp', 'name', 'arm', 'reason', 'day', name=op.f('pk_metric_groups')),
        sqlite_with_rowid=False,
    )
    for dimension in DIMENSIONS:  # names from the tuple above, never from input
        op.execute(
            "INSERT INTO metric_groups (dimension, agent_id, grp, name, arm, reason, day, value) "
            f"SELECT '{dimension}', agent_id, {dimension}, name, arm, reason, day, sum(value) FROM metrics "
            f"GROUP BY agent_id, {dimension}, name, arm, reason, day"
        )


def downgrade() -> None:
    op.drop_table('metric_groups')
