"""Tables for live sensor feeds: the OGC SensorThings API v1.1 entities, crowd zones, the MQTT
topic mapping, and what the ingester rejected. Migration 0003 creates exactly these.

Observations are read as "one datastream over a time range" (a zone's counters, minute by
minute), so ``(datastream_id, phenomenon_time, result_key)`` is both their unique key and their
main index: a QoS 1 redelivery of the same reading is the same row, never a second count, and a
range read is one index scan. ``result_number`` keeps numeric results (counts, devices, lux)
as a float so series come back without decoding JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from urbansec.store.tables import Base, BigId
from urbansec.store.types import UTCDateTime, json_type

#: what a datastream measures for crowd safety (``None``: not tied to a zone's crowd state)
DATASTREAM_ROLES = ("in_counter", "out_counter", "area_count", "beacon_devices",
                    "lighting_status", "footfall", "position")


class Zone(Base):
    """A crowd-managed zone: polygon (GeoJSON, WGS84), usable area, type and capacity."""

    __tablename__ = "crowd_zones"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    zone_type: Mapped[str] = mapped_column(String(20))  # urbansec.crowd.zones.ZoneType
    geometry: Mapped[str | None] = mapped_column(Text)
    area_m2: Mapped[float] = mapped_column(Float)  # usable area
    width_m: Mapped[float | None] = mapped_column(Float)
    capacity: Mapped[int | None] = mapped_column(Integer)
    properties: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Thing(Base):
    __tablename__ = "sta_things"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    properties: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    # an importer's stable identity for the entity ("auckland:107 Quay Street"), so a second
    # import finds it instead of creating a twin; None for entities made through the API
    external_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class Location(Base):
    __tablename__ = "sta_locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    encoding_type: Mapped[str] = mapped_column(String(100))
    location: Mapped[Any] = mapped_column(json_type())
    properties: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    external_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class ThingLocation(Base):
    """The Thing's current Location(s) (many-to-many in the standard)."""

    __tablename__ = "sta_thing_locations"

    thing_id: Mapped[int] = mapped_column(ForeignKey("sta_things.id", ondelete="CASCADE"),
                                          primary_key=True)
    location_id: Mapped[int] = mapped_column(
        ForeignKey("sta_locations.id", ondelete="CASCADE"), primary_key=True, index=True)


class HistoricalLocation(Base):
    __tablename__ = "sta_historical_locations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thing_id: Mapped[int] = mapped_column(ForeignKey("sta_things.id", ondelete="CASCADE"),
                                          index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime())


class HistoricalLocationLocation(Base):
    __tablename__ = "sta_historical_location_locations"

    historical_location_id: Mapped[int] = mapped_column(
        ForeignKey("sta_historical_locations.id", ondelete="CASCADE"), primary_key=True)
    location_id: Mapped[int] = mapped_column(
        ForeignKey("sta_locations.id", ondelete="CASCADE"), primary_key=True, index=True)


class Sensor(Base):
    __tablename__ = "sta_sensors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    encoding_type: Mapped[str] = mapped_column(String(100))
    sensor_metadata: Mapped[str] = mapped_column("metadata", Text, default="")
    properties: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    external_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class ObservedProperty(Base):
    __tablename__ = "sta_observed_properties"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    definition: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    properties: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    external_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class Datastream(Base):
    """A Thing's series of one ObservedProperty by one Sensor; optionally a zone's counter,
    area count, beacon gateway or light (``zone_id`` + ``role``)."""

    __tablename__ = "sta_datastreams"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    observation_type: Mapped[str] = mapped_column(String(200))
    unit_of_measurement: Mapped[dict[str, Any]] = mapped_column(json_type())
    observed_area: Mapped[Any | None] = mapped_column(json_type())
    properties: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    thing_id: Mapped[int] = mapped_column(ForeignKey("sta_things.id", ondelete="CASCADE"),
                                          index=True)
    sensor_id: Mapped[int] = mapped_column(ForeignKey("sta_sensors.id", ondelete="CASCADE"),
                                           index=True)
    observed_property_id: Mapped[int] = mapped_column(
        ForeignKey("sta_observed_properties.id", ondelete="CASCADE"), index=True)
    zone_id: Mapped[int | None] = mapped_column(
        ForeignKey("crowd_zones.id", ondelete="SET NULL"), index=True)
    role: Mapped[str | None] = mapped_column(String(30))  # DATASTREAM_ROLES
    external_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class FeatureOfInterest(Base):
    __tablename__ = "sta_features"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    encoding_type: Mapped[str] = mapped_column(String(100))
    feature: Mapped[Any] = mapped_column(json_type())
    properties: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    # the Location this feature was made from, when the server made it (the standard's rule
    # for an Observation posted without a FeatureOfInterest); reused for later ones
    location_id: Mapped[int | None] = mapped_column(
        ForeignKey("sta_locations.id", ondelete="SET NULL"), unique=True)


class Observation(Base):
    __tablename__ = "sta_observations"
    __table_args__ = (
        UniqueConstraint("datastream_id", "phenomenon_time", "result_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    datastream_id: Mapped[int] = mapped_column(
        ForeignKey("sta_datastreams.id", ondelete="CASCADE"))
    phenomenon_time: Mapped[datetime] = mapped_column(UTCDateTime())
    phenomenon_time_end: Mapped[datetime | None] = mapped_column(UTCDateTime())  # intervals
    result_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    result: Mapped[Any] = mapped_column(json_type())
    result_number: Mapped[float | None] = mapped_column(Float)
    # canonical JSON of the result (sha256 of it when long): the de-duplication key
    result_key: Mapped[str] = mapped_column(String(64))
    result_quality: Mapped[Any | None] = mapped_column(json_type())
    valid_time_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    valid_time_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    parameters: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    feature_of_interest_id: Mapped[int | None] = mapped_column(
        ForeignKey("sta_features.id", ondelete="SET NULL"), index=True)


class TopicMapping(Base):
    """A plain-JSON MQTT topic field feeding a datastream: ``counters/gate-a/count`` field
    ``in`` -> datastream 5; the phenomenon time is read from ``time_field``."""

    __tablename__ = "sensor_topic_mappings"
    __table_args__ = (UniqueConstraint("topic", "field"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    topic: Mapped[str] = mapped_column(String(300))
    field: Mapped[str] = mapped_column(String(100))
    time_field: Mapped[str] = mapped_column(String(100), default="ts")
    datastream_id: Mapped[int] = mapped_column(
        ForeignKey("sta_datastreams.id", ondelete="CASCADE"), index=True)


class RejectedMessage(Base):
    """An MQTT message (or part of one) the ingester refused, and why."""

    __tablename__ = "sensor_rejected_messages"
    __table_args__ = (Index("ix_sensor_rejected_messages_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    topic: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    payload_excerpt: Mapped[str] = mapped_column(Text, default="")


class IngestStatus(Base):
    """An ingester's counters, written with each batch it commits (so ``urbansec sensors
    status`` in another process sees exactly what is stored)."""

    __tablename__ = "sensor_ingest_status"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accepted: Mapped[int] = mapped_column(BigId, default=0)
    duplicates: Mapped[int] = mapped_column(BigId, default=0)
    rejected: Mapped[dict[str, int]] = mapped_column(json_type(), default=dict)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
