"""An analyst signs in, filters burglary (ICCS 0501) at night in police district 18, and the
map, the total and the charts follow the filter; the URL holds the filter and reopening it
restores the same view."""

from __future__ import annotations

import re
from importlib.resources import as_file
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from .support import (
    MAP_PROBE,
    LiveServer,
    OpenPage,
    ViewWatcher,
    drawn_cell_ids,
    screenshot,
    session_token,
    sign_in,
    view_total,
    wait_ready,
    wait_view,
)

BURGLARY = "0501"
DISTRICT = "district:18"
NIGHT_HOURS = set(range(22, 24)) | set(range(0, 6))


def _night_burglaries_in_district_18() -> int:
    """Counted straight from the bundled export, with pandas: the rows Chicago calls BURGLARY
    (all of them ICCS 0501) in its district 18, committed 22:00-06:00 local time."""
    import pandas as pd

    from urbansec.services.demo import SAMPLE_INCIDENTS, sample_path

    with as_file(sample_path(SAMPLE_INCIDENTS)) as path:
        rows = pd.read_csv(path, usecols=["Date", "Primary Type", "District"])
    hour = pd.to_datetime(rows["Date"], format="%m/%d/%Y %I:%M:%S %p").dt.hour
    chosen = (rows["Primary Type"] == "BURGLARY") & (rows["District"] == 18) \
        & hour.isin(NIGHT_HOURS)
    return int(chosen.sum())


def _api_view(page: Any, token: str, query: dict[str, str]) -> dict[str, Any]:
    """The same question the page asked, asked again with the same token."""
    response = page.request.get(f"/api/v1/dashboard/view?{urlencode(query)}",
                                headers={"authorization": f"Bearer {token}"})
    assert response.ok, response.text()
    return dict(response.json())


def _query_of(url: str) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(urlsplit(url).query).items()}


def _check_view(page: Any, view_url: str, token: str) -> dict[str, Any]:
    """#view-total, the drawn cells and the hour x weekday chart match the API's answer."""
    query = _query_of(view_url)
    assert query.get("category") == BURGLARY and query.get("time") == "night" \
        and query.get("area") == DISTRICT, view_url
    view = _api_view(page, token, query)
    assert view["total"] > 0 and view["suppressed"] is False, view["total"]
    assert view_total(page) == view["total"]
    # the cells come as the grid and [col, row, value, class] rows; the page names each
    # cell as the API's GeoJSON does ("250m_col_row")
    size = view["cells"]["grid"]["size"]
    expected_ids = sorted(f"{size:g}m_{col}_{row}" for col, row, *_ in view["cells"]["cells"])
    assert expected_ids, "no cells for burglary at night in district 18"
    assert drawn_cell_ids(page) == expected_ids
    counts = view["hour_weekday"]["counts"]
    assert len(counts) == 7 and all(len(day) == 24 for day in counts)
    busy_hours = {hour for day in counts for hour, n in enumerate(day) if n}
    assert busy_hours and busy_hours <= NIGHT_HOURS, sorted(busy_hours)
    # (incidents whose time is known only to the day are left out of this chart)
    assert 0 < sum(map(sum, counts)) <= view["total"]
    # the table on the page shows those numbers, so only night hours are non-zero there too
    shown = page.evaluate("""() => [...document.querySelectorAll(
        '#chart-hour-weekday table tbody tr')].map(
        tr => [...tr.querySelectorAll('td')].map(td => td.textContent.trim()))""")
    assert [[int(re.sub(r"\D", "", text)) for text in row] for row in shown] == counts, shown
    return view


def test_analyst_filters_burglary_at_night_in_district_18(open_page: OpenPage,
                                                           any_server: LiveServer) -> None:
    page = open_page(base_url=any_server.base_url)
    page.context.add_init_script(MAP_PROBE)
    views = ViewWatcher(page)
    sign_in(page, "analyst", "/")
    wait_ready(page)
    token = session_token(page)
    everything = view_total(page)

    # the three filters, one after the other, as a person would set them
    with wait_view(page) as view_response:
        page.check(f"#filter-category input[type=checkbox][value='{BURGLARY}']")
    assert _query_of(view_response.value.url).get("category") == BURGLARY
    with wait_view(page):
        page.select_option("#filter-time", "night")
    with wait_view(page):
        page.select_option("#filter-area", DISTRICT)

    view = _check_view(page, views.last(), token)
    assert view["total"] == _night_burglaries_in_district_18()
    assert view["total"] < everything
    # the filter is in the address bar, so the view can be shared
    in_url = _query_of(page.url)
    assert in_url.get("category") == BURGLARY and in_url.get("time") == "night" \
        and in_url.get("area") == DISTRICT, page.url
    screenshot(page, "analyst-map")

    # reopening the URL restores the same view: the form, the total, the cells
    with wait_view(page):
        page.reload()
    assert page.input_value("#filter-time") == "night"
    assert page.input_value("#filter-area") == DISTRICT
    assert page.is_checked(f"#filter-category input[type=checkbox][value='{BURGLARY}']")
    assert _query_of(page.url) == in_url
    restored = _check_view(page, views.last(), token)
    assert restored["total"] == view["total"]
