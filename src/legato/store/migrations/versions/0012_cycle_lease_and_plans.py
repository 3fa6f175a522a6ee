"""cycle lease and cycle plans: one cycle at a time, and a killed cycle resumes

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:00:00

Two `legato run` at once both ran a cycle and every customer got two messages; a killed
cycle stayed `running` and a rerun started another one. ``leases`` holds the one lease a
cycle takes (holder host, pid, since, until); ``cycle_agents`` records what each agent's plan
step decided (stage, policy version, budget cut), so that a resumed cycle continues with it
instead of learning, stop-lossing or reserving the budget a second time.

Cycles left `running` before this migration were killed (nothing held a lease before it)
and cannot be resumed (their plans were not recorded): they are marked `failed`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cycle_agents',
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('stage', sa.Integer(), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('budget_cut', sa.JSON(), nullable=True),
    sa.Column('planned_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_cycle_agents_cycle_id_cycles')),
    sa.PrimaryKeyConstraint('cycle_id', 'agent_id', name=op.f('pk_cycle_agents'))
    )
    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('token', sa.String(length=36), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('acquired_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('renewed_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cycle_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.execute("UPDATE cycles SET status = 'failed' WHERE status = 'running'")


def downgrade() -> None:
    op.drop_table('leases')
    op.drop_table('cycle_agents')
