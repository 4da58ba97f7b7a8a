"""axe-core on every page, signed out and signed in as the role that uses it: no violation
of impact serious or critical (WCAG 2 A/AA rules and axe's best practices)."""

from __future__ import annotations

import pytest

from .support import LiveServer, OpenPage, check_axe, screenshot, sign_in, wait_ready

ANALYST_VIEW = "/?category=0501&time=night&area=district:18&layer=gi"

PAGES = [
    # path, who is signed in, screenshot to keep
    ("/", None, None),
    (ANALYST_VIEW, "analyst", None),
    ("/report", None, None),
    ("/track", None, None),
    ("/login", None, None),
    ("/moderation", "analyst", None),
    ("/risks", "analyst", "risks"),
    ("/imports", "analyst", None),
    ("/audit", "admin", None),
]


@pytest.mark.parametrize(("path", "role", "shot"), PAGES,
                         ids=[f"{path}{'-' + role if role else ''}" for path, role, _ in PAGES])
def test_page_has_no_serious_accessibility_violation(open_page: OpenPage,
                                                     live_server: LiveServer, path: str,
                                                     role: str | None, shot: str | None
                                                     ) -> None:
    page = open_page()
    if role:
        sign_in(page, role, path)
    else:
        page.goto(path)
    wait_ready(page)
    check_axe(page, f"{path} ({role or 'signed out'})")
    if shot:
        screenshot(page, shot)


def test_tracking_page_with_a_report_has_no_serious_violation(open_page: OpenPage,
                                                               live_server: LiveServer) -> None:
    code, services = live_server.request("GET", "/open311/v2/services.json")
    assert code == 200, services
    code, receipt = live_server.request("POST", "/api/v1/reports", {
        "service_code": services[0]["service_code"], "description": "graffiti on the bridge",
        "lat": 41.8967, "lon": -87.6282})
    assert code == 201, receipt
    page = open_page(f"/track#{receipt['tracking_token']}")
    wait_ready(page)
    page.wait_for_selector("#track-status[data-status=pending]")
    check_axe(page, "/track#TOKEN")
    # the confirmation step of erasing, too
    page.click("#track-erase")
    page.wait_for_selector("#track-erase-confirm", state="visible")
    check_axe(page, "/track#TOKEN, erase confirmation")
