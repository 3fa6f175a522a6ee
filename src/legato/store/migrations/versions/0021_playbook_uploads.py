"""playbook uploads: who uploaded which playbook version over the HTTP API, and when

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01 17:00:00

An upload that validates is stored as a playbook version (once per distinct text, as the
versions cycles ran) and an upload row naming it, the key's name and the time. A server
started without --playbook takes the newest upload as its playbook in force.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'playbook_uploads',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('uploaded_by', sa.String(length=128), nullable=False),
        sa.Column('uploaded_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['version_id'], ['playbook_versions.id'], name=op.f('fk_playbook_uploads_version_id_playbook_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_playbook_uploads')),
    )
    op.create_index('ix_playbook_uploads_version', 'playbook_uploads', ['version_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_playbook_uploads_version', table_name='playbook_uploads')
    op.drop_table('playbook_uploads')
