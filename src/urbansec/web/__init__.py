"""The browser dashboard: page routes and ``/static``, mounted on the API app by ``mount``.

The pages are static HTML files that load ES modules; everything they show comes from the
JSON API under ``/api/v1`` (so the dashboard can never disagree with the API or the CLI).
Each page is sent with its own Content-Security-Policy: scripts only from this origin (no
inline scripts), data only from this origin, images from this origin plus the configured map
tile host. The app's middleware adds the remaining security headers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

log = logging.getLogger("urbansec.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
VENDOR_DIR = STATIC_DIR / "vendor"

#: URL path -> HTML file under ``static/``
PAGES: dict[str, str] = {
    "/": "index.html",
    "/report": "report.html",
    "/track": "track.html",
    "/login": "login.html",
    "/moderation": "moderation.html",
    "/risks": "risks.html",
    "/imports": "imports.html",
    "/audit": "audit.html",
    "/event": "event.html",
    "/nighttime": "nighttime.html",
}
#: pages that may ask for the browser's location (the citizen report form, "use my location")
GEOLOCATION_PAGES = frozenset({"/report"})

#: the pinned libraries never change under a given URL between builds of one version; a day
#: bounds how long a browser keeps an old copy after an upgrade
VENDOR_MAX_AGE_SECONDS = 86_400


def tile_source(tile_url: str | None) -> str | None:
    """The CSP source expression that allows a Leaflet tile URL template, or None.

    ``https://{s}.tile.example.org/{z}/{x}/{y}.png`` -> ``https://*.tile.example.org``; a
    relative template (tiles served by this origin) needs nothing beyond ``'self'``.
    """
    if not tile_url:
        return None
    parts = urlsplit(tile_url)
    if not parts.scheme or not parts.netloc:
        return None
    host, colon, port = parts.netloc.rpartition("@")[2].partition(":")
    labels = host.split(".")
    if any("{" in label for label in labels[1:]) or "{" in port:
        # CSP wildcards only stand for the leftmost label; anything else cannot be expressed
        log.warning("tile URL %s has a placeholder that a Content-Security-Policy cannot "
                    "allow; tiles will be blocked", tile_url)
        return None
    if "{" in labels[0]:
        labels[0] = "*"
    return f"{parts.scheme}://{'.'.join(labels)}{colon}{port}"


def content_security_policy(tile_url: str | None) -> str:
    images = "'self' data: blob:"
    tiles = tile_source(tile_url)
    if tiles:
        images += f" {tiles}"
    directives = [
        "default-src 'self'",
        "script-src 'self'",
        # Leaflet and Chart.js position their elements with inline style attributes
        "style-src 'self' 'unsafe-inline'",
        f"img-src {images}",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


def page_headers(path: str, tile_url: str | None) -> dict[str, str]:
    geolocation = "(self)" if path in GEOLOCATION_PAGES else "()"
    return {
        "cache-control": "no-cache",
        "content-security-policy": content_security_policy(tile_url),
        "permissions-policy": f"geolocation={geolocation}, camera=(), microphone=()",
    }


class DashboardStatic(StaticFiles):
    """``/static``: the vendor libraries may be cached for a day; the dashboard's own files
    are revalidated on every load (cheap with the ETag), so a new release shows at once."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code in (200, 304):
            if path.replace("\\", "/").startswith("vendor/"):
                response.headers["cache-control"] = f"public, max-age={VENDOR_MAX_AGE_SECONDS}"
            else:
                response.headers["cache-control"] = "no-cache"
        return response


def _page_route(path: str, filename: str, headers: dict[str, str]) -> Any:
    cached: dict[str, str] = {}

    def page(_request: Request) -> HTMLResponse:
        # read once, on first use: the file does not change while the server runs
        if "html" not in cached:
            file = STATIC_DIR / filename
            if not file.is_file():
                raise HTTPException(404, f"the page {path} is not installed ({filename} is "
                                         "missing from the package)")
            cached["html"] = file.read_text(encoding="utf-8")
        return HTMLResponse(cached["html"], headers=headers)

    page.__name__ = f"page_{filename.removesuffix('.html')}"
    return page


def mount(app: FastAPI) -> None:
    """Add the page routes and ``/static`` to ``app``.

    Plain Starlette routes, not API routes: they are no part of the OpenAPI document, need
    no permission (the pages hold no data; the API checks every call they make) and take
    no parameters.
    """
    settings = getattr(app.state, "settings", None)
    tile_url = getattr(settings, "tile_url", None)
    for path, filename in PAGES.items():
        app.router.add_route(path, _page_route(path, filename, page_headers(path, tile_url)),
                             methods=["GET", "HEAD"], include_in_schema=False)
    app.router.add_route("/favicon.ico", _favicon, methods=["GET", "HEAD"],
                         include_in_schema=False)
    # check_dir=False: the app must start even from a tree where the static files are absent
    app.mount("/static", DashboardStatic(directory=STATIC_DIR, check_dir=False),
              name="static")


def _favicon(_request: Request) -> Response:
    # browsers ask for /favicon.ico whatever the page says; answer with the SVG icon
    icon = STATIC_DIR / "favicon.svg"
    if not icon.is_file():
        raise HTTPException(404, "no favicon")
    return Response(icon.read_bytes(), media_type="image/svg+xml",
                    headers={"cache-control": f"public, max-age={VENDOR_MAX_AGE_SECONDS}"})
