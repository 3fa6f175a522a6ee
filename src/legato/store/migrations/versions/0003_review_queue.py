"""review queue: edited content and queue order

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 20:10:32.872701

A reviewer's edit of a decision's message is kept on the decision (``content_override``).
The queue is read highest priority first, oldest first; the old (status, priority,
created_at) index made SQLite sort every open item of the top priority to find a page, so
it is replaced by one that says DESC on priority and ends with the id tie-break. Track
records read review actions and stop-loss breaches from the audit log by action and time.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_override', sa.JSON(), nullable=True))

    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_action_at', ['action', 'at'], unique=False)

    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index('ix_review_items_open')
        batch_op.create_index('ix_review_items_agent_decided', ['agent_id', 'decided_at'], unique=False)
        batch_op.create_index('ix_review_items_queue', ['status', sa.literal_column('priority DESC'), 'created_at', 'id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index('ix_review_items_queue')
        batch_op.drop_index('ix_review_items_agent_decided')
        batch_op.create_index('ix_review_items_open', ['status', 'priority', 'created_at'], unique=False)

    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_action_at')

    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_column('content_override')
