"""Ingesting observations: the pipeline on both databases, then through a real Mosquitto.

Every kind of bad message is rejected with its reason, logged and counted, while the good
messages around it land; a duplicate (QoS 1 redelivery) is stored once; a broker restart in
the middle loses no QoS 1 message.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, select
from tests.sensors.conftest import Mosquitto
from tests.sensors.support import make_thing

from urbansec.sensors.mqtt import Ingester, Publisher
from urbansec.sensors.payloads import TimeBounds
from urbansec.services import sensors
from urbansec.services.sensor_ingest import (
    IngestPipeline,
    RawMessage,
    ingest_status,
    recent_rejections,
    rejected_counts,
)
from urbansec.store.sensors import Observation

NOW = datetime.now(UTC).replace(microsecond=0)


def stored(engine: Engine, datastream_id: int | None = None) -> list[tuple[datetime, float]]:
    table = Observation.__table__
    query = select(table.c.phenomenon_time, table.c.result_number).order_by(
        table.c.datastream_id, table.c.phenomenon_time)
    if datastream_id is not None:
        query = query.where(table.c.datastream_id == datastream_id)
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(query)]


def sta(datastream_id: int, minutes_ago: float, result: object) -> tuple[str, bytes]:
    when = (NOW - timedelta(minutes=minutes_ago)).isoformat()
    return (f"v1.1/Datastreams({datastream_id})/Observations",
            json.dumps({"phenomenonTime": when, "result": result}).encode())


def bad_messages(counter: int, light: int) -> list[tuple[tuple[str, bytes], str]]:
    """One message per rejection reason the ingester knows, with that reason."""
    return [
        ((f"v1.1/Datastreams({counter})/Observations", b"{not json"), "malformed_json"),
        (sta(999_999, 1, 3), "unknown_datastream"),
        (sta(counter, -30, 3), "future_time"),  # 30 minutes ahead
        (sta(counter, 3 * 60, 3), "too_old"),
        (sta(counter, -1, -4), "negative_count"),
        (sta(counter, 1, "twelve"), "wrong_type"),
        (sta(light, 1, "exploded"), "wrong_type"),
        ((f"v1.1/Datastreams({counter})/Observations",
          b'{"phenomenonTime": "last tuesday", "result": 1}'), "bad_time"),
        ((f"v1.1/Datastreams({counter})/Observations",
          b'{"phenomenonTime": "2025-01-01T00:00:00Z"}'), "missing_field"),
        (("counters/unknown/count", b'{"in": 1}'), "unknown_topic"),
    ]


def test_pipeline_stores_good_rejects_bad_counts_duplicates(db: Engine) -> None:
    counter, light = make_thing(db, "Gate A", ("in",))[0], make_thing(db, "Lamp 1", ("light",),
                                                                       kind="category")[0]
    sensors.assign_datastream(db, light, None, "lighting_status")
    sensors.assign_datastream(db, counter, None, "in_counter")
    pipeline = IngestPipeline(db, "test", TimeBounds(max_age=timedelta(hours=2),
                                                      reorder_window=timedelta(minutes=30)))
    seen: list[int] = []
    pipeline.add_listener(lambda items: seen.extend(i.id for i in items))
    pipeline.add_listener(lambda items: 1 / 0)  # a failing listener changes nothing
    good = [sta(counter, 10 - i, i) for i in range(5)] + [sta(light, 2, "failed")]
    bad = bad_messages(counter, light)
    messages = [good[0], *[m for m, _ in bad[:5]], *good[1:3], *[m for m, _ in bad[5:]],
                *good[3:], good[1]]  # good[1] again: a redelivery in the same batch
    result = pipeline.process([RawMessage(t, p, NOW) for t, p in messages])
    assert len(result.stored) == 6 and len(seen) == 6
    assert result.duplicates == 1
    expected: dict[str, int] = {}
    for _, why in bad:
        expected[why] = expected.get(why, 0) + 1
    assert dict(result.rejected) == expected
    assert [v for _, v in stored(db, counter)] == [0, 1, 2, 3, 4]
    # the same messages again (a QoS 1 redelivery after a lost ack): nothing new
    again = pipeline.process([RawMessage(t, p, NOW) for t, p in good])
    assert again.stored == [] and again.duplicates == 6
    assert len(stored(db)) == 6
    status = ingest_status(db)[0]
    assert (status["client_id"], status["accepted"], status["duplicates"]) == ("test", 6, 7)
    assert status["rejected"] == expected and status["rejected_total"] == len(bad)
    assert rejected_counts(db) == expected
    logged = recent_rejections(db, 50)
    assert {r["reason"] for r in logged} == set(expected)
    assert any(r["payload_excerpt"] == "{not json" for r in logged)
    # out of order: an hour behind the latest reading of the datastream
    late = pipeline.process([RawMessage(*sta(counter, 60, 9), NOW)])
    assert dict(late.rejected) == {"out_of_order": 1}


def test_plain_topic_mapping(db: Engine) -> None:
    inflow, outflow = make_thing(db, "Gate B", ("in", "out"))
    sensors.map_topic(db, "counters/gate-b/count", "in", inflow)
    sensors.map_topic(db, "counters/gate-b/count", "out", outflow)
    pipeline = IngestPipeline(db, "plain")
    ts = (NOW - timedelta(minutes=1)).timestamp()
    result = pipeline.process([
        RawMessage("counters/gate-b/count", json.dumps({"ts": ts, "in": 12, "out": 3}).encode(),
                   NOW),
        RawMessage("counters/gate-b/count", json.dumps({"ts": ts + 60, "in": 5, "out": -1})
                   .encode(), NOW)])
    assert dict(result.rejected) == {"negative_count": 1}
    assert [v for _, v in stored(db, inflow)] == [12, 5]
    assert [v for _, v in stored(db, outflow)] == [3]


def test_a_row_the_database_refuses_never_fails_its_batch(db: Engine) -> None:
    first, second = make_thing(db, "Gate C", ("a", "b"))
    pipeline = IngestPipeline(db, "refusal")
    pipeline.process([RawMessage(*sta(first, 1, 1), NOW), RawMessage(*sta(second, 1, 1), NOW)])
    # the datastream disappears while the ingester still believes in it
    sensors.delete_entity(db, sensors.q.parse_resource_path(f"Datastreams({second})"))
    result = pipeline.process([RawMessage(*sta(first, 0.5, 2), NOW),
                               RawMessage(*sta(second, 0.5, 2), NOW)])
    assert dict(result.rejected) == {"storage_error": 1}
    assert [v for _, v in stored(db, first)] == [1, 2]


def wait_for(condition: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_mqtt_good_bad_and_duplicates_through_mosquitto(db: Engine, broker_url: str) -> None:
    counter, light = make_thing(db, "Gate D", ("in",))[0], make_thing(db, "Lamp 2", ("light",),
                                                                       kind="category")[0]
    sensors.assign_datastream(db, light, None, "lighting_status")
    ingester = Ingester(db, broker_url, client_id=f"ingest-{uuid.uuid4().hex[:8]}",
                        bounds=TimeBounds(max_age=timedelta(hours=2)),
                        topics=("counters/+/count",)).start()
    publisher = Publisher(broker_url, client_id=f"pub-{uuid.uuid4().hex[:8]}").start()
    try:
        assert ingester.wait_connected(10)
        time.sleep(0.3)  # the subscription is in place
        good = [sta(counter, 20 - i, i) for i in range(10)]
        bad = bad_messages(counter, light)
        for i, message in enumerate(good):
            publisher.publish(*message)
            if i < len(bad):
                publisher.publish(*bad[i][0])
        for message in good[:4]:  # the same readings again
            publisher.publish(*message)
        assert publisher.flush(10)
        assert ingester.wait_idle(15)
        assert [v for _, v in stored(db, counter)] == list(range(10))
        counters = ingester.counters
        assert counters["accepted"] == 10 and counters["duplicates"] == 4
        assert counters["rejected_total"] == len(bad)
        assert counters["rejected"]["wrong_type"] == 2
    finally:
        publisher.stop()
        ingester.stop()


def test_broker_restart_loses_no_qos1_message(db: Engine, own_broker: Mosquitto) -> None:
    """Batch A with everything up; the broker stops; batch B is published while it is away
    (paho keeps it in the publisher's persistent session); the broker comes back (with the
    ingester's persistent session and subscription from its persistence file); batch C is
    published while the ingester is still reconnecting. Every message is stored exactly
    once."""
    datastream = make_thing(db, "Gate E", ("in",))[0]
    ingester = Ingester(db, own_broker.url, client_id="restart-ingest",
                        bounds=TimeBounds(max_age=timedelta(hours=3), reorder_window=None))
    ingester.start()
    publisher = Publisher(own_broker.url, client_id="restart-publisher").start()
    try:
        assert ingester.wait_connected(10)
        time.sleep(0.3)
        for i in range(20):
            publisher.publish(*sta(datastream, 120 - i, i))
        assert publisher.flush(10)
        assert wait_for(lambda: len(stored(db, datastream)) == 20)
        time.sleep(1.2)  # the broker's autosave (1 s) has the session on disk
        own_broker.halt()
        assert wait_for(lambda: not ingester.connected.is_set(), 10)
        for i in range(20, 40):
            publisher.publish(*sta(datastream, 120 - i, i))
        own_broker.resume()
        assert wait_for(lambda: publisher.connected.is_set(), 40)
        for i in range(40, 60):
            publisher.publish(*sta(datastream, 120 - i, i))
        assert publisher.flush(40)
        assert wait_for(lambda: len(stored(db, datastream)) == 60, 60), \
            f"{len(stored(db, datastream))} of 60 stored"
        assert [v for _, v in stored(db, datastream)] == list(range(60))
        assert ingester.connections >= 2  # it reconnected (and resubscribed)
    finally:
        publisher.stop()
        ingester.stop()
    with db.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Observation.__table__)
                                  ).scalar_one() == 60
