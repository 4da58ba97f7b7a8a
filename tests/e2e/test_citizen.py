"""A resident on a phone: files a report (place by tapping the map, or "use my location"),
anonymously, gets the private tracking link, follows it, sees the status, erases the report
and sees that it is erased."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from .support import CHICAGO_POINT, PHONE, LiveServer, OpenPage, screenshot, wait_ready

TOKEN = re.compile(r"^[A-Za-z0-9_\-]{16,200}$")


def _fill_report(page: Any, description: str) -> str:
    """Choose the first real category and describe it; returns the category code."""
    wait_ready(page)
    options = page.eval_on_selector_all(
        "#report-category option", "options => options.map(o => o.value).filter(Boolean)")
    assert options, "the report form offers no category"
    page.select_option("#report-category", options[0])
    page.fill("#report-description", description)
    return str(options[0])


def _submit(page: Any) -> dict[str, Any]:
    """Send the form; returns the JSON the page posted (the request, as it left the browser)."""
    with page.expect_request(lambda r: r.method == "POST"
                             and urlsplit(r.url).path == "/api/v1/reports") as sent:
        page.click("#report-submit")
    request = sent.value
    # anonymous: nobody is signed in, and the page must not invent credentials
    assert "authorization" not in request.headers
    assert "x-api-key" not in request.headers
    body = json.loads(request.post_data or "{}")
    page.wait_for_selector("#report-tracking-link", state="visible")
    return dict(body)


def _tracking_token(page: Any) -> str:
    href = page.get_attribute("#report-tracking-link", "href")
    assert href, "no tracking link after submission"
    parts = urlsplit(href)
    # the token travels in the fragment only, so it never reaches a server log as a page URL
    assert parts.path == "/track" and not parts.query, href
    assert TOKEN.match(parts.fragment), href
    return parts.fragment


def _follow_and_erase(page: Any, live_server: LiveServer, token: str, description: str,
                      shot: str | None = None) -> None:
    """On the tracking page: the status (pending), the text, then erase with the confirmation
    and see the report erased, on the page and in the API."""
    status = page.locator("#track-status")
    page.wait_for_selector("#track-status[data-status]")
    assert status.get_attribute("data-status") == "pending"
    pending_text = status.inner_text().strip()
    assert pending_text, "the status is not shown in words"
    assert description in page.inner_text("#track-result")
    if shot:
        screenshot(page, shot)

    page.click("#track-erase")
    with page.expect_response(lambda r: r.request.method == "DELETE"
                              and f"/api/v1/reports/track/{token}" in r.url) as erased:
        page.click("#track-erase-yes")
    assert erased.value.status == 200, erased.value.text()
    page.wait_for_selector("#track-status[data-status=erased]")
    erased_text = status.inner_text().strip()
    assert erased_text and erased_text != pending_text, erased_text
    assert description not in page.inner_text("main")
    code, api_view = live_server.request("GET", f"/api/v1/reports/track/{token}")
    assert code == 200 and api_view["status"] == "erased", api_view
    assert api_view["public_description"] == "" and not api_view.get("description")


def test_report_by_tapping_the_map_then_track_and_erase(open_page: OpenPage,
                                                        live_server: LiveServer) -> None:
    page = open_page("/report", **PHONE)
    description = f"dark underpass, lamp broken e2e-{uuid.uuid4().hex[:8]}"
    category = _fill_report(page, description)
    config = live_server.request("GET", "/api/v1/dashboard/config")[1]
    west, south, east, north = config["bounds"]

    page.locator("#report-map").tap()
    status = page.locator("#report-location-status")
    page.wait_for_function("() => /\\d+\\.\\d{3,}/.test("
                           "document.querySelector('#report-location-status').textContent)")
    shown = [float(v) for v in re.findall(r"-?\d+\.\d+", status.inner_text())]
    screenshot(page, "report-mobile")

    body = _submit(page)
    # the tapped place, inside the map of the city the config describes
    assert south <= body["lat"] <= north and west <= body["lon"] <= east, (body, config)
    assert round(body["lat"], 5) in [round(v, 5) for v in shown], (body, shown)
    assert body["description"] == description and body["service_code"] == category
    assert not body.get("contact_email")
    token = _tracking_token(page)
    page.click("#report-tracking-link")
    page.wait_for_url(re.compile(r"/track#"))
    assert urlsplit(page.url).query == "" and urlsplit(page.url).fragment == token
    _follow_and_erase(page, live_server, token, description, shot="track-mobile")


def test_report_with_my_location(open_page: OpenPage, live_server: LiveServer) -> None:
    page = open_page("/report", **PHONE, geolocation=CHICAGO_POINT,
                     permissions=["geolocation"])
    description = f"group of parked scooters blocking the ramp e2e-{uuid.uuid4().hex[:8]}"
    _fill_report(page, description)
    page.locator("#report-use-location").tap()
    page.wait_for_function("() => /\\d+\\.\\d{3,}/.test("
                           "document.querySelector('#report-location-status').textContent)")
    body = _submit(page)
    assert abs(body["lat"] - CHICAGO_POINT["latitude"]) < 1e-5, body
    assert abs(body["lon"] - CHICAGO_POINT["longitude"]) < 1e-5, body
    token = _tracking_token(page)
    link = page.inner_text("#report-tracking-link").strip()
    assert link.endswith(f"/track#{token}"), link
    # stored where the phone said, and visible to the reporter only with the token
    code, view = live_server.request("GET", f"/api/v1/reports/track/{token}")
    assert code == 200 and view["status"] == "pending", view
    assert abs(view["lat"] - CHICAGO_POINT["latitude"]) < 1e-5, view
    # a reporter who kept the link as text pastes it into the tracking page
    page.goto("/track")
    wait_ready(page)
    page.fill("#track-token", link)
    page.click("#track-submit")
    page.wait_for_url(re.compile(r"/track#"))
    assert urlsplit(page.url).fragment == token and urlsplit(page.url).query == ""
    _follow_and_erase(page, live_server, token, description)
