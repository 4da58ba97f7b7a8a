"""Alert latency benchmark: from an MQTT publish to the alert received by a subscribed browser.

The deployment as shipped, each part in its own process on this machine:

* a real Mosquitto (``scripts/mosquitto.sh``; or ``--broker URL``);
* ``urbansec sensors ingest`` (the MQTT ingester with the alert engine attached);
* ``urbansec serve --mqtt URL`` (uvicorn on a free 127.0.0.1 port; its alert bus subscribes
  to the alert topic);
* this script: an SSE client on ``GET /api/v1/alerts/stream`` (httpx, streaming) and a paho
  publisher.

The site: ``--zones`` (100) standing zones of 100 m², each with a camera count datastream, and
one threshold rule: occupancy >= 50 with a hysteresis of 10 (so it clears below 40). The load:
``--rate`` (1,000) observations/s spread evenly over the zones (10/s per zone), for
``--seconds`` (120). Each zone's count follows a triangle wave 0 -> 100 -> 0 over 40 readings
(4 s), phase-shifted per zone, so alerts are raised and cleared continually (about 25 raised
and 25 cleared per second over 100 zones).

Latency of an alert = the time the SSE client received ``event: alert`` - the time this script
published the observation that raised it. The engine names the triggering observation in the
alert (``details.observation``: datastream and phenomenon time), and the script kept the
publish time of every observation by that key. Expected alerts: the script runs the same rule
(threshold, hysteresis) over the values it published, zone by zone; "dropped" = expected
raises never received on the stream, "duplicated" = an alert received twice or stored twice
for the same crossing. Goals: p99 < 1 s, none dropped, none duplicated.

    .venv/bin/python benchmarks/alerts.py                    # 2 minutes on SQLite
    .venv/bin/python benchmarks/alerts.py --seconds 20       # shorter
    .venv/bin/python benchmarks/alerts.py --database postgres --postgres URL
    .venv/bin/python benchmarks/alerts.py --database both    # URL from URBANSEC_TEST_POSTGRES_URL

Writes ``benchmarks/results/alerts.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _events import write_results  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "alerts.json"
MOSQUITTO = ROOT / "scripts" / "mosquitto.sh"
THRESHOLD = 50.0
HYSTERESIS = 10.0
PERIOD = 40  # readings per triangle wave
GOAL_P99 = 1.0


def log(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wave(step: int, phase: int) -> int:
    """A zone's count at its ``step``-th reading: 0 -> 100 -> 0 over ``PERIOD`` readings."""
    position = (step + phase) % PERIOD
    half = PERIOD // 2
    return 5 * (position if position <= half else PERIOD - position)


def expected_changes(values: list[int]) -> tuple[list[int], int]:
    """Indices of the readings that raise an alert under the benchmark's rule, and how many
    clearings follow."""
    active, raised, cleared = False, [], 0
    for index, value in enumerate(values):
        limit = THRESHOLD - HYSTERESIS if active else THRESHOLD
        if value >= limit and not active:
            raised.append(index)
        elif value < limit and active:
            cleared += 1
        active = value >= limit
    return raised, cleared


