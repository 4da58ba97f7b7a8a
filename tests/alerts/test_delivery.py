"""The SSE broadcaster: each change once per subscriber even when it arrives twice (directly
from an engine in the same process and over MQTT), a slow subscriber dropped without holding
the others back, events from other threads delivered on the loop."""

from __future__ import annotations

import asyncio
import threading

from urbansec.services.alert_delivery import Broadcaster, decode_event, encode_event
from urbansec.services.alerts import AlertEvent


def event(seq: int, change: str = "raised") -> AlertEvent:
    return AlertEvent(seq, change, {"id": seq, "severity": "warning", "status": "open"})


def test_each_change_once_even_when_it_comes_twice() -> None:
    async def scenario() -> list[int]:
        broadcaster = Broadcaster()
        subscription = broadcaster.subscribe()
        broadcaster.publish([event(1), event(2)])
        broadcaster.publish([event(2), event(3, "cleared")])  # 2 again, over MQTT
        return [subscription.queue.get_nowait().seq for _ in range(subscription.queue.qsize())]

    assert asyncio.run(scenario()) == [1, 2, 3]


def test_a_slow_subscriber_is_dropped_and_the_others_keep_everything() -> None:
    async def scenario() -> tuple[list[AlertEvent | None], int, int, int]:
        broadcaster = Broadcaster(queue_size=5)
        slow = broadcaster.subscribe()
        fast = broadcaster.subscribe()
        received = 0
        for seq in range(1, 21):
            broadcaster.publish([event(seq)])
            while not fast.queue.empty():  # this one keeps up
                fast.queue.get_nowait()
                received += 1
        left = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        return left, received, broadcaster.dropped, len(broadcaster.subscribers)

    left, received, dropped, subscribers = asyncio.run(scenario())
    assert left == [None]  # its stream ends; the browser resumes with Last-Event-ID
    assert received == 20 and dropped == 1 and subscribers == 1


def test_events_from_another_thread_arrive_on_the_loop() -> None:
    async def scenario() -> list[int]:
        broadcaster = Broadcaster()
        broadcaster.bind(asyncio.get_running_loop())
        subscription = broadcaster.subscribe()
        thread = threading.Thread(target=broadcaster.publish_threadsafe,
                                  args=([event(7), event(8)],))
        thread.start()
        thread.join()
        return [(await asyncio.wait_for(subscription.queue.get(), 5)).seq for _ in range(2)]

    assert asyncio.run(scenario()) == [7, 8]


def test_the_mqtt_payload_round_trips_and_junk_is_ignored() -> None:
    original = event(42, "acknowledged")
    assert decode_event(encode_event(original)) == original
    assert decode_event(b"{not json") is None
    assert decode_event(b'{"seq": 1}') is None
