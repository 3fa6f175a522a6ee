"""opens and clicks per decision, and the import batch of each event

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 13:00:00

A settled decision keeps whether the customer opened or clicked within its window, as it
keeps visits and purchases, so reports can show them. Each event keeps the number of the
import that brought it (``events.batch``, from the ``event_batch`` counter in ``settings``),
so the learning step can find outcomes that arrived after a decision was settled and
credit them (legato.learn.attribution.credit_late). Events imported before this revision
have no batch: they are treated as seen.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN on both databases: no table is copied.
    op.add_column('decisions', sa.Column('opened', sa.Boolean(), nullable=True))
    op.add_column('decisions', sa.Column('clicked', sa.Boolean(), nullable=True))
    op.add_column('events', sa.Column('batch', sa.Integer(), nullable=True))
    op.create_index('ix_events_batch', 'events', ['batch'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_events_batch', table_name='events')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_column('batch')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_column('clicked')
        batch_op.drop_column('opened')
