"""allowed actions per decision

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 23:27:32.571057
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('allowed_actions', sa.LargeBinary(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_column('allowed_actions')

