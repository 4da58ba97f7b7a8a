"""Observation payloads: SensorThings Observation JSON and plain JSON device messages, parsed
and checked. Pure: bytes and dicts in, :class:`ObservationIn` out, or :class:`Rejected` with a
reason code the ingester counts (``REASONS``).

The checks that need the clock or the store (time bounds, out of order, unknown datastreams)
take their inputs as arguments, so they are tested here without a broker or a database.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

#: why a message (or one value of it) was refused; the ingester counts each separately
REASONS = (
    "malformed_json",  # not JSON, or not a JSON object
    "unknown_topic",  # a topic no SensorThings rule and no mapping covers
    "unknown_datastream",  # Datastreams(<id>) that does not exist
    "missing_field",  # a required member is absent (result, the mapped field)
    "wrong_type",  # a value of the wrong type (text count, 1.5 persons, unknown light state)
    "bad_time",  # a phenomenon time that is not an ISO 8601 instant or interval with a zone
    "future_time",  # phenomenon time more than the allowed skew ahead of the receipt time
    "too_old",  # phenomenon time older than the configured bound
    "out_of_order",  # older than the datastream's latest by more than the allowed window
    "negative_count",  # a count below zero
    "storage_error",  # the database refused the row (e.g. its datastream was just deleted)
)

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
MEASUREMENT = OM + "OM_Measurement"
COUNT = OM + "OM_CountObservation"
CATEGORY = OM + "OM_CategoryObservation"
TRUTH = OM + "OM_TruthObservation"
ANY = OM + "OM_Observation"
OBSERVATION_TYPES = (MEASUREMENT, COUNT, CATEGORY, TRUTH, ANY)

#: roles whose results are numbers of persons or devices: whole and never negative
COUNT_ROLES = frozenset({"in_counter", "out_counter", "area_count", "beacon_devices",
                         "footfall"})
LIGHTING_STATES = ("on", "dimmed", "off", "failed")

STA_TOPIC = re.compile(r"^v1\.1/Datastreams\((\d+)\)/Observations$")
EXCERPT_CHARS = 500


class Rejected(Exception):
    """A message or value refused for ``reason`` (one of ``REASONS``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ObservationIn:
    """One observation ready to store (times aware UTC)."""

    datastream_id: int
    phenomenon_time: datetime
    result: Any
    phenomenon_time_end: datetime | None = None
    result_time: datetime | None = None
    result_quality: Any = None
    valid_time_start: datetime | None = None
    valid_time_end: datetime | None = None
    parameters: dict[str, Any] | None = None
    feature_of_interest_id: int | None = None

    @property
    def key(self) -> tuple[int, datetime, str]:
        """What makes two observations the same one (the store's unique key)."""
        return self.datastream_id, self.phenomenon_time, result_key(self.result)


@dataclass(frozen=True, slots=True)
class DatastreamRule:
    """What the ingester needs to know about a datastream to check a value."""

    id: int
    observation_type: str
    role: str | None = None


def excerpt(payload: bytes | str) -> str:
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    text = text.replace("\x00", "\ufffd")
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "…"


def decode_object(payload: bytes | str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected("malformed_json", f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Rejected("malformed_json", f"expected a JSON object, got {type(value).__name__}")
    return value


def result_key(result: Any) -> str:
    """Canonical JSON of a result (sorted keys, no spaces); its sha256 when over 64 chars."""
    text = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text) <= 64:
        return text
    return hashlib.sha256(text.encode()).hexdigest()


def result_number(result: Any) -> float | None:
    if isinstance(result, bool) or not isinstance(result, int | float):
        return None
    return float(result) if math.isfinite(result) else None


def parse_instant(value: Any, what: str = "time") -> datetime:
    """An ISO 8601 instant with a zone, or Unix seconds (plain device messages send those)."""
    if isinstance(value, bool):
        raise Rejected("bad_time", f"{what} must be an ISO 8601 time, not {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 1e11:
            raise Rejected("bad_time", f"{what} {value!r} is not Unix seconds")
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        raise Rejected("bad_time", f"{what} must be an ISO 8601 time, not "
                                   f"{type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Rejected("bad_time", f"{what} {value[:60]!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise Rejected("bad_time", f"{what} {value[:60]!r} has no zone (add Z or an offset)")
    return parsed.astimezone(UTC)


def parse_time_value(value: Any, what: str = "phenomenonTime"
                     ) -> tuple[datetime, datetime | None]:
    """An instant, or an ISO 8601 interval ``start/end`` (end after start)."""
    if isinstance(value, str) and "/" in value:
        start_text, _, end_text = value.partition("/")
        start, end = parse_instant(start_text, what), parse_instant(end_text, what)
        if end < start:
            raise Rejected("bad_time", f"{what} interval ends before it starts")
        return start, end
    return parse_instant(value, what), None


def check_result(result: Any, rule: DatastreamRule) -> None:
    """The result fits the datastream's observation type and role, or :class:`Rejected`."""
    if rule.role in COUNT_ROLES or rule.observation_type == COUNT:
        if isinstance(result, bool) or not isinstance(result, int | float) \
                or not math.isfinite(result) or result != int(result):
            raise Rejected("wrong_type", f"a count must be a whole number, not {result!r:.60}")
        if result < 0:
            raise Rejected("negative_count", f"count {result} is below zero")
        return
    if rule.role == "lighting_status":
        # text, or the numeric codes some controllers send: 1 on, 0.5 dimmed, 0 off, -1 failed
        numeric = not isinstance(result, bool) and isinstance(result, int | float) \
            and result in (1, 0.5, 0, -1)
        if result not in LIGHTING_STATES and not numeric:
            raise Rejected("wrong_type", f"a lighting status is one of "
                                         f"{', '.join(LIGHTING_STATES)}, not {result!r:.60}")
        return
    if rule.observation_type == MEASUREMENT and (
            isinstance(result, bool) or not isinstance(result, int | float)
            or not math.isfinite(result)):
        raise Rejected("wrong_type", f"a measurement must be a number, not {result!r:.60}")
    if rule.observation_type == TRUTH and not isinstance(result, bool):
        raise Rejected("wrong_type", f"a truth observation is true or false, not "
                                     f"{result!r:.60}")
    if rule.observation_type == CATEGORY and not isinstance(result, str):
        raise Rejected("wrong_type", f"a category observation is text, not {result!r:.60}")


def observation_from_json(obj: Mapping[str, Any], datastream_id: int, received_at: datetime,
                          ) -> ObservationIn:
    """A SensorThings Observation entity (as POSTed or published on MQTT) for a datastream.

    ``phenomenonTime`` defaults to the receipt time, as the standard allows a server to do."""
    if "result" not in obj:
        raise Rejected("missing_field", "an Observation needs a result")
    result = obj["result"]
    if isinstance(result, float) and not math.isfinite(result):
        raise Rejected("wrong_type", "a result cannot be NaN or infinite")
    if obj.get("phenomenonTime") is None:
        start, end = received_at, None
    else:
        start, end = parse_time_value(obj["phenomenonTime"])
    result_time = parse_instant(obj["resultTime"], "resultTime") \
        if obj.get("resultTime") is not None else None
    valid_start = valid_end = None
    if obj.get("validTime") is not None:
        valid_start, valid_end = parse_time_value(obj["validTime"], "validTime")
    parameters = obj.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise Rejected("wrong_type", "parameters must be a JSON object")
    foi_id = None
    foi = obj.get("FeatureOfInterest")
    if isinstance(foi, dict) and "@iot.id" in foi:
        foi_id = foi["@iot.id"]
        if isinstance(foi_id, bool) or not isinstance(foi_id, int):
            raise Rejected("wrong_type", "FeatureOfInterest @iot.id must be a whole number")
    return ObservationIn(
        datastream_id=datastream_id, phenomenon_time=start, phenomenon_time_end=end,
        result=result, result_time=result_time, result_quality=obj.get("resultQuality"),
        valid_time_start=valid_start, valid_time_end=valid_end, parameters=parameters,
        feature_of_interest_id=foi_id)


@dataclass(frozen=True, slots=True)
class FieldMapping:
    """One member of a plain JSON message feeding one datastream."""

    field: str
    datastream_id: int
    time_field: str = "ts"


def observations_from_plain(obj: Mapping[str, Any], mappings: list[FieldMapping],
                            received_at: datetime
                            ) -> list[ObservationIn | Rejected]:
    """``{"ts": ..., "in": 12, "out": 3}`` with mappings ``in -> 5, out -> 6``: one
    observation (or one rejection) per mapped member, so a bad ``out`` never loses ``in``."""
    found: list[ObservationIn | Rejected] = []
    for mapping in mappings:
        try:
            if mapping.field not in obj:
                raise Rejected("missing_field", f"member {mapping.field!r} is missing")
            time_value = obj.get(mapping.time_field)
            start, end = (received_at, None) if time_value is None else \
                parse_time_value(time_value, mapping.time_field)
            found.append(ObservationIn(datastream_id=mapping.datastream_id,
                                       phenomenon_time=start, phenomenon_time_end=end,
                                       result=obj[mapping.field]))
        except Rejected as rejected:
            found.append(rejected)
    return found


@dataclass(frozen=True)
class TimeBounds:
    """How far from the receipt time a phenomenon time may be.

    ``max_future``: clock skew allowed ahead (5 minutes); ``max_age``: how old a reading may
    be (None: no bound, e.g. while replaying history); ``reorder_window``: how far behind the
    datastream's latest reading one may arrive (late packets of a flaky link) before it is
    out of order (None: any order)."""

    max_future: timedelta = timedelta(minutes=5)
    max_age: timedelta | None = timedelta(days=1)
    reorder_window: timedelta | None = timedelta(minutes=15)


def check_time(observation: ObservationIn, received_at: datetime, bounds: TimeBounds,
               latest: datetime | None) -> None:
    """Raise :class:`Rejected` when the phenomenon time is outside ``bounds``; ``latest`` is
    the newest phenomenon time already accepted for the datastream."""
    start = observation.phenomenon_time
    if start > received_at + bounds.max_future:
        raise Rejected("future_time", f"phenomenon time {start.isoformat()} is more than "
                                      f"{bounds.max_future} ahead of the receipt time")
    if bounds.max_age is not None and start < received_at - bounds.max_age:
        raise Rejected("too_old", f"phenomenon time {start.isoformat()} is older than "
                                  f"{bounds.max_age}")
    if bounds.reorder_window is not None and latest is not None \
            and start < latest - bounds.reorder_window:
        raise Rejected("out_of_order", f"phenomenon time {start.isoformat()} is more than "
                                       f"{bounds.reorder_window} before the datastream's "
                                       f"latest {latest.isoformat()}")
