"""sensor feeds: the OGC SensorThings API v1.1 entities, crowd zones, the MQTT topic mapping,
rejected messages and the ingester's counters

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

Observations are unique per (datastream, phenomenon time, result): a redelivered MQTT message
is the same row. That unique index is also the "datastream over a time range" index.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import urbansec.store.types

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = urbansec.store.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('crowd_zones',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('zone_type', sa.String(length=20), nullable=False),
    sa.Column('geometry', sa.Text(), nullable=True),
    sa.Column('area_m2', sa.Float(), nullable=False),
    sa.Column('width_m', sa.Float(), nullable=True),
    sa.Column('capacity', sa.Integer(), nullable=True),
    sa.Column('properties', JSON, nullable=False),
    sa.Column('created_at', UTC_TIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_crowd_zones')),
    sa.UniqueConstraint('key', name=op.f('uq_crowd_zones_key'))
    )
    op.create_table('sensor_ingest_status',
    sa.Column('client_id', sa.String(length=100), nullable=False),
    sa.Column('started_at', UTC_TIME, nullable=False),
    sa.Column('updated_at', UTC_TIME, nullable=False),
    sa.Column('accepted', BIG_ID, nullable=False),
    sa.Column('duplicates', BIG_ID, nullable=False),
    sa.Column('rejected', JSON, nullable=False),
    sa.Column('last_message_at', UTC_TIME, nullable=True),
    sa.PrimaryKeyConstraint('client_id', name=op.f('pk_sensor_ingest_status'))
    )
    op.create_table('sensor_rejected_messages',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('received_at', UTC_TIME, nullable=False),
    sa.Column('topic', sa.String(length=300), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('payload_excerpt', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sensor_rejected_messages'))
    )
    with op.batch_alter_table('sensor_rejected_messages', schema=None) as batch_op:
        batch_op.create_index('ix_sensor_rejected_messages_received_at', ['received_at'], unique=False)

    op.create_table('sta_locations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('encoding_type', sa.String(length=100), nullable=False),
    sa.Column('location', JSON, nullable=False),
    sa.Column('properties', JSON, nullable=True),
    sa.Column('external_key', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sta_locations')),
    sa.UniqueConstraint('external_key', name=op.f('uq_sta_locations_external_key'))
    )
    op.create_table('sta_observed_properties',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('definition', sa.String(length=500), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('properties', JSON, nullable=True),
    sa.Column('external_key', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sta_observed_properties')),
    sa.UniqueConstraint('external_key', name=op.f('uq_sta_observed_properties_external_key'))
    )
    op.create_table('sta_sensors',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('encoding_type', sa.String(length=100), nullable=False),
    sa.Column('metadata', sa.Text(), nullable=False),
    sa.Column('properties', JSON, nullable=True),
    sa.Column('external_key', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sta_sensors')),
    sa.UniqueConstraint('external_key', name=op.f('uq_sta_sensors_external_key'))
    )
    op.create_table('sta_things',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('properties', JSON, nullable=True),
    sa.Column('external_key', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sta_things')),
    sa.UniqueConstraint('external_key', name=op.f('uq_sta_things_external_key'))
    )
    op.create_table('sta_datastreams',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('observation_type', sa.String(length=200), nullable=False),
    sa.Column('unit_of_measurement', JSON, nullable=False),
    sa.Column('observed_area', JSON, nullable=True),
    sa.Column('properties', JSON, nullable=True),
    sa.Column('thing_id', sa.Integer(), nullable=False),
    sa.Column('sensor_id', sa.Integer(), nullable=False),
    sa.Column('observed_property_id', sa.Integer(), nullable=False),
    sa.Column('zone_id', sa.Integer(), nullable=True),
    sa.Column('role', sa.String(length=30), nullable=True),
    sa.Column('external_key', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['observed_property_id'], ['sta_observed_properties.id'], name=op.f('fk_sta_datastreams_observed_property_id_sta_observed_properties'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sensor_id'], ['sta_sensors.id'], name=op.f('fk_sta_datastreams_sensor_id_sta_sensors'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['thing_id'], ['sta_things.id'], name=op.f('fk_sta_datastreams_thing_id_sta_things'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['zone_id'], ['crowd_zones.id'], name=op.f('fk_sta_datastreams_zone_id_crowd_zones'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sta_datastreams')),
    sa.UniqueConstraint('external_key', name=op.f('uq_sta_datastreams_external_key'))
    )
    with op.batch_alter_table('sta_datastreams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sta_datastreams_observed_property_id'), ['observed_property_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sta_datastreams_sensor_id'), ['sensor_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sta_datastreams_thing_id'), ['thing_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sta_datastreams_zone_id'), ['zone_id'], unique=False)

    op.create_table('sta_features',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('encoding_type', sa.String(length=100), nullable=False),
    sa.Column('feature', JSON, nullable=False),
    sa.Column('properties', JSON, nullable=True),
    sa.Column('location_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['location_id'], ['sta_locations.id'], name=op.f('fk_sta_features_location_id_sta_locations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sta_features')),
    sa.UniqueConstraint('location_id', name=op.f('uq_sta_features_location_id'))
    )
    op.create_table('sta_historical_locations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('thing_id', sa.Integer(), nullable=False),
    sa.Column('time', UTC_TIME, nullable=False),
    sa.ForeignKeyConstraint(['thing_id'], ['sta_things.id'], name=op.f('fk_sta_historical_locations_thing_id_sta_things'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sta_historical_locations'))
    )
    with op.batch_alter_table('sta_historical_locations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sta_historical_locations_thing_id'), ['thing_id'], unique=False)

    op.create_table('sta_thing_locations',
    sa.Column('thing_id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['location_id'], ['sta_locations.id'], name=op.f('fk_sta_thing_locations_location_id_sta_locations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['thing_id'], ['sta_things.id'], name=op.f('fk_sta_thing_locations_thing_id_sta_things'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('thing_id', 'location_id', name=op.f('pk_sta_thing_locations'))
    )
    with op.batch_alter_table('sta_thing_locations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sta_thing_locations_location_id'), ['location_id'], unique=False)

    op.create_table('sensor_topic_mappings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('topic', sa.String(length=300), nullable=False),
    sa.Column('field', sa.String(length=100), nullable=False),
    sa.Column('time_field', sa.String(length=100), nullable=False),
    sa.Column('datastream_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['datastream_id'], ['sta_datastreams.id'], name=op.f('fk_sensor_topic_mappings_datastream_id_sta_datastreams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sensor_topic_mappings')),
    sa.UniqueConstraint('topic', 'field', name=op.f('uq_sensor_topic_mappings_topic_field'))
    )
    with op.batch_alter_table('sensor_topic_mappings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sensor_topic_mappings_datastream_id'), ['datastream_id'], unique=False)

    op.create_table('sta_historical_location_locations',
    sa.Column('historical_location_id', sa.Integer(), nullable=False),
    sa.Column('location_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['historical_location_id'], ['sta_historical_locations.id'], name=op.f('fk_sta_historical_location_locations_historical_location_id_sta_historical_locations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['location_id'], ['sta_locations.id'], name=op.f('fk_sta_historical_location_locations_location_id_sta_locations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('historical_location_id', 'location_id', name=op.f('pk_sta_historical_location_locations'))
    )
    with op.batch_alter_table('sta_historical_location_locations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sta_historical_location_locations_location_id'), ['location_id'], unique=False)

    op.create_table('sta_observations',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('datastream_id', sa.Integer(), nullable=False),
    sa.Column('phenomenon_time', UTC_TIME, nullable=False),
    sa.Column('phenomenon_time_end', UTC_TIME, nullable=True),
    sa.Column('result_time', UTC_TIME, nullable=True),
    sa.Column('result', JSON, nullable=False),
    sa.Column('result_number', sa.Float(), nullable=True),
    sa.Column('result_key', sa.String(length=64), nullable=False),
    sa.Column('result_quality', JSON, nullable=True),
    sa.Column('valid_time_start', UTC_TIME, nullable=True),
    sa.Column('valid_time_end', UTC_TIME, nullable=True),
    sa.Column('parameters', JSON, nullable=True),
    sa.Column('feature_of_interest_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['datastream_id'], ['sta_datastreams.id'], name=op.f('fk_sta_observations_datastream_id_sta_datastreams'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['feature_of_interest_id'], ['sta_features.id'], name=op.f('fk_sta_observations_feature_of_interest_id_sta_features'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sta_observations')),
    sa.UniqueConstraint('datastream_id', 'phenomenon_time', 'result_key', name=op.f('uq_sta_observations_datastream_id_phenomenon_time_result_key'))
    )
    with op.batch_alter_table('sta_observations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sta_observations_feature_of_interest_id'), ['feature_of_interest_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('sta_observations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sta_observations_feature_of_interest_id'))

    op.drop_table('sta_observations')
    with op.batch_alter_table('sta_historical_location_locations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sta_historical_location_locations_location_id'))

    op.drop_table('sta_historical_location_locations')
    with op.batch_alter_table('sensor_topic_mappings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sensor_topic_mappings_datastream_id'))

    op.drop_table('sensor_topic_mappings')
    with op.batch_alter_table('sta_thing_locations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sta_thing_locations_location_id'))

    op.drop_table('sta_thing_locations')
    with op.batch_alter_table('sta_historical_locations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sta_historical_locations_thing_id'))

    op.drop_table('sta_historical_locations')
    op.drop_table('sta_features')
    with op.batch_alter_table('sta_datastreams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sta_datastreams_zone_id'))
        batch_op.drop_index(batch_op.f('ix_sta_datastreams_thing_id'))
        batch_op.drop_index(batch_op.f('ix_sta_datastreams_sensor_id'))
        batch_op.drop_index(batch_op.f('ix_sta_datastreams_observed_property_id'))

    op.drop_table('sta_datastreams')
    op.drop_table('sta_things')
    op.drop_table('sta_sensors')
    op.drop_table('sta_observed_properties')
    op.drop_table('sta_locations')
    with op.batch_alter_table('sensor_rejected_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_sensor_rejected_messages_received_at')

    op.drop_table('sensor_rejected_messages')
    op.drop_table('sensor_ingest_status')
    op.drop_table('crowd_zones')
