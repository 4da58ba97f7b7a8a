"""Citizen reports through HTTP (``/api/v1/reports``), on SQLite and PostgreSQL: anonymous
submission (JSON and multipart with a photo), validation errors as JSON, photo type and size,
redaction, idempotency, rate limit (429 + Retry-After), moderation and duplicate suggestions,
visibility by role, tracking and erasure."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.privacy import generalise_point
from urbansec.services import audit, identity
from urbansec.store.collaboration import Report

API = "/api/v1"
LON, LAT = -87.6298, 41.8781
PASSWORD = "correct horse battery 9"


def tiny_png(with_text: bool = True) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    chunks = [chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))]
    if with_text:
        chunks.append(chunk(b"tEXt", b"GPS\x0041.88,-87.63"))
    chunks += [chunk(b"IDAT", zlib.compress(b"\x00\x80")), chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def make_client(db: Engine, **settings: Any) -> TestClient:
    values = {"report_rate_limit": 1000, "report_rate_window_seconds": 60, **settings}
    return TestClient(create_app(Settings(**values), db))


@pytest.fixture
def client(db: Engine) -> Iterator[TestClient]:
    with make_client(db) as c:
        yield c


@pytest.fixture
def auth(db: Engine) -> dict[str, dict[str, str]]:
    """Headers per role: API keys for viewer/partner/admin, a signed-in analyst (token)."""
    org = identity.create_organisation(db, "city", "City of Example")
    identity.create_user(db, org, "analyst@city.example", "Ann Analyst", PASSWORD, "analyst")
    token = identity.issue_tokens(db, "analyst@city.example", PASSWORD)["access_token"]
    headers = {"analyst": {"Authorization": f"Bearer {token}"}, "anonymous": {}}
    for role in ("viewer", "partner", "admin"):
        _, key = identity.create_api_key(db, org, f"{role} client", role)
        headers[role] = {"X-API-Key": key}
    return headers


def report(**fields: Any) -> dict[str, Any]:
    return {"service_code": "poor-lighting", "description": "street light out",
            "lat": LAT, "lon": LON, **fields}


def submit(client: TestClient, headers: dict[str, str] | None = None, **fields: Any
           ) -> dict[str, Any]:
    response = client.post(f"{API}/reports", json=report(**fields), headers=headers or {})
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"]
    if code:
        assert error["code"] == code
    return error


def count_reports(db: Engine) -> int:
    with db.connect() as c:
        return c.execute(select(func.count()).select_from(Report.__table__)).scalar_one()


def test_anonymous_submission_and_tracking(client: TestClient, db: Engine) -> None:
    text = "Dark underpass. Call me: +44 20 7946 0958, or ana@example.org"
    receipt = submit(client, description=text, contact_email="ana@example.org",
                     contact_phone="+44 20 7946 0958", address="Underpass, 5th Ave",
                     occurred_at="2026-01-02T21:30:00+01:00",
                     attributes={"time_of_day": "night"})
    assert set(receipt) == {"public_id", "tracking_token", "status", "submitted_at"}
    assert receipt["status"] == "pending"
    tracked = client.get(f"{API}/reports/track/{receipt['tracking_token']}")
    assert tracked.status_code == 200 and tracked.headers["cache-control"] == "no-store"
    own = tracked.json()
    assert own["public_id"] == receipt["public_id"]
    assert own["contact_email"] == "ana@example.org" and own["description"] == text
    assert own["public_description"] == ("Dark underpass. Call me: [phone removed], or "
                                         "[e-mail removed]")
    assert own["occurred_at"] == "2026-01-02T20:30:00Z"
    assert own["attributes"] == {"time_of_day": "night"}
    # unmoderated: invisible to the public
    assert_error(client.get(f"{API}/reports/{receipt['public_id']}"), 404, "not_found")
    assert client.get(f"{API}/reports").json() == []
    assert_error(client.get(f"{API}/reports/track/{'x' * 43}"), 404, "not_found")
    assert_error(client.get(f"{API}/reports/track/short"), 422)
    assert count_reports(db) == 1


INVALID: list[tuple[Any, int]] = [
    (report(service_code="parking"), 422),
    (report(lat=None, lon=None), 400),
    (report(lon=None), 400),
    (report(occurred_at="2026-01-02T21:30:00"), 400),
    (report(contact_email="nobody"), 400),
    (report(attributes={"time_of_day": "noon"}), 400),
    (report(lat=91), 422),
    (report(lon="east"), 422),
    (report(description=""), 422),
    (report(description="x" * 4001), 422),
    (report(description="nul\x00byte"), 422),
    (report(description="lone \ud800 surrogate"), 422),
    (report(client_key="short"), 422),
    (report(unexpected="field"), 422),
    (report(attributes={"time_of_day": 5}), 422),
    ({"description": "no category"}, 422),
    ([1, 2, 3], 422),
]


def test_validation_errors_are_json_4xx(client: TestClient, db: Engine) -> None:
    # one database for all cases: a fresh migrated one per case would dominate the run time
    for body, status in INVALID:
        payload = json.dumps(body, ensure_ascii=True).encode()
        response = client.post(f"{API}/reports", content=payload,
                               headers={"content-type": "application/json"})
        assert response.status_code == status, (body, response.text)
        assert_error(response, status)
    assert count_reports(db) == 0


def test_malformed_bodies(client: TestClient) -> None:
    assert_error(client.post(f"{API}/reports", content=b"{not json",
                             headers={"content-type": "application/json"}), 422)
    assert_error(client.post(f"{API}/reports", content=b"",
                             headers={"content-type": "application/json"}), 422)
    assert_error(client.post(f"{API}/reports", content=b"service_code=x",
                             headers={"content-type": "text/plain"}), 400, "usage_error")
    assert_error(client.post(f"{API}/reports", data={**report(lat="41.9", lon="-87.6"),
                                                     "attributes": "{oops"}), 400)


def test_multipart_with_photo(client: TestClient, db: Engine,
                              auth: dict[str, dict[str, str]]) -> None:
    fields = {"service_code": "vandalism", "description": "graffiti on the school",
              "lat": str(LAT), "lon": str(LON), "attributes": '{"repeated": "repeated"}'}
    response = client.post(f"{API}/reports", data=fields,
                           files={"photo": ("wall.png", tiny_png(), "image/png")})
    assert response.status_code == 201, response.text
    pid = response.json()["public_id"]
    photo = client.get(f"{API}/reports/{pid}/photo", headers=auth["analyst"])
    assert photo.status_code == 200
    assert photo.headers["content-type"] == "image/png"
    assert photo.content == tiny_png(with_text=False)  # GPS text chunk removed
    assert_error(client.get(f"{API}/reports/{pid}/photo"), 401)
    assert_error(client.get(f"{API}/reports/{pid}/photo", headers=auth["partner"]), 403)
    bad_type = client.post(f"{API}/reports", data=fields,
                           files={"photo": ("x.gif", b"GIF89a" + bytes(64), "image/gif")})
    assert "JPEG, PNG or WebP" in assert_error(bad_type, 400)["message"]
    lying = client.post(f"{API}/reports", data=fields,
                        files={"photo": ("x.jpg", tiny_png(), "image/jpeg")})
    assert_error(lying, 400)
    two = client.post(f"{API}/reports", data=fields,
                      files={"picture": ("x.png", tiny_png(), "image/png")})
    assert_error(two, 400)
    assert count_reports(db) == 1


def test_photo_and_body_size_limits(db: Engine) -> None:
    with make_client(db, max_photo_bytes=200, max_body_bytes=4000) as client:
        fields = {"service_code": "vandalism", "description": "x", "lat": str(LAT),
                  "lon": str(LON)}
        big_photo = tiny_png() + bytes(300)
        response = client.post(f"{API}/reports", data=fields,
                               files={"photo": ("a.png", big_photo, "image/png")})
        assert assert_error(response, 413, "payload_too_large")["details"] == {
            "max_photo_bytes": 200}
        huge = client.post(f"{API}/reports", data=fields,
                           files={"photo": ("a.png", tiny_png() + bytes(5000), "image/png")})
        assert_error(huge, 413, "payload_too_large")
    assert count_reports(db) == 0


def test_idempotent_retries(client: TestClient, db: Engine) -> None:
    key = "0b5e6a4c-1f2d-4e3a-9b8c-7d6e5f4a3b2c"
    first = submit(client, client_key=key)
    again = submit(client, client_key=key)
    assert again == first
    assert count_reports(db) == 1


def test_rate_limit_429_with_retry_after(db: Engine, auth: dict[str, dict[str, str]]) -> None:
    with make_client(db, report_rate_limit=3, report_rate_window_seconds=120) as client:
        for _ in range(3):
            submit(client)
        response = client.post(f"{API}/reports", json=report())
        error = assert_error(response, 429, "rate_limited")
        assert 110 <= int(response.headers["retry-after"]) <= 120
        assert error["details"]["retry_after"] == int(response.headers["retry-after"])
        submit(client, auth["partner"])  # signed-in clients are not limited
    assert count_reports(db) == 4


def test_moderation_flow_and_duplicates(client: TestClient, db: Engine,
                                        auth: dict[str, dict[str, str]]) -> None:
    metre = 1 / 111_320
    first = submit(client)["public_id"]
    dup = submit(client, lat=LAT + 60 * metre, description="lamp broken again")["public_id"]
    far = submit(client, lat=LAT + 400 * metre)["public_id"]
    other = submit(client, service_code="harassment", description="shouted at")["public_id"]
    assert_error(client.get(f"{API}/reports/moderation"), 401)
    for role in ("viewer", "partner"):
        assert_error(client.get(f"{API}/reports/moderation", headers=auth[role]), 403)
    queue = client.get(f"{API}/reports/moderation", headers=auth["analyst"]).json()
    assert [q["public_id"] for q in queue] == [first, dup, far, other]
    duplicates = {q["public_id"]: [d["public_id"] for d in q["duplicates"]] for q in queue}
    assert duplicates == {first: [dup], dup: [first], far: [], other: []}
    assert queue[1]["duplicates"][0]["distance_m"] == pytest.approx(60, abs=0.5)

    def moderate(pid: str, role: str = "analyst", **body: Any) -> Any:
        return client.post(f"{API}/reports/{pid}/moderation", json=body, headers=auth[role])

    assert_error(moderate(first, "partner", action="approve"), 403)
    assert_error(moderate(first, "anonymous", action="approve"), 401)
    assert_error(moderate(first, action="reject"), 400)
    assert_error(moderate(first, action="merge"), 400)
    assert_error(moderate(first, action="destroy"), 422)
    assert_error(moderate(first, action="close"), 409, "conflict")
    assert_error(moderate("r-000000000000", action="approve"), 404)
    assert moderate(first, action="approve").json()["status"] == "approved"
    merged = moderate(dup, action="merge", merge_into=first).json()
    assert (merged["status"], merged["merged_into"]) == ("merged", first)
    rejected = moderate(other, action="reject", reason="Not in our area").json()
    assert (rejected["status"], rejected["status_notes"]) == ("rejected", "Not in our area")
    assert [q["public_id"] for q in client.get(f"{API}/reports/moderation",
                                                headers=auth["analyst"]).json()] == [far]
    assert moderate(first, action="close").json()["open311_status"] == "closed"
    public = client.get(f"{API}/reports").json()
    assert [r["public_id"] for r in public] == [first]
    actions = [e["action"] for e in audit.entries(db, limit=100)]
    assert {"reports.approve", "reports.merge", "reports.reject", "reports.close",
            "reports.moderation_queue"} <= set(actions)
    assert audit.verify(db)["ok"]


def test_visibility_by_role(client: TestClient, db: Engine,
                            auth: dict[str, dict[str, str]]) -> None:
    receipt = submit(client, description="dealing at the corner, ring 0301234567",
                     contact_name="Ana", contact_email="ana@example.org",
                     contact_phone="0301234567", address="12 Corner St")
    pid = receipt["public_id"]
    client.post(f"{API}/reports/{pid}/moderation", json={"action": "approve"},
                headers=auth["analyst"])
    glon, glat = generalise_point(LON, LAT, 250)
    personal = ("ana@example.org", "0301234567", "Ana", "12 Corner St")
    for role in ("anonymous", "viewer"):
        one = client.get(f"{API}/reports/{pid}", headers=auth[role])
        listed = client.get(f"{API}/reports", headers=auth[role])
        for view in (one.json(), listed.json()[0]):
            assert (view["lon"], view["lat"]) == (glon, glat) != (LON, LAT)
            assert view["location_precision_m"] == 250
            assert "contact_email" not in view and "description" not in view
            text = json.dumps(view)
            assert not any(p in text for p in personal), role
    partner = client.get(f"{API}/reports/{pid}", headers=auth["partner"]).json()
    assert (partner["lon"], partner["lat"]) == (LON, LAT)
    assert partner["address"] == "12 Corner St" and "contact_email" not in partner
    before = len(audit.entries(db, limit=1000))
    staff = client.get(f"{API}/reports/{pid}", headers=auth["analyst"])
    assert staff.headers["cache-control"] == "no-store"
    assert staff.json()["contact_email"] == "ana@example.org"
    assert staff.json()["description"] == "dealing at the corner, ring 0301234567"
    newest = audit.entries(db, limit=1)[0]
    assert len(audit.entries(db, limit=1000)) == before + 1
    assert (newest["action"], newest["target_id"]) == ("reports.read_restricted", pid)
    # filters and their validation
    assert client.get(f"{API}/reports", params={"status": "pending"}).json() == []
    assert len(client.get(f"{API}/reports", params={"service_code": "poor-lighting"},
                          headers=auth["partner"]).json()) == 1
    assert_error(client.get(f"{API}/reports", params={"status": "lost"}), 422)
    assert_error(client.get(f"{API}/reports", params={"limit": 0}), 422)
    assert_error(client.get(f"{API}/reports", params={"bbox": "1,2,3"}), 422)
    assert_error(client.get(f"{API}/reports", params={"bbox": "a,b,c,d"}), 422)
    assert_error(client.get(f"{API}/reports", params={"bbox": "10,0,0,10"}), 400)
    assert len(client.get(f"{API}/reports", params={"bbox": "-88, 41.5, -87.4, 42.1"},
                          headers=auth["partner"]).json()) == 1
    assert_error(client.get(f"{API}/reports", params={"start": "2026-01-01T00:00:00"}), 400)
    assert_error(client.get(f"{API}/reports", params={"service_code": "parking"}), 422)
    assert_error(client.get(f"{API}/reports/bad%20id"), 422)


def test_erasure_by_tracking_token(client: TestClient, db: Engine,
                                   auth: dict[str, dict[str, str]]) -> None:
    fields = {"service_code": "harassment", "description": "followed, mail x@example.org",
              "lat": str(LAT), "lon": str(LON), "contact_email": "x@example.org"}
    receipt = client.post(f"{API}/reports", data=fields,
                          files={"photo": ("p.png", tiny_png(), "image/png")}).json()
    token, pid = receipt["tracking_token"], receipt["public_id"]
    erased = client.delete(f"{API}/reports/track/{token}")
    assert erased.status_code == 200, erased.text
    body = erased.json()
    assert body["status"] == "erased" and body["contact_email"] is None
    assert body["description"] == "" and body["has_photo"] is False
    assert client.get(f"{API}/reports/track/{token}").json()["status"] == "erased"
    assert client.delete(f"{API}/reports/track/{token}").status_code == 200  # idempotent
    assert_error(client.get(f"{API}/reports/{pid}/photo", headers=auth["analyst"]), 404)
    staff = client.get(f"{API}/reports/{pid}", headers=auth["analyst"]).json()
    assert staff["contact_email"] is None and staff["status"] == "erased"
    assert_error(client.delete(f"{API}/reports/track/{'y' * 43}"), 404)
    assert "x@example.org" not in json.dumps(audit.entries(db, limit=1000))
    assert audit.verify(db)["ok"]


def test_openapi_documents_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"][f"{API}/reports"]["post"]
    assert set(post["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"201", "400", "413", "422", "429"} <= set(post["responses"])
    for path in ("/reports/moderation", "/reports/track/{tracking_token}",
                 "/reports/{public_id}", "/reports/{public_id}/moderation",
                 "/reports/{public_id}/photo"):
        assert f"{API}{path}" in spec["paths"]
