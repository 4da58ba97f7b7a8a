"""Getting alert changes to people: the SSE broadcaster of an API process, the MQTT alert
topic that links the engine's process to every API process, and the webhook worker.

The chain: the engine (in the ingester's process) commits a batch's alert changes, then
publishes each as JSON on the MQTT topic ``urbansec/alerts`` (QoS 1). Every API process runs an
:class:`AlertBus`, a paho client subscribed to that topic, which hands the events to its
:class:`Broadcaster`; the broadcaster feeds each SSE subscriber's bounded queue. So
``urbansec serve --workers N`` and a separate ``urbansec sensors ingest`` work together, and
an acknowledgement made in one API worker reaches the browsers of the others (the worker
publishes it on the same topic).

When the engine runs in the API's own process (``urbansec serve --ingest``), it also hands the
events to the broadcaster directly; the same event then arrives twice (directly and over
MQTT), and the broadcaster drops the second by its sequence number.

A slow browser never slows the others: its queue is bounded, and when it is full that
subscriber is dropped (its stream ends; EventSource reconnects after ``retry`` with
``Last-Event-ID`` and gets what it missed from the stored alerts).

Webhooks: deliveries are rows written with the alert change (an outbox). The
:class:`WebhookWorker` claims due rows (a lease, so several processes may run workers without
sending a row twice), POSTs the JSON with ``X-Urbansec-Signature: sha256=<hex>`` (HMAC-SHA256
of the body with the webhook's secret), and on failure retries with exponential backoff
(1 s, 2 s, 4 s ... capped at 5 min) until ``max_attempts``, logging each attempt on the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, or_, select, update

from urbansec.services.alerts import AlertEvent, deliveries_table, now_utc, webhooks_table
from urbansec.store.engine import write_transaction

log = logging.getLogger("urbansec.alerts.delivery")

ALERT_TOPIC = "urbansec/alerts"
SUBSCRIBER_QUEUE = 1000
SEEN_MEMORY = 20_000


# --- the SSE broadcaster (one per API process) ------------------------------------------------

@dataclass(eq=False)
class Subscription:
    queue: asyncio.Queue[AlertEvent | None]
    dropped: bool = False


@dataclass
class Broadcaster:
    """Fans alert events out to the SSE subscribers of this process (asyncio side).

    :meth:`publish` runs on the event loop; :meth:`publish_threadsafe` from any thread (the
    MQTT client, the engine)."""

    queue_size: int = SUBSCRIBER_QUEUE
    subscribers: set[Subscription] = field(default_factory=set)
    loop: asyncio.AbstractEventLoop | None = None
    dropped: int = 0
    _seen: OrderedDict[int, None] = field(default_factory=OrderedDict)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def subscribe(self) -> Subscription:
        subscription = Subscription(asyncio.Queue(self.queue_size))
        self.subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)

    def seen(self, seq: int) -> bool:
        return seq in self._seen

    def publish(self, events: Sequence[AlertEvent]) -> None:
        for event in events:
            if event.seq in self._seen:
                continue  # the same change, once directly and once over MQTT
            self._seen[event.seq] = None
            if len(self._seen) > SEEN_MEMORY:
                self._seen.popitem(last=False)
            for subscription in list(self.subscribers):
                if subscription.dropped:
                    continue
                try:
                    subscription.queue.put_nowait(event)
                except asyncio.QueueFull:
                    # too slow: end its stream; the browser resumes from the store
                    subscription.dropped = True
                    self.dropped += 1
                    self.subscribers.discard(subscription)
                    while not subscription.queue.empty():
                        subscription.queue.get_nowait()
                    subscription.queue.put_nowait(None)

    def publish_threadsafe(self, events: Sequence[AlertEvent]) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        # RuntimeError: the loop closed meanwhile (shutdown)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self.publish, list(events))


# --- the MQTT alert topic ---------------------------------------------------------------------

def encode_event(event: AlertEvent) -> bytes:
    return json.dumps(event.as_json(), separators=(",", ":"), default=str).encode()


def decode_event(payload: bytes) -> AlertEvent | None:
    try:
        return AlertEvent.from_json(json.loads(payload))
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring a malformed message on %s", ALERT_TOPIC)
        return None


class AlertBus:
    """A paho client on the alert topic: receives every alert change for this process's
    subscribers and publishes the changes made here (acknowledgements, or the engine's).

    The session is not persistent: an API process that was away has no browser to deliver
    to, and browsers resume from the store."""

    def __init__(self, broker_url: str, on_events: Callable[[list[AlertEvent]], None], *,
                 topic: str = ALERT_TOPIC, client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        from urbansec.sensors.mqtt import parse_broker_url

        self.broker = parse_broker_url(broker_url)
        self.topic = topic
        self.on_events = on_events
        self.connected = threading.Event()
        self.received = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5,
                                  client_id=client_id or f"urbansec-alerts-{os.getpid()}-"
                                                         f"{uuid.uuid4().hex[:8]}")
        if self.broker.username:
            self.client.username_pw_set(self.broker.username, self.broker.password)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.max_queued_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.connected.clear()
        self.client.on_message = self._on_message

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason_code: Any,
                    _properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("alert bus: broker %s refused: %s", self.broker.url, reason_code)
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        client.subscribe([(self.topic, SubscribeOptions(qos=1))])
        self.connected.set()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        event = decode_event(message.payload)
        if event is not None:
            self.received += 1
            self.on_events([event])

    def start(self, wait: float = 0.0) -> AlertBus:
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=15)
        self.client.loop_start()
        if wait:
            self.connected.wait(wait)
        return self

    def publish(self, events: Sequence[AlertEvent]) -> None:
        for event in events:
            self.client.publish(self.topic, encode_event(event), qos=1)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class EventFanout:
    """Where the engine sends committed alert changes: the MQTT topic (for every API
    process), an in-process broadcaster (when the API runs here too), and the webhook worker
    (woken up: the deliveries are in the database already)."""

    def __init__(self, publisher: Any | None = None, topic: str = ALERT_TOPIC,
                 local: Broadcaster | None = None,
                 webhooks: WebhookWorker | None = None) -> None:
        self.publisher = publisher
        self.topic = topic
        self.local = local
        self.webhooks = webhooks
        self.published = 0

    def __call__(self, events: Sequence[AlertEvent]) -> None:
        if not events:
            return
        if self.local is not None:
            self.local.publish_threadsafe(events)
        if self.publisher is not None:
            for event in events:
                self.publisher.publish(self.topic, encode_event(event), qos=1)
        self.published += len(events)
        if self.webhooks is not None:
            self.webhooks.wake()


# --- webhooks ---------------------------------------------------------------------------------

def signature(secret: str, body: bytes) -> str:
    """The ``X-Urbansec-Signature`` value: ``sha256=`` + HMAC-SHA256(secret, body) in hex."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff_seconds(attempts: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Wait before attempt ``attempts + 1``: base, 2 base, 4 base ... at most ``cap``."""
    return min(cap, base * 2 ** max(0, attempts - 1))


class WebhookWorker:
    """Sends pending webhook deliveries (see the module notes); runs in a thread until
    :meth:`stop`. :meth:`run_once` sends what is due now (tests call it directly)."""

    def __init__(self, engine: Engine, *, max_attempts: int = 8, backoff_base: float = 1.0,
                 timeout: float = 5.0, poll_seconds: float = 1.0, lease_seconds: float = 60.0
                 ) -> None:
        self.engine = engine
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.timeout = timeout
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed_attempts = 0

    def wake(self) -> None:
        self._wake.set()

    def _due(self, now: Any) -> Any:
        return (deliveries_table.c.status == "pending",
                deliveries_table.c.next_attempt_at <= now,
                or_(deliveries_table.c.locked_until.is_(None),
                    deliveries_table.c.locked_until < now))

    def _claim(self, limit: int = 50) -> list[Any]:
        now = now_utc()
        claimed = []
        # a read first: an idle worker must not take SQLite's write lock every second
        with self.engine.connect() as connection:
            if connection.execute(select(deliveries_table.c.id).where(*self._due(now))
                                  .limit(1)).first() is None:
                return []
        with write_transaction(self.engine) as connection:
            due = connection.execute(
                select(deliveries_table.c.id).where(*self._due(now))
                .order_by(deliveries_table.c.id).limit(limit)).scalars().all()
            for delivery_id in due:
                # the lease: only the process whose UPDATE changed the row sends it
                taken = connection.execute(
                    update(deliveries_table)
                    .where(deliveries_table.c.id == delivery_id, *self._due(now))
                    .values(locked_until=now + timedelta(seconds=self.lease_seconds))
                ).rowcount
                if taken:
                    claimed.append(delivery_id)
            if not claimed:
                return []
            return list(connection.execute(
                select(deliveries_table, webhooks_table.c.url, webhooks_table.c.secret)
                .join(webhooks_table, webhooks_table.c.id == deliveries_table.c.webhook_id)
                .where(deliveries_table.c.id.in_(claimed)).order_by(deliveries_table.c.id)))

    def _send(self, client: Any, row: Any) -> tuple[int | None, str | None]:
        import httpx

        body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {"content-type": "application/json",
                   "user-agent": "urbansec-webhooks",
                   "x-urbansec-event": row.event,
                   "x-urbansec-delivery": str(row.id),
                   "x-urbansec-signature": signature(row.secret, body)}
        try:
            response = client.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:1000]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    def run_once(self) -> int:
        """Send every delivery due now; returns how many were attempted."""
        import httpx

        rows = self._claim()
        if not rows:
            return 0
        results = []
        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            for row in rows:
                results.append((row, *self._send(client, row)))
        with write_transaction(self.engine) as connection:
            now = now_utc()
            for row, status, error in results:
                attempts = row.attempts + 1
                if error is None:
                    values: dict[str, Any] = {"status": "delivered", "delivered_at": now}
                    self.sent += 1
                else:
                    self.failed_attempts += 1
                    give_up = attempts >= self.max_attempts
                    values = {"status": "failed" if give_up else "pending",
                              "next_attempt_at": now + timedelta(seconds=backoff_seconds(
                                  attempts, self.backoff_base))}
                    log.warning("webhook delivery %s to %s failed (%s)%s", row.id, row.url,
                                error, "; giving up" if give_up else "")
                connection.execute(update(deliveries_table)
                                   .where(deliveries_table.c.id == row.id)
                                   .values(attempts=attempts, last_status=status,
                                           last_error=error, locked_until=None, **values))
        return len(results)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.run_once():
                    pass
            except Exception:  # the database away, a bug: keep the worker alive
                log.exception("webhook worker pass failed")
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def start(self) -> WebhookWorker:
        self._thread = threading.Thread(target=self._loop, name="urbansec-webhooks",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
