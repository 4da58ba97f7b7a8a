"""live alerts: rules, alerts (unique de-duplication key), the alert sequence counter,
webhooks and their deliveries

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

``alerts.key`` is unique (the crowd rules' key plus the raising instant): evaluating the same
batch twice stores nothing twice. ``alert_sequence`` holds one row, the last sequence number
handed to an alert change (the Server-Sent Events id).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import urbansec.store.types

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = urbansec.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('alert_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=False),
    sa.Column('params', JSON, nullable=False),
    sa.Column('zones', JSON, nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_rules'))
    )
    op.create_table('alerts',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('key', sa.String(length=500), nullable=False),
    sa.Column('rule_key', sa.String(length=400), nullable=False),
    sa.Column('rule_id', sa.Integer(), nullable=True),
    sa.Column('rule_name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('severity', sa.String(length=10), nullable=False),
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('zone', sa.String(length=100), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('details', JSON, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('raised_at', UTC_TIME, nullable=False),
    sa.Column('last_seen_at', UTC_TIME, nullable=False),
    sa.Column('cleared_at', UTC_TIME, nullable=True),
    sa.Column('acknowledged_at', UTC_TIME, nullable=True),
    sa.Column('acknowledged_by', sa.String(length=100), nullable=True),
    sa.Column('ack_note', sa.Text(), nullable=True),
    sa.Column('seq', BIG_ID, nullable=False),
    sa.ForeignKeyConstraint(['rule_id'], ['alert_rules.id'], name=op.f('fk_alerts_rule_id_alert_rules'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('key', name=op.f('uq_alerts_key'))
    )
    op.create_index('ix_alerts_status_raised_at', 'alerts', ['status', 'raised_at'], unique=False)
    op.create_index('ix_alerts_seq', 'alerts', ['seq'], unique=False)
    op.create_index('ix_alerts_rule_key', 'alerts', ['rule_key'], unique=False)
    op.create_table('alert_sequence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('value', BIG_ID, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_sequence'))
    )
    op.execute("INSERT INTO alert_sequence (id, value) VALUES (1, 0)")
    op.create_table('webhooks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(length=1000), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=False),
    sa.Column('events', JSON, nullable=False),
    sa.Column('min_severity', sa.String(length=10), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhooks'))
    )
    op.create_table('webhook_deliveries',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('webhook_id', sa.Integer(), nullable=False),
    sa.Column('alert_id', BIG_ID, nullable=True),
    sa.Column('seq', BIG_ID, nullable=False),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('payload', JSON, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTC_TIME, nullable=False),
    sa.Column('locked_until', UTC_TIME, nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('delivered_at', UTC_TIME, nullable=True),
    sa.ForeignKeyConstraint(['alert_id'], ['alerts.id'], name=op.f('fk_webhook_deliveries_alert_id_alerts'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['webhook_id'], ['webhooks.id'], name=op.f('fk_webhook_deliveries_webhook_id_webhooks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries'))
    )
    op.create_index('ix_webhook_deliveries_status_next', 'webhook_deliveries', ['status', 'next_attempt_at'], unique=False)
    op.create_index(op.f('ix_webhook_deliveries_webhook_id'), 'webhook_deliveries', ['webhook_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_webhook_deliveries_webhook_id'), table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_status_next', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    op.drop_table('webhooks')
    op.drop_table('alert_sequence')
    op.drop_index('ix_alerts_rule_key', table_name='alerts')
    op.drop_index('ix_alerts_seq', table_name='alerts')
    op.drop_index('ix_alerts_status_raised_at', table_name='alerts')
    op.drop_table('alerts')
    op.drop_table('alert_rules')
