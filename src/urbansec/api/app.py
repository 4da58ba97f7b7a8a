"""The FastAPI application: routers, JSON errors everywhere, limits and security headers.

``create_app(settings, engine)`` builds one app; ``urbansec serve`` runs it with uvicorn.
Every error leaves as ``{"error": {"code", "message", "details"}}`` with a 4xx status (5xx
only for a real server fault, and then without a stack trace).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from urbansec import __version__
from urbansec.api.log_redaction import redact_access_log
from urbansec.config import Settings, get_settings
from urbansec.errors import UrbansecError

log = logging.getLogger("urbansec.api")

API_PREFIX = "/api/v1"
#: router modules under ``urbansec.api.routers`` (each exposes ``router``), and Open311
ROUTERS = ("auth", "admin", "evidence", "reports", "risks", "audit", "dashboard", "nighttime",
           "crowd", "alerts")

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "permissions-policy": "geolocation=(), camera=(), microphone=()",
    "cross-origin-opener-policy": "same-origin",
    "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self' "
                               "'unsafe-inline'; frame-ancestors 'none'",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


class LimitsAndHeaders:
    """Pure ASGI middleware: refuses bodies over the limit (413, before reading them all)
    and adds the security headers to every response."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _send_json(send, 413, error_body(
                "payload_too_large", f"the request body is larger than "
                f"{self.max_body_bytes:,} bytes"))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                existing = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                         if k.encode() not in existing]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _BodyTooLarge:
            await _send_json(send_with_headers, 413, error_body(
                "payload_too_large", f"the request body is larger than "
                f"{self.max_body_bytes:,} bytes"))


class _BodyTooLarge(Exception):
    pass


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    import json

    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    if engine is None:
        from urbansec.store.engine import engine_for

        engine = engine_for(settings.database_url)
    app = FastAPI(
        title="urbansec API",
        version=__version__,
        description="Evidence, analysis, forecasts, citizen reports (also as Open311 "
                    "GeoReport v2 under /open311/v2) and the shared risk register of a city "
                    "and its partners. Errors are JSON: {\"error\": {\"code\", \"message\", "
                    "\"details\"}}.",
        openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    redact_access_log()

    @app.exception_handler(UrbansecError)
    async def _domain_error(_request: Request, exc: UrbansecError) -> JSONResponse:
        headers = {}
        if exc.http_status == 401:
            headers["www-authenticate"] = "Bearer"
        if exc.http_status == 429 and "retry_after" in exc.details:
            headers["retry-after"] = str(int(exc.details["retry_after"]))
        return JSONResponse(error_body(exc.code, exc.message, exc.details),
                            status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"loc": list(e.get("loc", ())), "message": e.get("msg", ""),
                     "type": e.get("type", "")} for e in exc.errors()]
        first = problems[0] if problems else {"loc": [], "message": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return JSONResponse(error_body("invalid_request", f"{where}: {first['message']}",
                                       {"problems": problems}), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(error_body("internal", "an unexpected error occurred; it was "
                                       "logged"), status_code=500)

    @app.get("/api/v1/health", tags=["meta"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    for name in ROUTERS:
        module = importlib.import_module(f"urbansec.api.routers.{name}")
        app.include_router(module.router, prefix=API_PREFIX)
    open311 = importlib.import_module("urbansec.api.open311")
    app.include_router(open311.router, prefix="/open311/v2")
    sensorthings = importlib.import_module("urbansec.api.sensorthings")
    app.include_router(sensorthings.router, prefix=sensorthings.PREFIX)
    # the browser dashboard (pages and /static) over the same API
    from urbansec.web import mount

    mount(app)

    # dashboard views carry thousands of cells: ~10x smaller compressed
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    app.add_middleware(LimitsAndHeaders, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["authorization", "content-type", "x-api-key"])
    return app
