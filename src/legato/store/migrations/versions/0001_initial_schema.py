"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 19:36:25.930534
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import legato.store.types


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agents',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('trust_stage', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('updated_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agents'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('entity', sa.String(length=32), nullable=False),
    sa.Column('entity_id', sa.String(length=128), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('before_hash', sa.String(length=64), nullable=True),
    sa.Column('after_hash', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_entity', ['entity', 'entity_id'], unique=False)

    op.create_table('customers',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('time_zone', sa.String(length=64), nullable=True),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('region', sa.String(length=16), nullable=True),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('created_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers'))
    )
    op.create_table('cycles',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cycles'))
    )
    op.create_table('events',
    sa.Column('id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revenue', sa.Float(), nullable=True),
    sa.Column('properties', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_customer_time', ['customer_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_events_type_time', ['type', 'occurred_at'], unique=False)

    op.create_table('metrics',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metrics')),
    sa.UniqueConstraint('day', 'agent_id', 'name', name=op.f('uq_metrics_day_agent_id_name'))
    )
    op.create_table('settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_settings'))
    )
    op.create_table('consents',
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=128), nullable=False),
    sa.Column('recorded_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_consents_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'channel', 'purpose', name=op.f('pk_consents'))
    )
    op.create_table('decisions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('cycle_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('decided_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=256), nullable=False),
    sa.Column('offer_id', sa.String(length=128), nullable=True),
    sa.Column('creative_id', sa.String(length=128), nullable=True),
    sa.Column('channel', sa.String(length=32), nullable=True),
    sa.Column('send_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('propensity', sa.Float(), nullable=False),
    sa.Column('expected_value', sa.Float(), nullable=True),
    sa.Column('holdout', sa.Boolean(), nullable=False),
    sa.Column('findings', sa.JSON(), nullable=False),
    sa.Column('route', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.Column('approved_by', sa.String(length=128), nullable=True),
    sa.ForeignKeyConstraint(['cycle_id'], ['cycles.id'], name=op.f('fk_decisions_cycle_id_cycles')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_decisions'))
    )
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.create_index('ix_decisions_agent_time', ['agent_id', 'decided_at'], unique=False)
        batch_op.create_index('ix_decisions_customer_time', ['customer_id', 'decided_at'], unique=False)

    op.create_table('policy_states',
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('policy', sa.String(length=64), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('created_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_policy_states_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', 'version', name=op.f('pk_policy_states'))
    )
    op.create_table('traits',
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('first_purchase_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_purchase_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_event_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('purchase_count', sa.Integer(), nullable=False),
    sa.Column('lifetime_spend', sa.Float(), nullable=False),
    sa.Column('purchases_30d', sa.Integer(), nullable=False),
    sa.Column('revenue_30d', sa.Float(), nullable=False),
    sa.Column('purchases_90d', sa.Integer(), nullable=False),
    sa.Column('revenue_90d', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_traits_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_traits'))
    )
    with op.batch_alter_table('traits', schema=None) as batch_op:
        batch_op.create_index('ix_traits_last_purchase', ['last_purchase_at'], unique=False)

    op.create_table('outbox',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('decision_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.String(length=128), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('send_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('sent_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['decision_id'], ['decisions.id'], name=op.f('fk_outbox_decision_id_decisions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox')),
    sa.UniqueConstraint('decision_id', name=op.f('uq_outbox_decision_id'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_customer_send', ['customer_id', 'send_at'], unique=False)
        batch_op.create_index('ix_outbox_status_send', ['status', 'send_at'], unique=False)

    op.create_table('review_items',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('decision_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.String(length=128), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', legato.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('due_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('assigned_role', sa.String(length=64), nullable=True),
    sa.Column('decided_by', sa.String(length=128), nullable=True),
    sa.Column('decided_at', legato.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('content_hash', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['decision_id'], ['decisions.id'], name=op.f('fk_review_items_decision_id_decisions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_items')),
    sa.UniqueConstraint('decision_id', name=op.f('uq_review_items_decision_id'))
    )
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.create_index('ix_review_items_open', ['status', 'priority', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index('ix_review_items_open')

    op.drop_table('review_items')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_status_send')
        batch_op.drop_index('ix_outbox_customer_send')

    op.drop_table('outbox')
    with op.batch_alter_table('traits', schema=None) as batch_op:
        batch_op.drop_index('ix_traits_last_purchase')

    op.drop_table('traits')
    op.drop_table('policy_states')
    with op.batch_alter_table('decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_decisions_customer_time')
        batch_op.drop_index('ix_decisions_agent_time')

    op.drop_table('decisions')
    op.drop_table('consents')
    op.drop_table('settings')
    op.drop_table('metrics')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_type_time')
        batch_op.drop_index('ix_events_customer_time')

    op.drop_table('events')
    op.drop_table('cycles')
    op.drop_table('customers')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_entity')

    op.drop_table('audit_log')
    op.drop_table('agents')
