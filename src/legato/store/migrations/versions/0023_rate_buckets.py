"""each channel's token bucket, shared by every worker

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 19:00:00

``rate_buckets`` holds one row per channel with a ``rate_limit`` (or a provider's 429 wait):
the tokens left, when they were last refilled and until when a provider asked every sender
to wait. Written only by legato.store.rate_buckets, in short transactions of its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'rate_buckets',
        sa.Column('channel', sa.String(length=64), nullable=False),
        sa.Column('tokens', sa.Float(), nullable=False),
        sa.Column('refilled_at', sa.Float(), nullable=False),
        sa.Column('hold_until', sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint('channel', name=op.f('pk_rate_buckets')),
    )


def downgrade() -> None:
    op.drop_table('rate_buckets')
