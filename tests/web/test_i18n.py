"""The dashboard's translation catalogues: every namespace in every language, the same keys,
no empty strings, the same placeholders, and every key the pages use exists."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import pytest

from urbansec.web import STATIC_DIR

I18N = STATIC_DIR / "i18n"
LANGUAGES = ("en", "el", "fi", "it")  # core.js LANGUAGES; the API's /dashboard/config too
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# plural forms core.js's t() picks with Intl.PluralRules (values that are objects with "other")
PLURAL_FORMS = {"zero", "one", "two", "few", "many", "other"}


def namespaces() -> list[str]:
    return sorted({path.stem for path in I18N.glob("*/*.json")})


@cache
def catalogue(lang: str, namespace: str) -> dict[str, Any]:
    path = I18N / lang / f"{namespace}.json"
    assert path.is_file(), f"{path.relative_to(STATIC_DIR)} is missing"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path}: the top level must be an object"
    return data


def flatten(node: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": "x"}}`` -> ``{"a.b": "x"}``; plural objects become ``key#form``."""
    flat: dict[str, str] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and "other" in value and set(value) <= PLURAL_FORMS:
            flat.update({f"{path}#{form}": text for form, text in value.items()})
        elif isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def test_the_languages_and_the_common_namespace_exist() -> None:
    assert sorted(p.name for p in I18N.iterdir() if p.is_dir()) == sorted(LANGUAGES)
    assert "common" in namespaces()


@pytest.mark.parametrize("namespace", namespaces())
def test_every_language_has_the_same_keys(namespace: str) -> None:
    english = flatten(catalogue("en", namespace))
    assert english
    for lang in LANGUAGES[1:]:
        other = flatten(catalogue(lang, namespace))
        missing = sorted(set(english) - set(other))
        extra = sorted(set(other) - set(english))
        assert not missing and not extra, f"{lang}/{namespace}.json: missing {missing}, " \
                                          f"not in English {extra}"


@pytest.mark.parametrize("namespace", namespaces())
@pytest.mark.parametrize("lang", LANGUAGES)
def test_no_empty_strings_and_the_same_placeholders(lang: str, namespace: str) -> None:
    english = flatten(catalogue("en", namespace))
    for key, text in flatten(catalogue(lang, namespace)).items():
        assert isinstance(text, str), f"{lang}/{namespace}.json {key}: not a string"
        assert text.strip(), f"{lang}/{namespace}.json {key}: empty"
        if key in english and "#" not in key:
            # a translation may not drop or invent a placeholder ({count}, {name} ...)
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(english[key])), \
                f"{lang}/{namespace}.json {key}: placeholders differ from English"


def used_keys() -> dict[str, set[str]]:
    """Literal keys in the pages (data-i18n, data-i18n-attr) and scripts (t("ns.key"))."""
    found: dict[str, set[str]] = {}
    for html in STATIC_DIR.glob("*.html"):
        text = html.read_text(encoding="utf-8")
        keys = set(re.findall(r'data-i18n="([^"]+)"', text))
        for pairs in re.findall(r'data-i18n-attr="([^"]+)"', text):
            keys |= {pair.split(":", 1)[1].strip() for pair in pairs.split(";") if ":" in pair}
        found[html.name] = keys
    for script in (STATIC_DIR / "js").glob("*.js"):
        text = script.read_text(encoding="utf-8")
        # only whole literal keys: t("dashboard.filters.period") or t('x.y', {...})
        found[f"js/{script.name}"] = set(re.findall(
            r"""\bt\(\s*["']([a-z][\w-]*(?:\.[\w-]+)+)["']\s*[,)]""", text))
    return found


def test_every_key_the_pages_use_exists_in_english() -> None:
    english: dict[str, set[str]] = {}
    for namespace in namespaces():
        keys = set()
        for key in flatten(catalogue("en", namespace)):
            keys.add(key.split("#")[0])
        english[namespace] = keys
    missing = []
    for where, keys in sorted(used_keys().items()):
        for key in sorted(keys):
            namespace, _, rest = key.partition(".")
            if rest not in english.get(namespace, set()):
                missing.append(f"{where}: {key}")
    assert not missing, "keys used but not in the English catalogues:\n" + "\n".join(missing)
