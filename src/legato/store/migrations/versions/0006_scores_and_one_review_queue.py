"""scores and one review queue

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 22:12:08.570421
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('score_models',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('trained_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_score_models'))
    )
    with op.batch_alter_table('score_models', schema=None) as batch_op:
        batch_op.create_index('ix_score_models_name_trained', ['name', 'trained_at'], unique=False)

    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='decision', nullable=False))
        batch_op.add_column(sa.Column('inbound_message_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('evidence', sa.JSON(), nullable=True))
        batch_op.alter_column('decision_id',
               existing_type=sa.INTEGER(),
               nullable=True)
        batch_op.alter_column('agent_id',
               existing_type=sa.VARCHAR(length=128),
               nullable=True)
        batch_op.create_unique_constraint(batch_op.f('uq_review_items_inbound_message_id'), ['inbound_message_id'])
        batch_op.create_foreign_key(batch_op.f('fk_review_items_inbound_message_id_inbound_messages'), 'inbound_messages', ['inbound_message_id'], ['id'])
    # SQLite's batch mode rebuilds the table and loses the DESC of the queue index, which
    # would make every "top 100" read sort the whole queue: recreate it as declared.
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index('ix_review_items_queue')
        batch_op.create_index('ix_review_items_queue', ['status', sa.literal_column('priority DESC'), 'created_at', 'id'], unique=False)

    # Replies that waited for a person in their own queue join the one review queue, with
    # the start of their text as evidence.
    evidence = (
        "json_object('excerpt', substr(text, 1, 280), 'sentiment', sentiment)"
        if op.get_bind().dialect.name == "sqlite"
        else "json_build_object('excerpt', left(text, 280), 'sentiment', sentiment)"
    )
    op.execute(
        "INSERT INTO review_items (kind, inbound_message_id, reason, priority, status, created_at, due_at, evidence) "
        f"SELECT 'conversation', id, COALESCE(reason, 'conversation'), priority, 'open', received_at, due_at, {evidence} "
        "FROM inbound_messages WHERE status = 'open'"
    )

    with op.batch_alter_table('traits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purchase_propensity', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('visit_propensity', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('traits', schema=None) as batch_op:
        batch_op.drop_column('visit_propensity')
        batch_op.drop_column('purchase_propensity')

    # Conversations and findings cannot live in the older table (a decision was required);
    # an open conversation stays open in inbound_messages.
    op.execute("DELETE FROM review_items WHERE kind <> 'decision'")
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_review_items_inbound_message_id_inbound_messages'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_review_items_inbound_message_id'), type_='unique')
        batch_op.alter_column('agent_id',
               existing_type=sa.VARCHAR(length=128),
               nullable=False)
        batch_op.alter_column('decision_id',
               existing_type=sa.INTEGER(),
               nullable=False)
        batch_op.drop_column('evidence')
        batch_op.drop_column('inbound_message_id')
        batch_op.drop_column('kind')

    with op.batch_alter_table('score_models', schema=None) as batch_op:
        batch_op.drop_index('ix_score_models_name_trained')

    op.drop_table('score_models')
