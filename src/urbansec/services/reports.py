"""Citizen reports: submission, moderation, who sees what, retention and erasure.

Anyone may report (no account): category (``service_code``), description, location or
address, time, optional contact details and an optional photo. The reporter receives a private
tracking token (only its SHA-256 is stored) to follow the report and to erase it.

Privacy by default, decided here once for the API, Open311 and the CLI:

- the public text (``public_description``) has e-mail addresses and phone numbers masked; the
  original text and the contact details are restricted (``reports:read_restricted``, staff),
  and every restricted read is audited;
- viewers and anonymous callers see only moderated (approved or closed) reports, with the
  location generalised to the centre of a ``settings.public_cell_m`` cell and no address;
  partners see exact locations of published reports; staff see everything;
- photos lose their EXIF/XMP metadata (GPS!) before they are stored, and are staff-only;
- contact data is erased after ``settings.contact_retention_days`` (``purge_contacts``), and
  a reporter can erase their report at any time with the tracking token (``erase_report``).

Statuses: ``pending`` (new, in the moderation queue) -> ``approved`` -> ``closed``; or
``rejected`` (with a reason), ``merged`` (into another report), ``erased`` (by the reporter).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, Select, and_, or_, select, update

from urbansec.config import Settings, get_settings
from urbansec.domain.report_categories import BY_CODE, category
from urbansec.domain.text import unstorable_reason
from urbansec.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    UsageError,
)
from urbansec.privacy import generalise_point
from urbansec.privacy.ratelimit import limiter_for
from urbansec.privacy.redact import redact, sniff_image_type, strip_image_metadata
from urbansec.services import audit
from urbansec.services.access import ANONYMOUS, SYSTEM, Principal, can, require
from urbansec.services.incidents import iso_utc
from urbansec.store.collaboration import Report, ReportPhoto
from urbansec.store.engine import write_transaction

REPORTS = Report.__table__
PHOTOS = ReportPhoto.__table__

STATUSES = ("pending", "approved", "rejected", "merged", "closed", "erased")
#: what anonymous callers and viewers may see: moderated and published
PUBLIC_STATUSES = ("approved", "closed")
#: partners also see where a duplicate went
PARTNER_STATUSES = ("approved", "closed", "merged")
MODERATION_ACTIONS = ("approve", "reject", "merge", "close")

MAX_DESCRIPTION = 4000
MAX_ADDRESS = 500
MAX_REASON = 2000
MAX_LIMIT = 1000
DUPLICATE_RADIUS_M = 150.0
DUPLICATE_DAYS = 14
EARTH_RADIUS_M = 6_371_008.8

_CLIENT_KEY = re.compile(r"^[A-Za-z0-9._:\-]{16,100}$")
_PUBLIC_ID = re.compile(r"^[A-Za-z0-9._\-]{1,40}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,200}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_PHONE = re.compile(r"^\+?[0-9 ().\-/]{5,40}$")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _tracking_token(client_key: str | None) -> str:
    """A random token; with an idempotency key, one derived from it, so that a retried
    submission returns the same token although only its hash is stored. The key (16+ chars)
    is then as secret as the token: whoever holds it submitted the report."""
    if client_key is None:
        return secrets.token_urlsafe(32)
    digest = hashlib.sha256(b"urbansec-tracking-token\x00" + client_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _known_public_id(public_id: Any) -> str:
    """``public_id`` if it could be one (else 404: nothing by that name exists)."""
    if not isinstance(public_id, str) or not _PUBLIC_ID.match(public_id):
        raise NotFoundError(f"no report {str(public_id)[:40]!r}")
    return public_id


def _known_token(tracking_token: Any) -> str:
    if not isinstance(tracking_token, str) or not _TOKEN.match(tracking_token):
        raise NotFoundError("no report for this tracking token")
    return tracking_token


def _new_public_id() -> str:
    # short, unguessable, no personal data; Open311's service_request_id
    return "r-" + secrets.token_hex(6)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise UsageError(f"{name} needs a time zone (e.g. 2017-01-31T22:15:00+01:00 or ...Z)")
    return value.astimezone(UTC)


def _clean_text(value: str | None, name: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{name} must be text")
    value = value.strip()
    reason = unstorable_reason(value)
    if reason:
        raise UsageError(f"{name} {reason}")
    if len(value) > limit:
        raise UsageError(f"{name} is {len(value):,} characters long; at most {limit:,} allowed")
    return value or None


def _validate_attributes(service_code: str, attributes: dict[str, Any] | None
                         ) -> dict[str, Any]:
    definitions = {a["code"]: a for a in BY_CODE[service_code].attributes}
    attributes = dict(attributes or {})
    clean: dict[str, Any] = {}
    for code, value in attributes.items():
        definition = definitions.get(code)
        if definition is None:
            known = ", ".join(sorted(definitions)) or "none"
            raise UsageError(f"unknown attribute {code!r} for service {service_code!r} "
                             f"(known: {known})", details={"attribute": code})
        allowed = {v["key"] for v in definition.get("values", [])}
        values = value if isinstance(value, list) else [value]
        if definition.get("datatype") == "singlevaluelist" and len(values) != 1:
            raise UsageError(f"attribute {code!r} takes one value")
        for v in values:
            if not isinstance(v, str) or (allowed and v not in allowed):
                raise UsageError(f"attribute {code!r}: {v!r} is not one of "
                                 f"{', '.join(sorted(allowed))}", details={"attribute": code})
        clean[code] = values if definition.get("datatype") == "multivaluelist" else values[0]
    for code, definition in definitions.items():
        if definition.get("required") and code not in clean:
            raise UsageError(f"attribute {code!r} is required for service {service_code!r}")
    return clean


def _haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def report_status_for_open311(status: str) -> Literal["open", "closed"]:
    """Open311 knows only open and closed: new and approved reports are open, every final
    state (closed, rejected, merged, erased) is closed."""
    if status not in STATUSES:
        raise UsageError(f"unknown report status {status!r}")
    return "open" if status in ("pending", "approved") else "closed"


def _visible_statuses(principal: Principal) -> tuple[str, ...]:
    if can(principal, "reports:read_restricted"):
        return STATUSES
    if can(principal, "reports:read"):
        return PARTNER_STATUSES
    return PUBLIC_STATUSES


def _merged_public_ids(connection: Connection, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = connection.execute(select(REPORTS.c.id, REPORTS.c.public_id)
                              .where(REPORTS.c.id.in_(wanted)))
    return {r.id: r.public_id for r in rows}


def _has_photo(connection: Connection, report_ids: Sequence[int]) -> set[int]:
    if not report_ids:
        return set()
    rows = connection.execute(select(PHOTOS.c.report_id)
                              .where(PHOTOS.c.report_id.in_(list(report_ids))).distinct())
    return {r.report_id for r in rows}


def _view(row: Any, *, exact: bool, restricted: bool, own: bool, settings: Settings,
          merged_into: str | None, has_photo: bool) -> dict[str, Any]:
    """One report as the caller may see it.

    exact: partners and staff get exact coordinates and the address; restricted: staff get the
    original text and contact; own: the reporter (tracking token) gets their own contact."""
    lat, lon = row.lat, row.lon
    precision: float | None = None
    if lat is not None and lon is not None and not exact:
        lon, lat = generalise_point(lon, lat, settings.public_cell_m)
        precision = settings.public_cell_m
    definition = category(row.service_code)
    view: dict[str, Any] = {
        "public_id": row.public_id,
        "service_code": row.service_code,
        "service_name": definition.name if definition else row.service_code,
        "status": row.status,
        "open311_status": report_status_for_open311(row.status),
        "public_description": row.public_description,
        "lat": lat,
        "lon": lon,
        "location_precision_m": precision,
        "address": row.address if exact or own else None,
        "attributes": dict(row.attributes or {}),
        "submitted_at": iso_utc(row.submitted_at),
        "updated_at": iso_utc(row.updated_at),
        "status_notes": row.status_notes,
        "agency_responsible": row.agency_responsible,
        "merged_into": merged_into,
    }
    if exact or own:
        view["occurred_at"] = iso_utc(row.occurred_at)
        view["channel"] = row.channel
    if restricted or own:
        view.update({
            "description": row.description,
            "contact_name": row.contact_name,
            "contact_email": row.contact_email,
            "contact_phone": row.contact_phone,
            "contact_erased_at": iso_utc(row.contact_erased_at),
            "has_photo": has_photo,
        })
    if restricted:
        view["moderated_at"] = iso_utc(row.moderated_at)
    return view


def _settings(settings: Settings | None) -> Settings:
    return settings or get_settings()


# --------------------------------------------------------------------------------------------
# submission
# --------------------------------------------------------------------------------------------

def check_photo(photo: bytes, photo_type: str | None, settings: Settings) -> tuple[bytes, str]:
    """(stripped bytes, media type) of an acceptable photo, else UsageError/413."""
    if len(photo) == 0:
        raise UsageError("the photo is empty")
    if len(photo) > settings.max_photo_bytes:
        raise PayloadTooLargeError(
            f"the photo is {len(photo):,} bytes; at most {settings.max_photo_bytes:,} allowed",
            details={"max_photo_bytes": settings.max_photo_bytes})
    detected = sniff_image_type(photo)
    if detected is None:
        raise UsageError("the photo must be a JPEG, PNG or WebP image (checked from the file's "
                         "content, not its name)")
    claimed = (photo_type or "").split(";")[0].strip().lower()
    if claimed in ("image/jpg", "image/pjpeg"):
        claimed = "image/jpeg"
    if claimed and claimed not in ("application/octet-stream", detected):
        raise UsageError(f"the photo was sent as {claimed} but its content is {detected}")
    return strip_image_metadata(photo, detected), detected


def submit_report(engine: Engine, principal: Principal, *, service_code: str,
                  description: str, lat: float | None = None, lon: float | None = None,
                  address: str | None = None, occurred_at: datetime | None = None,
                  contact_name: str | None = None, contact_email: str | None = None,
                  contact_phone: str | None = None, attributes: dict[str, Any] | None = None,
                  photo: bytes | None = None, photo_type: str | None = None,
                  client_key: str | None = None, channel: str = "web",
                  client_address: str | None = None,
                  settings: Settings | None = None) -> dict[str, Any]:
    """Store a new report (status ``pending``) and return
    ``{"public_id", "tracking_token", "status", "submitted_at"}``.

    ``client_key`` (16-100 characters of ``A-Za-z0-9._:-``, e.g. a UUID) makes the call
    idempotent: the same key returns the same report and tracking token, never a duplicate.
    Anonymous callers are rate limited per ``client_address`` (429 with retry_after)."""
    require(principal, "reports:submit")
    settings = _settings(settings)
    if not isinstance(service_code, str) or category(service_code) is None:
        raise UsageError(f"unknown service_code {service_code!r}; one of: "
                         f"{', '.join(BY_CODE)}", details={"field": "service_code"})
    text = _clean_text(description, "description", MAX_DESCRIPTION)
    if not text:
        raise UsageError("describe what happened (description is empty)",
                         details={"field": "description"})
    if (lat is None) != (lon is None):
        raise UsageError("give both lat and lon, or neither (and an address)")
    if lat is not None and lon is not None:
        if not (isinstance(lat, (int, float)) and isinstance(lon, (int, float))
                and math.isfinite(lat) and math.isfinite(lon)
                and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise UsageError(f"({lat}, {lon}) is not a WGS84 latitude/longitude",
                             details={"field": "lat"})
        lat, lon = float(lat), float(lon)
    address = _clean_text(address, "address", MAX_ADDRESS)
    if lat is None and not address:
        raise UsageError("say where: give lat and lon, or an address",
                         details={"field": "lat"})
    occurred = _aware(occurred_at, "occurred_at")
    now = _now()
    if occurred is not None and occurred > now + timedelta(minutes=5):
        raise UsageError("occurred_at is in the future")
    contact_name = _clean_text(contact_name, "contact_name", 300)
    contact_email = _clean_text(contact_email, "contact_email", 320)
    contact_phone = _clean_text(contact_phone, "contact_phone", 50)
    if contact_email and not _EMAIL.match(contact_email):
        raise UsageError(f"{contact_email!r} is not an e-mail address",
                         details={"field": "contact_email"})
    if contact_phone and not _PHONE.match(contact_phone):
        raise UsageError("contact_phone: digits, spaces and + ( ) . - / only",
                         details={"field": "contact_phone"})
    clean_attributes = _validate_attributes(service_code, attributes)
    if channel not in ("web", "open311", "api"):
        raise UsageError(f"unknown channel {channel!r}")
    if client_key is not None and not _CLIENT_KEY.match(client_key):
        raise UsageError("client_key must be 16-100 characters of letters, digits and . _ : - "
                         "(a UUID works)", details={"field": "client_key"})
    stored_photo: tuple[bytes, str] | None = None
    if photo is not None:
        stored_photo = check_photo(photo, photo_type, settings)

    key_hash = _hash(client_key) if client_key is not None else None
    limiter = (limiter_for(engine.url.render_as_string(hide_password=True),
                           settings.report_rate_limit, settings.report_rate_window_seconds)
               if principal.anonymous else None)
    client = client_address or "unknown"
    if limiter is not None and limiter.check(client) > 0:
        # over the limit: only an idempotent retry of an accepted report is answered
        existing = (_existing_submission(engine, key_hash, client_key)
                    if key_hash is not None else None)
        if existing is not None:
            return existing
        limiter.hit(client)  # raises RateLimitedError with retry_after

    token = _tracking_token(client_key)
    public_id = _new_public_id()
    # One transaction, one connection: the idempotency check is the insert itself (the
    # database's unique client_key decides, so two concurrent retries cannot both insert),
    # and the report, its photo and its audit entry commit together or not at all.
    with write_transaction(engine) as connection:
        report_id = _insert_report(connection, keyed=key_hash is not None, values=dict(
            public_id=public_id, service_code=service_code,
            category=BY_CODE[service_code].taxonomy, description=text,
            public_description=redact(text), lon=lon, lat=lat, address=address,
            occurred_at=occurred, submitted_at=now, updated_at=now, status="pending",
            channel=channel, attributes=clean_attributes, contact_name=contact_name,
            contact_email=contact_email, contact_phone=contact_phone,
            tracking_hash=_hash(token), client_key=key_hash))
        if report_id is None:
            # this key's report is stored already (PostgreSQL waited for a concurrent
            # submission of it to commit): answer with it; a retry is not counted or audited
            assert key_hash is not None
            existing = _stored_submission(connection, key_hash, client_key)
            if existing is None:  # the conflict was a random public_id already taken
                raise ConflictError("the report could not be stored; please send it again")
            return existing
        if limiter is not None:
            # counted only once stored as new; over the limit, the insert is rolled back
            limiter.hit(client)
        if stored_photo is not None:
            connection.execute(PHOTOS.insert().values(
                report_id=report_id, media_type=stored_photo[1],
                size=len(stored_photo[0]), content=stored_photo[0], created_at=now))
        # no personal data in the trail: the report is identified by its public id
        audit.record(connection, principal, "reports.submit", target_type="report",
                     target_id=public_id,
                     details={"service_code": service_code, "channel": channel,
                              "photo": stored_photo is not None})
    return {"public_id": public_id, "tracking_token": token, "status": "pending",
            "submitted_at": iso_utc(now)}


def _insert_report(connection: Connection, *, keyed: bool, values: dict[str, Any]
                   ) -> int | None:
    """Insert one report and return its id; with an idempotency key, None (and nothing
    inserted) when a report with that key exists (``ON CONFLICT DO NOTHING``)."""
    if not keyed:
        return connection.execute(REPORTS.insert().values(**values)
                                  .returning(REPORTS.c.id)).scalar_one()
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # no conflict target: the same key also means the same tracking hash (derived from it),
    # and a concurrent retry may collide on either unique index first
    statement = insert(REPORTS).values(**values).on_conflict_do_nothing()
    return connection.execute(statement.returning(REPORTS.c.id)).scalar()


def _stored_submission(connection: Connection, key_hash: str, client_key: str | None
                       ) -> dict[str, Any] | None:
    row = connection.execute(select(REPORTS.c.public_id, REPORTS.c.status,
                                    REPORTS.c.submitted_at)
                             .where(REPORTS.c.client_key == key_hash)).first()
    if row is None:
        return None
    return {"public_id": row.public_id, "tracking_token": _tracking_token(client_key),
            "status": row.status, "submitted_at": iso_utc(row.submitted_at)}


def _existing_submission(engine: Engine, key_hash: str, client_key: str | None
                         ) -> dict[str, Any] | None:
    with engine.connect() as connection:
        return _stored_submission(connection, key_hash, client_key)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------

def _one_view(connection: Connection, row: Any, principal: Principal, settings: Settings, *,
              own: bool) -> dict[str, Any]:
    restricted = can(principal, "reports:read_restricted")
    exact = can(principal, "reports:read")
    merged = _merged_public_ids(connection, [row.merged_into_id])
    photo = bool(_has_photo(connection, [row.id])) if (restricted or own) else False
    return _view(row, exact=exact or own, restricted=restricted, own=own, settings=settings,
                 merged_into=merged.get(row.merged_into_id), has_photo=photo)


def get_report(engine: Engine, principal: Principal, public_id: str, *,
               tracking_token: str | None = None,
               settings: Settings | None = None) -> dict[str, Any]:
    """One report as ``principal`` may see it (404 when they may not see it at all).

    With the right ``tracking_token`` the reporter sees their own report in any status,
    contact details included. A staff read of contact details is audited."""
    settings = _settings(settings)
    _known_public_id(public_id)
    if tracking_token is not None:
        view = get_report_by_token(engine, tracking_token, settings=settings)
        if view["public_id"] != public_id:
            raise NotFoundError(f"no report {public_id!r} for this tracking token")
        return view
    statuses = _visible_statuses(principal)
    restricted = can(principal, "reports:read_restricted")
    with (write_transaction(engine) if restricted else engine.connect()) as connection:
        row = connection.execute(select(REPORTS).where(REPORTS.c.public_id == public_id)
                                 ).first()
        if row is None or row.status not in statuses:
            raise NotFoundError(f"no report {public_id!r}")
        view = _one_view(connection, row, principal, settings, own=False)
        if restricted:
            audit.record(connection, principal, "reports.read_restricted",
                         target_type="report", target_id=public_id)
    return view


def get_report_by_token(engine: Engine, tracking_token: str, *,
                        settings: Settings | None = None) -> dict[str, Any]:
    """The reporter's own view of their report (404 for an unknown token)."""
    settings = _settings(settings)
    _known_token(tracking_token)
    with engine.connect() as connection:
        row = connection.execute(select(REPORTS).where(
            REPORTS.c.tracking_hash == _hash(tracking_token))).first()
        if row is None:
            raise NotFoundError("no report for this tracking token")
        return _one_view(connection, row, ANONYMOUS, settings, own=True)


