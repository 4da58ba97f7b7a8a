"""Evidence through HTTP: permissions per role, k-suppression, hotspots, imports, audit."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.domain.taxonomy import resolve_filter
from urbansec.services import audit, identity
from urbansec.services.aggregates import suppress_counts
from urbansec.services.cells import write_geojson
from urbansec.services.hotspots import GridOptions, hotspots
from urbansec.services.incidents import IncidentFilter, count_incidents

K = 5
ROLES = ("admin", "analyst", "partner", "viewer")


@pytest.fixture
def client(db: Engine) -> TestClient:
    return TestClient(create_app(Settings(k_anonymity=K, public_cell_m=250.0), db))


@pytest.fixture
def keys(db: Engine) -> dict[str, dict[str, str]]:
    """X-API-Key headers per role, plus anonymous (no header)."""
    org = identity.create_organisation(db, "city", "City of Example", "city")
    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in ROLES:
        _key_id, plaintext = identity.create_api_key(db, org, f"{role} key", role)
        headers[role] = {"X-API-Key": plaintext}
    return headers


@pytest.fixture
def upload(tmp_path: Path, chicago_header: str, chicago_lines: list[str]) -> Path:
    """200 real Chicago rows (the bundled sample's first lines) as a gzipped CSV."""
    path = tmp_path / "chicago sample.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write("\r\n".join([chicago_header, *chicago_lines]) + "\r\n")
    return path


def post_import(client: TestClient, headers: dict[str, str], path: Path) -> Any:
    with path.open("rb") as handle:
        return client.post("/api/v1/imports", headers=headers, data={"preset": "chicago"},
                           files={"file": (path.name, handle, "application/gzip")})


@pytest.fixture
def loaded(client: TestClient, keys: dict[str, dict[str, str]], upload: Path
           ) -> dict[str, Any]:
    response = post_import(client, keys["admin"], upload)
    assert response.status_code == 201, response.text
    return response.json()


# --------------------------------------------------------------------------------------------


def test_suppress_counts_rules() -> None:
    # primary: 0 < n < k hidden, zero shown
    table = suppress_counts([0, 3, 10, 7, 12], 5)
    # one primary (3): the smallest visible non-zero (7) goes too, so 32 - 22 = 10 is a pair
    assert table.values == [0, None, 10, None, 12]
    assert table.suppressed == [False, True, False, True, False]
    assert table.total == 32
    # two primaries already protect each other
    table = suppress_counts([1, 2, 10], 5)
    assert table.values == [None, None, 10] and table.total == 13
    # a lone non-zero cell below k: no partner, and the total (3) is below k anyway
    table = suppress_counts([0, 3, 0], 5)
    assert table.values == [0, None, 0] and table.total is None and table.total_suppressed
    # one primary among zeros with a larger total from elsewhere: withhold the total
    table = suppress_counts([0, 3], 5, total=20)
    assert table.values == [0, None] and table.total is None
    # nothing to hide
    assert suppress_counts([5, 6], 5).values == [5, 6]
    assert suppress_counts([], 5).total == 0


def test_import_via_api_then_reimport_adds_nothing(
        client: TestClient, keys: dict[str, dict[str, str]], upload: Path, db: Engine) -> None:
    first = post_import(client, keys["analyst"], upload)
    assert first.status_code == 201, first.text
    report = first.json()
    assert report["status"] == "succeeded"
    assert report["files"][0]["file"] == "chicago sample.csv.gz"
    assert report["files"][0]["inserted"] == 200
    again = post_import(client, keys["analyst"], upload)
    assert again.status_code == 201, again.text
    assert again.json()["files"][0]["inserted"] == 0
    assert again.json()["files"][0]["updated"] == 0
    assert count_incidents(db, IncidentFilter())["total"] == 200
    imports = [e for e in audit.entries(db, action="import.incidents")]
    assert len(imports) == 2
    assert imports[0]["details"]["inserted"] == 0 and imports[1]["details"]["inserted"] == 200
    assert audit.verify(db)["ok"]

    listing = client.get("/api/v1/imports", headers=keys["analyst"])
    assert listing.status_code == 200
    batch_id = report["files"][0]["batch_id"]
    assert batch_id in [b["id"] for b in listing.json()]
    one = client.get(f"/api/v1/imports/{batch_id}", headers=keys["admin"])
    assert one.status_code == 200
    assert one.json()["rows_inserted"] == 200
    assert one.json()["file_name"] == "chicago_sample.csv.gz"  # never the server's temp path
    assert client.get("/api/v1/imports/999999", headers=keys["admin"]).status_code == 404


def test_import_refuses_bad_uploads(client: TestClient, keys: dict[str, dict[str, str]],
                                    upload: Path, tmp_path: Path) -> None:
    with upload.open("rb") as handle:
        bad_type = client.post("/api/v1/imports", headers=keys["admin"],
                               data={"preset": "chicago"},
                               files={"file": ("evil.exe", handle, "application/x-msdownload")})
    assert bad_type.status_code == 400
    assert bad_type.json()["error"]["code"] == "input_format"
    unknown = post_import_preset(client, keys["admin"], upload, "nonesuch")
    assert unknown.status_code == 400
    assert "unknown preset" in unknown.json()["error"]["message"]
    assert post_import_preset(client, keys["admin"], upload, "../x").status_code == 422


def post_import_preset(client: TestClient, headers: dict[str, str], path: Path,
                       preset: str) -> Any:
    with path.open("rb") as handle:
        return client.post("/api/v1/imports", headers=headers, data={"preset": preset},
                           files={"file": (path.name, handle, "text/csv")})


ROUTES = [
    # (method, path, permission holders)
    ("GET", "/api/v1/incidents", {"admin", "analyst", "partner"}),
    ("GET", "/api/v1/incidents/count", {"admin", "analyst", "partner", "viewer", "anonymous"}),
    ("GET", "/api/v1/aggregates/cells", {"admin", "analyst", "partner", "viewer",
                                         "anonymous"}),
    ("GET", "/api/v1/aggregates/areas", {"admin", "analyst", "partner", "viewer",
                                         "anonymous"}),
    ("GET", "/api/v1/patterns", {"admin", "analyst", "partner", "viewer", "anonymous"}),
    ("GET", "/api/v1/hotspots?method=count", {"admin", "analyst", "partner"}),
    ("GET", "/api/v1/near-repeat?permutations=19", {"admin", "analyst", "partner"}),
    ("GET", "/api/v1/change?from=2017-01-03&to=2017-01-04", {"admin", "analyst", "partner"}),
    ("GET", "/api/v1/forecast?model=naive", {"admin", "analyst", "partner"}),
    ("GET", "/api/v1/imports", {"admin", "analyst"}),
    ("GET", "/api/v1/imports/1", {"admin", "analyst"}),
]


def test_permissions_per_role(client: TestClient, keys: dict[str, dict[str, str]],
                              loaded: dict[str, Any]) -> None:
    for method, path, holders in ROUTES:
        for who, headers in keys.items():
            response = client.request(method, path, headers=headers)
            expected = 200 if who in holders else 401 if who == "anonymous" else 403
            assert response.status_code == expected, (path, who, response.text)
    with (Path(__file__).parent / "test_evidence.py").open("rb") as handle:
        for who in ("partner", "viewer", "anonymous"):
            handle.seek(0)
            response = client.post("/api/v1/imports", headers=keys[who],
                                   data={"preset": "chicago"},
                                   files={"file": ("x.csv", handle, "text/csv")})
            assert response.status_code == (401 if who == "anonymous" else 403), who


def _visible_counts_safe(values: list[int | None], total: int | None) -> None:
    """No count below k is visible, and the total cannot give back a lone hidden count."""
    shown = [v for v in values if v is not None]
    assert all(v == 0 or v >= K for v in shown), shown
    hidden = len(values) - len(shown)
    if total is not None and hidden:
        assert hidden >= 2, "the total minus the visible counts would reveal one cell"


@pytest.mark.parametrize("who", ["viewer", "anonymous"])
def test_viewers_and_public_get_suppressed_aggregates_only(
        client: TestClient, keys: dict[str, dict[str, str]], loaded: dict[str, Any],
        who: str, db: Engine) -> None:
    headers = keys[who]
    cells = client.get("/api/v1/aggregates/cells?cell=250", headers=headers)
    assert cells.status_code == 200, cells.text
    body = cells.json()
    values = [f["properties"]["count"] for f in body["features"]]
    assert body["urbansec"]["suppressed"] is True
    assert any(f["properties"]["suppressed"] for f in body["features"])  # 200 rows, 250 m
    _visible_counts_safe(values, body["urbansec"]["total"])
    for feature in body["features"]:
        assert feature["geometry"]["type"] == "Polygon"  # a cell, never a point
        assert set(feature["properties"]) == {"cell_id", "count", "suppressed"}

    # finer than the public cell, a bounding box, or sub-day times: refused
    assert client.get("/api/v1/aggregates/cells?cell=100", headers=headers).status_code == 400
    assert client.get("/api/v1/aggregates/cells?hex=10", headers=headers).status_code == 400
    assert client.get("/api/v1/incidents/count?bbox=-88,41,-87,42",
                      headers=headers).status_code == 400
    assert client.get("/api/v1/incidents/count?from=2017-01-01T05:00:00Z",
                      headers=headers).status_code == 400

    count = client.get("/api/v1/incidents/count", headers=headers).json()
    assert "first" not in count and "last" not in count  # an incident's exact time
    _visible_counts_safe([c["count"] for c in count["by_category"]], count["total"])
    assert any(c["suppressed"] for c in count["by_category"])
    exact = count_incidents(db, IncidentFilter())
    assert count["total"] == exact["total"] == 200

    areas = client.get("/api/v1/aggregates/areas?kind=beat", headers=headers).json()
    _visible_counts_safe([a["count"] for a in areas["areas"]], areas["total"])
    assert any(a["suppressed"] for a in areas["areas"])

    patterns = client.get("/api/v1/patterns", headers=headers).json()
    grid = [v for row in patterns["hour_weekday"]["counts"] for v in row]
    _visible_counts_safe(grid, patterns["hour_weekday"]["total"])
    assert "rate" not in patterns["hour_weekday"] and "night" not in patterns

    assert client.get("/api/v1/incidents", headers=headers).status_code in (401, 403)


def test_partners_get_exact_counts(client: TestClient, keys: dict[str, dict[str, str]],
                                   loaded: dict[str, Any], db: Engine) -> None:
    count = client.get("/api/v1/incidents/count", headers=keys["partner"]).json()
    exact = count_incidents(db, IncidentFilter())
    assert [(c["code"], c["count"]) for c in count["by_category"]] == \
        [(c["code"], c["count"]) for c in exact["by_category"]]
    cells = client.get("/api/v1/aggregates/cells?cell=100", headers=keys["partner"]).json()
    counts = [f["properties"]["count"] for f in cells["features"]]
    assert None not in counts and sum(counts) == exact["located"]
    areas = client.get("/api/v1/aggregates/areas?kind=district", headers=keys["analyst"]).json()
    assert sum(a["count"] for a in areas["areas"]) + areas["unassigned"] == 200
    assert client.get("/api/v1/aggregates/cells?cell=49",
                      headers=keys["partner"]).status_code == 422


def test_incidents_paginated_and_audited(client: TestClient, keys: dict[str, dict[str, str]],
                                         loaded: dict[str, Any], db: Engine) -> None:
    first = client.get("/api/v1/incidents?limit=150", headers=keys["partner"])
    assert first.status_code == 200, first.text
    page = first.json()
    assert len(page["items"]) == 150 and page["next_offset"] == 150
    second = client.get("/api/v1/incidents?limit=150&offset=150", headers=keys["partner"])
    rest = second.json()
    assert len(rest["items"]) == 50 and rest["next_offset"] is None
    ids = [r["id"] for r in page["items"] + rest["items"]]
    assert len(set(ids)) == 200
    geo = client.get("/api/v1/incidents?format=geojson&limit=5&category=theft",
                     headers=keys["analyst"]).json()
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) <= 5
    theft = set(resolve_filter("theft"))
    assert geo["features"]
    for feature in geo["features"]:
        assert feature["properties"]["category"] in theft
    reads = audit.entries(db, action="incidents.read")
    assert len(reads) == 3
    partner_key = identity.list_api_keys(db)
    partner_id = next(k["id"] for k in partner_key if k["role"] == "partner")
    assert reads[-1]["actor"] == f"apikey:{partner_id}"
    assert reads[-1]["details"]["returned"] == 150
    assert audit.verify(db)["ok"]
    bad = client.get("/api/v1/incidents?bbox=1,2,3", headers=keys["partner"])
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "usage_error"