@contextmanager
def broker(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    found = subprocess.run(["bash", str(MOSQUITTO), "start"], check=True, capture_output=True,
                           text=True).stdout
    exports = dict(line.removeprefix("export ").split("=", 1) for line in found.splitlines()
                   if line.startswith("export "))
    try:
        yield exports["URBANSEC_TEST_MQTT_URL"]
    finally:
        subprocess.run(["bash", str(MOSQUITTO), "stop", exports["URBANSEC_TEST_MQTT_DIR"]],
                       check=False)


@contextmanager
def database(kind: str, postgres: str | None, tmp: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'alerts-bench.db'}"
        return
    assert postgres, "no PostgreSQL URL"
    from urbansec.store.engine import scratch_schema

    with scratch_schema(postgres, "bench") as url:
        yield url


def make_site(url: str, zones: int) -> tuple[dict[str, int], str]:
    """The zones, their camera datastreams (zone key -> datastream id), the rule, and an API
    key for the stream."""
    from urbansec.sensors import query as q
    from urbansec.sensors.payloads import COUNT
    from urbansec.services import alerts, identity, sensors
    from urbansec.services.access import SYSTEM
    from urbansec.store.engine import make_engine
    from urbansec.store.migrate import upgrade

    engine = make_engine(url)
    upgrade(engine)
    streams = {}
    for index in range(zones):
        key = f"zone-{index:03d}"
        sensors.create_zone(engine, key, key, "standing", area_m2=100.0)
        body = {"name": f"camera {key}", "description": "",
                "Datastreams": [{
                    "name": f"camera {key} count", "description": "",
                    "unitOfMeasurement": {"name": "person", "symbol": "", "definition": ""},
                    "observationType": COUNT,
                    "Sensor": {"name": f"camera {key}", "description": "",
                               "encodingType": "text/html", "metadata": "bench"},
                    "ObservedProperty": {"name": "persons present", "description": "",
                                         "definition": "bench"}}]}
        _, thing = sensors.create(engine, q.parse_resource_path("Things"), body)
        document = sensors.read(engine, q.parse_resource_path(f"Things({thing})/Datastreams"),
                                q.parse_options({"$select": "id"}), sensors.Links(""))
        datastream = int(document["value"][0]["@iot.id"])
        sensors.assign_datastream(engine, datastream, key, "area_count")
        streams[key] = datastream
    alerts.create_rule(engine, SYSTEM, name="zone full", kind="threshold",
                       params={"metric": "occupancy", "threshold": THRESHOLD,
                               "hysteresis": HYSTERESIS})
    organisation = identity.create_organisation(engine, "bench", "Bench", "city")
    _, api_key = identity.create_api_key(engine, organisation, "bench stream", "partner")
    engine.dispose()
    return streams, api_key


class StreamClient:
    """Reads the SSE stream in a thread: (receive time, event, alert) per event."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.api_key = api_key
        self.received: list[tuple[float, str, dict[str, Any]]] = []
        self.opened = threading.Event()
        self.reconnects = 0
        self._stop = threading.Event()
        self._response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> StreamClient:
        self.thread.start()
        assert self.opened.wait(20), "the alert stream did not open"
        return self

    def _run(self) -> None:
        last_id: str | None = None
        with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client:
            while not self._stop.is_set():
                headers = {"x-api-key": self.api_key}
                if last_id is not None:
                    headers["last-event-id"] = last_id
                    self.reconnects += 1
                try:
                    with client.stream("GET", self.url, headers=headers) as response:
                        self._response = response
                        fields: dict[str, str] = {}
                        for line in response.iter_lines():
                            if line.startswith("retry:"):
                                self.opened.set()
                            if line == "":
                                if "data" in fields:
                                    self.received.append((time.time(), fields["event"],
                                                          json.loads(fields["data"])))
                                if "id" in fields:
                                    last_id = fields["id"]
                                fields = {}
                            elif not line.startswith(":"):
                                name, _, value = line.partition(":")
                                fields[name] = value.strip()
                except (httpx.HTTPError, RuntimeError):
                    if self._stop.is_set():
                        return
                    time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        if self._response is not None:
            self._response.close()


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    handle = log_path.open("wb")
    return subprocess.Popen([sys.executable, "-m", "urbansec.cli", *args], env=env,
                            stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    import signal

    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)


def run(kind: str, url: str, broker_url: str, seconds: float, rate: float, zones: int,
        workdir: Path) -> dict[str, Any]:
    from sqlalchemy import func, select

    from urbansec.sensors.mqtt import Publisher
    from urbansec.services.alerts import alerts_table
    from urbansec.store.engine import make_engine
    from urbansec.store.sensors import IngestStatus, Observation

    log(f"{kind}: creating {zones} zones")
    streams, api_key = make_site(url, zones)
    topic = f"urbansec/alerts-bench-{uuid.uuid4().hex[:6]}"
    client_id = f"bench-ingest-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "URBANSEC_DATABASE_URL": url, "URBANSEC_ALERT_TOPIC": topic,
           "URBANSEC_MQTT_URL": broker_url, "URBANSEC_ALERT_TICK_SECONDS": "5"}
    port = free_port()
    ingest = spawn(["sensors", "ingest", "--broker", broker_url, "--client-id", client_id,
                    "--max-age", "off", "--reorder-window", "off", "--alert-clock", "wall",
                    "--every", "5"], env, workdir / f"ingest-{kind}.log")
    server = spawn(["serve", "--port", str(port), "--mqtt", broker_url, "--log-level",
                    "warning"], env, workdir / f"serve-{kind}.log")
    engine = make_engine(url)
    publisher = stream = None
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the API server")
        stream = StreamClient(f"{base}/api/v1/alerts/stream", api_key).start()
        publisher = Publisher(broker_url, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}").start()
        keys = sorted(streams)
        phase = {key: (i * PERIOD) // len(keys) for i, key in enumerate(keys)}

        def stored() -> int:
            with engine.connect() as connection:
                return int(connection.execute(select(func.count()).select_from(
                    Observation.__table__)).scalar_one())

        # warm-up: one zero reading per zone, so the ingester and the engine are ready
        for key in keys:
            publisher.publish(f"v1.1/Datastreams({streams[key]})/Observations",
                              json.dumps({"phenomenonTime": datetime.now(UTC).isoformat(),
                                          "result": 0}))
        wait_for(lambda: stored() >= len(keys), 60, "the ingester")
        time.sleep(1.0)

        load_before = os.getloadavg()
        log(f"{kind}: publishing {rate:,.0f}/s over {zones} zones for {seconds:.0f} s")
        published_at: dict[tuple[int, str], float] = {}
        values: dict[str, list[tuple[int, str]]] = {key: [] for key in keys}
        total = int(seconds * rate)
        start = time.time() + 0.2
        for index in range(total):
            due = start + index / rate
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            key = keys[index % len(keys)]
            step = index // len(keys)
            value = wave(step, phase[key])
            now = datetime.now(UTC)
            stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)
            text = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            published_at[(streams[key], text)] = time.time()
            publisher.publish(f"v1.1/Datastreams({streams[key]})/Observations",
                              json.dumps({"phenomenonTime": text, "result": value}))
            values[key].append((value, text))
        publish_seconds = time.time() - start
        publisher.flush(60)
        log(f"{kind}: published {total:,} in {publish_seconds:.1f} s; waiting for the tail")
        wait_for(lambda: stored() >= total + len(keys), 120, "the last observations")
        time.sleep(3.0)
        stream.stop()
        with engine.connect() as connection:
            accepted = connection.execute(select(IngestStatus.__table__.c.accepted).where(
                IngestStatus.__table__.c.client_id == client_id)).scalar() or 0
            stored_alerts = connection.execute(select(
                alerts_table.c.zone, alerts_table.c.details)).all()

        # what the rule must raise over what was published, zone by zone. The engine sees
        # each batch's latest reading, so an alert may name a later reading of the same
        # crossing than the first one above the threshold: it is matched to the last expected
        # crossing at or before the reading it names, and its latency counts from the
        # publication of that crossing's first reading (the conservative figure).
        crossings: dict[int, list[int]] = {}
        index_of: dict[tuple[int, str], int] = {}
        expected_cleared = 0
        for key in keys:
            series = [v for v, _ in values[key]]
            raised_at, clears = expected_changes(series)
            crossings[streams[key]] = raised_at
            expected_cleared += clears
            for index, (_value, text) in enumerate(values[key]):
                index_of[(streams[key], text)] = index
        expected_total = sum(len(v) for v in crossings.values())
        latencies = []
        matched: Counter[tuple[int, int]] = Counter()
        ids: Counter[int] = Counter()
        unexpected = cleared = 0
        for at, event, alert in stream.received:
            if event == "update" and alert.get("change") == "cleared":
                cleared += 1
            if event != "alert":
                continue
            ids[alert["id"]] += 1
            trigger = alert.get("details", {}).get("observation") or {}
            datastream = trigger.get("datastream_id")
            index = index_of.get((datastream, trigger.get("phenomenon_time")))
            earlier = [i for i in crossings.get(datastream, ()) if index is not None
                       and i <= index]
            if not earlier:
                unexpected += 1
                continue
            crossing = earlier[-1]
            matched[(datastream, crossing)] += 1
            text = values[keys[list(streams.values()).index(datastream)]][crossing][1]
            latencies.append(at - published_at[(datastream, text)])
        stored_ids: Counter[tuple[Any, Any]] = Counter()
        for _zone, details in stored_alerts:
            trigger = (details or {}).get("observation") or {}
            datastream = trigger.get("datastream_id")
            index = index_of.get((datastream, trigger.get("phenomenon_time")))
            earlier = [i for i in crossings.get(datastream, ()) if index is not None
                       and i <= index]
            stored_ids[(datastream, earlier[-1] if earlier else None)] += 1
        dropped = expected_total - len(matched)
        duplicated = (sum(n - 1 for n in ids.values() if n > 1)
                      + sum(n - 1 for n in matched.values() if n > 1)
                      + sum(n - 1 for n in stored_ids.values() if n > 1))
        lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
        return {
            "database": kind, "zones": zones, "rate_per_s": rate, "seconds": seconds,
            "publish_seconds": round(publish_seconds, 2),
            "published": total, "accepted": int(accepted) - len(keys),
            "alerts_expected": expected_total, "alerts_received": sum(ids.values()),
            "alerts_stored": len(stored_alerts), "cleared_expected": expected_cleared,
            "cleared_received": cleared,
            "dropped": dropped, "unexpected": unexpected, "duplicated": duplicated,
            "stream_reconnects": stream.reconnects,
            # other work on this shared machine shows here (2 CPUs: above 2 means queueing)
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
            "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(np.max(lat)),
            "goal_met": bool(np.percentile(lat, 99) < GOAL_P99 * 1000 and dropped == 0
                             and duplicated == 0),
        }
    finally:
        if stream is not None:
            stream.stop()
        if publisher is not None:
            publisher.stop()
        stop_process(server)
        stop_process(ingest)
        engine.dispose()


def render(rows: list[dict[str, Any]]) -> str:
    head = ("database", "published", "accepted", "alerts expected", "received", "stored",
            "cleared exp/recv", "dropped", "dup", "p50 ms", "p95 ms", "p99 ms", "max ms",
            "goal", "load 1 min")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in rows:
        lines.append(" | ".join(str(x) for x in (
            r["database"], f"{r['published']:,}", f"{r['accepted']:,}",
            f"{r['alerts_expected']:,}", f"{r['alerts_received']:,}",
            f"{r['alerts_stored']:,}",
            f"{r['cleared_expected']:,}/{r['cleared_received']:,}", r["dropped"],
            r["duplicated"], f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}",
            f"{r['p99_ms']:.0f}", f"{r['max_ms']:.0f}", "met" if r["goal_met"] else "NOT met",
            f"{r['load_average_before'][0]:.1f} -> {r['load_average_after'][0]:.1f}")))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="observations per second")
    parser.add_argument("--zones", type=int, default=100)
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"),
                        default="sqlite")
    parser.add_argument("--postgres", metavar="URL",
                        default=os.environ.get("URBANSEC_TEST_POSTGRES_URL"))
    parser.add_argument("--broker", metavar="URL", help="use this broker (default: start a "
                                                        "Mosquitto with scripts/mosquitto.sh)")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    if "postgres" in kinds and not args.postgres:
        parser.error("PostgreSQL needs --postgres URL (or URBANSEC_TEST_POSTGRES_URL)")
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="urbansec-alerts-bench-") as tmp, \
            broker(args.broker) as broker_url:
        for kind in kinds:
            with database(kind, args.postgres, Path(tmp)) as url:
                rows.append(run(kind, url, broker_url, args.seconds, args.rate, args.zones,
                                Path(tmp)))
                log(f"{kind}: {rows[-1]}")
            if kinds.index(kind) == 0 and len(kinds) > 1:
                time.sleep(2)
        for path in sorted(Path(tmp).glob("*.log")):
            tail = path.read_text(errors="replace").strip().splitlines()[-3:]
            log(f"{path.name}: " + " / ".join(tail))
    print()
    print(f"Alert latency, MQTT publish -> SSE client: {args.rate:,.0f} obs/s over "
          f"{args.zones} zones for {args.seconds:.0f} s (goal: p99 < 1 s, none dropped, none "
          "duplicated)")
    print(render(rows))
    write_results(RESULTS, "alerts", started, rows,
                  goal={"p99_ms": GOAL_P99 * 1000, "dropped": 0, "duplicated": 0})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
