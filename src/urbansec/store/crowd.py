"""Tables for planned crowd events: an event's window, expected attendance and zones.
Migration 0004 creates exactly these.

An event bounds the crowd state and series reads of its zones, and flow-based occupancy starts
from zero at its start (the gates open on an empty site). Zones are shared between events
(many-to-many); deleting an event or a zone removes only the link rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from urbansec.store import sensors  # noqa: F401 - crowd_zones must be on Base for the FK
from urbansec.store.tables import Base
from urbansec.store.types import UTCDateTime


class CrowdEvent(Base):
    """A planned event: name, window ``[starts_at, ends_at)``, expected attendance."""

    __tablename__ = "crowd_events"
    __table_args__ = (Index("ix_crowd_events_starts_at", "starts_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expected_attendance: Mapped[int | None] = mapped_column(Integer)
    # the audit trail's name of the caller ("user:3", "apikey:2", "system:cli"): API keys
    # create events too, so this cannot be a users.id foreign key
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CrowdEventZone(Base):
    """An event's zone (many-to-many between crowd_events and crowd_zones)."""

    __tablename__ = "crowd_event_zones"

    event_id: Mapped[int] = mapped_column(ForeignKey("crowd_events.id", ondelete="CASCADE"),
                                          primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("crowd_zones.id", ondelete="CASCADE"),
                                         primary_key=True, index=True)
