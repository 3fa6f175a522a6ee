"""Segment's identities and the messageIds of the calls applied

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02 10:00:00

``identity_links`` maps an id that an alias call (or a call carrying both a userId and an
anonymousId) linked to the customer it stands for; ``seen_messages`` keeps the messageId of
every identify, group and alias call applied, so a repeated call changes nothing (a track's
messageId is its event's id, which the events table already keeps once).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'identity_links',
        sa.Column('alias', sa.String(length=128), nullable=False),
        sa.Column('customer_id', sa.String(length=128), nullable=False),
        sa.Column('linked_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint('alias', name=op.f('pk_identity_links')),
    )
    op.create_index('ix_identity_links_customer_id', 'identity_links', ['customer_id'])
    op.create_table(
        'seen_messages',
        sa.Column('message_id', sa.String(length=128), nullable=False),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('received_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('message_id', name=op.f('pk_seen_messages')),
    )


def downgrade() -> None:
    op.drop_table('seen_messages')
    op.drop_index('ix_identity_links_customer_id', table_name='identity_links')
    op.drop_table('identity_links')
