"""decisions searched newest first by customer, agent or time, read straight off an index

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 16:00:00

The decision search (legato.monitor.decisions) orders by (decided_at, id) descending and
pages by that key. A cycle decides every customer at one instant, so without ``id`` in the
index PostgreSQL sorts a whole cycle's decisions (an incremental sort over one decided_at)
for each page; SQLite's indexes carry the rowid already and are the same either way. The
agent and customer indexes gain ``id`` as their last column, and ``ix_decisions_time``
serves a search by time alone (or by status alone, checked along it). New decisions go to
the right edge of each index (decided_at never goes back, ids increase), so the cycle's
inserts pay little for the third.
"""

from __future__ import annotations

from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_decisions_agent_time', table_name='decisions')
    op.create_index('ix_decisions_agent_time', 'decisions', ['agent_id', 'decided_at', 'id'], unique=False)
    op.drop_index('ix_decisions_customer_time', table_name='decisions')
    op.create_index('ix_decisions_customer_time', 'decisions', ['customer_id', 'decided_at', 'id'], unique=False)
    op.create_index('ix_decisions_time', 'decisions', ['decided_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_decisions_time', table_name='decisions')
    op.drop_index('ix_decisions_customer_time', table_name='decisions')
    op.create_index('ix_decisions_customer_time', 'decisions', ['customer_id', 'decided_at'], unique=False)
    op.drop_index('ix_decisions_agent_time', table_name='decisions')
    op.create_index('ix_decisions_agent_time', 'decisions', ['agent_id', 'decided_at'], unique=False)
