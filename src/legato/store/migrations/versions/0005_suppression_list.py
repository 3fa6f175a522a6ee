"""suppression list

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 21:27:45.762597
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('suppressions',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.String(length=256), nullable=False),
    sa.Column('added_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'value', name=op.f('pk_suppressions'))
    )


def downgrade() -> None:
    op.drop_table('suppressions')
