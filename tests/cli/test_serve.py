"""``urbansec serve --workers N``: the workers' connections get TCP_NODELAY.

uvicorn binds the listening socket for its worker processes with protocol 0, and asyncio only
turns Nagle's algorithm off on accepted sockets labelled IPPROTO_TCP: without the fix every
keep-alive response written in two pieces waited ~40 ms for the client's delayed ACK
(measured: GET /api/v1/health took 47 ms with --workers 2 against 1 ms with one worker).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner
from uvicorn.config import Config

from urbansec.cli import app
from urbansec.cli.serve import _tcp_listener
from urbansec.config import get_settings

runner = CliRunner()


async def _nodelay_of_accepted_connection(listener: socket.socket) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connect(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=listener)
    async with server:
        _reader, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        nodelay = await asyncio.wait_for(accepted, 10)
        writer.close()
    return nodelay


def test_a_tcp_labelled_listener_hands_out_nodelay_connections() -> None:
    bound = Config("urbansec.api.app:create_app", host="127.0.0.1", port=0).bind_socket()
    fd = bound.fileno()
    listener = _tcp_listener(bound)
    assert listener.proto == socket.IPPROTO_TCP
    assert listener.fileno() == fd and listener.get_inheritable()  # the same socket
    assert asyncio.run(_nodelay_of_accepted_connection(listener)) != 0


def test_unix_sockets_are_left_alone(tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        assert _tcp_listener(sock) is sock


def test_serve_with_workers_binds_tcp_labelled_sockets(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    # serve hands the database to its workers through the environment: restored afterwards
    monkeypatch.setenv("URBANSEC_DATABASE_URL", url)
    get_settings.cache_clear()
    seen: list[dict[str, Any]] = []

    def fake_run(target: Any, **options: Any) -> None:
        # what uvicorn.run does before starting its workers: bind the shared socket
        config = Config(target, host=options["host"], port=0, workers=options["workers"])
        with config.bind_socket() as sock:
            seen.append({"target": target, "workers": options["workers"],
                         "proto": sock.proto})

    monkeypatch.setattr(uvicorn, "run", fake_run)
    original = Config.bind_socket
    try:
        result = runner.invoke(app, ["--database", url, "serve", "--workers", "2"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert seen == [{"target": "urbansec.api.app:create_app", "workers": 2,
                     "proto": socket.IPPROTO_TCP}]
    assert Config.bind_socket is original  # only while serve starts its workers
