"""Languages: switching the map page to Greek, Finnish and Italian with the header's language
switch changes the interface strings, and no page shows a translation key instead of text."""

from __future__ import annotations

import re
from typing import Any

import pytest

from .support import OpenPage, wait_ready

LANGUAGES = ("el", "fi", "it")
# a key of the catalogues (namespace.path), shown when a translation is missing
KEY = re.compile(r"\b(?:common|dashboard|citizen|partner)\.[A-Za-z_]+(?:\.[A-Za-z0-9_]+)*")

# the visible text, and the texts people hear or see in attributes
INTERFACE_TEXT = """() => {
  const attributes = [];
  for (const el of document.querySelectorAll('[aria-label],[title],[placeholder],[alt]')) {
    for (const name of ['aria-label', 'title', 'placeholder', 'alt']) {
      if (el.hasAttribute(name)) attributes.push(el.getAttribute(name));
    }
  }
  const translated = [...document.querySelectorAll('[data-i18n]')]
    .map(el => [el.dataset.i18n, el.textContent.trim()]);
  return {body: document.body.innerText, title: document.title, attributes, translated,
          lang: document.documentElement.lang};
}"""


def _missing_keys(page: Any) -> list[str]:
    text = page.evaluate(INTERFACE_TEXT)
    found = KEY.findall(text["body"]) + KEY.findall(text["title"])
    for value in text["attributes"]:
        found += KEY.findall(value)
    return sorted(set(found))


def _watch_warnings(page: Any) -> list[str]:
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text)
            if m.type == "warning" and "missing translation" in m.text else None)
    return warnings


def test_language_switch_on_the_map_page(open_page: OpenPage) -> None:
    page = open_page("/")
    warnings = _watch_warnings(page)
    wait_ready(page)
    english = page.evaluate(INTERFACE_TEXT)
    assert english["lang"] == "en"
    assert not _missing_keys(page)
    english_texts = dict(english["translated"])
    english_nav = page.inner_text("#app-header nav")

    for lang in LANGUAGES:
        with page.expect_navigation():
            page.select_option("#lang-select", lang)
        wait_ready(page)
        shown = page.evaluate(INTERFACE_TEXT)
        assert shown["lang"] == lang
        assert page.input_value("#lang-select") == lang
        assert not _missing_keys(page), (lang, _missing_keys(page))
        assert page.inner_text("#app-header nav") != english_nav, lang
        assert shown["title"] != english["title"], lang
        changed = [key for key, value in shown["translated"]
                   if key in english_texts and value != english_texts[key]]
        # names and codes may read the same in every language; most of the interface may not
        assert len(changed) >= 0.6 * len(shown["translated"]), (lang, len(changed),
                                                                 len(shown["translated"]))
    # the choice is remembered: a new page opens in the last language chosen
    page.goto("/report")
    wait_ready(page)
    assert page.evaluate("() => document.documentElement.lang") == LANGUAGES[-1]
    assert not warnings, warnings


@pytest.mark.parametrize("path", ["/report", "/track", "/login"])
def test_citizen_pages_are_translated(open_page: OpenPage, path: str) -> None:
    page = open_page()
    warnings = _watch_warnings(page)
    english_heading = None
    for lang in ("en", *LANGUAGES):
        page.goto(f"{path}?lang={lang}")
        wait_ready(page)
        assert page.evaluate("() => document.documentElement.lang") == lang
        assert not _missing_keys(page), (path, lang, _missing_keys(page))
        heading = page.inner_text("main h1")
        if lang == "en":
            english_heading = heading
        else:
            assert heading != english_heading, (path, lang, heading)
    assert not warnings, warnings
