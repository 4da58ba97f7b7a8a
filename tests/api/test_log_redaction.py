"""Tracking tokens, access tokens and API keys in URLs never reach uvicorn's access log."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from urbansec.api.app import create_app
from urbansec.api.log_redaction import REDACTED, redact_url
from urbansec.config import Settings
from urbansec.store.engine import make_engine
from urbansec.store.migrate import upgrade

SECRET = "s3cr3t-Tok_en"


@pytest.mark.parametrize(("target", "expected"), [
    (f"/api/v1/reports/track/{SECRET}", f"/api/v1/reports/track/{REDACTED}"),
    (f"/api/v1/reports/track/{SECRET}?lang=fr", f"/api/v1/reports/track/{REDACTED}?lang=fr"),
    (f"/open311/v2/tokens/{SECRET}.json", f"/open311/v2/tokens/{REDACTED}.json"),
    (f"/open311/v2/tokens/{SECRET}.xml?jurisdiction_id=city",
     f"/open311/v2/tokens/{REDACTED}.xml?jurisdiction_id=city"),
    (f"/api/v1/alerts/stream?access_token={SECRET}",
     f"/api/v1/alerts/stream?access_token={REDACTED}"),
    (f"/api/v1/alerts/stream?zone=a&ACCESS_TOKEN={SECRET}&x=1",
     f"/api/v1/alerts/stream?zone=a&ACCESS_TOKEN={REDACTED}&x=1"),
    (f"/open311/v2/requests.json?api_key={SECRET}",
     f"/open311/v2/requests.json?api_key={REDACTED}"),
    ("/api/v1/reports/ABC123?status=open", "/api/v1/reports/ABC123?status=open"),
    ("/api/v1/hotspots?method=gi&token_count=3", "/api/v1/hotspots?method=gi&token_count=3"),
])
def test_secrets_in_a_url_are_replaced(target: str, expected: str) -> None:
    assert redact_url(target) == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, _Captured]]:
    """A real uvicorn server with its own logging set-up (configured after the app is built,
    as ``urbansec serve`` does with one worker), its access log captured."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    engine = make_engine(url)
    upgrade(engine)
    app = create_app(Settings(database_url=url), engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info",
                                           access_log=True, lifespan="off"))
    captured = _Captured()
    access = logging.getLogger("uvicorn.access")
    access.addHandler(captured)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", captured
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        access.removeHandler(captured)
        engine.dispose()


def test_access_log_of_a_real_server_holds_no_secret(served: tuple[str, _Captured]) -> None:
    base, captured = served
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.get(f"/api/v1/reports/track/{SECRET}").status_code in (400, 404, 422)
        assert client.get(f"/open311/v2/tokens/{SECRET}.json").status_code == 404
        assert client.get("/api/v1/alerts/stream",
                          params={"access_token": SECRET}).status_code == 401
        assert client.get("/api/v1/health").status_code == 200
    deadline = time.monotonic() + 5
    while len(captured.lines) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(captured.lines) >= 4, captured.lines
    logged = "\n".join(captured.lines)
    assert SECRET not in logged
    assert logged.count(REDACTED) == 3
    assert "GET /api/v1/health" in logged
