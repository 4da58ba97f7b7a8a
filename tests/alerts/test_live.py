"""The whole live chain on SQLite and PostgreSQL with the real Mosquitto: observations
published on MQTT -> ingester -> alert engine -> alert topic -> a real uvicorn server ->
an SSE client (httpx, streaming). The alert is stored once and arrives on the open stream;
a redelivered message raises nothing; acknowledging it is audited and broadcast; clearing
is broadcast; gzip does not hold the stream back."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from sqlalchemy import Engine
from tests.alerts.support import audit_actions, make_site

from urbansec.api.app import create_app
from urbansec.config import Settings
from urbansec.sensors.mqtt import Ingester, Publisher
from urbansec.services import alerts as service
from urbansec.services import identity
from urbansec.services.access import SYSTEM
from urbansec.services.alert_engine import attach_alerts

PASSWORD = "live alerts test password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """A real uvicorn server on 127.0.0.1 in a thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on",
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class SseReader:
    """Reads an SSE stream in a thread; parsed events land on :attr:`events`."""

    def __init__(self, client: httpx.Client, url: str, headers: dict[str, str]) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.opened = threading.Event()
        self.closed = threading.Event()
        self.response: httpx.Response | None = None
        self._context = client.stream("GET", url, headers=headers, timeout=None)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        assert self.opened.wait(10), "the stream did not open"

    def _read(self) -> None:
        try:
            with self._context as response:
                self.response = response
                fields: dict[str, str] = {}
                for line in response.iter_lines():
                    if line.startswith("retry:"):
                        self.opened.set()
                    if line == "":
                        if "data" in fields:
                            self.events.put({"event": fields.get("event", "message"),
                                             "id": int(fields["id"]),
                                             "data": json.loads(fields["data"])})
                        fields = {}
                    elif not line.startswith(":"):
                        name, _, value = line.partition(":")
                        fields[name] = value.strip()
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self.closed.set()
            self.opened.set()

    def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def close(self) -> None:
        if self.response is not None:
            self.response.close()


@dataclass
class Live:
    base: str
    db: Engine
    streams: dict[str, int]
    publisher: Publisher
    ingester: Ingester
    token: str
    viewer_token: str

    def publish(self, stream: str, result: Any, at: datetime | None = None) -> str:
        payload = json.dumps({"phenomenonTime": (at or datetime.now(UTC)).isoformat(),
                              "result": result})
        self.publisher.publish(f"v1.1/Datastreams({self.streams[stream]})/Observations",
                               payload)
        return payload


@pytest.fixture
def live(db: Engine, broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Live]:
    monkeypatch.setattr(identity, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024,
                                                            parallelism=1))
    identity._dummy_hash.cache_clear()
    site = make_site(db)
    service.create_rule(db, SYSTEM, name="north full", kind="threshold", severity="critical",
                        params={"metric": "occupancy", "threshold": 300, "hysteresis": 50},
                        zones=["north"])
    org = identity.create_organisation(db, "city", "City", "city")
    tokens = {}
    for role in ("partner", "viewer"):
        identity.create_user(db, org, f"{role}@example.org", role, PASSWORD, role)
        tokens[role] = identity.issue_tokens(db, f"{role}@example.org",
                                             PASSWORD)["access_token"]
    topic = f"urbansec/alerts-test-{uuid.uuid4().hex[:8]}"
    name = f"alerts-test-{uuid.uuid4().hex[:8]}"
    ingester = Ingester(db, broker_url, client_id=name)
    runtime = attach_alerts(ingester, db, broker_url, topic=topic, clock="wall",
                            tick_seconds=1.0)
    ingester.start()
    assert ingester.wait_connected(10)
    publisher = Publisher(broker_url, client_id=f"{name}-pub").start()
    app = create_app(Settings(mqtt_url=broker_url, alert_topic=topic), db)
    with ServerThread(app) as base:
        deadline = time.monotonic() + 10
        while not (app.state.alert_bus and app.state.alert_bus.connected.is_set()):
            assert time.monotonic() < deadline, "the API did not join the alert topic"
            time.sleep(0.05)
        yield Live(base, db, site.streams, publisher, ingester, tokens["partner"],
                   tokens["viewer"])
    publisher.stop()
    ingester.stop()
    runtime.stop()


