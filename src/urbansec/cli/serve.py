"""``urbansec serve``: the REST API (and Open311) with uvicorn.

The schema is migrated first, so a fresh machine needs no extra step. One worker serves the
app built here; with ``--workers N`` uvicorn starts N processes that each build the app from
the environment (``URBANSEC_*``), so the database chosen with ``--database`` is handed on
through ``URBANSEC_DATABASE_URL``.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from urbansec.cli import _ready_engine, _run, app, err


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every "
                                           "interface; put a TLS proxy in front).")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    forwarded_allow_ips: Annotated[
        str | None, typer.Option(help="Proxies trusted for X-Forwarded-For (rate limits "
                                      "then see the real client), e.g. 127.0.0.1.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the API: /api/v1, /open311/v2, OpenAPI at /openapi.json, docs at /docs."""

    def action() -> None:
        import uvicorn

        from urbansec.api.app import create_app
        from urbansec.config import Settings

        engine = _ready_engine()
        url = engine.url.render_as_string(hide_password=False)
        options: dict[str, object] = {"host": host, "port": port, "log_level": log_level,
                                      "proxy_headers": forwarded_allow_ips is not None}
        if forwarded_allow_ips is not None:
            options["forwarded_allow_ips"] = forwarded_allow_ips
        err.print(f"urbansec API on http://{host}:{port} (docs at /docs), database "
                  f"{engine.url.render_as_string()}")
        if workers == 1:
            settings = Settings(database_url=url)
            uvicorn.run(create_app(settings, engine), **options)  # type: ignore[arg-type]
            return
        engine.dispose()  # each worker opens its own pool
        os.environ["URBANSEC_DATABASE_URL"] = url
        uvicorn.run("urbansec.api.app:create_app", factory=True, workers=workers,
                    **options)  # type: ignore[arg-type]

    _run(action, False)
