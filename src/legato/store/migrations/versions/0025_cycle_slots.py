"""the schedule slots cycles ran, each once

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 19:00:00

``cycle_slots`` holds, per agent, each schedule slot (``legato.playbook.schedule``) that a
cycle started for, with that cycle: `legato worker` records it in the cycle's first
transaction, and the primary key (agent, slot) makes a second worker that saw the same slot
due fail to start a cycle for it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types

revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'cycle_slots',
        sa.Column('agent_id', sa.String(length=128), nullable=False),
        sa.Column('slot_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('cycle_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_cycle_slots_cycle_id_cycles')),
        sa.PrimaryKeyConstraint('agent_id', 'slot_at', name=op.f('pk_cycle_slots')),
    )
    op.create_index('ix_cycle_slots_cycle_id', 'cycle_slots', ['cycle_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_cycle_slots_cycle_id', table_name='cycle_slots')
    op.drop_table('cycle_slots')
