"""Keyboard only: from the top of the map page Tab reaches the skip link, the filters, the map
and the language switch, every focused element shows a visible focus indicator, a filter
changed with the keyboard redraws the map, and the report form can be completed and sent
without a pointer."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .support import CHICAGO_POINT, OpenPage, wait_ready, wait_view

MAX_TABS = 250

# what has focus, and whether it shows it: an outline (or a box-shadow ring) of some width
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement) return null;
  const style = getComputedStyle(el);
  const box = el.getBoundingClientRect();
  // Tab also stops on the calendar button inside a native date or time field: the focus is
  // then in the browser's own shadow tree (the field itself no longer matches :focus), and
  // the browser draws that button's focus ring, out of the page's reach
  if (/^(date|time|datetime-local|month|week)$/.test(el.type || '') && !el.matches(':focus')) {
    return {id: el.id || '', tag: 'input', path: [el.id], visible: true, focusVisible: true,
            onScreen: box.width > 0 && box.height > 0, outline: 'native picker button',
            name: `#${el.id} (calendar button)`};
  }
  const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
  const ring = style.boxShadow && style.boxShadow !== 'none';
  const path = [];
  for (let node = el; node && node.id !== undefined; node = node.parentElement) {
    if (node.id) path.push(node.id);
  }
  return {id: el.id || '', tag: el.tagName.toLowerCase(), path,
          name: el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}.${el.className}`,
          visible: outline || ring, focusVisible: el.matches(':focus-visible'),
          onScreen: box.width > 0 && box.height > 0 && box.bottom > 0 && box.right > 0
                    && box.top < innerHeight && box.left < innerWidth,
          outline: `${style.outlineStyle} ${style.outlineWidth}`};
}"""


def _describe(focus: dict[str, Any]) -> str:
    return f"{focus['name']} inside {focus['path']}"


def press_tab(page: Any, key: str = "Tab") -> dict[str, Any]:
    """One Tab; the newly focused element, checked to show its focus."""
    page.keyboard.press(key)
    focus = page.evaluate(FOCUSED)
    assert focus is not None, "Tab left the page's focusable elements (focus on <body>)"
    assert focus["focusVisible"] and focus["visible"], \
        f"no visible focus on {_describe(focus)} (outline {focus['outline']})"
    assert focus["onScreen"], f"the focused {_describe(focus)} is outside the viewport"
    return dict(focus)


def tab_to(page: Any, wanted: str, key: str = "Tab", exact: bool = False) -> dict[str, Any]:
    """Tab until the element with id ``wanted`` (or, unless ``exact``, an element inside it)
    has focus."""
    seen: list[str] = []
    for _ in range(MAX_TABS):
        try:
            focus = press_tab(page, key)
        except AssertionError as problem:
            raise AssertionError(f"on the way to #{wanted}, after {seen[-12:]}: {problem}"
                                 ) from None
        if focus["id"] == wanted or (not exact and wanted in focus["path"]):
            return focus
        seen.append(focus["name"])
    raise AssertionError(f"#{wanted} never received focus after {MAX_TABS} Tabs; "
                         f"focus went through: {seen[:60]}")


def test_map_page_by_keyboard(open_page: OpenPage) -> None:
    page = open_page("/")
    wait_ready(page)

    # the first Tab lands on the skip link, visible when focused
    first = press_tab(page)
    assert page.evaluate("() => document.activeElement.classList.contains('skip-link')"), first
    # from the top, in order: the language switch (header), the filters, the map
    reached: dict[str, int] = {}
    for position in range(1, MAX_TABS):
        focus = press_tab(page)
        for target in ("lang-select", "filter-category", "filter-time", "map"):
            if target in focus["path"]:
                reached.setdefault(target, position)
        if len(reached) == 4:
            break
    assert set(reached) == {"lang-select", "filter-category", "filter-time", "map"}, reached

    # the skip link jumps over the header into the content
    page.reload()
    wait_ready(page)
    press_tab(page)
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    after_skip = press_tab(page)
    assert "main" in after_skip["path"], _describe(after_skip)

    # a filter changed with the keyboard alone redraws the map and goes into the URL
    page.reload()
    wait_ready(page)
    tab_to(page, "filter-time")
    before = page.input_value("#filter-time")
    with wait_view(page) as view:
        page.keyboard.press("ArrowDown")
    after = page.input_value("#filter-time")
    assert after != before
    assert parse_qs(urlsplit(view.value.url).query).get("time") == [after], view.value.url
    assert parse_qs(urlsplit(page.url).query).get("time") == [after], page.url

    # the map itself takes the keyboard: arrows pan it (it comes before the filters in the
    # document, as on phones, so it is back from here)
    tab_to(page, "map", key="Shift+Tab", exact=True)
    centre = page.evaluate("() => document.querySelector('#map .leaflet-map-pane')"
                           ".style.transform")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("before => document.querySelector('#map .leaflet-map-pane')"
                           ".style.transform !== before", arg=centre)


def test_report_form_by_keyboard(open_page: OpenPage) -> None:
    page = open_page("/report", geolocation=CHICAGO_POINT, permissions=["geolocation"])
    wait_ready(page)

    tab_to(page, "report-category")
    page.keyboard.press("ArrowDown")
    assert page.input_value("#report-category") != ""
    tab_to(page, "report-description")
    page.keyboard.type("Broken lamp at the underpass, reported with the keyboard only")

    # the map: arrows pan, Enter marks its centre
    tab_to(page, "report-map")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    status = page.locator("#report-location-status")
    page.wait_for_function("() => /\\d+\\.\\d{3,}/.test("
                           "document.querySelector('#report-location-status').textContent)")
    marked_on_map = status.inner_text()
    # or "use my location"
    tab_to(page, "report-use-location")
    page.keyboard.press("Enter")
    assert re.search(r"\d+\.\d{3,}", marked_on_map), marked_on_map
    page.wait_for_function("""([before, lat]) => {
        const text = document.querySelector('#report-location-status').textContent;
        return text !== before && text.includes(lat); }""",
                           arg=[marked_on_map, f"{CHICAGO_POINT['latitude']:.4f}"])

    tab_to(page, "report-submit")
    with page.expect_response(lambda r: r.request.method == "POST"
                              and urlsplit(r.url).path == "/api/v1/reports") as answer:
        page.keyboard.press("Enter")
    assert answer.value.status == 201, answer.value.text()
    page.wait_for_selector("#report-tracking-link", state="visible")
    tab_to(page, "report-tracking-link")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/track#"))
    page.wait_for_selector("#track-status[data-status=pending]")
