"""Tables for live crowd alerts: the rules, the alerts they raised, the webhooks that want
them and each delivery attempt. Migration 0005 creates exactly these.

- ``alerts.key`` is unique: it is the de-duplication key of :mod:`urbansec.crowd.rules` plus
  the instant the alert was raised (a condition that clears and comes back is a new alert), so
  a batch evaluated twice (a QoS 1 redelivery, an engine restart) never stores an alert twice.
  ``rule_key`` is the rules' own key, used to rebuild the engine's memory after a restart.
- ``alerts.seq`` is the sequence number of the alert's latest change (raised, value update,
  cleared, acknowledged), drawn from the one-row ``alert_sequence`` counter. Server-Sent Events
  carry it as their ``id``, so a browser reconnecting with ``Last-Event-ID`` gets every alert
  changed since (``seq > id``), and a process receiving the same change twice (directly and
  over MQTT) drops the second.
- ``webhook_deliveries`` is an outbox: a delivery row is written in the transaction that
  changes the alert, and a worker sends it (with retries) after the commit, so a crash loses
  no delivery and a rolled-back change sends none.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from urbansec.store.tables import Base, BigId
from urbansec.store.types import UTCDateTime, json_type

RULE_KINDS = ("threshold", "trend", "silent", "light_failed", "geofence")
SEVERITIES = ("info", "warning", "critical")
ALERT_STATUSES = ("open", "acknowledged", "cleared")
#: what a webhook can ask for: an alert raised, its value changed, cleared, acknowledged
ALERT_CHANGES = ("raised", "updated", "cleared", "acknowledged")


class AlertRule(Base):
    """A rule of :mod:`urbansec.crowd.rules`: ``kind`` picks the class, ``params`` its
    arguments, ``zones`` the zone keys it watches (None: every zone)."""

    __tablename__ = "alert_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(10))
    params: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    zones: Mapped[list[str] | None] = mapped_column(json_type())
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StoredAlert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_status_raised_at", "status", "raised_at"),
        Index("ix_alerts_seq", "seq"),
        Index("ix_alerts_rule_key", "rule_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(500), unique=True)
    rule_key: Mapped[str] = mapped_column(String(400))
    # the rule may be deleted later; its alerts stay listed with the name it had
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("alert_rules.id", ondelete="SET NULL"))
    rule_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(300))
    zone: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    status: Mapped[str] = mapped_column(String(20))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    ack_note: Mapped[str | None] = mapped_column(Text)
    seq: Mapped[int] = mapped_column(BigId)


class AlertSequence(Base):
    """One row: the last sequence number handed out (a counter both databases serialise)."""

    __tablename__ = "alert_sequence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigId, default=0)


class Webhook(Base):
    """An HTTP endpoint that receives alert changes, signed with ``secret`` (HMAC-SHA256).
    The secret is kept as given: the server needs it to sign every delivery."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(1000))
    secret: Mapped[str] = mapped_column(String(200))
    events: Mapped[list[str]] = mapped_column(json_type())  # ALERT_CHANGES subset
    min_severity: Mapped[str] = mapped_column(String(10))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(Base):
    """One alert change to send to one webhook, and how sending it went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"),
                                            index=True)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    seq: Mapped[int] = mapped_column(BigId)
    event: Mapped[str] = mapped_column(String(20))
    payload: Mapped[dict[str, Any]] = mapped_column(json_type())
    status: Mapped[str] = mapped_column(String(20))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # a worker holds the row until then (several processes may run workers)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
