"""decision context and outcomes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 19:54:43.432877

What the policy saw for each decision, and what came of it once its window closed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('context', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('action_index', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reward', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('visited', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('purchased', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('revenue', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('unsubscribed', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('complained', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('settled_at', legato.store.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_decisions_agent_settled', ['agent_id', 'settled_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_agent_settled')
        batch_op.drop_column('settled_at')
        batch_op.drop_column('complained')
        batch_op.drop_column('unsubscribed')
        batch_op.drop_column('revenue')
        batch_op.drop_column('purchased')
        batch_op.drop_column('visited')
        batch_op.drop_column('reward')
        batch_op.drop_column('action_index')
        batch_op.drop_column('context')