def test_alert_raised_on_the_stream_stored_once_acked_and_cleared(live: Live) -> None:
    with httpx.Client(base_url=live.base) as client:
        reader = SseReader(client, f"/api/v1/alerts/stream?access_token={live.token}",
                           {"accept-encoding": "gzip"})
        try:
            assert reader.response is not None
            assert reader.response.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in reader.response.headers  # not gzip-buffered

            live.publish("camera", 120)
            published = time.monotonic()
            payload = live.publish("camera", 420)
            event = reader.next()
            latency = time.monotonic() - published
            assert event["event"] == "alert" and event["data"]["change"] == "raised"
            alert = event["data"]
            assert (alert["zone"], alert["value"], alert["severity"]) == ("north", 420,
                                                                          "critical")
            assert not reader.closed.is_set()  # it came while the stream stays open
            assert latency < 5

            # the same message again (a QoS 1 redelivery): stored once, nothing raised
            live.publisher.publish(
                f"v1.1/Datastreams({live.streams['camera']})/Observations", payload)
            assert live.ingester.wait_idle(10)
            with pytest.raises(queue.Empty):
                reader.next(timeout=1.5)
            assert [a["id"] for a in service.list_alerts(live.db, "all")] == [alert["id"]]

            # a viewer may not acknowledge; a partner may, and every stream hears it
            denied = client.post(f"/api/v1/alerts/{alert['id']}/ack",
                                 headers={"authorization": f"Bearer {live.viewer_token}"})
            assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
            acked = client.post(f"/api/v1/alerts/{alert['id']}/ack", json={"note": "on it"},
                                headers={"authorization": f"Bearer {live.token}"})
            assert acked.status_code == 200, acked.text
            assert acked.json()["status"] == "acknowledged"
            event = reader.next()
            assert (event["event"], event["data"]["change"]) == ("update", "acknowledged")
            assert event["id"] > alert["seq"]
            assert "alert.acknowledged" in audit_actions(live.db)

            live.publish("camera", 100)
            event = reader.next()
            assert (event["event"], event["data"]["change"], event["data"]["status"]) == (
                "update", "cleared", "cleared")
            assert audit_actions(live.db).count("alert.raised") == 1
        finally:
            reader.close()


def test_stream_needs_a_reader_and_resumes_from_last_event_id(live: Live) -> None:
    with httpx.Client(base_url=live.base) as client:
        assert client.get("/api/v1/alerts/stream").status_code == 401
        refused = client.get(f"/api/v1/alerts/stream?access_token={live.viewer_token}")
        assert refused.status_code == 403
        assert client.get("/api/v1/alerts/stream?access_token=nope").status_code == 401
        reader = SseReader(client, f"/api/v1/alerts/stream?access_token={live.token}", {})
        try:
            live.publish("camera", 500)
            first = reader.next()
        finally:
            reader.close()
        # the browser was away while the alert cleared: it comes back with Last-Event-ID
        live.publish("camera", 10)
        deadline = time.monotonic() + 10
        while service.list_alerts(live.db, "cleared") == []:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        again = SseReader(client, f"/api/v1/alerts/stream?access_token={live.token}",
                          {"last-event-id": str(first["id"])})
        try:
            event = again.next()
            assert (event["data"]["id"], event["data"]["change"]) == (first["data"]["id"],
                                                                      "cleared")
        finally:
            again.close()


def test_engine_in_the_server_process_delivers_each_alert_once(db: Engine, broker_url: str
                                                                ) -> None:
    """``urbansec serve --ingest``: the engine hands its events to the stream directly and
    publishes them on MQTT, which the same process hears again: still one event each."""
    from urbansec.cli.serve import _start_ingest

    site = make_site(db)
    service.create_rule(db, SYSTEM, name="north full", kind="threshold",
                        params={"metric": "occupancy", "threshold": 300}, zones=["north"])
    org = identity.create_organisation(db, "city", "City", "city")
    _, key = identity.create_api_key(db, org, "wall screen", "partner")
    name = f"serve-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(mqtt_url=broker_url, alert_topic=f"urbansec/alerts-{name}",
                        alert_clock="wall")
    app = create_app(settings, db)
    stop = _start_ingest(app, db, broker_url, settings, client_id=name)
    publisher = Publisher(broker_url, client_id=f"{name}-pub").start()
    try:
        with ServerThread(app) as base, httpx.Client(base_url=base) as client:
            deadline = time.monotonic() + 10
            while not (app.state.alert_bus and app.state.alert_bus.connected.is_set()):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            reader = SseReader(client, "/api/v1/alerts/stream", {"x-api-key": key})
            try:
                publisher.publish(f"v1.1/Datastreams({site.streams['camera']})/Observations",
                                  json.dumps({"phenomenonTime": datetime.now(UTC).isoformat(),
                                              "result": 350}))
                event = reader.next()
                assert (event["event"], event["data"]["zone"]) == ("alert", "north")
                with pytest.raises(queue.Empty):
                    reader.next(timeout=1.5)
                assert app.state.alert_bus.received >= 1  # it did come over MQTT too
            finally:
                reader.close()
    finally:
        publisher.stop()
        stop()
