"""``urbansec crowd ...``: the crowd state of zones, a zone's minute series, hourly
forecasts and planned events (thin over :mod:`urbansec.services.crowd` and
:mod:`urbansec.services.crowd_events`). Zones themselves are ``urbansec sensors zones``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from urbansec.cli import JsonFlag, _print_json, _ready_engine, _run, app, out

crowd_app = typer.Typer(help="Crowd safety: state per zone, series, forecasts, events.",
                        no_args_is_help=True)
events_app = typer.Typer(help="Planned events: window, zones, expected attendance.",
                         no_args_is_help=True)
crowd_app.add_typer(events_app, name="events")
app.add_typer(crowd_app, name="crowd")

_TIME_FORMATS = ["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d %H:%M%z"]
_TIME_HELP = "an instant with its zone, e.g. 2025-03-01T18:00:00Z or 2025-03-01T18:00+13:00"


def _time_option(name: str, help_text: str) -> Any:
    return typer.Option(name, formats=_TIME_FORMATS, help=f"{help_text} ({_TIME_HELP}).")


AtOption = Annotated[datetime | None, _time_option(
    "--at", "State at this instant (default: now, or the newest observation when stale)")]
EventOption = Annotated[int | None, typer.Option("--event", help="Only this event's zones, "
                                                                "bounded by its window.")]


def _value(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


@crowd_app.command("state")
def state_command(at: AtOption = None, event: EventOption = None,
                  as_json: JsonFlag = False) -> None:
    """Occupancy, density, level of service, flow, trend and lights of every zone."""

    def action() -> None:
        from urbansec.services.crowd import state

        result = state(_ready_engine(), at=at, event_id=event)
        if as_json:
            _print_json(result)
            return
        title = f"crowd state at {result['at']}" + (" (stale: newest data)" if result["stale"]
                                                    else "")
        table = Table(title=title, title_justify="left")
        for column in ("zone", "persons", "per m²", "LoS", "flow", "of cap.", "min to E",
                       "lights", "last data (UTC)"):
            table.add_column(column, justify="left" if column in ("zone", "lights") else "right")
        for zone in result["zones"]:
            lights = ", ".join(f"{n} {status}" for status, n in zone["lights"].items() if n)
            last = zone["last_observation_at"]
            table.add_row(
                zone["key"], _value(zone["occupancy"], 0), _value(zone["density"]),
                zone["los"] or "-", _value(zone["flow"], 1),
                "-" if zone["occupancy_share"] is None else f"{zone['occupancy_share']:.0%}",
                _value(zone["minutes_to_threshold"], 0), lights or "-",
                "-" if last is None else last[:16].replace("T", " "))
        out.print(table)
        for zone in result["zones"]:
            for warning in zone["warnings"]:
                out.print(f"[yellow]{zone['key']}:[/] {warning}", highlight=False)

    _run(action, as_json)


@crowd_app.command("series")
def series_command(
    zone: Annotated[str, typer.Argument(help="Zone key.")],
    start: Annotated[datetime | None, _time_option("--from", "First instant")] = None,
    end: Annotated[datetime | None, _time_option("--to", "End (excluded)")] = None,
    event: EventOption = None, as_json: JsonFlag = False,
) -> None:
    """A zone's minute series (5-minute or hourly steps for long windows; at most 7 days)."""

    def action() -> None:
        from urbansec.services.crowd import zone_series

        result = zone_series(_ready_engine(), zone, start, end, event_id=event)
        if as_json:
            _print_json(result)
            return
        table = Table(title=f"zone {zone} {result['from']} .. {result['to']} "
                            f"step {result['step']}", title_justify="left")
        for column in ("time", "persons", "per m²", "LoS", "flow /m/min"):
            table.add_column(column, justify="left" if column == "time" else "right")
        for i, time in enumerate(result["times"]):
            table.add_row(time, _value(result["occupancy"][i], 0),
                          _value(result["density"][i]), result["los"][i] or "-",
                          _value(result["flow"][i], 1))
        out.print(table)
        for warning in result["warnings"]:
            out.print(f"[yellow]warning:[/] {warning}", highlight=False)

    _run(action, as_json)


