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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

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
    mqtt: Annotated[str | None, typer.Option(
        "--mqtt", envvar="URBANSEC_MQTT_URL", show_envvar=True,
        help="MQTT broker (mqtt://host:port) whose alert topic feeds the live alert stream "
             "(GET /api/v1/alerts/stream).")] = None,
    ingest: Annotated[bool, typer.Option(
        "--ingest", help="Also run the MQTT ingester and the alert engine in this process "
                         "(needs --mqtt): the whole live chain in one command. Observations "
                         "of any age are accepted, so replayed history works.")] = False,
) -> None:
    """Run the API: /api/v1, /open311/v2, OpenAPI at /openapi.json, docs at /docs."""

    def action() -> None:
        import uvicorn

        from urbansec.api.app import create_app
        from urbansec.config import Settings

        if ingest and not mqtt:
            from urbansec.errors import UsageError

            raise UsageError("--ingest needs the broker: --mqtt mqtt://host:port")
        engine = _ready_engine()
        url = engine.url.render_as_string(hide_password=False)
        # open alert streams (SSE) never finish by themselves: on shutdown give requests 5 s,
        # then end the streams (browsers reconnect to the next server with Last-Event-ID)
        options: dict[str, object] = {"host": host, "port": port, "log_level": log_level,
                                      "proxy_headers": forwarded_allow_ips is not None,
                                      "timeout_graceful_shutdown": 5}
        if forwarded_allow_ips is not None:
            options["forwarded_allow_ips"] = forwarded_allow_ips
        err.print(f"urbansec API on http://{host}:{port} (docs at /docs), database "
                  f"{engine.url.render_as_string()}"
                  + (f", alerts from {mqtt}" if mqtt else "")
                  + (" (ingesting too)" if ingest else ""))
        extra = {"mqtt_url": mqtt} if mqtt else {}
        if workers == 1:
            settings = Settings(database_url=url, **extra)
            app = create_app(settings, engine)
            live = _start_ingest(app, engine, mqtt, settings) if ingest and mqtt else None
            try:
                uvicorn.run(app, **options)  # type: ignore[arg-type]
            finally:
                if live is not None:
                    live()
            return
        if mqtt:
            os.environ["URBANSEC_MQTT_URL"] = mqtt
        # the ingester runs once, in this supervising process; the workers hear its alerts
        # on the broker's alert topic
        live = _start_ingest(None, engine, mqtt, Settings(database_url=url, **extra)) \
            if ingest and mqtt else None
        if live is None:
            engine.dispose()  # each worker opens its own pool
        os.environ["URBANSEC_DATABASE_URL"] = url
        try:
            with _workers_get_nodelay():
                uvicorn.run("urbansec.api.app:create_app", factory=True, workers=workers,
                            **options)  # type: ignore[arg-type]
        finally:
            if live is not None:
                live()

    _run(action, False)


def _start_ingest(app: Any, engine: Any, broker: str, settings: Any,
                  client_id: str = "urbansec-serve-ingest") -> Callable[[], None]:
    """The MQTT ingester with the alert engine attached (its events go straight to ``app``'s
    stream too when given); returns the function that stops both."""
    from urbansec.api.routers.alerts import attach_local_engine
    from urbansec.errors import UsageError
    from urbansec.sensors.mqtt import Ingester
    from urbansec.sensors.payloads import TimeBounds
    from urbansec.services.alert_engine import attach_alerts

    ingester = Ingester(engine, broker, client_id=client_id,
                        bounds=TimeBounds(max_age=None, reorder_window=None))
    runtime = attach_alerts(ingester, engine, broker, topic=settings.alert_topic,
                            clock=settings.alert_clock,
                            tick_seconds=settings.alert_tick_seconds,
                            local=attach_local_engine(app) if app is not None else None,
                            webhook_attempts=settings.webhook_max_attempts)
    ingester.start()
    if not ingester.wait_connected(10):
        ingester.stop()
        runtime.stop()
        raise UsageError(f"cannot reach the MQTT broker at {broker}")

    def stop() -> None:
        ingester.stop()
        runtime.stop()

    return stop
