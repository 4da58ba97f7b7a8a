"""crowd events: an event's window, expected attendance and zones (many-to-many)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import urbansec.store.types

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = urbansec.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('crowd_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('starts_at', UTC_TIME, nullable=False),
    sa.Column('ends_at', UTC_TIME, nullable=False),
    sa.Column('expected_attendance', sa.Integer(), nullable=True),
    sa.Column('created_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crowd_events'))
    )
    with op.batch_alter_table('crowd_events', schema=None) as batch_op:
        batch_op.create_index('ix_crowd_events_starts_at', ['starts_at'], unique=False)

    op.create_table('crowd_event_zones',
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['event_id'], ['crowd_events.id'], name=op.f('fk_crowd_event_zones_event_id_crowd_events'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['zone_id'], ['crowd_zones.id'], name=op.f('fk_crowd_event_zones_zone_id_crowd_zones'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('event_id', 'zone_id', name=op.f('pk_crowd_event_zones'))
    )
    with op.batch_alter_table('crowd_event_zones', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_crowd_event_zones_zone_id'), ['zone_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('crowd_event_zones', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_crowd_event_zones_zone_id'))

    op.drop_table('crowd_event_zones')
    with op.batch_alter_table('crowd_events', schema=None) as batch_op:
        batch_op.drop_index('ix_crowd_events_starts_at')

    op.drop_table('crowd_events')