@crowd_app.command("forecast")
def forecast_command(
    datastream: Annotated[int | None, typer.Option(help="Datastream id.")] = None,
    zone: Annotated[str | None, typer.Option(help="Zone key (its in_counter or footfall "
                                                  "streams).")] = None,
    hours: Annotated[int, typer.Option(min=1, max=6, help="Hours ahead, 1-6.")] = 6,
    model: Annotated[str, typer.Option(help="profile or seasonal_naive.")] = "profile",
    at: Annotated[datetime | None, _time_option("--at", "Forecast from the data up to this "
                                                        "instant")] = None,
    tz: Annotated[str | None, typer.Option(help="IANA time zone of the weekly profile.")
                  ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Hourly counts for the next hours with 80% intervals, beside the seasonal naive."""

    def action() -> None:
        from urbansec.services.crowd import forecast

        result = forecast(_ready_engine(), datastream_id=datastream, zone_key=zone,
                          hours=hours, model=model, at=at, tz=tz)
        if as_json:
            _print_json(result)
            return
        table = Table(title=f"{result['subject']['name']}: {result['model']} from "
                            f"{result['issued_at']} ({result['timezone']} weekly profile)",
                      title_justify="left")
        for column in ("hour (UTC)", "mean", "80% low", "80% high", "seasonal naive"):
            table.add_column(column, justify="left" if column.startswith("hour") else "right")
        for i, time in enumerate(result["times"]):
            table.add_row(time, _value(result["mean"][i], 0), _value(result["lower"][i], 0),
                          _value(result["upper"][i], 0),
                          _value(result["baseline"]["mean"][i], 0))
        out.print(table)

    _run(action, as_json)


def _print_events(events: list[dict[str, Any]]) -> None:
    table = Table("id", "name", "starts", "ends", "expected", "zones")
    for event in events:
        expected = event["expected_attendance"]
        table.add_row(str(event["id"]), event["name"], event["starts_at"], event["ends_at"],
                      "-" if expected is None else f"{expected:,}", ", ".join(event["zones"]))
    out.print(table)


@events_app.command("list")
def events_list(
    active_at: Annotated[datetime | None, _time_option("--active-at", "Only events running "
                                                                      "then")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every event by start time."""

    def action() -> None:
        from urbansec.services.crowd_events import list_events

        events = list_events(_ready_engine(), active_at)
        if as_json:
            _print_json({"events": events})
        else:
            _print_events(events)

    _run(action, as_json)


@events_app.command("add")
def events_add(
    name: Annotated[str, typer.Argument(help="The event's name.")],
    start: Annotated[datetime, _time_option("--start", "Start")],
    end: Annotated[datetime, _time_option("--end", "End")],
    zones: Annotated[list[str] | None, typer.Option("--zone", help="A zone key (repeat).")
                     ] = None,
    expected: Annotated[int | None, typer.Option(help="Expected attendance.")] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Add an event."""

    def action() -> None:
        from urbansec.services.access import SYSTEM
        from urbansec.services.crowd_events import create_event

        event = create_event(_ready_engine(), SYSTEM, name, start, end, zones or [], expected,
                             description)
        if as_json:
            _print_json(event)
        else:
            out.print(f"event {event['id']} {event['name']!r} added")

    _run(action, as_json)


@events_app.command("show")
def events_show(event_id: Annotated[int, typer.Argument(help="Event id.")],
                as_json: JsonFlag = False) -> None:
    """One event."""

    def action() -> None:
        from urbansec.services.crowd_events import get_event

        event = get_event(_ready_engine(), event_id)
        if as_json:
            _print_json(event)
        else:
            _print_events([event])

    _run(action, as_json)


@events_app.command("update")
def events_update(
    event_id: Annotated[int, typer.Argument(help="Event id.")],
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    start: Annotated[datetime | None, _time_option("--start", "New start")] = None,
    end: Annotated[datetime | None, _time_option("--end", "New end")] = None,
    zones: Annotated[list[str] | None, typer.Option("--zone", help="Replace the zones "
                                                                   "(repeat).")] = None,
    expected: Annotated[int | None, typer.Option(help="Expected attendance.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change an event's name, window, zones or expected attendance."""

    def action() -> None:
        from urbansec.services.access import SYSTEM
        from urbansec.services.crowd_events import update_event

        given = {"name": name, "starts_at": start, "ends_at": end, "zone_keys": zones,
                 "expected_attendance": expected}
        event = update_event(_ready_engine(), SYSTEM, event_id,
                             **{k: v for k, v in given.items() if v is not None})
        if as_json:
            _print_json(event)
        else:
            _print_events([event])

    _run(action, as_json)


@events_app.command("delete")
def events_delete(event_id: Annotated[int, typer.Argument(help="Event id.")],
                  as_json: JsonFlag = False) -> None:
    """Delete an event (its zones stay)."""

    def action() -> None:
        from urbansec.services.access import SYSTEM
        from urbansec.services.crowd_events import delete_event

        delete_event(_ready_engine(), SYSTEM, event_id)
        if as_json:
            _print_json({"deleted": event_id})
        else:
            out.print(f"event {event_id} deleted")

    _run(action, as_json)
