"""Citizen reports service: submission, validation, photos, idempotency, rate limits,
visibility by role, moderation and duplicates, tracking, erasure and retention.
Runs on SQLite and PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import json
import struct
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update

from urbansec.config import Settings
from urbansec.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitedError,
    UsageError,
)
from urbansec.privacy import generalise_point
from urbansec.services import audit, identity
from urbansec.services import reports as svc
from urbansec.services.access import ANONYMOUS, Principal
from urbansec.store.collaboration import AuditEntry, Report, ReportPhoto

REPORTS = Report.__table__
PHOTOS = ReportPhoto.__table__
LON, LAT = -87.6298, 41.8781  # Chicago Loop
SETTINGS = Settings(report_rate_limit=1000, report_rate_window_seconds=60)


# tiny real images (a PNG with a text chunk, a JPEG with EXIF), built here to stay self-contained
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def tiny_png(with_text: bool = True) -> bytes:
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))]
    if with_text:
        chunks.append(_png_chunk(b"tEXt", b"GPS\x0041.88,-87.63"))
    chunks += [_png_chunk(b"IDAT", zlib.compress(b"\x00\x80")), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def tiny_jpeg(with_exif: bool = True) -> bytes:
    def segment(marker: int, payload: bytes) -> bytes:
        return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload

    parts = [b"\xff\xd8", segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")]
    if with_exif:
        parts.append(segment(0xE1, b"Exif\x00\x00GPS 41.88 -87.63"))
    parts.append(segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + b"\x12\x34\xff\x00\x56")
    return b"".join(parts) + b"\xff\xd9"


@pytest.fixture
def people(db: Engine) -> dict[str, Principal]:
    org = identity.create_organisation(db, "city", "City")
    staff = identity.create_user(db, org, "mod@city.example", "Mod", "a long passphrase 1",
                                 "analyst")
    return {
        "anonymous": ANONYMOUS,
        "viewer": Principal("apikey", 91, org, "viewer"),
        "partner": Principal("apikey", 92, org, "partner"),
        "analyst": Principal("user", staff, org, "analyst"),
        "admin": Principal("apikey", 93, org, "admin"),
    }


def submit(db: Engine, principal: Principal = ANONYMOUS, **kwargs: object) -> dict:
    values: dict = {"service_code": "poor-lighting", "description": "street light out",
                    "lat": LAT, "lon": LON, "client_address": "198.51.100.7",
                    "settings": SETTINGS}
    values.update(kwargs)
    return svc.submit_report(db, principal, **values)


def row(db: Engine, public_id: str) -> Any:
    with db.connect() as c:
        return c.execute(select(REPORTS).where(REPORTS.c.public_id == public_id)).one()


def audit_actions(db: Engine) -> list[tuple[str, str | None, dict]]:
    return [(e["action"], e["target_id"], e["details"])
            for e in reversed(audit.entries(db, limit=1000))]


def test_anonymous_submission_stores_hash_redacts_and_audits(db: Engine) -> None:
    text = "Dark corner, call me on +1 (312) 555-0199 or jo@example.org"
    out = submit(db, description=text, contact_email="jo@example.org",
                 contact_phone="+1 312 555 0199", contact_name="Jo",
                 occurred_at=datetime(2026, 1, 2, 21, 0, tzinfo=UTC),
                 attributes={"time_of_day": "night"})
    assert set(out) == {"public_id", "tracking_token", "status", "submitted_at"}
    assert out["status"] == "pending" and out["submitted_at"].endswith("Z")
    r = row(db, out["public_id"])
    assert r.description == text
    assert r.public_description == ("Dark corner, call me on [phone removed] or "
                                    "[e-mail removed]")
    assert r.tracking_hash != out["tracking_token"] and len(r.tracking_hash) == 64
    assert r.category == "X03" and r.channel == "web"
    assert r.attributes == {"time_of_day": "night"}
    (entry,) = [a for a in audit_actions(db) if a[0] == "reports.submit"]
    assert entry[1] == out["public_id"]
    dumped = json.dumps(entry[2])
    assert "jo@example.org" not in dumped and "555" not in dumped
    assert audit.verify(db)["ok"]


INVALID: list[tuple[dict, str]] = [
    ({"service_code": "parking"}, "unknown service_code"),
    ({"description": "   "}, "description is empty"),
    ({"description": "x" * 4001}, "at most 4,000"),
    ({"lat": None, "lon": None}, "say where"),
    ({"lat": 91.0}, "not a WGS84"),
    ({"lon": -181.0}, "not a WGS84"),
    ({"lon": None}, "both lat and lon"),
    ({"lat": float("nan")}, "not a WGS84"),
    ({"occurred_at": datetime(2026, 1, 1, 12)}, "needs a time zone"),
    ({"occurred_at": datetime.now(UTC) + timedelta(days=2)}, "in the future"),
    ({"contact_email": "not-an-address"}, "not an e-mail"),
    ({"contact_phone": "call me maybe"}, "contact_phone"),
    ({"attributes": {"colour": "red"}}, "unknown attribute"),
    ({"attributes": {"time_of_day": "noon"}}, "not one of"),
    ({"client_key": "short"}, "client_key"),
    ({"channel": "fax"}, "unknown channel"),
    ({"description": "lone \ud800 surrogate"}, "not valid Unicode"),
    ({"address": "nul\x00"}, "NUL"),
]


def test_validation_errors(db: Engine) -> None:
    for kwargs, message in INVALID:
        with pytest.raises(UsageError, match=message):
            submit(db, **kwargs)
    with db.connect() as c:
        assert c.execute(select(func.count()).select_from(REPORTS)).scalar() == 0


def test_address_alone_is_enough(db: Engine) -> None:
    out = submit(db, lat=None, lon=None, address="Corner of State and Madison")
    assert row(db, out["public_id"]).address == "Corner of State and Madison"


def test_photo_types_sizes_and_metadata(db: Engine) -> None:
    out = submit(db, photo=tiny_png(), photo_type="image/png")
    with db.connect() as c:
        photo = c.execute(select(PHOTOS)).one()
    assert photo.media_type == "image/png" and b"GPS" not in photo.content
    assert photo.size == len(photo.content) == len(tiny_png(with_text=False))
    # the type comes from the content; a wrong claim is refused
    with pytest.raises(UsageError, match="sent as image/png but its content is image/jpeg"):
        submit(db, photo=tiny_jpeg(), photo_type="image/png")
    with pytest.raises(UsageError, match="JPEG, PNG or WebP"):
        submit(db, photo=b"GIF89a" + bytes(100), photo_type="image/gif")
    with pytest.raises(UsageError, match="JPEG, PNG or WebP"):
        submit(db, photo=b"<svg onload='x'/>", photo_type="image/png")
    with pytest.raises(UsageError, match="empty"):
        submit(db, photo=b"")
    small = Settings(max_photo_bytes=100, report_rate_limit=1000)
    with pytest.raises(PayloadTooLargeError, match="at most 100"):
        submit(db, photo=tiny_jpeg() + bytes(200), settings=small)
    jpeg = submit(db, photo=tiny_jpeg(), photo_type="image/jpg")
    content, media_type = svc.get_report_photo(
        db, Principal("apikey", 1, None, "admin"), jpeg["public_id"])
    assert media_type == "image/jpeg" and content == tiny_jpeg(with_exif=False)
    assert out["public_id"] != jpeg["public_id"]


def test_idempotent_on_client_key(db: Engine) -> None:
    key = "6f1c2d3e-0000-4000-8000-123456789abc"
    first = submit(db, client_key=key)
    again = submit(db, client_key=key, description="the same, retried")
    assert again == first
    other = submit(db, client_key=key.replace("abc", "abd"))
    assert other["public_id"] != first["public_id"]
    assert other["tracking_token"] != first["tracking_token"]
    with db.connect() as c:
        assert c.execute(select(func.count()).select_from(REPORTS)).scalar() == 2
    # the retried token is the real one
    assert svc.get_report_by_token(db, first["tracking_token"],
                                   settings=SETTINGS)["public_id"] == first["public_id"]


def test_rate_limit_for_anonymous_per_address(db: Engine,
                                              people: dict[str, Principal]) -> None:
    tight = Settings(report_rate_limit=2, report_rate_window_seconds=3600)
    submit(db, settings=tight, client_address="203.0.113.1")
    submit(db, settings=tight, client_address="203.0.113.1")
    with pytest.raises(RateLimitedError) as caught:
        submit(db, settings=tight, client_address="203.0.113.1")
    assert 3500 < caught.value.details["retry_after"] <= 3600
    submit(db, settings=tight, client_address="203.0.113.2")  # another client
    submit(db, people["partner"], settings=tight, client_address="203.0.113.1")  # signed in
    # an idempotent retry of an accepted report is answered, not limited
    key = "retry-key-0123456789"
    submit(db, settings=tight, client_address="203.0.113.3", client_key=key)
    submit(db, settings=tight, client_address="203.0.113.3")
    assert submit(db, settings=tight, client_address="203.0.113.3", client_key=key)
    with db.connect() as c:
        assert c.execute(select(func.count()).select_from(REPORTS)).scalar() == 6


def test_visibility_by_role(db: Engine, people: dict[str, Principal]) -> None:
    out = submit(db, description="dealing here, ring 0301234567", contact_name="Ana",
                 contact_email="ana@example.org", address="12 Main St",
                 photo=tiny_png())
    pid = out["public_id"]
    for who in ("anonymous", "viewer", "partner"):
        with pytest.raises(NotFoundError):
            svc.get_report(db, people[who], pid, settings=SETTINGS)
        assert svc.list_reports(db, people[who], settings=SETTINGS) == []
    svc.moderate(db, people["analyst"], pid, "approve", settings=SETTINGS)
    glon, glat = generalise_point(LON, LAT, SETTINGS.public_cell_m)
    restricted = {"description", "contact_name", "contact_email", "contact_phone",
                  "occurred_at", "has_photo"}
    for who in ("anonymous", "viewer"):
        for view in (svc.get_report(db, people[who], pid, settings=SETTINGS),
                     svc.list_reports(db, people[who], settings=SETTINGS)[0]):
            assert (view["lon"], view["lat"]) == (glon, glat)
            assert (view["lon"], view["lat"]) != (LON, LAT)
            assert view["location_precision_m"] == 250
            assert view["address"] is None
            assert not restricted & set(view)
            assert "0301234567" not in json.dumps(view) and "ana@" not in json.dumps(view)
            assert view["public_description"] == "dealing here, ring [phone removed]"
    partner = svc.get_report(db, people["partner"], pid, settings=SETTINGS)
    assert (partner["lon"], partner["lat"]) == (LON, LAT)
    assert partner["address"] == "12 Main St" and "contact_email" not in partner
    before = len(audit_actions(db))
    staff = svc.get_report(db, people["analyst"], pid, settings=SETTINGS)
    assert staff["contact_email"] == "ana@example.org" and staff["has_photo"] is True
    assert staff["description"] == "dealing here, ring 0301234567"
    assert audit_actions(db)[before:] == [("reports.read_restricted", pid, {})]
    with pytest.raises(AuthenticationError):
        svc.get_report_photo(db, ANONYMOUS, pid)
    with pytest.raises(PermissionDeniedError):
        svc.get_report_photo(db, people["partner"], pid)


def test_list_filters_and_generalised_bbox(db: Engine, people: dict[str, Principal]) -> None:
    staff = people["analyst"]
    a = submit(db, service_code="vandalism", description="graffiti")["public_id"]
    b = submit(db, lat=LAT + 0.05, description="dark")["public_id"]
    c = submit(db, service_code="vandalism", description="glass")["public_id"]
    for pid in (a, b):
        svc.moderate(db, staff, pid, "approve", settings=SETTINGS)
    ids = lambda views: [v["public_id"] for v in views]  # noqa: E731
    assert ids(svc.list_reports(db, ANONYMOUS, settings=SETTINGS)) == [b, a]
    assert ids(svc.list_reports(db, staff, settings=SETTINGS)) == [c, b, a]
    assert ids(svc.list_reports(db, staff, statuses=["pending"], settings=SETTINGS)) == [c]
    assert svc.list_reports(db, ANONYMOUS, statuses=["pending"], settings=SETTINGS) == []
    assert ids(svc.list_reports(db, ANONYMOUS, service_codes=["vandalism"],
                                settings=SETTINGS)) == [a]
    assert ids(svc.list_reports(db, staff, limit=1, offset=1, settings=SETTINGS)) == [b]
    assert ids(svc.list_reports(db, staff, public_ids=[a, c, "bad id\ud800"],
                                settings=SETTINGS)) == [c, a]
    assert ids(svc.list_reports(db, ANONYMOUS, public_ids=[a, c], settings=SETTINGS)) == [a]
    assert svc.list_reports(db, staff, public_ids=["\ud800"], settings=SETTINGS) == []
    # a box around the exact point but not the cell centre finds it for partners only
    glon, glat = generalise_point(LON, LAT, 250)
    eps = 1e-5
    exact_box = (LON - eps, LAT - eps, LON + eps, LAT + eps)
    assert abs(glon - LON) > eps or abs(glat - LAT) > eps
    assert ids(svc.list_reports(db, people["partner"], bbox=exact_box, settings=SETTINGS)) \
        == [a]
    assert svc.list_reports(db, ANONYMOUS, bbox=exact_box, settings=SETTINGS) == []
    cell_box = (glon - eps, glat - eps, glon + eps, glat + eps)
    assert ids(svc.list_reports(db, ANONYMOUS, bbox=cell_box, settings=SETTINGS)) == [a]
    now = datetime.now(UTC)
    assert svc.list_reports(db, staff, start=now + timedelta(hours=1), settings=SETTINGS) == []
    assert len(svc.list_reports(db, staff, end=now + timedelta(hours=1),
                                settings=SETTINGS)) == 3
    for bad in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"statuses": ["lost"]},
                {"service_codes": ["parking"]}, {"bbox": (1, 2, 3)},
                {"bbox": (10, 0, 0, 10)}, {"start": datetime(2026, 1, 1)}):
        with pytest.raises(UsageError):
            svc.list_reports(db, staff, settings=SETTINGS, **bad)


def test_moderation_flow(db: Engine, people: dict[str, Principal]) -> None:
    staff = people["analyst"]
    a = submit(db)["public_id"]
    b = submit(db)["public_id"]
    with pytest.raises(AuthenticationError):
        svc.moderate(db, ANONYMOUS, a, "approve")
    with pytest.raises(PermissionDeniedError):
        svc.moderate(db, people["partner"], a, "approve")
    with pytest.raises(UsageError, match="why"):
        svc.moderate(db, staff, a, "reject")
    with pytest.raises(UsageError, match="which report"):
        svc.moderate(db, staff, a, "merge")
    with pytest.raises(UsageError, match="unknown moderation action"):
        svc.moderate(db, staff, a, "delete")
    with pytest.raises(ConflictError, match="cannot close a report that is pending"):
        svc.moderate(db, staff, a, "close")
    with pytest.raises(NotFoundError):
        svc.moderate(db, staff, "r-000000000000", "approve")
    view = svc.moderate(db, staff, a, "reject", reason="Not a safety issue; mail x@y.org",
                        settings=SETTINGS)
    assert view["status"] == "rejected" and view["open311_status"] == "closed"
    assert view["status_notes"] == "Not a safety issue; mail [e-mail removed]"
    assert row(db, a).moderated_by == staff.id
    assert svc.moderate(db, staff, a, "approve")["status"] == "approved"
    with pytest.raises(UsageError, match="itself"):
        svc.moderate(db, staff, b, "merge", merge_into=b)
    merged = svc.moderate(db, staff, b, "merge", merge_into=a, settings=SETTINGS)
    assert merged["status"] == "merged" and merged["merged_into"] == a
    with pytest.raises(ConflictError, match="merged"):
        svc.moderate(db, staff, a, "merge", merge_into=b)
    assert svc.moderate(db, staff, a, "close")["status"] == "closed"
    assert [x[0] for x in audit_actions(db) if x[1] in (a, b) and x[0] != "reports.submit"] \
        == ["reports.reject", "reports.approve", "reports.merge", "reports.close"]
    # partners see merged reports, the public does not
    assert svc.get_report(db, people["partner"], b, settings=SETTINGS)["merged_into"] == a
    with pytest.raises(NotFoundError):
        svc.get_report(db, ANONYMOUS, b, settings=SETTINGS)


def _set_submitted(db: Engine, public_id: str, when: datetime) -> None:
    with db.begin() as c:
        c.execute(update(REPORTS).where(REPORTS.c.public_id == public_id)
                  .values(submitted_at=when))


def test_queue_suggests_nearby_same_category_duplicates(db: Engine,
                                                        people: dict[str, Principal]) -> None:
    staff = people["analyst"]
    metre = 1 / 111_320
    now = datetime.now(UTC)
    new = submit(db, description="new, call 0301234567", contact_email="n@example.org")
    near = submit(db, lat=LAT + 100 * metre)["public_id"]  # 100 m north
    edge = submit(db, lat=LAT - 140 * metre)["public_id"]  # 140 m south
    far = submit(db, lat=LAT + 200 * metre)["public_id"]  # too far
    other = submit(db, service_code="vandalism")["public_id"]  # other category
    old = submit(db, lat=LAT + 10 * metre)["public_id"]  # too old
    rejected = submit(db, lat=LAT + 20 * metre)["public_id"]
    svc.moderate(db, staff, near, "approve")
    svc.moderate(db, staff, rejected, "reject", reason="spam")
    _set_submitted(db, old, now - timedelta(days=20))
    for pid in (near, edge, far, other):
        _set_submitted(db, pid, now - timedelta(days=3))
    queue = svc.moderation_queue(db, staff, 50, settings=SETTINGS)
    by_id = {item["public_id"]: item for item in queue}
    assert set(by_id) == {new["public_id"], edge, far, other, old}
    assert queue[0]["public_id"] == old  # oldest first
    first = by_id[new["public_id"]]
    assert [d["public_id"] for d in first["duplicates"]] == [near, edge]
    assert first["duplicates"][0]["distance_m"] == pytest.approx(100, abs=0.5)
    assert first["duplicates"][1]["distance_m"] == pytest.approx(140, abs=0.5)
    assert first["description"] == "new, call 0301234567"
    assert "contact_email" not in first
    assert by_id[other]["duplicates"] == []
    assert audit_actions(db)[-1][0] == "reports.moderation_queue"
    with pytest.raises(PermissionDeniedError):
        svc.moderation_queue(db, people["viewer"], 10)


def test_tracking_and_erasure(db: Engine, people: dict[str, Principal]) -> None:
    out = submit(db, description="harassed here, mail me ana@example.org",
                 contact_email="ana@example.org", address="5 Oak Rd", photo=tiny_png(),
                 attributes={"time_of_day": "evening"})
    token, pid = out["tracking_token"], out["public_id"]
    own = svc.get_report_by_token(db, token, settings=SETTINGS)
    assert own["contact_email"] == "ana@example.org" and own["status"] == "pending"
    assert own["address"] == "5 Oak Rd" and own["has_photo"] is True
    assert svc.get_report(db, ANONYMOUS, pid, tracking_token=token,
                          settings=SETTINGS)["public_id"] == pid
    other = submit(db)
    with pytest.raises(NotFoundError):
        svc.get_report(db, ANONYMOUS, other["public_id"], tracking_token=token)
    for bad in ("x" * 43, "short", ""):
        with pytest.raises(NotFoundError):
            svc.get_report_by_token(db, bad)
        with pytest.raises(NotFoundError):
            svc.erase_report(db, None, bad)
    with pytest.raises(NotFoundError):
        svc.erase_report(db, other["public_id"], token)
    erased = svc.erase_report(db, pid, token, settings=SETTINGS)
    assert erased["status"] == "erased" and erased["has_photo"] is False
    r = row(db, pid)
    assert (r.description, r.public_description, r.address, r.contact_email) == \
        ("", "", None, None)
    assert r.attributes == {} and r.contact_erased_at is not None
    assert (r.lon, r.lat) == generalise_point(LON, LAT, 250)
    with db.connect() as c:
        assert c.execute(select(func.count()).select_from(PHOTOS)).scalar() == 0
    assert svc.erase_report(db, None, token, settings=SETTINGS)["status"] == "erased"
    (entry,) = [a for a in audit_actions(db) if a[0] == "reports.erase"]
    assert entry == ("reports.erase", pid, {"previous_status": "pending"})
    with db.connect() as c:
        actors = c.execute(select(AuditEntry.__table__.c.actor).where(
            AuditEntry.__table__.c.action == "reports.erase")).scalars().all()
    assert actors == ["anonymous:reporter"]
    assert "ana@example.org" not in json.dumps(audit.entries(db, limit=1000))
    assert audit.verify(db)["ok"]


def test_purge_contacts_after_retention(db: Engine, people: dict[str, Principal]) -> None:
    now = datetime.now(UTC)
    old = submit(db, contact_email="old@example.org", contact_name="Old",
                 description="old, call 0301234567")["public_id"]
    recent = submit(db, contact_email="new@example.org")["public_id"]
    plain = submit(db)["public_id"]
    _set_submitted(db, old, now - timedelta(days=200))
    _set_submitted(db, plain, now - timedelta(days=200))
    assert svc.purge_contacts(db, now=now, settings=SETTINGS) == 1  # default 180 days
    r = row(db, old)
    assert (r.contact_email, r.contact_name, r.contact_phone) == (None, None, None)
    assert r.description == "old, call [phone removed]" and r.contact_erased_at is not None
    assert row(db, recent).contact_email == "new@example.org"
    assert svc.purge_contacts(db, now=now, settings=SETTINGS) == 0  # nothing left
    assert svc.purge_contacts(db, older_than_days=0, now=now + timedelta(seconds=1)) == 1
    assert row(db, recent).contact_email is None
    purges = [a for a in audit_actions(db) if a[0] == "privacy.purge"]
    assert [p[2]["reports"] for p in purges] == [1, 0, 1]
    with pytest.raises(UsageError):
        svc.purge_contacts(db, older_than_days=-1)
    with pytest.raises(PermissionDeniedError):
        svc.purge_contacts(db, principal=people["analyst"])


def test_open311_status() -> None:
    assert [svc.report_status_for_open311(s) for s in svc.STATUSES] == [
        "open", "open", "closed", "closed", "closed", "closed"]
    with pytest.raises(UsageError):
        svc.report_status_for_open311("lost")
