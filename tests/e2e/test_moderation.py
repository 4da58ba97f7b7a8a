"""A moderator (analyst role) approves citizen reports in /moderation, and once k of them are
published in one public cell the signed-out public map shows that cell with its count, and
nothing the public page receives holds a report's point, text or id."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from urbansec.privacy import generalise_point

from .support import (
    CHICAGO_POINT,
    MAP_PROBE,
    LiveServer,
    OpenPage,
    drawn_features,
    screenshot,
    sign_in,
    wait_ready,
)

# a cell's corners are at least half a public cell (>= 25 m) from the reports, filed ~2 m
# from its centre; a coordinate closer than this to a report is the report's own point
POINT_TOLERANCE_M = 5.0


def _coordinate_pairs(value: Any) -> Iterator[tuple[float, float]]:
    """Every ``[lon, lat]`` pair in a JSON document (GeoJSON coordinates, bbox corners)."""
    if isinstance(value, list):
        if len(value) in (2, 3) and all(isinstance(v, int | float) and not isinstance(v, bool)
                                        for v in value):
            yield float(value[0]), float(value[1])
            return
        for item in value:
            yield from _coordinate_pairs(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in ("lat", "latitude") and isinstance(value.get("lon"), int | float):
                yield float(value["lon"]), float(item)
            yield from _coordinate_pairs(item)


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    dx = (a[0] - b[0]) * 111_320 * math.cos(math.radians(b[1]))
    return math.hypot(dx, (a[1] - b[1]) * 110_574)


def _point_in_polygon(lon: float, lat: float, geometry: dict[str, Any]) -> bool:
    polygons = (geometry["coordinates"] if geometry["type"] == "MultiPolygon"
                else [geometry["coordinates"]])
    for rings in polygons:
        ring, inside = rings[0], False
        for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
            if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
                inside = not inside
        if inside:
            return True
    return False


def _file_reports(live_server: LiveServer, count: int, marker: str
                  ) -> tuple[list[str], list[tuple[float, float]], tuple[float, float]]:
    """``count`` anonymous reports within a few metres of the centre of one public cell."""
    code, services = live_server.request("GET", "/open311/v2/services.json")
    assert code == 200 and services, services
    service_code = services[0]["service_code"]
    centre = generalise_point(CHICAGO_POINT["longitude"], CHICAGO_POINT["latitude"],
                              live_server.settings.public_cell_m)
    ids, points = [], []
    for i in range(count):
        # ~2 m apart around the cell centre: one cell of any grid of public_cell_m (>= 50 m)
        # unless a cell edge passes within metres of it
        lon, lat = round(centre[0] + 0.00002 * (i - count // 2), 6), \
            round(centre[1] + 0.000015 * (i % 2), 6)
        status, receipt = live_server.request("POST", "/api/v1/reports", {
            "service_code": service_code, "lat": lat, "lon": lon,
            "description": f"{marker} number {i}: broken lamp, call me on 0123 456 789"})
        assert status == 201, receipt
        ids.append(receipt["public_id"])
        points.append((lon, lat))
    return ids, points, centre


def test_moderator_approves_and_public_map_shows_only_the_aggregate(
        open_page: OpenPage, live_server: LiveServer) -> None:
    k = live_server.settings.k_anonymity
    marker = f"e2e-moderation-{uuid.uuid4().hex[:10]}"
    ids, points, centre = _file_reports(live_server, k, marker)

    page = open_page()
    page.context.add_init_script(MAP_PROBE)
    sign_in(page, "analyst", "/moderation")
    wait_ready(page)
    queue = page.locator("#moderation-queue")
    for public_id in ids:
        queue.locator(f"[data-report-id='{public_id}']").wait_for()
    screenshot(page, "moderation")

    for public_id in ids:
        row = queue.locator(f"[data-report-id='{public_id}']")
        with page.expect_response(
                lambda r, pid=public_id: r.request.method == "POST"
                and urlsplit(r.url).path == f"/api/v1/reports/{pid}/moderation") as answer:
            row.locator(".approve").click()
        assert answer.value.status == 200, answer.value.text()
        assert json.loads(answer.value.request.post_data or "{}")["action"] == "approve"
        assert answer.value.json()["status"] == "approved"
    token = live_server.token("analyst")
    for public_id in ids:
        code, view = live_server.request("GET", f"/api/v1/reports/{public_id}", token=token)
        assert code == 200 and view["status"] == "approved", view

    # signed out, the public map with the citizen-reports layer switched on
    received: list[Any] = []
    page.on("response", lambda response: received.append(response))
    page.click("#sign-out")
    page.wait_for_url(lambda url: urlsplit(url).path == "/")
    wait_ready(page)
    assert page.evaluate("() => sessionStorage.getItem('urbansec.tokens')") is None
    assert page.locator("#sign-in").count() == 1
    with page.expect_response(
            lambda r: urlsplit(r.url).path == "/api/v1/dashboard/reports") as reports_answer:
        page.check("#layer-reports")
    assert reports_answer.value.status == 200
    assert "authorization" not in reports_answer.value.request.headers
    reports = reports_answer.value.json()
    assert reports["aggregated"] is True
    ours = [f for f in reports["features"]
            if _point_in_polygon(centre[0], centre[1], f["geometry"])]
    assert len(ours) == 1, ours
    assert ours[0]["properties"]["value"] == k, ours[0]
    page.wait_for_function(
        "() => document.querySelector('#map-summary [data-layer=reports]:not([aria-busy])')")
    drawn = [f for f in drawn_features(page) if f["properties"].get("value") == k]
    assert drawn, "the aggregated report cell is not drawn on the map"
    screenshot(page, "public-map")

    # nothing individual reached the public page: no text, no id, no exact point
    forbidden = [marker, *ids, "0123 456 789"]
    for response in received:
        if urlsplit(response.url).hostname != "127.0.0.1" or response.status in (204, 304) \
                or 300 <= response.status < 400:
            continue
        if not urlsplit(response.url).path.startswith(("/api/", "/open311/")):
            continue
        if urlsplit(response.url).path == "/api/v1/auth/logout":
            continue  # the moderator's sign-out, answered to the page being left
        body = response.text()
        leaked = [value for value in forbidden if value in body]
        assert not leaked, f"{response.url} sent {leaked} to the public page"
        if "json" in (response.headers.get("content-type") or ""):
            near = [pair for pair in _coordinate_pairs(json.loads(body))
                    if any(_metres(pair, point) < POINT_TOLERANCE_M for point in points)]
            assert not near, f"{response.url} sent points where reports were filed: {near}"
    # the layer's answer is cells and counts, not reports
    body = reports_answer.value.text()
    assert '"public_id"' not in body and "description" not in body, body[:500]
