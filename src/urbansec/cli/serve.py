"""``urbansec serve``: the REST API (and Open311) with uvicorn.

The schema is migrated first, so a fresh machine needs no extra step. One worker serves the
app built here; with ``--workers N`` uvicorn starts N processes that each build the app from
the environment (``URBANSEC_*``), so the database chosen with ``--database`` is handed on
through ``URBANSEC_DATABASE_URL``.

With several workers uvicorn binds the listening socket itself and hands it to the worker
processes, leaving its protocol number at 0; asyncio then does not switch Nagle's algorithm off
on accepted connections (it checks for ``IPPROTO_TCP``), and every keep-alive response written
in two pieces (headers, body) waits for the client's delayed ACK: about 40 ms per request on
Linux (uvicorn issue #3149). ``_tcp_listener`` labels the socket as TCP so the workers' accepted
connections get ``TCP_NODELAY`` as a single-process server's do.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from urbansec.cli import _ready_engine, _run, app, err


def _tcp_listener(sock: socket.socket) -> socket.socket:
    """The same listening socket, labelled IPPROTO_TCP when it is a TCP socket left at
    protocol 0 (what asyncio needs to set TCP_NODELAY on the connections it accepts)."""
    if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
            and sock.proto != socket.IPPROTO_TCP):
        # same descriptor (and so the same bound address and inheritable flag), new label
        return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    return sock


@contextmanager
def _workers_get_nodelay() -> Iterator[None]:
    """While uvicorn starts its worker processes, every socket it binds is labelled TCP."""
    from uvicorn.config import Config

    bind_socket = Config.bind_socket

    def bind_tcp_socket(config: Config) -> socket.socket:
        return _tcp_listener(bind_socket(config))

    Config.bind_socket = bind_tcp_socket  # type: ignore[method-assign]
    try:
        yield
    finally:
        Config.bind_socket = bind_socket  # type: ignore[method-assign]


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
        with _workers_get_nodelay():
            uvicorn.run("urbansec.api.app:create_app", factory=True, workers=workers,
                        **options)  # type: ignore[arg-type]

    _run(action, False)
