"""``urbansec sensors ...``: live sensor feeds. Import and replay the Auckland pedestrian
counts, run the MQTT ingester, see its counters, define zones and map plain MQTT topics."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from urbansec.cli import JsonFlag, _print_json, _ready_engine, _run, app, err, out

sensors_app = typer.Typer(help="Live sensor feeds: SensorThings, MQTT, the Auckland counts.",
                          no_args_is_help=True)
import_app = typer.Typer(help="Load sensor history.", no_args_is_help=True)
replay_app = typer.Typer(help="Publish recorded counts to MQTT as a live feed.",
                         no_args_is_help=True)
zones_app = typer.Typer(help="Crowd zones and the datastreams that measure them.",
                        no_args_is_help=True)
sensors_app.add_typer(import_app, name="import")
sensors_app.add_typer(replay_app, name="replay")
sensors_app.add_typer(zones_app, name="zones")
app.add_typer(sensors_app, name="sensors")

BrokerOption = Annotated[str, typer.Option(
    "--broker", envvar="URBANSEC_MQTT_URL", show_envvar=True,
    help="MQTT broker URL, mqtt://[user:password@]host[:port].")]
FromOption = Annotated[datetime | None, typer.Option(
    "--from", formats=["%Y-%m-%d"], help="First local day (Auckland time), YYYY-MM-DD.")]
ToOption = Annotated[datetime | None, typer.Option(
    "--to", formats=["%Y-%m-%d"], help="Last local day included, YYYY-MM-DD.")]
DataOption = Annotated[Path | None, typer.Option(
    "--data", help="Directory of hourly_counts.csv.gz and locations.csv (default: "
                   "../shared/data/auckland-pedestrians).")]


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _duration(text: str | None, name: str) -> timedelta | None:
    """``30s``, ``15m``, ``2h``, ``7d``; ``off`` for no bound."""
    if text is None or text.lower() in ("off", "none", "0"):
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return timedelta(seconds=float(text[:-1]) * units[text[-1].lower()])
    except (KeyError, ValueError):
        from urbansec.errors import UsageError

        raise UsageError(f"{name}: give a duration such as 30s, 15m, 2h, 7d, or off") from None


@import_app.command("auckland")
def import_auckland_command(start: FromOption = None, end: ToOption = None,
                            data: DataOption = None, as_json: JsonFlag = False) -> None:
    """Load the real Auckland hourly pedestrian counts as Things, Datastreams, Observations
    (one transaction; importing again adds nothing)."""

    def action() -> None:
        from urbansec.services.sensor_ingest import import_auckland

        report = import_auckland(_ready_engine(), data, _day(start), _day(end))
        if as_json:
            _print_json({k: v for k, v in report.items()})
            return
        out.print(f"[bold]{report['observations_inserted']:,}[/] hourly counts stored, "
                  f"{report['observations_already_stored']:,} already there, from "
                  f"{report['counters']} counters ({report['first_hour']} .. "
                  f"{report['last_hour']} UTC)")
        for rejected in report["rejected"][:20]:
            err.print(f"line {rejected['line']}: {rejected['reason']}", highlight=False)
        if len(report["rejected"]) > 20:
            err.print(f"... and {len(report['rejected']) - 20} more rejected rows")

    _run(action, as_json)


@replay_app.command("auckland")
def replay_auckland_command(
    speed: Annotated[float, typer.Option(help="Times real time (600: an hour every 6 s; "
                                              "0: as fast as possible).")] = 600.0,
    start: FromOption = None, end: ToOption = None, data: DataOption = None,
    broker: BrokerOption = "mqtt://127.0.0.1:1883",
    ingest: Annotated[bool, typer.Option(
        "--ingest", help="Also run the ingester in this process (no time bound on age, "
                         "since the counts are history): the whole chain in one command."
    )] = False,
    as_json: JsonFlag = False,
) -> None:
    """Publish the Auckland counts to MQTT, one SensorThings topic per datastream
    (v1.1/Datastreams(<id>)/Observations), at SPEED x real time."""

    def action() -> None:
        from urbansec.sensors import auckland
        from urbansec.sensors.mqtt import Ingester, Publisher
        from urbansec.sensors.payloads import TimeBounds
        from urbansec.services.sensor_ingest import ensure_auckland_datastreams
        from urbansec.store.engine import write_transaction

        engine = _ready_engine()
        found = auckland.read_counts(data or auckland.DATA_DIR, _day(start), _day(end))
        with write_transaction(engine) as connection:
            ids = ensure_auckland_datastreams(connection, found.counters)
        ingester = None
        if ingest:
            from urbansec.services.alert_engine import attach_alerts

            ingester = Ingester(engine, broker, client_id="urbansec-replay-ingest",
                                bounds=TimeBounds(max_age=None, reorder_window=None))
            # the replayed hours are history: the rules' clock is the data's
            alert_runtime = attach_alerts(ingester, engine, broker, clock="data")
            ingester.start()
            if not ingester.wait_connected(10):
                ingester.stop()
                alert_runtime.stop()
                from urbansec.errors import UsageError

                raise UsageError(f"cannot reach the MQTT broker at {broker}")
        publisher = Publisher(broker, client_id="urbansec-replay").start()
        published = 0

        def publish(count: auckland.HourlyCount) -> None:
            nonlocal published
            publisher.publish(f"v1.1/Datastreams({ids[count.counter]})/Observations",
                              json.dumps(replay_payload(count)))
            published += 1

        try:
            for hour in auckland.replay(found.counts, publish, speed):
                if not as_json:
                    err.print(f"{hour:%Y-%m-%d %H:%M} UTC  {published:,} published"
                              + (f", {ingester.counters['accepted']:,} stored"
                                 if ingester else ""), highlight=False)
        except KeyboardInterrupt:
            pass
        finally:
            publisher.flush(60)
            publisher.stop()
            if ingester is not None:
                ingester.wait_idle(30)
                ingester.stop()
                alert_runtime.stop()
        result: dict[str, Any] = {"published": published, "broker": broker,
                                  "rejected_rows": len(found.rejected)}
        if ingester is not None:
            result["ingest"] = ingester.counters
        if as_json:
            _print_json(result)
        else:
            out.print(f"published [bold]{published:,}[/] observations to {broker}"
                      + (f"; stored {ingester.counters['accepted']:,}, duplicates "
                         f"{ingester.counters['duplicates']:,}" if ingester else ""))

    _run(action, as_json)


def replay_payload(count: Any) -> dict[str, Any]:
    from urbansec.services.sensors import iso

    return {"phenomenonTime": f"{iso(count.start)}/{iso(count.end)}", "result": count.count,
            "parameters": {"source": "auckland-pedestrians replay"}}


@sensors_app.command("ingest")
def ingest_command(
    broker: BrokerOption = "mqtt://127.0.0.1:1883",
    client_id: Annotated[str, typer.Option(
        "--client-id", help="Fixed MQTT client id: the persistent session's name.")
    ] = "urbansec-ingest",
    topic: Annotated[list[str] | None, typer.Option(
        "--topic", help="Extra topic filter to subscribe to (repeatable); mapped topics and "
                        "v1.1/+/Observations are subscribed anyway.")] = None,
    max_age: Annotated[str, typer.Option(
        help="Refuse observations older than this (30s, 15m, 2h, 7d, or off).")] = "1d",
    reorder_window: Annotated[str, typer.Option(
        help="Refuse observations this much older than the datastream's latest (or off).")
    ] = "15m",
    every: Annotated[float, typer.Option(help="Seconds between counter reports.")] = 10.0,
    alerts: Annotated[bool, typer.Option(
        "--alerts/--no-alerts", help="Run the alert rules on every batch and publish the "
                                     "alerts on the alert topic (and to webhooks).")] = True,
    alert_clock: Annotated[str, typer.Option(
        help="The rules' clock: wall, data (newest observation time, for replays) or auto "
             "(data when the feed lags the wall clock by over an hour).")] = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Run the MQTT ingester in the foreground until Ctrl+C."""

    def action() -> None:
        from urbansec.config import get_settings
        from urbansec.errors import UsageError
        from urbansec.sensors.mqtt import Ingester, run_until_interrupted
        from urbansec.sensors.payloads import TimeBounds
        from urbansec.services.alert_engine import attach_alerts

        if alert_clock not in ("auto", "wall", "data"):
            raise UsageError("--alert-clock: wall, data or auto")
        bounds = TimeBounds(max_age=_duration(max_age, "--max-age"),
                            reorder_window=_duration(reorder_window, "--reorder-window"))
        database = _ready_engine()
        ingester = Ingester(database, broker, client_id=client_id, bounds=bounds,
                            topics=topic or ())
        settings = get_settings()
        runtime = attach_alerts(ingester, database, broker, topic=settings.alert_topic,
                                clock=alert_clock, tick_seconds=settings.alert_tick_seconds,
                                webhook_attempts=settings.webhook_max_attempts
                                ) if alerts else None
        err.print(f"ingesting from {broker} as {client_id}"
                  + (f", alerts on {settings.alert_topic}" if alerts else "") + "; Ctrl+C stops")

        def report(counters: dict[str, Any]) -> None:
            if runtime is not None:
                counters = {**counters, "alerts": dict(runtime.engine.counters)}
            if as_json:
                _print_json(counters)
            else:
                err.print(f"accepted {counters['accepted']:,}  duplicates "
                          f"{counters['duplicates']:,}  rejected "
                          f"{counters['rejected_total']:,} {counters['rejected'] or ''}  "
                          f"{'connected' if counters['connected'] else 'DISCONNECTED'}"
                          + (f"  alerts raised {runtime.engine.counters['raised']:,} "
                             f"cleared {runtime.engine.counters['cleared']:,}"
                             if runtime is not None else ""),
                          highlight=False)

        try:
            run_until_interrupted(ingester, report, every)
        finally:
            if runtime is not None:
                runtime.stop()

    _run(action, as_json)


