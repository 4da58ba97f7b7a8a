"""The event-mode and night-time pages build most of their keys as `${NS}.path` (template
literals), which ``test_i18n`` cannot see: every such key must be in the English ``event``
catalogue (``test_i18n`` then checks the other languages), and every value of the
vocabularies the pages look up by name (roles, severities, statuses, models, levels of
service) must have its text."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from urbansec.crowd.los import LETTERS
from urbansec.services.crowd import FORECAST_MODELS
from urbansec.store.alerts import ALERT_STATUSES, SEVERITIES
from urbansec.store.sensors import DATASTREAM_ROLES
from urbansec.web import PAGES, STATIC_DIR

SCRIPTS = ("event.js", "nighttime.js")
STATIC_KEY = re.compile(r"`\$\{NS\}\.([\w.]+)`")
DYNAMIC_KEY = re.compile(r"`\$\{NS\}\.([\w.]+)\.\$\{")


def english() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (STATIC_DIR / "i18n" / "en" / "event.json").read_text(encoding="utf-8"))
    return data


def lookup(catalogue: dict[str, Any], key: str) -> Any:
    node: Any = catalogue
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def test_the_pages_are_mounted_and_use_the_event_namespace() -> None:
    assert PAGES["/event"] == "event.html"
    assert PAGES["/nighttime"] == "nighttime.html"
    for script in SCRIPTS:
        text = (STATIC_DIR / "js" / script).read_text(encoding="utf-8")
        assert 'const NS = "event";' in text


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_template_key_is_in_the_catalogue(script: str) -> None:
    text = (STATIC_DIR / "js" / script).read_text(encoding="utf-8")
    keys = set(STATIC_KEY.findall(text))
    assert keys, f"{script} uses no `${{NS}}.key`: the pattern no longer matches the code"
    catalogue = english()
    missing = sorted(k for k in keys if not isinstance(lookup(catalogue, k), str | dict))
    assert not missing, f"{script}: keys not in en/event.json: {missing}"
    # families looked up by a value: each must be an object of texts
    for family in set(DYNAMIC_KEY.findall(text)):
        assert isinstance(lookup(catalogue, family), dict), f"{script}: {family}"


@pytest.mark.parametrize(("family", "values"), [
    ("roles", DATASTREAM_ROLES),
    ("severity", SEVERITIES),
    ("status", ALERT_STATUSES),
    ("forecast.models", FORECAST_MODELS),
    ("los", LETTERS),
    ("lights", ("on", "dimmed", "off", "failed")),
    ("stream", ("connecting", "live", "reconnecting")),
    ("alerts.filter", ("active", "open", "all")),
])
def test_every_value_of_a_vocabulary_has_its_text(family: str, values: tuple[str, ...]) -> None:
    texts = lookup(english(), family)
    assert isinstance(texts, dict), family
    missing = sorted(set(values) - set(texts))
    assert not missing, f"event.{family} has no text for {missing}"
