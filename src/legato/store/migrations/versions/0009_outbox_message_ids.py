"""outbox message ids: a UUID per message, unique across databases

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:40:00

Outbox row ids restart with every database, so they could not tell one database's message
from another's (the file transport skipped messages whose row id it had seen from another
database, and recorded them sent). Each message now has its own UUID, also the idempotency
key a provider receives (the layout of legato.deliver.outbox: a random part, then the
decision id). Existing rows get one each, with a random part of their own.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_id', sa.String(length=36), nullable=True))
    connection = op.get_bind()
    outbox = sa.table('outbox', sa.column('id', sa.Integer), sa.column('decision_id', sa.Integer), sa.column('message_id', sa.String))
    rows = connection.execute(sa.select(outbox.c.id, outbox.c.decision_id)).all()
    if rows:
        # Written out here rather than imported, so this migration does what it did when written.
        digits = uuid.uuid4().hex
        prefix = f"{digits[0:8]}-{digits[8:12]}-8{digits[13:16]}-{'89ab'[int(digits[16], 16) & 3]}{digits[17:20]}-"
        connection.execute(
            sa.update(outbox).where(outbox.c.id == sa.bindparam('o_id')).values(message_id=sa.bindparam('m_id')),
            [{'o_id': row.id, 'm_id': f"{prefix}{row.decision_id:012x}"} for row in rows],
        )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.alter_column('message_id', existing_type=sa.String(length=36), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_outbox_message_id'), ['message_id'])


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_outbox_message_id'), type_='unique')
        batch_op.drop_column('message_id')
