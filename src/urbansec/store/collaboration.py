"""Tables for working together: organisations and people, citizen reports, the shared risk
register and the audit trail. Migration 0002 creates exactly these."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from urbansec.store.tables import Base, BigId
from urbansec.store.types import UTCDateTime, json_type


class Organisation(Base):
    """A partner of the local crime-prevention council: the city, police, an NGO, a school."""

    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    kind: Mapped[str] = mapped_column(String(50), default="partner")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class User(Base):
    """A person who signs in; the role decides what they may do (``urbansec.services.access``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(300))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ApiKey(Base):
    """A machine client's key, per organisation; only its hash is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuthToken(Base):
    """An opaque bearer token (access or refresh) with an expiry; only its hash is stored."""

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # access | refresh
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Report(Base):
    """A citizen's report (also an Open311 service request).

    ``description`` is what the reporter wrote, visible only in the restricted view;
    ``public_description`` has e-mail addresses and phone numbers removed. Contact details are
    personal data: erased after the retention period or on request (``contact_erased_at``).
    """

    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_status_submitted_at", "status", "submitted_at"),
        Index("ix_reports_service_code_submitted_at", "service_code", "submitted_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True)  # service_request_id
    service_code: Mapped[str] = mapped_column(String(50))
    category: Mapped[str | None] = mapped_column(String(10))  # canonical taxonomy code
    description: Mapped[str] = mapped_column(Text, default="")
    public_description: Mapped[str] = mapped_column(Text, default="")
    lon: Mapped[float | None] = mapped_column(Float)
    lat: Mapped[float | None] = mapped_column(Float)
    address: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))  # pending|approved|rejected|merged|closed
    status_notes: Mapped[str | None] = mapped_column(Text)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    moderated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    moderated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    agency_responsible: Mapped[str | None] = mapped_column(String(300))
    channel: Mapped[str] = mapped_column(String(20), default="web")  # web | open311 | api
    attributes: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    contact_name: Mapped[str | None] = mapped_column(String(300))
    contact_email: Mapped[str | None] = mapped_column(String(320))
    contact_phone: Mapped[str | None] = mapped_column(String(50))
    contact_erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    tracking_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # an idempotency key from the client: a retried submission never creates a second report
    client_key: Mapped[str | None] = mapped_column(String(100), unique=True)


class ReportPhoto(Base):
    """A photo attached to a report (type checked, size limited)."""

    __tablename__ = "report_photos"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    media_type: Mapped[str] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Risk(Base):
    """An entry of the shared risk register."""

    __tablename__ = "risks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    threat_type: Mapped[str] = mapped_column(String(50))
    area_kind: Mapped[str | None] = mapped_column(String(50))
    area_code: Mapped[str | None] = mapped_column(String(100))
    area_geometry: Mapped[str | None] = mapped_column(Text)  # GeoJSON, WGS84
    likelihood: Mapped[int] = mapped_column(Integer)
    impact: Mapped[int] = mapped_column(Integer)
    score: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(10))
    owner_organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"),
                                                       index=True)
    status: Mapped[str] = mapped_column(String(20))
    sharing: Mapped[str] = mapped_column(String(20))  # organisation | partners | public
    review_date: Mapped[date | None] = mapped_column(Date)
    evidence: Mapped[list[Any]] = mapped_column(json_type(), default=list)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RiskAction(Base):
    __tablename__ = "risk_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    risk_id: Mapped[int] = mapped_column(ForeignKey("risks.id"), index=True)
    title: Mapped[str] = mapped_column(String(300))
    owner_organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    owner_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    due_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RiskComment(Base):
    __tablename__ = "risk_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    risk_id: Mapped[int] = mapped_column(ForeignKey("risks.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RiskHistory(Base):
    """Every change of a risk or its actions: who, when, what changed (before/after)."""

    __tablename__ = "risk_history"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    risk_id: Mapped[int] = mapped_column(ForeignKey("risks.id"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    change: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)


class AuditEntry(Base):
    """One append-only, hash-chained entry: ``hash = sha256(prev_hash + canonical entry)``."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))  # user:12 | apikey:3 | anonymous | cli
    organisation_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str | None] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class PendingAuditEntry(Base):
    """An entry waiting for its transaction's commit to be chained (PostgreSQL only).

    A deferred trigger (migration 0006) moves each row into ``audit_log`` at commit, under the
    chain lock, and deletes it: the lock is then held only while the database itself commits,
    never across a round trip to the application. The table is empty outside transactions;
    on SQLite, where writers are serialised anyway, it stays unused."""

    __tablename__ = "audit_pending"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    organisation_id: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(100))
    target_type: Mapped[str | None] = mapped_column(String(50))
    target_id: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(json_type(), default=dict)
    #: the entry's canonical JSON, which the chained hash covers
    canonical: Mapped[str] = mapped_column(Text)
