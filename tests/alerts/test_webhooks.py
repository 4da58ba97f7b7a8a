"""Webhook delivery to a real HTTP receiver on 127.0.0.1, on SQLite and PostgreSQL: signed
with HMAC-SHA256, retried with backoff after a 500, filtered by change and severity, given up
after the last attempt, every attempt logged."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import Engine
from tests.alerts.support import make_site, message, push

from urbansec.sensors.payloads import TimeBounds
from urbansec.services import alerts as service
from urbansec.services.access import SYSTEM
from urbansec.services.alert_delivery import WebhookWorker, backoff_seconds, signature
from urbansec.services.alert_engine import AlertEngine
from urbansec.services.sensor_ingest import IngestPipeline

SECRET = "correct horse battery staple"


class Receiver:
    """A tiny HTTP server answering each POST with the next status of ``statuses`` (then
    200), recording what it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()},
                                          body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/urbansec"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver([500])
    yield server
    server.stop()


def deliveries(db: Engine, webhook_id: int) -> list[dict[str, Any]]:
    return service.webhook_deliveries(db, webhook_id)


def test_signed_delivery_retried_after_a_500(db: Engine, receiver: Receiver) -> None:
    site = make_site(db)
    hook = service.create_webhook(db, SYSTEM, url=receiver.url, secret=SECRET,
                                  events=["raised", "cleared"])
    picky = service.create_webhook(db, SYSTEM, url=receiver.url, secret=SECRET,
                                   min_severity="critical")
    service.create_rule(db, SYSTEM, name="north busy", kind="threshold", severity="warning",
                        params={"metric": "occupancy", "threshold": 50}, zones=["north"])
    pipeline = IngestPipeline(db, bounds=TimeBounds(max_age=None))
    engine = AlertEngine(db, clock="wall", tick_seconds=0).load()
    pipeline.add_listener(engine)
    now = datetime.now(UTC)
    push(pipeline, message(site.streams["camera"], 80, now))
    assert [d["status"] for d in deliveries(db, hook["id"])] == ["pending"]
    assert deliveries(db, picky["id"]) == []  # a warning is below its floor

    worker = WebhookWorker(db, backoff_base=0.2)
    assert worker.run_once() == 1
    [first] = deliveries(db, hook["id"])
    assert (first["status"], first["attempts"], first["last_status"]) == ("pending", 1, 500)
    assert worker.run_once() == 0  # not due before its backoff
    time.sleep(0.3)
    assert worker.run_once() == 1
    [done] = deliveries(db, hook["id"])
    assert (done["status"], done["attempts"], done["last_status"]) == ("delivered", 2, 200)
    assert done["delivered_at"] is not None

    assert len(receiver.received) == 2
    headers, body = receiver.received[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-urbansec-signature"], expected)
    assert headers["x-urbansec-event"] == "raised"
    assert headers["x-urbansec-delivery"] == str(done["id"])
    payload = json.loads(body)
    assert payload["change"] == "raised" and payload["alert"]["zone"] == "north"
    assert payload["alert"]["value"] == 80 and payload["seq"] == payload["alert"]["seq"]
    assert receiver.received[0][1] == body  # the retry sends the same signed body

    # the worker thread sends the clearing without being asked (woken by the engine's fanout
    # in production; here by its poll)
    worker = WebhookWorker(db, poll_seconds=0.1).start()
    try:
        push(pipeline, message(site.streams["camera"], 5, now + timedelta(seconds=1)))
        deadline = time.monotonic() + 10
        while len(receiver.received) < 3:
            assert time.monotonic() < deadline, "the clearing was not delivered"
            time.sleep(0.05)
    finally:
        worker.stop()
    assert json.loads(receiver.received[2][1])["change"] == "cleared"
    assert receiver.received[2][0]["x-urbansec-event"] == "cleared"


def test_gives_up_after_the_last_attempt(db: Engine) -> None:
    site = make_site(db)
    # a port nothing listens on: every attempt fails to connect
    dead = Receiver([])
    url = dead.url
    dead.stop()
    hook = service.create_webhook(db, SYSTEM, url=url, secret=SECRET)
    service.create_rule(db, SYSTEM, name="north busy", kind="threshold",
                        params={"metric": "occupancy", "threshold": 50}, zones=["north"])
    pipeline = IngestPipeline(db, bounds=TimeBounds(max_age=None))
    pipeline.add_listener(AlertEngine(db, clock="wall", tick_seconds=0).load())
    push(pipeline, message(site.streams["camera"], 80, datetime.now(UTC)))
    worker = WebhookWorker(db, max_attempts=2, backoff_base=0.05, timeout=2)
    worker.run_once()
    time.sleep(0.1)
    worker.run_once()
    [failed] = deliveries(db, hook["id"])
    assert (failed["status"], failed["attempts"], failed["last_status"]) == ("failed", 2, None)
    assert "Connect" in failed["last_error"]
    time.sleep(0.1)
    assert worker.run_once() == 0


def test_signature_and_backoff() -> None:
    assert signature("k", b"{}") == "sha256=" + hmac.new(b"k", b"{}", "sha256").hexdigest()
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff_seconds(30) == 300
