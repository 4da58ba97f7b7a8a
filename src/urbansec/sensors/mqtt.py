"""MQTT ingestion (paho-mqtt 2.x, MQTT 5) from a broker such as Mosquitto.

The ingester subscribes with QoS 1 to the SensorThings topics ``v1.1/Datastreams(<id>)/
Observations`` (payload: an Observation) and to the plain JSON topics of the mapping table
(``urbansec sensors map``), e.g. ``counters/gate-a/count`` with ``{"ts": ..., "in": 12,
"out": 3}``.

No QoS 1 message is lost:

- the session is persistent (fixed client id, ``clean_start`` False, a session expiry of a
  week), so the broker keeps the subscription and queues messages while the ingester or the
  broker restarts (Mosquitto with ``persistence true`` keeps them over its own restart);
- messages are acknowledged by hand (``manual_ack``), only after the batch holding them is
  committed: a crash before the commit means the broker sends them again, and the store's
  unique key turns any redelivery into a counted duplicate, never a second row;
- paho reconnects with a backoff of 1 s doubling to 30 s, and ``on_connect`` subscribes
  again every time.

Messages are written in batches: a batch closes 100 ms after its first message or at 500
messages, whichever comes first, and is one transaction (that window is the latency budget
of everything downstream: listeners run right after the commit).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from urbansec.errors import UsageError
from urbansec.sensors.payloads import TimeBounds
from urbansec.services.sensor_ingest import IngestPipeline, Listener, RawMessage

log = logging.getLogger("urbansec.sensors.mqtt")

STA_FILTER = "v1.1/+/Observations"
SESSION_EXPIRY_SECONDS = 7 * 24 * 3600
RECEIVE_MAXIMUM = 65_535  # unacknowledged messages the broker may send before our acks


@dataclass(frozen=True)
class Broker:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def parse_broker_url(url: str) -> Broker:
    """``mqtt://[user:password@]host[:port]`` (``tcp://`` is accepted too)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise UsageError(f"not an MQTT broker URL: {url!r} (use mqtt://host:port)")
    try:
        port = parts.port or 1883
    except ValueError:
        raise UsageError(f"not an MQTT broker URL: {url!r} (bad port)") from None
    return Broker(parts.hostname, port, unquote(parts.username) if parts.username else None,
                  unquote(parts.password) if parts.password else None)


def _client(client_id: str, broker: Broker, *, manual_ack: bool = False) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5, manual_ack=manual_ack)
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    client.max_queued_messages_set(0)  # unbounded: a QoS 1 message waits for the broker
    client.max_inflight_messages_set(1000)
    return client


def _connect_properties() -> Properties:
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
    properties.ReceiveMaximum = RECEIVE_MAXIMUM
    return properties