def _bbox(bbox: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    if bbox is None:
        return None
    if len(bbox) != 4:
        raise UsageError("bbox is min_lon,min_lat,max_lon,max_lat")
    min_lon, min_lat, max_lon, max_lat = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (min_lon, min_lat, max_lon, max_lat)) or not (
            -180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise UsageError("bbox must be min_lon,min_lat,max_lon,max_lat within WGS84 bounds, "
                         "minimum first")
    return min_lon, min_lat, max_lon, max_lat


def list_reports(engine: Engine, principal: Principal, *,
                 service_codes: Sequence[str] | None = None,
                 statuses: Sequence[str] | None = None, start: datetime | None = None,
                 end: datetime | None = None, bbox: Sequence[float] | None = None,
                 limit: int = 100, offset: int = 0,
                 public_ids: Sequence[str] | None = None,
                 settings: Settings | None = None) -> list[dict[str, Any]]:
    """Reports visible to ``principal``, newest first, filtered.

    ``start``/``end`` bound ``submitted_at`` (start inclusive, end exclusive, aware datetimes);
    ``bbox`` is (min_lon, min_lat, max_lon, max_lat). For callers who see generalised
    locations the bbox applies to the generalised point, so narrow boxes cannot reveal more
    than the cell. Asking for a status the caller may not see yields nothing for it."""
    settings = _settings(settings)
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise UsageError("offset must be >= 0")
    start, end = _aware(start, "start"), _aware(end, "end")
    box = _bbox(bbox)
    visible = _visible_statuses(principal)
    if statuses is not None:
        unknown = [s for s in statuses if s not in STATUSES]
        if unknown:
            raise UsageError(f"unknown status {unknown[0]!r}; one of {', '.join(STATUSES)}")
        wanted = [s for s in statuses if s in visible]
    else:
        wanted = list(visible)
    if not wanted:
        return []
    if service_codes is not None:
        unknown = [c for c in service_codes if c not in BY_CODE]
        if unknown:
            raise UsageError(f"unknown service_code {unknown[0]!r}")
    exact = can(principal, "reports:read")
    restricted = can(principal, "reports:read_restricted")
    query: Select[Any] = select(REPORTS).where(REPORTS.c.status.in_(wanted))
    if service_codes is not None:
        query = query.where(REPORTS.c.service_code.in_(list(service_codes)))
    if public_ids is not None:
        # ids that cannot exist are dropped here, before they reach the database driver
        possible = [p for p in public_ids if isinstance(p, str) and _PUBLIC_ID.match(p)]
        if not possible:
            return []
        query = query.where(REPORTS.c.public_id.in_(possible))
    if start is not None:
        query = query.where(REPORTS.c.submitted_at >= start)
    if end is not None:
        query = query.where(REPORTS.c.submitted_at < end)
    if box is not None:
        # generalised points move by at most a cell: widen the SQL box, filter exactly below
        margin = 0.0 if exact else 2 * settings.public_cell_m / 111_320.0 / max(
            math.cos(math.radians(max(abs(box[1]), abs(box[3])))), 0.01)
        query = query.where(and_(REPORTS.c.lon >= box[0] - margin,
                                 REPORTS.c.lon <= box[2] + margin,
                                 REPORTS.c.lat >= box[1] - margin,
                                 REPORTS.c.lat <= box[3] + margin))
    query = query.order_by(REPORTS.c.submitted_at.desc(), REPORTS.c.id.desc())
    if exact or box is None:
        query = query.limit(limit).offset(offset)
    with engine.connect() as connection:
        rows = list(connection.execute(query))
        photos = _has_photo(connection, [r.id for r in rows]) if restricted else set()
        merged = _merged_public_ids(connection, [r.merged_into_id for r in rows])
    views: list[dict[str, Any]] = []
    skipped = 0
    for row in rows:
        view = _view(row, exact=exact, restricted=restricted, own=False, settings=settings,
                     merged_into=merged.get(row.merged_into_id), has_photo=row.id in photos)
        if box is not None and not exact:
            if not (box[0] <= view["lon"] <= box[2] and box[1] <= view["lat"] <= box[3]):
                continue
            if skipped < offset:
                skipped += 1
                continue
        views.append(view)
        if len(views) >= limit:
            break
    if restricted and views:
        with write_transaction(engine) as connection:
            audit.record(connection, principal, "reports.list_restricted", target_type="report",
                         details={"count": len(views)})
    return views


def get_report_photo(engine: Engine, principal: Principal, public_id: str
                     ) -> tuple[bytes, str]:
    """(content, media type) of a report's photo, for staff; the read is audited."""
    require(principal, "reports:read_restricted")
    _known_public_id(public_id)
    with write_transaction(engine) as connection:
        row = connection.execute(
            select(PHOTOS.c.content, PHOTOS.c.media_type)
            .join(REPORTS, REPORTS.c.id == PHOTOS.c.report_id)
            .where(REPORTS.c.public_id == public_id).order_by(PHOTOS.c.id).limit(1)).first()
        if row is None:
            raise NotFoundError(f"report {public_id!r} has no photo")
        audit.record(connection, principal, "reports.read_photo", target_type="report",
                     target_id=public_id)
    return bytes(row.content), row.media_type


# --------------------------------------------------------------------------------------------
# moderation
# --------------------------------------------------------------------------------------------

_FROM = {"approve": ("pending", "rejected"), "reject": ("pending", "approved"),
         "merge": ("pending", "approved"), "close": ("approved",)}
_TO = {"approve": "approved", "reject": "rejected", "merge": "merged", "close": "closed"}


def moderate(engine: Engine, principal: Principal, public_id: str, action: str, *,
             reason: str | None = None, merge_into: str | None = None,
             settings: Settings | None = None) -> dict[str, Any]:
    """Approve, reject (a reason is required), merge into another report, or close.

    Allowed moves: approve from pending or rejected; reject or merge from pending or approved;
    close from approved. ``reason`` becomes the public ``status_notes``. Returns the staff view.
    """
    require(principal, "reports:moderate")
    settings = _settings(settings)
    if action not in MODERATION_ACTIONS:
        raise UsageError(f"unknown moderation action {action!r}; one of "
                         f"{', '.join(MODERATION_ACTIONS)}")
    reason = _clean_text(reason, "reason", MAX_REASON)
    if action == "reject" and not reason:
        raise UsageError("say why the report is rejected (reason)", details={"field": "reason"})
    if action == "merge" and not merge_into:
        raise UsageError("say which report this one duplicates (merge_into)",
                         details={"field": "merge_into"})
    _known_public_id(public_id)
    if merge_into is not None:
        _known_public_id(merge_into)
    now = _now()
    with write_transaction(engine) as connection:
        row = connection.execute(select(REPORTS).where(REPORTS.c.public_id == public_id)
                                 ).first()
        if row is None:
            raise NotFoundError(f"no report {public_id!r}")
        if row.status not in _FROM[action]:
            raise ConflictError(f"cannot {action} a report that is {row.status} (only one "
                                f"that is {' or '.join(_FROM[action])})",
                                details={"status": row.status})
        values: dict[str, Any] = {"status": _TO[action], "updated_at": now,
                                  "moderated_at": now,
                                  "moderated_by": principal.id if principal.kind == "user"
                                  else None}
        if reason is not None:
            # the reason is shown publicly: it must not leak contact details either
            values["status_notes"] = redact(reason)
        details: dict[str, Any] = {"from": row.status, "to": _TO[action]}
        if action == "merge":
            target = connection.execute(select(REPORTS).where(
                REPORTS.c.public_id == merge_into)).first()
            if target is None:
                raise NotFoundError(f"no report {merge_into!r} to merge into")
            if target.id == row.id:
                raise UsageError("a report cannot be merged into itself")
            if target.status not in ("pending", "approved", "closed"):
                raise ConflictError(f"cannot merge into a report that is {target.status}")
            values["merged_into_id"] = target.id
            details["merge_into"] = merge_into
        connection.execute(update(REPORTS).where(REPORTS.c.id == row.id).values(**values))
        audit.record(connection, principal, f"reports.{action}", target_type="report",
                     target_id=public_id, details=details)
        fresh = connection.execute(select(REPORTS).where(REPORTS.c.id == row.id)).one()
        return _one_view(connection, fresh, principal, settings, own=False)


def moderation_queue(engine: Engine, principal: Principal, limit: int = 50, *,
                     settings: Settings | None = None) -> list[dict[str, Any]]:
    """Pending reports, oldest first, each with ``duplicates``: published or pending reports
    of the same service within 150 m and 14 days, nearest first, as
    ``{"public_id", "status", "distance_m", "submitted_at", "public_description"}``.

    Moderators see the original text (they judge it) but not the contact details; the read is
    audited."""
    require(principal, "reports:moderate")
    settings = _settings(settings)
    if isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit must be between 1 and {MAX_LIMIT}")
    with write_transaction(engine) as connection:
        rows = list(connection.execute(
            select(REPORTS).where(REPORTS.c.status == "pending")
            .order_by(REPORTS.c.submitted_at, REPORTS.c.id).limit(limit)))
        photos = _has_photo(connection, [r.id for r in rows])
        queue = []
        for row in rows:
            view = _view(row, exact=True, restricted=False, own=False, settings=settings,
                         merged_into=None, has_photo=False)
            view["description"] = row.description
            view["has_photo"] = row.id in photos
            view["duplicates"] = _duplicates(connection, row)
            queue.append(view)
        audit.record(connection, principal, "reports.moderation_queue", target_type="report",
                     details={"count": len(queue)})
    return queue


def _duplicates(connection: Connection, row: Any) -> list[dict[str, Any]]:
    if row.lat is None or row.lon is None:
        return []
    window = timedelta(days=DUPLICATE_DAYS)
    dlat = DUPLICATE_RADIUS_M / 111_320.0
    dlon = dlat / max(math.cos(math.radians(row.lat)), 0.01)
    candidates = connection.execute(select(
        REPORTS.c.public_id, REPORTS.c.status, REPORTS.c.lat, REPORTS.c.lon,
        REPORTS.c.submitted_at, REPORTS.c.public_description).where(
        REPORTS.c.id != row.id, REPORTS.c.service_code == row.service_code,
        REPORTS.c.status.in_(("pending", "approved", "closed")),
        REPORTS.c.submitted_at >= row.submitted_at - window,
        REPORTS.c.submitted_at <= row.submitted_at + window,
        REPORTS.c.lat.between(row.lat - dlat, row.lat + dlat),
        REPORTS.c.lon.between(row.lon - dlon, row.lon + dlon),
    ))
    found = []
    for c in candidates:
        distance = _haversine_m(row.lon, row.lat, c.lon, c.lat)
        if distance <= DUPLICATE_RADIUS_M:
            found.append({"public_id": c.public_id, "status": c.status,
                          "distance_m": round(distance, 1),
                          "submitted_at": iso_utc(c.submitted_at),
                          "public_description": c.public_description})
    return sorted(found, key=lambda d: d["distance_m"])


# --------------------------------------------------------------------------------------------
# erasure and retention
# --------------------------------------------------------------------------------------------

def erase_report(engine: Engine, public_id: str | None, tracking_token: str, *,
                 settings: Settings | None = None) -> dict[str, Any]:
    """The reporter erases their report: contact, both texts, address, attributes and photo
    are deleted, the location is kept only generalised to the public cell (so counts stay
    right), status becomes ``erased``. Erasing twice is harmless. ``public_id`` may be None
    (the token alone identifies the report). Returns the reporter's view of what is left."""
    settings = _settings(settings)
    _known_token(tracking_token)
    now = _now()
    with write_transaction(engine) as connection:
        row = connection.execute(select(REPORTS).where(
            REPORTS.c.tracking_hash == _hash(tracking_token))).first()
        if row is None or (public_id is not None and row.public_id != public_id):
            # (a malformed public_id simply never equals a stored one)
            raise NotFoundError("no report for this tracking token")
        if row.status != "erased":
            lon, lat = row.lon, row.lat
            if lon is not None and lat is not None:
                lon, lat = generalise_point(lon, lat, settings.public_cell_m)
            connection.execute(PHOTOS.delete().where(PHOTOS.c.report_id == row.id))
            connection.execute(update(REPORTS).where(REPORTS.c.id == row.id).values(
                description="", public_description="", address=None, attributes={},
                contact_name=None, contact_email=None, contact_phone=None,
                contact_erased_at=now, lon=lon, lat=lat, status="erased", updated_at=now))
            audit.record(connection, ANONYMOUS.actor + ":reporter", "reports.erase",
                         target_type="report", target_id=row.public_id,
                         details={"previous_status": row.status})
        fresh = connection.execute(select(REPORTS).where(REPORTS.c.id == row.id)).one()
        return _one_view(connection, fresh, ANONYMOUS, settings, own=True)


def purge_contacts(engine: Engine, *, older_than_days: int | None = None,
                   now: datetime | None = None, principal: Principal = SYSTEM,
                   settings: Settings | None = None) -> int:
    """Retention: erase the contact details of reports submitted more than
    ``older_than_days`` (default ``settings.contact_retention_days``) ago, and replace their
    original text by the redacted one. Returns how many reports were changed; audited."""
    require(principal, "privacy:purge")
    settings = _settings(settings)
    days = settings.contact_retention_days if older_than_days is None else older_than_days
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise UsageError(f"older_than_days must be a whole number >= 0, not {days!r}")
    now = _aware(now, "now") or _now()
    cutoff = now - timedelta(days=days)
    has_personal = or_(REPORTS.c.contact_name.is_not(None), REPORTS.c.contact_email.is_not(None),
                       REPORTS.c.contact_phone.is_not(None),
                       REPORTS.c.description != REPORTS.c.public_description)
    with write_transaction(engine) as connection:
        count = connection.execute(
            update(REPORTS).where(REPORTS.c.submitted_at < cutoff, has_personal).values(
                contact_name=None, contact_email=None, contact_phone=None,
                description=REPORTS.c.public_description, contact_erased_at=now)).rowcount
        audit.record(connection, principal, "privacy.purge", target_type="report",
                     details={"older_than_days": days, "cutoff": iso_utc(cutoff),
                              "reports": count})
    return int(count)
