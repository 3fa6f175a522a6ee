"""API keys (stored hashed) and idempotent replies to state-changing requests

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 15:20:00

``api_keys`` holds the SHA-256 of each key with its name, role and who created it; a revoked
key keeps its row (revoked_at) so the audit log's names still resolve. ``idempotency_records``
keeps what a POST with an ``Idempotency-Key`` answered, per key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types
from legato.store.status import one_of

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

ROLES = ('viewer', 'marketer', 'reviewer', 'admin', 'ingest')


def upgrade() -> None:
    op.create_table(
        'api_keys',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('role', sa.String(length=16), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.Column('created_by', sa.String(length=128), nullable=False),
        sa.Column('revoked_at', legato.store.types.UTCDateTime(), nullable=True),
        sa.CheckConstraint(one_of('role', ROLES), name=op.f('ck_api_keys_role')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
        sa.UniqueConstraint('hash', name=op.f('uq_api_keys_hash')),
    )
    op.create_index(
        'uq_api_keys_live_name', 'api_keys', ['name'], unique=True,
        sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'),
    )
    op.create_table(
        'idempotency_records',
        sa.Column('key_id', sa.Integer(), nullable=False),
        sa.Column('idempotency_key', sa.String(length=255), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('response', sa.Text(), nullable=True),
        sa.Column('created_at', legato.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_idempotency_records_key_id_api_keys'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('key_id', 'idempotency_key', name=op.f('pk_idempotency_records')),
    )


def downgrade() -> None:
    op.drop_table('idempotency_records')
    op.drop_index('uq_api_keys_live_name', table_name='api_keys')
    op.drop_table('api_keys')
