"""``urbansec nighttime``: footfall beside incidents for an area, and incidents per 1,000
passers-by per local hour, night against day (``services.nighttime``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from urbansec.cli import JsonFlag, _print_json, _ready_engine, _run, app, out


def _value(value: Any, fmt: str = "{:,}") -> str:
    return "-" if value is None else fmt.format(value)


def _incidents(row: dict[str, Any]) -> str:
    """The incidents, and how many of them fell in hours with footfall when fewer did (only
    those enter the rate)."""
    text = _value(row["incidents"])
    counted = row.get("incidents_counted")
    if counted is not None and row["footfall"] is not None and counted != row["incidents"]:
        text += f" ({counted:,} counted)"
    return text


def _local(instant: str, timezone: str) -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    value = datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(ZoneInfo(timezone))
    return value.strftime("%Y-%m-%d %H:%M")


def _interval(row: dict[str, Any]) -> str:
    if row.get("ci_low") is None:
        return "-"
    high = "inf" if row.get("ci_high") is None else f"{row['ci_high']:.3f}"
    return f"{row['ci_low']:.3f}-{high}"


@app.command("nighttime")
def nighttime_command(
    area_kind: Annotated[str, typer.Option("--area-kind", help="Imported area kind, e.g. "
                                                               "district.")],
    area: Annotated[str, typer.Option("--area", help="The area's code.")],
    start: Annotated[str, typer.Option("--from", help="First local day YYYY-MM-DD (or a "
                                                      "local ISO time on the hour).")],
    end: Annotated[str, typer.Option("--to", help="End, excluded: YYYY-MM-DD is local "
                                                  "midnight starting that day.")],
    night: Annotated[str | None, typer.Option(
        "--night", help="Night window HH:MM-HH:MM, local whole hours (default: the "
                        "URBANSEC_NIGHT_WINDOW setting, 22:00-06:00).")] = None,
    category: Annotated[str | None, typer.Option(
        "--category", help="Category code(s), comma-separated.")] = None,
    timezone: Annotated[str | None, typer.Option(
        "--timezone", help="IANA time zone (default: the city's, from the stored "
                           "sources).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Footfall and incidents per local hour, incidents per 1,000 passers-by with exact
    95% intervals, night against day, and per 1,000 residents when the area has them."""

    def action() -> None:
        from urbansec.config import get_settings
        from urbansec.services.nighttime import nighttime_view

        result = nighttime_view(_ready_engine(), area_kind=area_kind, area=area, start=start,
                                end=end, night=night or get_settings().night_window,
                                category=category, timezone=timezone)
        if as_json:
            _print_json(result)
            return
        _print(result)

    _run(action, as_json)


def _print(result: dict[str, Any]) -> None:
    where = result["area"]
    period = result["period"]
    out.print(f"[bold]{where['name'] or where['code']}[/] ({where['kind']} {where['code']}), "
              f"{_local(period['from'], result['timezone'])} to "
              f"{_local(period['to'], result['timezone'])} {result['timezone']} "
              f"({period['hours']} hours), night {result['night_window']}")
    counters = ", ".join(f"{c['name']} ({c['hours']} h)" for c in result["counters"])
    out.print(f"footfall counters: {counters or 'none'}; footfall in "
              f"{result['footfall_coverage']:.0%} of the hours")
    if result.get("message"):
        out.print(result["message"])
    table = Table(title="per local hour of day", title_justify="left")
    for name in ("hour", "footfall", "incidents", "per 1,000 passers-by", "95% CI"):
        table.add_column(name, justify="right")
    for row in result["hours"]:
        table.add_row(f"{row['hour']:02d}:00", _value(row["footfall"]), _incidents(row),
                      _value(row["rate_per_1000"], "{:.3f}"), _interval(row))
    for name in ("night", "day"):
        row = result[name]
        table.add_row(f"[bold]{name}[/]", _value(row["footfall"]), _incidents(row),
                      _value(row["rate_per_1000"], "{:.3f}"), _interval(row))
    out.print(table)
    ratio = result["rate_ratio_night_vs_day"]
    if ratio["value"] is not None:
        out.print(f"night vs day, per passer-by: rate ratio {ratio['value']:.2f} "
                  f"(95% CI {_interval(ratio)})")
    residential = result.get("residential")
    if residential:
        total = residential["total"]
        out.print(f"per 1,000 residents ({residential['population']:,.0f}): "
                  f"{_value(total['rate_per_1000'], '{:.2f}')} in the period "
                  f"(95% CI {_interval(total)}); night "
                  f"{_value(residential['night']['rate_per_1000'], '{:.2f}')}, day "
                  f"{_value(residential['day']['rate_per_1000'], '{:.2f}')}")
