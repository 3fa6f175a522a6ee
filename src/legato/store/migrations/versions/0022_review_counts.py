"""review item counts kept by their writers, so the queue's totals need no count

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 17:00:00

``review_counts`` holds how many review items there are per (status, kind, agent, role,
reason, priority), as deltas the queue's writers append in their own transactions
(legato.trust.review.counts). Counting a million open items took 120 ms on SQLite and on
PostgreSQL, seconds with an agent or kind filter; a total is now a sum over a few rows. The
counts are seeded here from the items on file.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'review_counts',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('agent_id', sa.String(length=128), nullable=True),
        sa.Column('assigned_role', sa.String(length=64), nullable=True),
        sa.Column('reason', sa.String(length=64), nullable=False),
        sa.Column('priority', sa.Integer(), nullable=False),
        sa.Column('n', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_review_counts')),
    )
    op.execute(
        "INSERT INTO review_counts (status, kind, agent_id, assigned_role, reason, priority, n) "
        "SELECT status, kind, agent_id, assigned_role, reason, priority, count(*) FROM review_items "
        "GROUP BY status, kind, agent_id, assigned_role, reason, priority"
    )


def downgrade() -> None:
    op.drop_table('review_counts')