@sensors_app.command("status")
def status_command(
    rejections: Annotated[int, typer.Option(help="How many recent rejections to list.")] = 10,
    as_json: JsonFlag = False,
) -> None:
    """The ingesters' counters (accepted, duplicates, rejected by reason, last message) and
    the latest rejected messages."""

    def action() -> None:
        from urbansec.services.sensor_ingest import ingest_status, recent_rejections
        from urbansec.services.sensors import count_entities

        engine = _ready_engine()
        status = ingest_status(engine)
        recent = recent_rejections(engine, rejections)
        entities = count_entities(engine)
        if as_json:
            _print_json({"ingesters": status, "recent_rejections": recent,
                         "entities": entities})
            return
        table = Table("ingester", "accepted", "duplicates", "rejected", "last message (UTC)",
                      "updated (UTC)")
        for row in status:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(row["rejected"].items()))
            table.add_row(row["client_id"], f"{row['accepted']:,}", f"{row['duplicates']:,}",
                          f"{row['rejected_total']:,}" + (f" ({reasons})" if reasons else ""),
                          str(row["last_message_at"] or "-")[:19],
                          str(row["updated_at"])[:19])
        out.print(table if status else "no ingester has run yet")
        out.print(", ".join(f"{k} {v:,}" for k, v in entities.items()))
        for item in recent:
            out.print(f"{str(item['received_at'])[:19]}  {item['topic']}  "
                      f"[bold]{item['reason']}[/]: {item['detail']}", highlight=False)

    _run(action, as_json)


