"""Storing observations from live feeds: one batch of MQTT messages -> validated observations,
de-duplicated, written in one transaction with the rejections and the ingester's counters.

``IngestPipeline.process(messages)`` is the whole ingest logic without a broker, so it is
tested directly; ``urbansec.sensors.mqtt.Ingester`` feeds it from paho-mqtt and acknowledges
the messages once their batch is committed (at-least-once delivery end to end; the unique key
turns a redelivery into a counted duplicate, never a second row).

A bad message never fails its batch: every check runs before the write, and if the database
still refuses the batch (a datastream deleted meanwhile) the rows are retried one by one, each
in its own savepoint, and the refused ones are logged as ``storage_error``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from urbansec.sensors.payloads import (
    STA_TOPIC,
    DatastreamRule,
    FieldMapping,
    ObservationIn,
    Rejected,
    TimeBounds,
    check_result,
    check_time,
    decode_object,
    excerpt,
    observation_from_json,
    observations_from_plain,
    result_key,
    result_number,
)
from urbansec.store.engine import write_transaction
from urbansec.store.sensors import (
    Datastream,
    IngestStatus,
    Observation,
    RejectedMessage,
    TopicMapping,
)

log = logging.getLogger("urbansec.sensors.ingest")

observations = Observation.__table__
datastreams = Datastream.__table__
rejected_messages = RejectedMessage.__table__
status_table = IngestStatus.__table__
topic_mappings = TopicMapping.__table__

#: rows per INSERT statement (bounded so a long import never builds one giant statement)
INSERT_CHUNK = 2_000


@dataclass(frozen=True, slots=True)
class StoredObservation:
    """An observation as committed: what listeners (crowd state, alerts) receive."""

    id: int
    datastream_id: int
    phenomenon_time: datetime
    phenomenon_time_end: datetime | None
    result: Any
    result_number: float | None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    payload: bytes
    received_at: datetime
    #: the broker's packet id, acknowledged after the commit (None outside MQTT)
    mid: int | None = None
    qos: int = 0


@dataclass
class BatchResult:
    stored: list[StoredObservation] = field(default_factory=list)
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


def observation_row(observation: ObservationIn) -> dict[str, Any]:
    return {
        "datastream_id": observation.datastream_id,
        "phenomenon_time": observation.phenomenon_time,
        "phenomenon_time_end": observation.phenomenon_time_end,
        "result_time": observation.result_time,
        "result": observation.result,
        "result_number": result_number(observation.result),
        "result_key": result_key(observation.result),
        "result_quality": observation.result_quality,
        "valid_time_start": observation.valid_time_start,
        "valid_time_end": observation.valid_time_end,
        "parameters": observation.parameters,
        "feature_of_interest_id": observation.feature_of_interest_id,
    }


def _insert_ignoring_duplicates(connection: Connection) -> Any:
    dialect_insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    return dialect_insert(observations).on_conflict_do_nothing(
        index_elements=["datastream_id", "phenomenon_time", "result_key"])


def insert_observations(connection: Connection, rows: Sequence[dict[str, Any]]
                        ) -> list[StoredObservation]:
    """Insert, skipping rows whose (datastream, phenomenon time, result) is stored already;
    returns the rows actually inserted."""
    stored: list[StoredObservation] = []
    statement = _insert_ignoring_duplicates(connection).returning(
        observations.c.id, observations.c.datastream_id, observations.c.phenomenon_time,
        observations.c.phenomenon_time_end, observations.c.result, observations.c.result_number)
    for start in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[start:start + INSERT_CHUNK]
        if not chunk:
            continue
        for row in connection.execute(statement, list(chunk)):
            stored.append(StoredObservation(*row))
    return stored


def existing_observation_id(connection: Connection, observation: ObservationIn) -> int | None:
    datastream_id, phenomenon_time, key = observation.key
    return connection.execute(select(observations.c.id).where(
        observations.c.datastream_id == datastream_id,
        observations.c.phenomenon_time == phenomenon_time,
        observations.c.result_key == key)).scalar()


# --- the pipeline ---------------------------------------------------------------------------

Listener = Callable[[Sequence[StoredObservation]], None]


@dataclass
class IngestCounters:
    started_at: datetime
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    last_message_at: datetime | None = None
    batches: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "accepted": self.accepted,
                "duplicates": self.duplicates, "rejected": dict(self.rejected),
                "rejected_total": sum(self.rejected.values()),
                "last_message_at": self.last_message_at, "batches": self.batches}


class IngestPipeline:
    """Validates and stores batches of raw messages for one ingester (``client_id``).

    Keeps per-datastream rules and the latest accepted phenomenon time in memory (loaded on
    first sight, refreshed when an unknown id or topic appears, at most once a second), so a
    batch costs one transaction and no lookups in the steady state."""

    def __init__(self, engine: Engine, client_id: str = "urbansec-ingest",
                 bounds: TimeBounds | None = None, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.client_id = client_id
        self.bounds = bounds or TimeBounds()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.counters = IngestCounters(started_at=self.clock())
        self.listeners: list[Listener] = []
        self._rules: dict[int, DatastreamRule] = {}
        self._latest: dict[int, datetime] = {}
        self._mappings: dict[str, list[FieldMapping]] = {}
        self._last_refresh = 0.0
        self._lock = threading.Lock()

    # --- listeners: the next step (crowd state, alerts) hangs on this ----------------------
    def add_listener(self, listener: Listener) -> None:
        """``listener(observations)`` runs after each committed batch, on the writer thread,
        with the observations that batch stored (duplicates excluded). Keep it fast: the
        batch window is the whole latency budget. Its exceptions are logged, never raised."""
        self.listeners.append(listener)

    def _notify(self, stored: Sequence[StoredObservation]) -> None:
        for listener in self.listeners:
            try:
                listener(stored)
            except Exception:
                log.exception("observation listener %r failed", listener)

    # --- lookups ----------------------------------------------------------------------------
    def _refresh(self, connection: Connection, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_refresh < 1.0:
            return
        self._last_refresh = time.monotonic()
        rules = {row.id: DatastreamRule(row.id, row.observation_type, row.role)
                 for row in connection.execute(select(
                     datastreams.c.id, datastreams.c.observation_type, datastreams.c.role))}
        mappings: dict[str, list[FieldMapping]] = {}
        for row in connection.execute(select(topic_mappings).order_by(topic_mappings.c.id)):
            mappings.setdefault(row.topic, []).append(
                FieldMapping(row.field, row.datastream_id, row.time_field))
        self._rules, self._mappings = rules, mappings

    def _latest_time(self, connection: Connection, datastream_id: int) -> datetime | None:
        if datastream_id not in self._latest:
            latest = connection.execute(
                select(observations.c.phenomenon_time)
                .where(observations.c.datastream_id == datastream_id)
                .order_by(observations.c.phenomenon_time.desc()).limit(1)).scalar()
            if latest is not None:
                self._latest[datastream_id] = latest
        return self._latest.get(datastream_id)

    def subscriptions(self) -> list[str]:
        """The plain topics the mapping table names (the SensorThings filter is fixed)."""
        with self.engine.connect() as connection:
            self._refresh(connection, force=True)
        return sorted(self._mappings)

    # --- one batch --------------------------------------------------------------------------
    def _parse(self, connection: Connection, message: RawMessage
               ) -> list[ObservationIn | Rejected]:
        match = STA_TOPIC.match(message.topic)
        if match is None and message.topic not in self._mappings:
            self._refresh(connection)
        try:
            obj = decode_object(message.payload)
            if match is not None:
                datastream_id = int(match.group(1))
                return [observation_from_json(obj, datastream_id, message.received_at)]
            mappings = self._mappings.get(message.topic)
            if not mappings:
                raise Rejected("unknown_topic", f"no mapping for topic {message.topic!r}")
            return observations_from_plain(obj, mappings, message.received_at)
        except Rejected as rejected:
            return [rejected]

    def _check(self, connection: Connection, observation: ObservationIn,
               received_at: datetime) -> None:
        rule = self._rules.get(observation.datastream_id)
        if rule is None:
            self._refresh(connection)
            rule = self._rules.get(observation.datastream_id)
        if rule is None:
            raise Rejected("unknown_datastream",
                           f"Datastreams({observation.datastream_id}) does not exist")
        check_result(observation.result, rule)
        check_time(observation, received_at, self.bounds,
                   self._latest_time(connection, observation.datastream_id))

    def process(self, messages: Sequence[RawMessage]) -> BatchResult:
        """Validate, store and count one batch in one transaction; then notify listeners."""
        result = BatchResult()
        with self._lock, write_transaction(self.engine) as connection:
            now = self.clock()
            accepted: list[tuple[ObservationIn, RawMessage]] = []
            seen: set[tuple[int, datetime, str]] = set()
            rejections: list[dict[str, Any]] = []
            for message in messages:
                for item in self._parse(connection, message):
                    if isinstance(item, ObservationIn):
                        try:
                            self._check(connection, item, message.received_at)
                        except Rejected as rejected:
                            item = rejected
                    if isinstance(item, Rejected):
                        result.rejected[item.reason] += 1
                        rejections.append({
                            "received_at": message.received_at, "topic": message.topic[:300],
                            "reason": item.reason, "detail": item.detail[:1000],
                            "payload_excerpt": excerpt(message.payload)})
                        continue
                    if item.key in seen:  # the same reading twice in one batch
                        result.duplicates += 1
                        continue
                    seen.add(item.key)
                    accepted.append((item, message))
                    latest = self._latest.get(item.datastream_id)
                    if latest is None or item.phenomenon_time > latest:
                        self._latest[item.datastream_id] = item.phenomenon_time
            result.stored = self._store(connection, accepted, result)
            if rejections:
                connection.execute(insert(rejected_messages), rejections)
            self._count(connection, messages, result, now)
        if result.stored:
            self._notify(result.stored)
        return result

    def _store(self, connection: Connection,
               accepted: list[tuple[ObservationIn, RawMessage]], result: BatchResult
               ) -> list[StoredObservation]:
        rows = [observation_row(o) for o, _ in accepted]
        received = {o.key: m.received_at for o, m in accepted}
        try:
            with connection.begin_nested():
                stored = insert_observations(connection, rows)
        except (IntegrityError, DBAPIError):
            stored = []
            for (_observation, message), row in zip(accepted, rows, strict=True):
                try:
                    with connection.begin_nested():
                        stored.extend(insert_observations(connection, [row]))
                except (IntegrityError, DBAPIError) as exc:
                    result.rejected["storage_error"] += 1
                    connection.execute(insert(rejected_messages).values(
                        received_at=message.received_at, topic=message.topic[:300],
                        reason="storage_error", detail=str(exc.orig)[:1000],
                        payload_excerpt=excerpt(message.payload)))
                    rows = [r for r in rows if r is not row]
        result.duplicates += len(rows) - len(stored)
        stamped = []
        for item in stored:
            key = (item.datastream_id, item.phenomenon_time, result_key(item.result))
            stamped.append(StoredObservation(
                item.id, item.datastream_id, item.phenomenon_time, item.phenomenon_time_end,
                item.result, item.result_number, received.get(key)))
        return stamped

    def _count(self, connection: Connection, messages: Sequence[RawMessage],
               result: BatchResult, now: datetime) -> None:
        counters = self.counters
        counters.accepted += len(result.stored)
        counters.duplicates += result.duplicates
        counters.rejected.update(result.rejected)
        counters.batches += 1
        if messages:
            last = max(m.received_at for m in messages)
            if counters.last_message_at is None or last > counters.last_message_at:
                counters.last_message_at = last
        save_status(connection, self.client_id, counters, now)


def save_status(connection: Connection, client_id: str, counters: IngestCounters,
                now: datetime) -> None:
    values = {"started_at": counters.started_at, "updated_at": now,
              "accepted": counters.accepted, "duplicates": counters.duplicates,
              "rejected": dict(counters.rejected), "last_message_at": counters.last_message_at}
    changed = connection.execute(update(status_table)
                                 .where(status_table.c.client_id == client_id)
                                 .values(**values)).rowcount
    if not changed:
        connection.execute(insert(status_table).values(client_id=client_id, **values))


def ingest_status(engine: Engine) -> list[dict[str, Any]]:
    """Every ingester's counters as last committed, newest first."""
    with engine.connect() as connection:
        rows = connection.execute(select(status_table)
                                  .order_by(status_table.c.updated_at.desc())).mappings()
        return [{**dict(row), "rejected_total": sum((row["rejected"] or {}).values())}
                for row in rows]


