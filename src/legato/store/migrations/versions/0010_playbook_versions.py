"""playbook versions: the playbook each cycle ran, referenced by its decisions

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 09:50:00

Review and dispatch rendered a decision's message from whatever playbook file they were
given, so editing the file after a decision changed what a reviewer saw and what was sent.
Each cycle now records the playbook it ran (stored once per distinct text), and each decision
references it. Decisions made before this migration have no version (NULL) and are rendered
from the playbook given, as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('playbook_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('recorded_at', legato.store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_playbook_versions')),
    sa.UniqueConstraint('hash', name=op.f('uq_playbook_versions_hash'))
    )
    for table in ('cycles', 'decisions'):
        name = f'fk_{table}_playbook_version_id_playbook_versions'
        if op.get_bind().dialect.name == 'sqlite':
            # SQLite adds a column with its reference in place; a batch copy of the table instead
            # would drop `cycles`, which decisions reference, and fail with foreign keys on.
            op.execute(
                f'ALTER TABLE {table} ADD COLUMN playbook_version_id INTEGER '
                f'CONSTRAINT {name} REFERENCES playbook_versions (id)'
            )
        else:
            op.add_column(table, sa.Column('playbook_version_id', sa.Integer(), nullable=True))
            op.create_foreign_key(name, table, 'playbook_versions', ['playbook_version_id'], ['id'])


def downgrade() -> None:
    for table in ('decisions', 'cycles'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            if op.get_bind().dialect.name != 'sqlite':  # SQLite: the copy of the table leaves it out
                batch_op.drop_constraint(f'fk_{table}_playbook_version_id_playbook_versions', type_='foreignkey')
            batch_op.drop_column('playbook_version_id')
    op.drop_table('playbook_versions')
