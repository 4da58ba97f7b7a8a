"""working together: organisations, users, API keys, tokens, citizen reports, the risk
register and the hash-chained audit log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import urbansec.store.types

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = urbansec.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('at', UTC_TIME, nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('target_type', sa.String(length=50), nullable=True),
    sa.Column('target_id', sa.String(length=100), nullable=True),
    sa.Column('details', JSON, nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('hash', name=op.f('uq_audit_log_hash'))
    )
    op.create_table('organisations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organisations')),
    sa.UniqueConstraint('key', name=op.f('uq_organisations_key'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('expires_at', UTC_TIME, nullable=True),
    sa.Column('revoked_at', UTC_TIME, nullable=True),
    sa.Column('last_used_at', UTC_TIME, nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_api_keys_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_organisation_id'), ['organisation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_api_keys_prefix'), ['prefix'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('last_login_at', UTC_TIME, nullable=True),
    sa.ForeignKeyConstraint(['organisation_id'], ['organisations.id'], name=op.f('fk_users_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_organisation_id'), ['organisation_id'], unique=False)

    op.create_table('auth_tokens',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('expires_at', UTC_TIME, nullable=False),
    sa.Column('revoked_at', UTC_TIME, nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_auth_tokens_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_auth_tokens_token_hash'))
    )
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_auth_tokens_user_id'), ['user_id'], unique=False)

    op.create_table('reports',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('public_id', sa.String(length=40), nullable=False),
    sa.Column('service_code', sa.String(length=50), nullable=False),
    sa.Column('category', sa.String(length=10), nullable=True),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('public_description', sa.Text(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('address', sa.String(length=500), nullable=True),
    sa.Column('occurred_at', UTC_TIME, nullable=True),
    sa.Column('submitted_at', UTC_TIME, nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('status_notes', sa.Text(), nullable=True),
    sa.Column('merged_into_id', BIG_ID, nullable=True),
    sa.Column('moderated_by', sa.Integer(), nullable=True),
    sa.Column('moderated_at', UTC_TIME, nullable=True),
    sa.Column('agency_responsible', sa.String(length=300), nullable=True),
    sa.Column('channel', sa.String(length=20), nullable=False),
    sa.Column('attributes', JSON, nullable=False),
    sa.Column('contact_name', sa.String(length=300), nullable=True),
    sa.Column('contact_email', sa.String(length=320), nullable=True),
    sa.Column('contact_phone', sa.String(length=50), nullable=True),
    sa.Column('contact_erased_at', UTC_TIME, nullable=True),
    sa.Column('tracking_hash', sa.String(length=64), nullable=False),
    sa.Column('client_key', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['merged_into_id'], ['reports.id'], name=op.f('fk_reports_merged_into_id_reports')),
    sa.ForeignKeyConstraint(['moderated_by'], ['users.id'], name=op.f('fk_reports_moderated_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reports')),
    sa.UniqueConstraint('client_key', name=op.f('uq_reports_client_key')),
    sa.UniqueConstraint('public_id', name=op.f('uq_reports_public_id')),
    sa.UniqueConstraint('tracking_hash', name=op.f('uq_reports_tracking_hash'))
    )
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index('ix_reports_service_code_submitted_at', ['service_code', 'submitted_at'], unique=False)
        batch_op.create_index('ix_reports_status_submitted_at', ['status', 'submitted_at'], unique=False)

    op.create_table('risks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('threat_type', sa.String(length=50), nullable=False),
    sa.Column('area_kind', sa.String(length=50), nullable=True),
    sa.Column('area_code', sa.String(length=100), nullable=True),
    sa.Column('area_geometry', sa.Text(), nullable=True),
    sa.Column('likelihood', sa.Integer(), nullable=False),
    sa.Column('impact', sa.Integer(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('owner_organisation_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('sharing', sa.String(length=20), nullable=False),
    sa.Column('review_date', sa.Date(), nullable=True),
    sa.Column('evidence', JSON, nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=True),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], name=op.f('fk_risks_created_by_users')),
    sa.ForeignKeyConstraint(['owner_organisation_id'], ['organisations.id'], name=op.f('fk_risks_owner_organisation_id_organisations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risks'))
    )
    with op.batch_alter_table('risks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risks_owner_organisation_id'), ['owner_organisation_id'], unique=False)

    op.create_table('report_photos',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('report_id', BIG_ID, nullable=False),
    sa.Column('media_type', sa.String(length=50), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name=op.f('fk_report_photos_report_id_reports')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_report_photos'))
    )
    with op.batch_alter_table('report_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_photos_report_id'), ['report_id'], unique=False)

    op.create_table('risk_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('risk_id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('owner_organisation_id', sa.Integer(), nullable=False),
    sa.Column('owner_user_id', sa.Integer(), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['owner_organisation_id'], ['organisations.id'], name=op.f('fk_risk_actions_owner_organisation_id_organisations')),
    sa.ForeignKeyConstraint(['owner_user_id'], ['users.id'], name=op.f('fk_risk_actions_owner_user_id_users')),
    sa.ForeignKeyConstraint(['risk_id'], ['risks.id'], name=op.f('fk_risk_actions_risk_id_risks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_actions'))
    )
    with op.batch_alter_table('risk_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_actions_risk_id'), ['risk_id'], unique=False)

    op.create_table('risk_comments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('risk_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['risk_id'], ['risks.id'], name=op.f('fk_risk_comments_risk_id_risks')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_risk_comments_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_comments'))
    )
    with op.batch_alter_table('risk_comments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_comments_risk_id'), ['risk_id'], unique=False)

    op.create_table('risk_history',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('risk_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('at', UTC_TIME, nullable=False),
    sa.Column('change', JSON, nullable=False),
    sa.ForeignKeyConstraint(['risk_id'], ['risks.id'], name=op.f('fk_risk_history_risk_id_risks')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_risk_history_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_history'))
    )
    with op.batch_alter_table('risk_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_history_risk_id'), ['risk_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('risk_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_risk_history_risk_id'))

    op.drop_table('risk_history')
    with op.batch_alter_table('risk_comments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_risk_comments_risk_id'))

    op.drop_table('risk_comments')
    with op.batch_alter_table('risk_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_risk_actions_risk_id'))

    op.drop_table('risk_actions')
    with op.batch_alter_table('report_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_report_photos_report_id'))

    op.drop_table('report_photos')
    with op.batch_alter_table('risks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_risks_owner_organisation_id'))

    op.drop_table('risks')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index('ix_reports_status_submitted_at')
        batch_op.drop_index('ix_reports_service_code_submitted_at')

    op.drop_table('reports')
    with op.batch_alter_table('auth_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_auth_tokens_user_id'))

    op.drop_table('auth_tokens')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_organisation_id'))

    op.drop_table('users')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_prefix'))
        batch_op.drop_index(batch_op.f('ix_api_keys_organisation_id'))

    op.drop_table('api_keys')
    op.drop_table('organisations')
    op.drop_table('audit_log')