def recent_rejections(engine: Engine, limit: int = 20, reason: str | None = None
                      ) -> list[dict[str, Any]]:
    query = select(rejected_messages).order_by(rejected_messages.c.id.desc()).limit(limit)
    if reason:
        query = query.where(rejected_messages.c.reason == reason)
    with engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def rejected_counts(engine: Engine) -> dict[str, int]:
    """Rejections in the log per reason (the log may be pruned; the counters are not)."""
    from sqlalchemy import func

    with engine.connect() as connection:
        return {reason: int(n) for reason, n in connection.execute(
            select(rejected_messages.c.reason, func.count())
            .group_by(rejected_messages.c.reason))}


# --- the Auckland pedestrian counts ----------------------------------------------------------

AUCKLAND_SENSOR_KEY = "auckland:counter"
AUCKLAND_PROPERTY_KEY = "auckland:pedestrians"
PEDESTRIANS_PER_HOUR = {"name": "persons per hour", "symbol": "persons/h",
                        "definition": "http://www.qudt.org/qudt/owl/1.0.0/unit/Instances.html"
                                      "#CountingUnit"}


def _ensure(connection: Connection, table: Any, external_key: str,
            values: dict[str, Any]) -> tuple[int, bool]:
    found = connection.execute(select(table.c.id).where(table.c.external_key == external_key)
                               ).scalar()
    if found is not None:
        return int(found), False
    return int(connection.execute(insert(table).values(external_key=external_key, **values)
                                  .returning(table.c.id)).scalar_one()), True