def test_hotspots_geojson_equals_service(client: TestClient, keys: dict[str, dict[str, str]],
                                         loaded: dict[str, Any], db: Engine,
                                         tmp_path: Path) -> None:
    response = client.get("/api/v1/hotspots?method=gi&cell=300&permutations=99&seed=7",
                          headers=keys["analyst"])
    assert response.status_code == 200, response.text
    body = response.json()
    result = hotspots(db, IncidentFilter(), method="gi", options=GridOptions(cell=300.0),
                      permutations=99, seed=7)
    expected = json.loads(write_geojson(result, tmp_path / "gi.geojson").read_text())
    assert body["features"] == expected["features"]
    assert body["urbansec"] == expected["urbansec"]
    assert len(body["features"]) == result.keys.size > 0
    kde = client.get("/api/v1/hotspots?method=kde&cell=200&bandwidth=400",
                     headers=keys["partner"])
    assert kde.status_code == 200
    assert all("density_km2" in f["properties"] for f in kde.json()["features"])
    # bounded work
    assert client.get("/api/v1/hotspots?permutations=10000",
                      headers=keys["analyst"]).status_code == 422
    too_wide = client.get("/api/v1/hotspots?method=kde&cell=50&bandwidth=5000",
                          headers=keys["analyst"])
    assert too_wide.status_code == 400 and "bandwidth" in too_wide.json()["error"]["message"]
    assert client.get("/api/v1/hotspots?weights=drop%20table",
                      headers=keys["analyst"]).status_code == 422


def test_analyses_run_through_http(client: TestClient, keys: dict[str, dict[str, str]],
                                   loaded: dict[str, Any]) -> None:
    headers = keys["partner"]
    change = client.get("/api/v1/change?by=district&from=2017-01-03&to=2017-01-04",
                        headers=headers)
    assert change.status_code == 200, change.text
    # by default the last 28 days against the 28 before: the upload holds only 4 days
    short = client.get("/api/v1/change?by=district", headers=headers)
    assert short.status_code == 400
    assert "starts before the stored data" in short.json()["error"]["message"]
    assert change.json()["unit"] == "district"
    repeat = client.get("/api/v1/near-repeat?space_bands=200,400&time_bands=7,14"
                        "&permutations=19", headers=headers)
    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["results"][0]["events"] > 100
    forecast = client.get("/api/v1/forecast?model=historical&horizon=7d&cell=500",
                          headers=headers)
    assert forecast.status_code == 200, forecast.text
    fc = forecast.json()
    assert fc["urbansec"]["model"]
    assert sum(f["properties"]["flagged"] for f in fc["features"]) == \
        fc["urbansec"]["flagged_cells"]
    assert client.get("/api/v1/forecast?horizon=forever", headers=headers).status_code == 422
