"""The tables. One declarative model per table; the Alembic migrations create exactly these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from urbansec.store.types import UTCDateTime, json_type

# Deterministic constraint names so migrations are the same on every database.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY, PostgreSQL wants BIGINT for big tables.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Source(Base):
    """Who published the evidence (a police force, a portal, a partner)."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    timezone: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str | None] = mapped_column(String(500))
    licence: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ImportBatch(Base):
    """One file imported once: what came in, what happened to it and when."""

    __tablename__ = "import_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # incidents | areas | area-counts
    preset: Mapped[str] = mapped_column(String(50))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id"))
    file_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20))  # succeeded | failed
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    rows_inserted: Mapped[int] = mapped_column(Integer, default=0)
    rows_updated: Mapped[int] = mapped_column(Integer, default=0)
    rows_unchanged: Mapped[int] = mapped_column(Integer, default=0)
    rows_rejected: Mapped[int] = mapped_column(Integer, default=0)
    rows_unlocated: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    message: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    source: Mapped[Source | None] = relationship()


class RejectedRowRecord(Base):
    """A row that was not imported, with where it was and why, so nothing is lost silently."""

    __tablename__ = "rejected_rows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    batch_id: Mapped[int] = mapped_column(
        ForeignKey("import_batches.id", ondelete="CASCADE"), index=True
    )
    line_number: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    raw_line: Mapped[str] = mapped_column(Text)


class Incident(Base):
    """One recorded incident. ``(source_id, source_key)`` identifies it across re-imports."""

    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("source_id", "source_key"),
        Index("ix_incidents_occurred_at", "occurred_at"),
        Index("ix_incidents_category_occurred_at", "category", "occurred_at"),
        Index("ix_incidents_lon_lat", "lon", "lat"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    source_key: Mapped[str] = mapped_column(String(100))
    # Canonical ICCS-based code; None when the source category is not mapped (kept, reported).
    category: Mapped[str | None] = mapped_column(String(10))
    source_category: Mapped[str | None] = mapped_column(String(200))
    source_subcategory: Mapped[str | None] = mapped_column(String(300))
    source_code: Mapped[str | None] = mapped_column(String(50))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # second | minute | hour | day | month: how precisely the source knows occurred_at.
    time_precision: Mapped[str] = mapped_column(String(10))
    reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    location_description: Mapped[str | None] = mapped_column(String(300))
    address: Mapped[str | None] = mapped_column(String(300))
    area_codes: Mapped[dict[str, str]] = mapped_column(json_type(), default=dict)
    arrest: Mapped[bool | None] = mapped_column(Boolean)
    domestic: Mapped[bool | None] = mapped_column(Boolean)
    attributes: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    row_hash: Mapped[str] = mapped_column(String(32))
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id"))


class Area(Base):
    """A polygon area (police district, beat, ward, LOR region...), geometry as GeoJSON in WGS84.

    The bounding box columns let SQLite pre-filter; PostgreSQL also has a PostGIS ``geom``
    column generated from the GeoJSON, with a GiST index (see the initial migration).
    """

    __tablename__ = "areas"
    __table_args__ = (UniqueConstraint("kind", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    code: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(300))
    geometry: Mapped[str] = mapped_column(Text)
    min_lon: Mapped[float] = mapped_column(Float)
    min_lat: Mapped[float] = mapped_column(Float)
    max_lon: Mapped[float] = mapped_column(Float)
    max_lat: Mapped[float] = mapped_column(Float)
    attributes: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("import_batches.id"))


class AreaCount(Base):
    """A count published per area per period (how many European police forces publish)."""

    __tablename__ = "area_counts"
    __table_args__ = (
        UniqueConstraint("source_id", "area_kind", "area_code", "period_start", "source_category"),
        Index("ix_area_counts_category_period", "category", "period_start"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id"))
    area_kind: Mapped[str] = mapped_column(String(50))
    area_code: Mapped[str] = mapped_column(String(100))
    area_name: Mapped[str | None] = mapped_column(String(300))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    category: Mapped[str | None] = mapped_column(String(10))
    source_category: Mapped[str] = mapped_column(String(200))
    count: Mapped[int] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id"))
