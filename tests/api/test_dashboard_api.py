"""The dashboard API over HTTP: who may call what, the JSON shapes of the contract, the
k-suppressed public view, and JSON errors for malformed parameters (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from urbansec.api.app import create_app
from urbansec.api.deps import get_principal
from urbansec.config import Settings
from urbansec.services.access import ANONYMOUS, Principal
from urbansec.services.incidents import IncidentFilter, count_incidents

K = 5
CALLERS = {
    "anonymous": ANONYMOUS,
    "viewer": Principal("user", 101, 1, "viewer", "viewer"),
    "partner": Principal("user", 102, 1, "partner", "partner"),
    "analyst": Principal("user", 103, 1, "analyst", "analyst"),
}


@pytest.fixture
def as_caller(sample_db: Engine) -> Iterator[Any]:
    """``as_caller(name)`` -> a client whose every request comes from that caller (the
    sample database stays read-only: no users are created in it)."""
    app = create_app(Settings(k_anonymity=K, public_cell_m=250.0), sample_db)
    client = TestClient(app)

    def use(name: str) -> TestClient:
        principal = CALLERS[name]
        app.dependency_overrides[get_principal] = lambda: principal
        return client

    yield use
    app.dependency_overrides.clear()


API = "/api/v1/dashboard"


def test_who_may_call_what(as_caller: Any) -> None:
    expected = {
        "/config": (200, 200, 200, 200),
        "/taxonomy": (200, 200, 200, 200),
        "/areas/district": (200, 200, 200, 200),
        "/view?category=05": (200, 200, 200, 200),
        "/reports": (200, 200, 200, 200),
        "/risks": (200, 200, 200, 200),
        "/emerging?category=0501&cell=500": (401, 403, 200, 200),
        "/forecast?category=0501&model=historical": (401, 403, 200, 200),
    }
    got = {path: tuple(as_caller(name).get(API + path).status_code for name in CALLERS)
           for path in expected}
    assert got == expected


def test_view_shape_and_totals(as_caller: Any, sample_db: Engine) -> None:
    query = "category=05&from=2017-06-01&to=2017-08-31&time=night&layer=gi&cell=250"
    response = as_caller("analyst").get(f"{API}/view?{query}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) >= {"filter", "total", "located", "suppressed", "k", "period", "cells",
                         "hour_weekday", "monthly", "categories", "elapsed_ms"}
    assert body["filter"]["category"] == "05" and body["filter"]["time"] == "night"
    assert body["suppressed"] is False and body["k"] is None
    assert body["period"]["from"] == "2017-06-01" and body["period"]["last"] == "2017-08-31"
    cells = body["cells"]
    assert cells["type"] == "grid" and cells["layer"] == "gi"
    assert cells["cell_m"] == 250
    assert {entry["class"] for entry in cells["legend"]} == {
        "hot-99", "hot-95", "hot-90", "ns", "cold-90", "cold-95", "cold-99"}
    assert cells["grid"] == {"crs": "EPSG:32616", "size": 250.0, "utm_zone": 16,
                             "south": False}
    assert cells["columns"] == ["col", "row", "value", "class"]
    assert cells["cells"] and all(len(row) == 4 for row in cells["cells"])
    # the same cells as GeoJSON squares, for GIS clients
    geojson = as_caller("analyst").get(f"{API}/view?{query}&format=geojson").json()["cells"]
    assert geojson["type"] == "FeatureCollection"
    assert [f["id"] for f in geojson["features"]] == [
        f"250m_{col}_{row}" for col, row, _, _ in cells["cells"]]
    feature = geojson["features"][0]
    assert feature["geometry"]["type"] == "Polygon"
    assert set(feature["properties"]) == {"value", "class"}
    assert as_caller("analyst").get(f"{API}/view?{query}&format=kml").status_code == 422
    assert len(body["hour_weekday"]["counts"]) == 7
    assert all(len(row) == 24 for row in body["hour_weekday"]["counts"])
    # night hours only
    assert all(v == 0 for row in body["hour_weekday"]["counts"] for v in row[6:22])
    assert body["monthly"]["months"][1:] == ["2017-06", "2017-07", "2017-08"]
    whole = as_caller("analyst").get(f"{API}/view?category=05&from=2017-06-01&to=2017-08-31")
    assert whole.json()["total"] == count_incidents(sample_db, IncidentFilter.parse(
        category="05", start="2017-06-01", end="2017-08-31"))["total"]


def test_view_is_gzipped_when_the_client_takes_it(as_caller: Any) -> None:
    import gzip
    import json

    client = as_caller("analyst")
    plain = client.get(f"{API}/view?category=05", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert "accept-encoding" in plain.headers["vary"].lower()
    packed = client.stream("GET", f"{API}/view?category=05",
                           headers={"accept-encoding": "gzip, deflate"})
    with packed as response:
        assert response.headers["content-encoding"] == "gzip"
        body = b"".join(response.iter_raw())
    assert len(body) < len(plain.content) / 3
    assert json.loads(gzip.decompress(body)) == plain.json()


def test_public_view_is_suppressed(as_caller: Any) -> None:
    body = as_caller("anonymous").get(f"{API}/view?category=05&area=beat:1822&cell=50").json()
    assert body["suppressed"] is True and body["k"] == K
    assert body["cells"]["cell_m"] == 250
    values = [value for _, _, value, _ in body["cells"]["cells"]]
    assert values and all(v is None or v >= K for v in values)
    viewer = as_caller("viewer").get(f"{API}/view?category=05&area=beat:1822&cell=50").json()
    assert viewer["cells"] == body["cells"]
    partner = as_caller("partner").get(f"{API}/view?category=05&area=beat:1822&cell=50").json()
    assert partner["cells"]["cell_m"] == 50 and partner["suppressed"] is False


@pytest.mark.parametrize("query, status", [
    ("layer=heat", 422), ("cell=10", 422), ("cell=nan", 422), ("cell=1e9", 422),
    ("time=noon", 422), ("time=25:00-01:00", 400), ("time=10:00-10:00", 400),
    ("from=2017-02-30", 400), ("from=17-01-01", 422), ("from=2017-05-01&to=2017-04-01", 400),
    ("category=nonesuch", 400), ("category=%00", 422), ("area=district", 400),
    ("area=precinct:1", 404), ("bandwidth=5", 422), ("bandwidth=20000&cell=100", 400),
])
def test_malformed_parameters_are_json_errors(as_caller: Any, query: str, status: int
                                              ) -> None:
    response = as_caller("anonymous").get(f"{API}/view?{query}")
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_other_routes_refuse_bad_input(as_caller: Any) -> None:
    client = as_caller("analyst")
    assert client.get(f"{API}/areas/nonesuch").status_code == 404
    assert client.get(f"{API}/areas/a%20b").status_code == 422
    assert client.get(f"{API}/forecast?horizon=90d").status_code == 422
    assert client.get(f"{API}/forecast?model=lisa").status_code == 422
    assert client.get(f"{API}/forecast?top=0").status_code == 422
    assert client.get(f"{API}/emerging?slice=day").status_code == 422
    assert client.get(f"{API}/backtest?horizon=0d").status_code == 422
    assert client.get(f"{API}/reports?from=2017-1-1").status_code == 422


def test_config_taxonomy_areas(as_caller: Any) -> None:
    client = as_caller("anonymous")
    config = client.get(f"{API}/config").json()
    assert config["k_anonymity"] == K and config["public_cell_m"] == 250
    assert config["default_area_kind"] == "district"
    taxonomy = client.get(f"{API}/taxonomy").json()
    codes = {c["code"]: c for c in taxonomy["categories"]}
    assert codes["0502"]["parent"] == "05" and codes["05"]["level"] == 1
    areas = client.get(f"{API}/areas/district").json()
    assert areas["type"] == "FeatureCollection"
    assert {f["properties"]["kind"] for f in areas["features"]} == {"district"}
    assert {"1", "18"} <= {f["properties"]["code"] for f in areas["features"]}


def test_emerging_forecast_backtest(as_caller: Any) -> None:
    client = as_caller("analyst")
    emerging = client.get(f"{API}/emerging?category=0502&cell=500&slice=month").json()
    assert emerging["type"] == "FeatureCollection" and emerging["legend"]
    assert emerging["urbansec"]["slices"] == 12
    patterns = {f["properties"]["pattern"] for f in emerging["features"]}
    assert patterns and patterns <= {"new", "consecutive", "intensifying", "persistent",
                                     "diminishing", "sporadic", "oscillating", "historical"}

    forecast = client.get(f"{API}/forecast?category=0502&model=kde&top=0.1").json()
    meta = forecast["urbansec"]
    assert meta["model"] == "kde" and meta["horizon"] == "7d" and meta["top"] == 0.1
    assert meta["origin"].startswith("2018-01-01")
    flagged = [f for f in forecast["features"] if f["properties"]["top"]]
    assert flagged and len(flagged) == meta["flagged_cells"]
    ranks = sorted(f["properties"]["rank"] for f in flagged)
    assert ranks == list(range(1, len(flagged) + 1))

    backtest = client.get(f"{API}/backtest?category=0502&horizon=7d")
    assert backtest.status_code == 200, backtest.text
    body = backtest.json()
    assert body["coverages"] == [0.01, 0.02, 0.05, 0.1, 0.2]
    assert set(body["models"]) == {"naive", "historical", "kde", "sepp"}
    assert body["folds"] == 12 and body["horizon"] == "7d"
    hit = body["models"]["historical"]["hit_rate"]
    assert len(hit) == 5 and all(0 <= v <= 1 for v in hit)
    assert hit == sorted(hit)  # more cells flagged catch at least as much
    assert body["origins"]["first"] < body["origins"]["last"]
    # the second call is served from the cache
    again = client.get(f"{API}/backtest?category=0502&horizon=7d")
    assert again.json() == body


def test_startup_warms_the_cube_without_leaking_threads(sample_db: Engine) -> None:
    import threading

    from urbansec.services.dashboard_cube import cache_for

    app = create_app(Settings(), sample_db)
    with TestClient(app) as client:  # runs the lifespan: the cube is built in the background
        thread = cache_for(sample_db)._warming
        assert thread is not None and thread.daemon
        thread.join(timeout=120)
        assert cache_for(sample_db).peek() is not None
        assert client.get(f"{API}/config").status_code == 200
    assert not thread.is_alive()
    assert "urbansec-dashboard-warm" not in {t.name for t in threading.enumerate()}


@pytest.mark.parametrize("path", ["/config", "/taxonomy", "/areas/district"])
def test_page_data_is_revalidated_with_an_etag(as_caller: Any, path: str) -> None:
    client = as_caller("analyst")
    first = client.get(f"{API}{path}")
    assert first.status_code == 200
    tag = first.headers["etag"]
    assert tag.startswith('W/"') and first.headers["cache-control"] == "private, no-cache"
    again = client.get(f"{API}{path}", headers={"if-none-match": tag})
    assert again.status_code == 304 and not again.content and again.headers["etag"] == tag
    assert client.get(f"{API}{path}", headers={"if-none-match": 'W/"other"'}).status_code \
        == 200


def test_config_names_what_the_page_needs(as_caller: Any) -> None:
    analyst = as_caller("analyst").get(f"{API}/taxonomy").headers["etag"]
    public = as_caller("anonymous").get(f"{API}/taxonomy").headers["etag"]
    assert analyst != public  # the public's counts are suppressed: another answer
    config = as_caller("anonymous").get(f"{API}/config").json()
    assert config["contact_retention_days"] == Settings().contact_retention_days
    kinds = {k["kind"]: k for k in config["area_kinds"]}
    assert kinds["district"]["boundaries"] is True and kinds["ward"]["boundaries"] is False