@sensors_app.command("map")
def map_command(
    topic: Annotated[str, typer.Argument(help="Exact MQTT topic, e.g. counters/gate-a/count.")],
    member: Annotated[str, typer.Argument(help="JSON member holding the value, e.g. in.")],
    datastream: Annotated[int, typer.Argument(help="Datastream id it feeds.")],
    time_field: Annotated[str, typer.Option(help="JSON member holding the time.")] = "ts",
    as_json: JsonFlag = False,
) -> None:
    """Feed a datastream from a member of plain JSON messages on a topic."""

    def action() -> None:
        from urbansec.services.sensors import map_topic

        mapping_id = map_topic(_ready_engine(), topic, member, datastream, time_field)
        if as_json:
            _print_json({"id": mapping_id, "topic": topic, "field": member,
                         "datastream_id": datastream, "time_field": time_field})
        else:
            out.print(f"{topic} .{member} -> Datastreams({datastream})")

    _run(action, as_json)


@zones_app.command("add")
def zones_add(
    key: Annotated[str, typer.Argument(help="Stable zone key, e.g. north-stand.")],
    zone_type: Annotated[str, typer.Option(
        "--type", help="walkway, queue, standing, stairs or exit.")] = "standing",
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    area: Annotated[float | None, typer.Option(help="Usable area in m².")] = None,
    geojson: Annotated[Path | None, typer.Option(
        help="A GeoJSON file holding the zone's polygon (WGS84).")] = None,
    usable_fraction: Annotated[float, typer.Option(
        help="Share of the polygon people can stand on.")] = 1.0,
    width: Annotated[float | None, typer.Option(help="Effective width (m) for flows.")] = None,
    capacity: Annotated[int | None, typer.Option(help="Capacity set by the safety plan.")
                        ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a crowd zone."""

    def action() -> None:
        from urbansec.errors import UsageError
        from urbansec.services.sensors import create_zone

        geometry = None
        if geojson is not None:
            try:
                document = json.loads(geojson.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot read {geojson}: {exc}") from None
            if document.get("type") == "FeatureCollection":
                document = document["features"][0]
            geometry = document.get("geometry", document)
        zone_id = create_zone(_ready_engine(), key, name or key, zone_type, area_m2=area,
                              geometry=geometry, usable_fraction=usable_fraction,
                              width_m=width, capacity=capacity)
        if as_json:
            _print_json({"id": zone_id, "key": key})
        else:
            out.print(f"zone {key} added")

    _run(action, as_json)


@zones_app.command("list")
def zones_list(as_json: JsonFlag = False) -> None:
    """The zones with their area, capacity and datastreams."""

    def action() -> None:
        from urbansec.services.sensors import list_zones

        zones = list_zones(_ready_engine())
        if as_json:
            _print_json(zones)
            return
        table = Table("key", "type", "usable m²", "capacity", "datastreams")
        for zone in zones:
            table.add_row(zone["key"], zone["zone_type"], f"{zone['area_m2']:,.0f}",
                          str(zone["capacity"] or "-"),
                          ", ".join(f"{d['id']} {d['role']}" for d in zone["datastreams"]))
        out.print(table)

    _run(action, as_json)


@zones_app.command("auckland")
def zones_auckland(
    width_m: Annotated[float, typer.Option(
        "--width-m", help="Effective footway width (m) of each counter's zone.")] = 6.0,
    rule_flow: Annotated[float, typer.Option(
        "--rule-flow", help="Warn when a zone's flow reaches this many persons/m/min (0: no "
                            "rule). The default 4 is crossed at weekday peaks by the busiest "
                            "Queen Street counters and by none at night.")] = 4.0,
    data: DataOption = None,
    as_json: JsonFlag = False,
) -> None:
    """One walkway zone per Auckland counter (WIDTH x 30 m around it) measured by its footfall
    datastream, and a flow threshold rule: the replay demo's zones. Safe to run again."""

    def action() -> None:
        from urbansec.services.access import SYSTEM
        from urbansec.services.crowd_demo import auckland_zones

        result = auckland_zones(_ready_engine(), SYSTEM, width_m=width_m,
                                rule_flow=rule_flow or None, directory=data)
        if as_json:
            _print_json(result)
            return
        out.print(f"{len(result['zones_created'])} zones created, "
                  f"{len(result['zones_kept'])} kept ({width_m:g} m wide)")
        rule = result["rule"]
        if rule is not None:
            params = rule["params"]
            out.print(f"rule {rule['id']} {rule['name']!r}: {params['metric']} >= "
                      f"{params['threshold']:g} persons/m/min"
                      + ("" if result["rule_created"] else " (exists already, kept)"))

    _run(action, as_json)


@zones_app.command("assign")
def zones_assign(
    datastream: Annotated[int, typer.Argument(help="Datastream id.")],
    zone: Annotated[str, typer.Argument(help="Zone key.")],
    role: Annotated[str, typer.Option(
        help="in_counter, out_counter, area_count, beacon_devices, lighting_status, "
             "footfall.")] = "area_count",
    as_json: JsonFlag = False,
) -> None:
    """Tie a datastream to a zone in a role."""

    def action() -> None:
        from urbansec.services.sensors import assign_datastream

        assign_datastream(_ready_engine(), datastream, zone, role)
        if as_json:
            _print_json({"datastream_id": datastream, "zone": zone, "role": role})
        else:
            out.print(f"Datastreams({datastream}) measures zone {zone} as {role}")

    _run(action, as_json)
