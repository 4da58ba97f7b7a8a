"""The dashboard's mount: page routes, their security headers, ``/static`` and the vendor build.

The pages need no database, so the app is built over an unmigrated SQLite file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from urbansec import web
from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.store.engine import make_engine
from urbansec.web import (
    PAGES,
    STATIC_DIR,
    VENDOR_DIR,
    content_security_policy,
    mount,
    tile_source,
)

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-web.sh"
NOT_BUILT = "run `bash scripts/build-web.sh` (make test does) to install the vendor files"
#: the vendor paths the dashboard contract promises under /static/vendor/
VENDOR_FILES = (
    "leaflet/leaflet.js",
    "leaflet/leaflet.css",
    "leaflet/images/marker-icon.png",
    "leaflet/images/marker-icon-2x.png",
    "leaflet/images/marker-shadow.png",
    "leaflet/images/layers.png",
    "leaflet/images/layers-2x.png",
    "chart.js/chart.umd.js",
    "axe-core/axe.min.js",
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    path = tmp_path_factory.mktemp("web") / "web.db"
    settings = Settings(database_url=f"sqlite:///{path}")
    return TestClient(create_app(settings, make_engine(settings.database_url)))


def csp_directives(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", sorted(PAGES))
def test_every_page_is_html_with_its_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    html = response.text
    assert html.lower().startswith("<!doctype html>")
    assert '<header id="app-header">' in html
    assert 'id="main"' in html
    assert 'class="skip-link"' in html and 'href="#main"' in html
    # the page's own CSP replaces the API's permissive default
    csp = csp_directives(response.headers["content-security-policy"])
    assert csp["script-src"] == ["'self'"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert {"'self'", "data:", "blob:"} <= set(csp["img-src"])
    # only the report form may ask for the location
    geolocation = "geolocation=(self)" if path == "/report" else "geolocation=()"
    assert geolocation in response.headers["permissions-policy"]
    # the app's other security headers still come from its middleware
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    # the CSP forbids inline scripts and handlers: the pages must not rely on them
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script\s*>", html,
                         flags=re.IGNORECASE | re.DOTALL)
    assert scripts
    for attributes, body in scripts:
        assert re.search(r'\bsrc="/static/', attributes) and not body.strip(), attributes
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE)
    assert "http://" not in html and "https://" not in html.replace(
        "https://www.w3.org", "")  # nothing from another origin


def test_head_of_a_page_and_pages_stay_out_of_openapi(client: TestClient) -> None:
    assert client.head("/report").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert not set(PAGES) & set(paths)
    assert not any(p.startswith("/static") for p in paths)


def test_tile_host_is_allowed_for_images_only(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "index.html").write_text("<!doctype html><title>x</title>", encoding="utf-8")
    monkeypatch.setattr(web, "STATIC_DIR", tmp_path)
    app = FastAPI()
    app.state.settings = SimpleNamespace(tile_url="https://{s}.tile.example.org/{z}/{x}/{y}.png")
    mount(app)
    response = TestClient(app).get("/")
    csp = csp_directives(response.headers["content-security-policy"])
    assert "https://*.tile.example.org" in csp["img-src"]
    assert csp["connect-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]


def test_configured_tile_url_reaches_the_pages(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'web.db'}",
                        tile_url="https://tiles.example.org/{z}/{x}/{y}.png")
    client = TestClient(create_app(settings, make_engine(settings.database_url)))
    for path in ("/", "/report"):
        csp = csp_directives(client.get(path).headers["content-security-policy"])
        assert csp["img-src"] == ["'self'", "data:", "blob:", "https://tiles.example.org"]


@pytest.mark.parametrize(("url", "expected"), [
    (None, None),
    ("", None),
    ("/tiles/{z}/{x}/{y}.png", None),  # served by this origin: 'self' covers it
    ("https://tiles.example.org/{z}/{x}/{y}.png", "https://tiles.example.org"),
    ("https://{s}.tile.example.org/{z}/{x}/{y}.png", "https://*.tile.example.org"),
    ("http://127.0.0.1:8080/{z}/{x}/{y}.png", "http://127.0.0.1:8080"),
    ("https://user:pw@tiles.example.org/{z}/{x}/{y}.png", "https://tiles.example.org"),
    # a placeholder a CSP wildcard cannot stand for: not allowed rather than too much
    ("https://tiles.{s}.example.org/{z}/{x}/{y}.png", None),
])
def test_tile_source(url: str | None, expected: str | None) -> None:
    assert tile_source(url) == expected


def test_policy_without_tiles_has_no_other_origin() -> None:
    policy = content_security_policy(None)
    assert "unsafe-eval" not in policy
    assert "*" not in policy
    assert csp_directives(policy)["img-src"] == ["'self'", "data:", "blob:"]


@pytest.mark.parametrize(("path", "content_type"), [
    ("/static/css/base.css", "text/css"),
    ("/static/js/core.js", "text/javascript"),  # ES modules need a JavaScript MIME type
    ("/static/i18n/en/common.json", "application/json"),
])
def test_own_static_files_are_revalidated(client: TestClient, path: str,
                                          content_type: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers.get("etag")
    again = client.get(path, headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304


def test_vendor_files_are_served_and_cached(client: TestClient) -> None:
    assert (VENDOR_DIR / "leaflet" / "leaflet.js").is_file(), NOT_BUILT
    response = client.get("/static/vendor/leaflet/leaflet.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert "max-age=86400" in response.headers["cache-control"]
    assert response.content == (VENDOR_DIR / "leaflet" / "leaflet.js").read_bytes()


@pytest.mark.parametrize("path", [
    "/static/js/no-such-file.js",
    "/static/vendor/leaflet/nope.js",
    "/static/..%2f__init__.py",  # outside the static directory
    "/static/",
])
def test_unknown_static_is_a_json_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_found"


def test_favicon(client: TestClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert response.content == (STATIC_DIR / "favicon.svg").read_bytes()


def test_vendor_build_has_every_file_of_the_contract() -> None:
    missing = [name for name in VENDOR_FILES if not (VENDOR_DIR / name).is_file()]
    assert not missing, f"{missing}: {NOT_BUILT}"
    leaflet = (VENDOR_DIR / "leaflet" / "leaflet.js").read_text(encoding="utf-8")
    assert "Leaflet 1.9.4" in leaflet[:300]
    chart = (VENDOR_DIR / "chart.js" / "chart.umd.js").read_text(encoding="utf-8")
    assert re.search(r"Chart\.js v4\.\d+\.\d+", chart[:300])
    axe = (VENDOR_DIR / "axe-core" / "axe.min.js").read_text(encoding="utf-8")
    assert re.search(r"axe v4\.\d+\.\d+", axe[:300])


def test_vendor_build_is_idempotent() -> None:
    """A second build installs nothing (the lock's hash stamp matches) and changes no file."""
    stamp = ROOT / "web" / "node_modules" / ".urbansec-lock.sha256"
    assert stamp.is_file(), NOT_BUILT
    lock = (ROOT / "web" / "package-lock.json").read_bytes()
    assert stamp.read_text().strip() == hashlib.sha256(lock).hexdigest(), NOT_BUILT
    before = {name: (VENDOR_DIR / name).stat().st_mtime_ns for name in VENDOR_FILES}
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "npm ci" not in result.stderr
    assert before == {name: (VENDOR_DIR / name).stat().st_mtime_ns for name in VENDOR_FILES}


def test_vendor_build_without_npm_says_what_to_install(tmp_path: Path) -> None:
    # a PATH with the few tools the script needs before it looks for npm, and no npm
    for tool in ("dirname", "cat"):
        found = shutil.which(tool)
        assert found
        (tmp_path / tool).symlink_to(found)
    bash = shutil.which("bash")
    assert bash
    result = subprocess.run([bash, str(BUILD_SCRIPT)], capture_output=True, text=True,
                            env={**os.environ, "PATH": str(tmp_path)}, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert "npm is not installed" in result.stderr
    assert "apt-get install" in result.stderr
