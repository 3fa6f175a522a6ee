"""cycle partitions and budget reservations

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cycle_partitions',
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('low', sa.String(length=128), nullable=False),
    sa.Column('high', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('decisions', sa.Integer(), nullable=True),
    sa.Column('finished_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'done')", name=op.f('ck_cycle_partitions_status')),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_cycle_partitions_cycle_id_cycles')),
    sa.PrimaryKeyConstraint('cycle_id', 'agent_id', 'number', name=op.f('pk_cycle_partitions'))
    )
    op.create_table('budget_reservations',
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('day', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sends', sa.Integer(), nullable=False),
    sa.Column('cost', sa.Float(), nullable=False),
    sa.Column('created_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_budget_reservations_cycle_id_cycles')),
    sa.PrimaryKeyConstraint('cycle_id', 'agent_id', name=op.f('pk_budget_reservations'))
    )
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.create_index('ix_budget_reservations_agent_day', ['agent_id', 'day'], unique=False)
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index('ux_decisions_cycle_agent_customer', ['cycle_id', 'agent_id', 'customer_id'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ux_decisions_cycle_agent_customer')
    with op.batch_alter_table('budget_reservations', schema=None) as batch_op:
        batch_op.drop_index('ix_budget_reservations_agent_day')
    op.drop_table('budget_reservations')
    op.drop_table('cycle_partitions')