def ensure_auckland_datastreams(connection: Connection, sites: Sequence[Any]) -> dict[str, int]:
    """One Thing (with its Location), one hourly-count Datastream per counter site; found by
    their external keys when they exist (so a second import or a replay creates nothing)."""
    from urbansec.sensors.payloads import COUNT
    from urbansec.services.sensors import feature_for_thing
    from urbansec.store.sensors import (
        HistoricalLocation,
        HistoricalLocationLocation,
        Location,
        ObservedProperty,
        Sensor,
        Thing,
        ThingLocation,
    )

    sensor_id, _ = _ensure(connection, Sensor.__table__, AUCKLAND_SENSOR_KEY, {
        "name": "Auckland pedestrian counter", "encoding_type": "text/html",
        "description": "Heart of the City Auckland pedestrian monitoring system (automatic "
                       "people counters, both directions together)",
        "metadata": "https://www.hotcity.co.nz/city-centre-data/pedestrian-counts",
        "properties": {"licence": "CC BY 4.0",
                       "attribution": "Heart of the City Auckland"}})
    property_id, _ = _ensure(connection, ObservedProperty.__table__, AUCKLAND_PROPERTY_KEY, {
        "name": "Pedestrians passing", "description": "People passing the counter in an hour",
        "definition": "https://www.hotcity.co.nz/city-centre-data/pedestrian-counts"})
    ids: dict[str, int] = {}
    for site in sites:
        thing_id, new_thing = _ensure(connection, Thing.__table__, f"auckland:{site.name}", {
            "name": site.name, "description": f"Pedestrian counter at {site.name}, Auckland",
            "properties": {"source": "auckland-pedestrians", "city": "Auckland",
                           "timezone": "Pacific/Auckland"}})
        if new_thing and site.lat is not None and site.lon is not None:
            location_id, _ = _ensure(connection, Location.__table__,
                                     f"auckland:{site.name}", {
                                         "name": site.name, "description": "",
                                         "encoding_type": "application/geo+json",
                                         "location": {"type": "Point",
                                                      "coordinates": [site.lon, site.lat]}})
            connection.execute(insert(ThingLocation.__table__).values(
                thing_id=thing_id, location_id=location_id))
            historical_id = connection.execute(insert(HistoricalLocation.__table__).values(
                thing_id=thing_id, time=datetime.now(UTC))
                .returning(HistoricalLocation.__table__.c.id)).scalar_one()
            connection.execute(insert(HistoricalLocationLocation.__table__).values(
                historical_location_id=historical_id, location_id=location_id))
        ids[site.name], _ = _ensure(connection, datastreams, f"auckland:{site.name}:hourly", {
            "name": f"Hourly pedestrians at {site.name}",
            "description": "Pedestrians counted per hour (both directions)",
            "observation_type": COUNT, "unit_of_measurement": PEDESTRIANS_PER_HOUR,
            "thing_id": thing_id, "sensor_id": sensor_id, "observed_property_id": property_id,
            "role": "footfall", "properties": {"resolution": "PT1H"}})
        feature_for_thing(connection, thing_id)
    return ids


