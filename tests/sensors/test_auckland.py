"""The real Auckland counts: the reader's rules, the import of a month (idempotent, all or
nothing), and a replay through Mosquitto into the ingester (the whole chain)."""

from __future__ import annotations

import gzip
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from tests.conftest import needs_shared_data

from urbansec.cli.sensors import replay_payload
from urbansec.errors import UsageError
from urbansec.sensors import auckland
from urbansec.sensors.mqtt import Ingester, Publisher
from urbansec.sensors.payloads import TimeBounds
from urbansec.services import sensors
from urbansec.services.sensor_ingest import ensure_auckland_datastreams, import_auckland
from urbansec.store.engine import write_transaction
from urbansec.store.sensors import Observation

DATA = auckland.DATA_DIR


def count_observations(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(Observation.__table__)
                                  ).scalar_one()


def test_counting_day_and_daylight_saving() -> None:
    # hours 0-5 of a counting day are the next calendar day
    assert auckland.local_hour(date(2022, 12, 31), 0) == datetime(2023, 1, 1, 0)
    assert auckland.local_hour(date(2022, 12, 31), 23) == datetime(2022, 12, 31, 23)
    # New Zealand daylight time (UTC+13) in January, standard time (UTC+12) in July
    assert auckland.to_utc(datetime(2023, 1, 1, 0)) == datetime(2022, 12, 31, 11, tzinfo=UTC)
    assert auckland.to_utc(datetime(2023, 7, 1, 12)) == datetime(2023, 7, 1, 0, tzinfo=UTC)
    assert auckland.to_utc(datetime(2024, 9, 29, 2)) is None  # the spring-forward hour


def test_reader_on_a_month_with_the_dst_change() -> None:
    needs_shared_data(DATA)
    found = auckland.read_counts(DATA, date(2024, 9, 1), date(2024, 9, 30))
    assert len(found.counters) == 21 and all(c.lat is not None for c in found.counters)
    # 29 September 2024 lost its 02:00 hour; the file gives 06:00 of the 28th twice
    assert [r.line for r in found.rejected] == [50330, 50353]
    assert all("given twice" in r.reason for r in found.rejected)
    quay = [c for c in found.counts if c.counter == "107 Quay Street"]
    # the month's first local hour, 1 September 00:00 NZST (UTC+12), is the "0:00-0:59" row of
    # counting day 31 August
    assert quay[0].start == datetime(2024, 8, 31, 12, tzinfo=UTC)
    assert quay[0].line == 49676
    assert {c.start.minute for c in found.counts} == {0}


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "hourly_counts.csv.gz", "wt") as handle:
        handle.write("date,hour,year,A,B\n"
                     "2024-03-01,6:00-6:59,2024,5.0,7.0\n"
                     "2024-03-01,7:00-7:59,2024,-2.0,x\n"
                     "2024-03-01,banana,2024,1.0,1.0\n"
                     "2024-03-01,8:00-8:59,2024,3.5,\n")
    (tmp_path / "locations.csv").write_text("Address,Latitude,Longitude\nA,-36.8,174.7\n")
    found = auckland.read_counts(tmp_path)
    assert [(c.counter, c.count, c.line) for c in found.counts] == [("A", 5, 2), ("B", 7, 2)]
    assert [(r.line, r.reason.split(":")[0]) for r in found.rejected] == [
        (3, "A"), (3, "B"), (4, "date or hour unreadable"), (5, "A")]
    assert found.counters[1].lat is None


def test_import_a_month_is_idempotent(db: Engine) -> None:
    needs_shared_data(DATA)
    first = import_auckland(db, DATA, date(2024, 9, 1), date(2024, 9, 30))
    expected = len(auckland.read_counts(DATA, date(2024, 9, 1), date(2024, 9, 30)).counts)
    assert first["observations_inserted"] == expected > 14_000
    assert [r["line"] for r in first["rejected"]] == [50330, 50353]
    assert count_observations(db) == expected
    second = import_auckland(db, DATA, date(2024, 9, 1), date(2024, 9, 30))
    assert second["observations_inserted"] == 0
    assert second["observations_already_stored"] == expected
    assert count_observations(db) == expected
    assert sensors.count_entities(db)["Things"] == 21
    # a known value back through the series read: 107 Quay Street, first hour of the month
    series = sensors.datastream_series(
        db, [first["datastreams"]["107 Quay Street"]],
        datetime(2024, 8, 31, 12, tzinfo=UTC), datetime(2024, 8, 31, 14, tzinfo=UTC))
    found = auckland.read_counts(DATA, date(2024, 9, 1), date(2024, 9, 1))
    quay = [c.count for c in found.counts if c.counter == "107 Quay Street"][:2]
    assert list(next(iter(series.values())).value) == quay


def test_import_is_all_or_nothing(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_shared_data(DATA)
    from urbansec.services import sensor_ingest

    monkeypatch.setattr(sensor_ingest, "INSERT_CHUNK", 500)
    calls = {"n": 0}
    original = sensor_ingest._insert_ignoring_duplicates

    def failing(connection):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        statement = original(connection)

        class Failing:
            def returning(self, *columns):  # type: ignore[no-untyped-def]
                if calls["n"] >= 1:
                    raise RuntimeError("disk full")
                return statement.returning(*columns)

        return Failing()

    monkeypatch.setattr(sensor_ingest, "_insert_ignoring_duplicates", failing)
    with pytest.raises(RuntimeError):
        import_auckland(db, DATA, date(2024, 9, 1), date(2024, 9, 3))
    assert count_observations(db) == 0
    assert sensors.count_entities(db)["Things"] == 0


def test_replay_timing() -> None:
    counts = [auckland.HourlyCount("A", datetime(2024, 1, 1, h, tzinfo=UTC),
                                   datetime(2024, 1, 1, h + 1, tzinfo=UTC), h, 2)
              for h in range(3)]
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        now[0] += seconds

    sent: list[int] = []
    hours = list(auckland.replay(counts, lambda c: sent.append(c.count), 600, sleep=sleep,
                                 clock=lambda: now[0]))
    assert len(hours) == 3 and sent == [0, 1, 2]
    assert slept == [6.0, 6.0]  # an hour every 6 s at 600x
    with pytest.raises(UsageError):
        list(auckland.replay(counts, lambda c: None, -1))


def test_replay_into_the_ingester_end_to_end(db: Engine, broker_url: str) -> None:
    needs_shared_data(DATA)
    found = auckland.read_counts(DATA, date(2024, 3, 2), date(2024, 3, 3))
    with write_transaction(db) as connection:
        ids = ensure_auckland_datastreams(connection, found.counters)
    suffix = uuid.uuid4().hex[:8]
    ingester = Ingester(db, broker_url, client_id=f"replay-ingest-{suffix}",
                        bounds=TimeBounds(max_age=None, reorder_window=None)).start()
    publisher = Publisher(broker_url, client_id=f"replay-{suffix}").start()
    try:
        assert ingester.wait_connected(10)
        import json
        import time

        time.sleep(0.3)
        for _ in auckland.replay(found.counts, lambda c: publisher.publish(
                f"v1.1/Datastreams({ids[c.counter]})/Observations",
                json.dumps(replay_payload(c))), speed=0):
            pass
        assert publisher.flush(30)
        assert ingester.wait_idle(30)
    finally:
        publisher.stop()
        ingester.stop()
    assert count_observations(db) == len(found.counts) == ingester.counters["accepted"]
    # the stored values are the file's, hour by hour
    import_check = import_auckland(db, DATA, date(2024, 3, 2), date(2024, 3, 3))
    assert import_check["observations_inserted"] == 0