class Ingester:
    """Runs until :meth:`stop`: paho's network thread receives, a writer thread batches and
    stores (see the module notes). Counters: :attr:`counters`."""

    def __init__(self, engine: Engine, broker_url: str, *, client_id: str = "urbansec-ingest",
                 bounds: TimeBounds | None = None, topics: Sequence[str] = (),
                 batch_seconds: float = 0.1, batch_max: int = 500) -> None:
        self.broker = parse_broker_url(broker_url)
        self.pipeline = IngestPipeline(engine, client_id, bounds)
        self.client_id = client_id
        self.extra_topics = tuple(topics)
        self.batch_seconds = batch_seconds
        self.batch_max = batch_max
        self.connected = threading.Event()
        self.connections = 0
        self._queue: queue.Queue[RawMessage] = queue.Queue()
        self._received = 0
        self._handled = 0
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self._client: mqtt.Client | None = None

    def add_listener(self, listener: Listener) -> None:
        """See :meth:`urbansec.services.sensor_ingest.IngestPipeline.add_listener`."""
        self.pipeline.add_listener(listener)

    @property
    def counters(self) -> dict[str, Any]:
        return {**self.pipeline.counters.as_dict(), "connected": self.connected.is_set(),
                "connections": self.connections, "queued": self._queue.qsize()}

    # --- paho callbacks (network thread) ----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any,
                    reason_code: Any, _properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("broker %s refused the connection: %s", self.broker.url, reason_code)
            return
        self.connections += 1
        topics = [STA_FILTER, *self.pipeline.subscriptions(), *self.extra_topics]
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in dict.fromkeys(topics)])
        self.connected.set()
        log.info("connected to %s, subscribed to %s", self.broker.url, ", ".join(topics))

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any,
                       reason_code: Any, _properties: Any) -> None:
        self.connected.clear()
        if not self._stopping.is_set():
            log.warning("disconnected from %s (%s); reconnecting", self.broker.url,
                        reason_code)

    def _on_message(self, _client: mqtt.Client, _userdata: Any,
                    message: mqtt.MQTTMessage) -> None:
        self._received += 1
        self._queue.put(RawMessage(message.topic, message.payload, datetime.now(UTC),
                                   message.mid, message.qos))

    # --- the writer thread ------------------------------------------------------------------
    def _next_batch(self) -> list[RawMessage]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_max:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _write_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if not batch:
                if self._stopping.is_set():
                    return
                continue
            delay = 0.5
            while True:
                try:
                    self.pipeline.process(batch)
                    break
                except OperationalError as exc:  # the database is away: keep the batch
                    log.warning("cannot store a batch (%s); retrying in %.1f s", exc.orig,
                                delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 30)
                except Exception:  # a bug must not stop ingestion; the broker redelivers
                    log.exception("batch failed; its messages are not acknowledged")
                    self._handled += len(batch)
                    batch = []
                    break
            self._handled += len(batch)
            client = self._client
            for message in batch:
                if message.qos > 0 and message.mid is not None and client is not None:
                    client.ack(message.mid, message.qos)

    # --- life cycle -------------------------------------------------------------------------
    def start(self) -> Ingester:
        client = _client(self.client_id, self.broker, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._writer = threading.Thread(target=self._write_loop, name="urbansec-ingest-writer",
                                        daemon=True)
        self._writer.start()
        client.connect_async(self.broker.host, self.broker.port, keepalive=15,
                             clean_start=False, properties=_connect_properties())
        client.loop_start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    def wait_idle(self, timeout: float = 10.0, quiet: float = 0.3) -> bool:
        """Wait until every message received so far is stored and nothing new arrived for
        ``quiet`` seconds (tests, replays)."""
        deadline = time.monotonic() + timeout
        last_seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            received = self._received
            if received != last_seen:
                last_seen, since = received, time.monotonic()
            elif self._handled >= received and time.monotonic() - since >= quiet:
                return True
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop receiving, store what was received, acknowledge it, disconnect."""
        client = self._client
        if client is not None:
            client.on_message = lambda *_args: None
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout)
        if client is not None:
            client.disconnect()
            client.loop_stop()


class Publisher:
    """A QoS 1 publisher with a persistent session: messages published while the broker is
    away are kept by paho and sent after it reconnects."""

    def __init__(self, broker_url: str, client_id: str = "urbansec-publisher") -> None:
        self.broker = parse_broker_url(broker_url)
        self.client = _client(client_id, self.broker)
        self.connected = threading.Event()
        self.client.on_connect = lambda *_a: self.connected.set()
        self.client.on_disconnect = lambda *_a: self.connected.clear()
        self.client.on_publish = self._on_publish
        # packet ids the broker has not acknowledged yet; a message published while the
        # broker is away keeps its id and is sent again on reconnection
        self._pending: set[int] = set()
        self._early: set[int] = set()  # acknowledged before publish() returned
        self._lock = threading.Lock()

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any,
                    _properties: Any) -> None:
        with self._lock:
            if mid in self._pending:
                self._pending.discard(mid)
            else:
                self._early.add(mid)

    def start(self, wait: float = 10.0) -> Publisher:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=15,
                                  clean_start=False, properties=_connect_properties())
        self.client.loop_start()
        if wait and not self.connected.wait(wait):
            self.stop()
            raise UsageError(f"cannot reach the MQTT broker at {self.broker.url}")
        return self

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        # never hold our lock while paho holds its own (on_publish runs under paho's lock)
        info = self.client.publish(topic, payload, qos=qos)
        if qos > 0:
            with self._lock:
                if info.mid in self._early:
                    self._early.discard(info.mid)
                else:
                    self._pending.add(info.mid)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the broker has acknowledged every message published so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_until_interrupted(ingester: Ingester, report: Callable[[dict[str, Any]], None],
                          every: float = 10.0) -> None:
    """``urbansec sensors ingest``: run in the foreground, report counters every ``every``
    seconds, stop cleanly on Ctrl+C."""
    ingester.start()
    try:
        while True:
            time.sleep(every)
            report(ingester.counters)
    except KeyboardInterrupt:
        pass
    finally:
        ingester.stop()
        report(ingester.counters)