def import_auckland(engine: Engine, directory: Any = None, start: Any = None, end: Any = None,
                    ) -> dict[str, Any]:
    """Load the Auckland hourly counts of local days ``[start, end]`` as Things, Datastreams
    and Observations, in one transaction (a failure commits nothing). Idempotent: the
    observations' unique key makes a second import add nothing. Bad rows are reported with
    their line numbers and are the only thing left out."""
    from urbansec.sensors import auckland
    from urbansec.services.sensors import feature_for_thing

    found = auckland.read_counts(directory or auckland.DATA_DIR, start, end)
    inserted = 0
    with write_transaction(engine) as connection:
        ids = ensure_auckland_datastreams(connection, found.counters)
        thing_of = dict(connection.execute(select(datastreams.c.id, datastreams.c.thing_id)
                                           .where(datastreams.c.id.in_(list(ids.values())))
                                           ).all())
        features = {ds: feature_for_thing(connection, thing) for ds, thing in thing_of.items()}
        rows = []
        for count in found.counts:
            datastream_id = ids[count.counter]
            rows.append({
                "datastream_id": datastream_id, "phenomenon_time": count.start,
                "phenomenon_time_end": count.end, "result_time": None, "result": count.count,
                "result_number": float(count.count), "result_key": result_key(count.count),
                "result_quality": None, "valid_time_start": None, "valid_time_end": None,
                "parameters": None, "feature_of_interest_id": features[datastream_id]})
        statement = _insert_ignoring_duplicates(connection).returning(observations.c.id)
        for offset in range(0, len(rows), INSERT_CHUNK):
            inserted += len(connection.execute(statement, rows[offset:offset + INSERT_CHUNK])
                            .all())
    times = [c.start for c in found.counts]
    return {
        "counters": len(found.counters),
        "counters_without_location": [c.name for c in found.counters if c.lat is None],
        "rows_read": found.rows_read, "observations_read": len(found.counts),
        "observations_inserted": inserted,
        "observations_already_stored": len(found.counts) - inserted,
        "rejected": [{"line": r.line, "reason": r.reason} for r in found.rejected],
        "first_hour": min(times) if times else None, "last_hour": max(times) if times else None,
        "datastreams": ids,
    }
