"""The ``urbansec`` command line: a thin face over the services.

Every command accepts ``--json`` for machine-readable output. Exit codes: 0 success; 1 rows
rejected in ``--strict`` mode, or a file not of the declared format; 2 usage errors.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from sqlalchemy import Engine

from urbansec.config import Settings, get_settings
from urbansec.errors import DatabaseError, UrbansecError
from urbansec.services.imports import ImportProgress, ImportReport

app = typer.Typer(
    name="urbansec",
    help="Identify, assess, forecast and tackle urban security threats together, on evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
import_app = typer.Typer(help="Import evidence: incidents, areas, area counts.",
                         no_args_is_help=True)
imports_app = typer.Typer(help="Past imports and their rejected rows.", no_args_is_help=True)
incidents_app = typer.Typer(help="Query and export stored incidents.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(imports_app, name="imports")
app.add_typer(incidents_app, name="incidents")

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", envvar="URBANSEC_DATABASE_URL", show_envvar=True,
                 help="Database URL (default: a SQLite file in your user data directory)."),
]


class _State:
    database: str | None = None


state = _State()


@app.callback()
def _root(database: DatabaseOption = None) -> None:
    state.database = database


def _engine() -> Engine:
    from urbansec.store.engine import engine_for

    return engine_for(state.database or get_settings().database_url)


def _ready_engine() -> Engine:
    """The engine, with the schema brought up to date (a fresh machine needs no extra step)."""
    from urbansec.store.migrate import is_up_to_date, upgrade

    engine = _engine()
    try:
        if not is_up_to_date(engine):
            upgrade(engine)
    except DatabaseError:
        raise
    except Exception as exc:  # driver errors: unreachable server, bad credentials, ...
        raise DatabaseError(f"cannot use database {engine.url.render_as_string()}: {exc}") \
            from exc
    return engine


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, default=_default, ensure_ascii=False, indent=2) + "\n")


def _utc(instant: str) -> str:
    """``2017-01-01T06:01:00Z`` -> ``2017-01-01 06:01 UTC`` (never a bare, zone-less date)."""
    return instant[:16].replace("T", " ") + " UTC"


def _run(action: Callable[[], None], as_json: bool) -> None:
    """Map domain errors to messages and exit codes; a traceback reaching a user is a bug."""
    try:
        action()
    except UrbansecError as exc:
        if as_json:
            _print_json({"error": {"code": exc.code, "message": exc.message,
                                   "details": exc.details}})
        else:
            err.print(f"[bold red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(exc.exit_code) from None


@contextmanager
def _progress(as_json: bool) -> Iterator[ImportProgress | None]:
    """A Rich progress bar on a terminal; plain progress lines on stderr otherwise."""
    if as_json:
        yield None
        return
    if err.is_terminal:
        bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                       TextColumn("{task.fields[rows]:>9,} rows"), TimeRemainingColumn(),
                       console=err, transient=False)
        tasks: dict[str, Any] = {}

        def update(label: str, done: int, total: int, rows: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total, rows=0)
            bar.update(tasks[label], completed=done, rows=rows)

        with bar:
            yield update
        return
    last: dict[str, int] = {}

    def log(label: str, done: int, total: int, rows: int) -> None:
        if rows - last.get(label, 0) >= 50_000 or (done >= total and label not in last):
            last[label] = rows
            pct = 100 * done / total if total else 100
            print(f"{label}: {rows:,} rows read ({pct:.0f}%)", file=sys.stderr, flush=True)

    yield log


# --------------------------------------------------------------------------------------------
# db
# --------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(as_json: JsonFlag = False) -> None:
    """Create or migrate the schema to the latest version."""

    def action() -> None:
        from urbansec.store.migrate import upgrade

        engine = _engine()
        revision = upgrade(engine)
        url = engine.url.render_as_string(hide_password=True)
        if as_json:
            _print_json({"database": url, "revision": revision})
        else:
            out.print(f"database [bold]{url}[/] is at revision [bold]{revision}[/]")

    _run(action, as_json)


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


def _print_report(report: ImportReport) -> None:
    table = Table(title=f"import {report.kind} ({report.preset})", title_justify="left")
    for column in ("file", "batch", "read", "inserted", "updated", "unchanged", "stale",
                   "dup.", "rejected", "located"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for f in report.files:
        located = f"{f.located_share:.1%}" if f.located_share is not None else "-"
        table.add_row(Path(f.file).name, str(f.batch_id or "-"), f"{f.rows_read:,}",
                      f"{f.inserted:,}", f"{f.updated:,}", f"{f.unchanged:,}", f"{f.stale:,}",
                      f"{f.duplicates_in_file:,}", f"{f.rejected:,}", located)
    out.print(table)
    for f in report.files:
        name = Path(f.file).name
        if f.identical_to_batch and not (f.inserted or f.updated):
            out.print(f"{name}: identical to import batch {f.identical_to_batch}; "
                      "nothing new was added")
        if f.unlocated:
            out.print(f"{name}: {f.unlocated:,} incident(s) kept without a location "
                      f"(counted in totals, not on maps)"
                      + (f", {f.implausible_location:,} of them with coordinates outside the "
                         "source's area" if f.implausible_location else ""))
        if f.unmapped_categories:
            listed = ", ".join(f"{k} ({v})" for k, v in list(f.unmapped_categories.items())[:8])
            out.print(f"[yellow]{name}: source categories without a canonical mapping "
                      f"(kept as the source's): {listed}[/]")
        if f.rejected:
            out.print(f"[yellow]{name}: {f.rejected:,} row(s) rejected; all stored with their "
                      f"line and reason (urbansec imports show {f.batch_id}):[/]")
            for example in f.rejected_examples[:5]:
                out.print(f"  line {example['line']}: {example['reason']}", highlight=False)


@import_app.command("incidents")
def import_incidents_command(
    paths: Annotated[list[Path], typer.Argument(help="CSV, CSV.GZ or GeoJSON files.")],
    preset: Annotated[str, typer.Option("--preset", "-p",
                                        help="chicago, uk-police or generic.")] = "chicago",
    mapping: Annotated[Path | None, typer.Option(
        help="Column mapping (TOML/YAML) for the generic preset.")] = None,
    id_column: Annotated[str | None, typer.Option("--id-col")] = None,
    time_column: Annotated[str | None, typer.Option("--time-col")] = None,
    time_format: Annotated[str, typer.Option(
        "--time-format", help="strptime pattern, iso, epoch or epoch_ms")] = "iso",
    timezone: Annotated[str, typer.Option("--tz", help="IANA zone of local times.")] = "UTC",
    category_column: Annotated[str | None, typer.Option("--category-col")] = None,
    lat_column: Annotated[str | None, typer.Option("--lat-col")] = None,
    lon_column: Annotated[str | None, typer.Option("--lon-col")] = None,
    x_column: Annotated[str | None, typer.Option("--x-col")] = None,
    y_column: Annotated[str | None, typer.Option("--y-col")] = None,
    crs: Annotated[str | None, typer.Option(help="CRS of --x-col/--y-col, e.g. EPSG:3435.")
                   ] = None,
    source_key: Annotated[str, typer.Option("--source")] = "generic",
    strict: Annotated[bool, typer.Option(
        help="Reject the whole import if any row is bad (exit 1, nothing written).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import police-recorded incidents; one transaction for all files."""

    def action() -> None:
        from urbansec.errors import UsageError
        from urbansec.ingest.generic import GenericMapping
        from urbansec.services.imports import import_incidents

        generic = None
        if preset == "generic":
            if mapping is not None:
                generic = GenericMapping.from_file(mapping)
            elif time_column:
                generic = GenericMapping(
                    time=time_column, time_format=time_format, timezone=timezone,
                    id=id_column, category=category_column, lat=lat_column, lon=lon_column,
                    x=x_column, y=y_column, crs=crs, source_key=source_key)
            else:
                raise UsageError("the generic preset needs --mapping FILE or at least "
                                 "--time-col (with --lat-col/--lon-col or --x-col/--y-col/--crs)")
        engine = _ready_engine()
        with _progress(as_json) as progress:
            report = import_incidents(engine, paths, preset, mapping=generic, strict=strict,
                                      progress=progress)
        _print_json(report.as_dict()) if as_json else _print_report(report)

    _run(action, as_json)


@import_app.command("areas")
def import_areas_command(
    path: Annotated[Path, typer.Argument(help="KML, KMZ, zipped shapefile or GeoJSON.")],
    kind: Annotated[str, typer.Option(help="What the areas are: district, beat, ward...")],
    code_field: Annotated[str | None, typer.Option(help="Attribute holding the code.")] = None,
    name_field: Annotated[str | None, typer.Option(help="Attribute holding the name.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import area polygons (police districts, beats, wards, ...)."""

    def action() -> None:
        from urbansec.services.imports import import_areas

        report = import_areas(_ready_engine(), path, kind, code_field=code_field,
                              name_field=name_field)
        _print_json(report.as_dict()) if as_json else _print_report(report)

    _run(action, as_json)


@import_app.command("area-counts")
def import_area_counts_command(
    path: Annotated[Path, typer.Argument(help="Counts published per area and period.")],
    preset: Annotated[str, typer.Option("--preset", "-p", help="berlin-atlas")] = "berlin-atlas",
    strict: Annotated[bool, typer.Option(help="Reject the whole file if any row is bad.")
                      ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import counts published per area and period (e.g. the Berlin crime atlas)."""

    def action() -> None:
        from urbansec.services.imports import import_area_counts

        report = import_area_counts(_ready_engine(), path, preset, strict=strict)
        _print_json(report.as_dict()) if as_json else _print_report(report)

    _run(action, as_json)


# --------------------------------------------------------------------------------------------
# imports
# --------------------------------------------------------------------------------------------


@imports_app.command("list")
def imports_list(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Past imports, newest first."""

    def action() -> None:
        from urbansec.services.imports import list_imports

        rows = list_imports(_ready_engine(), limit)
        if as_json:
            _print_json({"imports": rows})
            return
        if not rows:
            out.print("no imports yet")
            return
        table = Table(title="imports", title_justify="left")
        for column in ("batch", "kind", "preset", "file", "status", "read", "inserted",
                       "updated", "unchanged", "rejected", "finished"):
            table.add_column(column, justify="left" if column in (
                "kind", "preset", "file", "status", "finished") else "right")
        for r in rows:
            status = r["status"] if r["status"] == "succeeded" else f"[red]{r['status']}[/]"
            finished = r["finished_at"].strftime("%Y-%m-%d %H:%M") if r["finished_at"] else "-"
            table.add_row(str(r["id"]), r["kind"], r["preset"], Path(r["file_name"]).name,
                          status, f"{r['rows_read']:,}", f"{r['rows_inserted']:,}",
                          f"{r['rows_updated']:,}", f"{r['rows_unchanged']:,}",
                          f"{r['rows_rejected']:,}", finished)
        out.print(table)

    _run(action, as_json)


@imports_app.command("show")
def imports_show(
    batch: Annotated[int, typer.Argument(help="Import batch number (see imports list).")],
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The rejected rows of one import, with line numbers, reasons and raw text."""

    def action() -> None:
        from urbansec.services.imports import rejected_rows

        rows = rejected_rows(_ready_engine(), batch, limit)
        if as_json:
            _print_json({"batch": batch, "rejected": rows})
            return
        if not rows:
            out.print(f"import batch {batch} rejected no rows")
            return
        table = Table(title=f"rejected rows of import batch {batch}", title_justify="left")
        table.add_column("line", justify="right")
        table.add_column("reason")
        table.add_column("raw", overflow="fold")
        for r in rows:
            table.add_row(str(r["line_number"]), r["reason"], r["raw_line"][:200])
        out.print(table)

    _run(action, as_json)


# --------------------------------------------------------------------------------------------
# incidents
# --------------------------------------------------------------------------------------------

CategoryOption = Annotated[str | None, typer.Option(
    "--category", help="Canonical code or name, e.g. burglary or 0501 (comma-separated).")]
FromOption = Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD or ISO time (UTC).")]
ToOption = Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD (included) or ISO time.")]
BboxOption = Annotated[str | None, typer.Option(help="min_lon,min_lat,max_lon,max_lat")]
AreaOption = Annotated[str | None, typer.Option(help="KIND:CODE, e.g. district:18")]
SourceOption = Annotated[str | None, typer.Option("--source", help="Source key.")]


def _filter(category: str | None, start: str | None, end: str | None, bbox: str | None,
            area: str | None, source: str | None) -> Any:
    from urbansec.services.incidents import IncidentFilter

    return IncidentFilter.parse(category=category, start=start, end=end, bbox=bbox, area=area,
                                source=source)


@incidents_app.command("count")
def incidents_count(
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Count incidents matching a filter, by category."""

    def action() -> None:
        from urbansec.services.incidents import count_incidents

        flt = _filter(category, start, end, bbox, area, source)
        result = count_incidents(_ready_engine(), flt)
        if as_json:
            _print_json(result)
            return
        if not result["total"]:
            out.print(result["message"])
            return
        share = result["located_share"]
        out.print(f"[bold]{result['total']:,}[/] incidents "
                  f"({result['located']:,} located, {share:.1%})"
                  + (f", {_utc(result['first'])} to {_utc(result['last'])}"
                     if result.get("first") else ""))
        table = Table(title_justify="left")
        table.add_column("code")
        table.add_column("category")
        table.add_column("count", justify="right")
        for row in result["by_category"]:
            table.add_row(row["code"] or "-", row["name"], f"{row['count']:,}")
        out.print(table)

    _run(action, as_json)


@incidents_app.command("export")
def incidents_export(
    out_path: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, geojson or parquet")
                   ] = "geojson",
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    located_only: Annotated[bool, typer.Option(help="Leave out incidents without location.")
                            ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Export incidents matching a filter as CSV, GeoJSON or Parquet."""

    def action() -> None:
        from urbansec.services.incidents import export_incidents

        flt = _filter(category, start, end, bbox, area, source)
        result = export_incidents(_ready_engine(), flt, fmt, out_path,
                                  located_only=located_only)
        if as_json:
            _print_json(result)
        else:
            out.print(f"wrote {result['rows']:,} incident(s) to {result['path']}")

    _run(action, as_json)


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


@app.command("demo")
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the export.")
                       ] = Path("urbansec-demo"),
    serve: Annotated[bool | None, typer.Option(
        "--serve/--no-serve", help="Serve the dashboard afterwards (default: yes, unless "
                                   "--json).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Import the bundled real sample (Chicago 2017, districts 1 and 18), summarise it, make
    the demo accounts and serve the dashboard on http://127.0.0.1:8000/ (URBANSEC_HOST/PORT)."""
    # a script asking for JSON wants the result, not a server that never returns
    serve_after = (not as_json) if serve is None else serve

    def action() -> None:
        from urbansec.services.demo import run_demo

        engine = _engine()
        settings = get_settings()
        if serve_after:
            _check_port_free(settings.host, settings.port)  # before minutes of work
        with _progress(as_json) as progress:
            result = run_demo(engine, out_dir, progress=progress)
        address = _dashboard_address(settings.host, settings.port)
        if as_json:
            _print_json(result)
        else:
            _print_demo(engine, result)
        # the logins before the server starts; on stderr under --json so stdout stays JSON
        console = err if as_json else out
        _print_demo_logins(console, result["demo_accounts"])
        if not serve_after:
            console.print(f"dashboard: run `urbansec serve`, then open {address}")
            return
        console.print(f"\n[bold]dashboard:[/] [link={address}]{address}[/link]  (the map, "
                      "/report and /track need no login)\npress Ctrl+C to stop")
        _serve_demo(engine, settings)

    _run(action, as_json)


def _check_port_free(host: str, port: int) -> None:
    import socket

    from urbansec.errors import UsageError

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot serve the dashboard on {host}:{port} ({exc.strerror}); "
                             "stop what uses the port or choose another with URBANSEC_PORT, "
                             "or run `urbansec demo --no-serve`") from None


def _dashboard_address(host: str, port: int) -> str:
    # a server on every interface is still reached from this machine on the loopback
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def _print_demo_logins(console: Console, accounts: dict[str, Any]) -> None:
    console.print()
    logins = Table(title=f"demo logins ({accounts['organisation']['name']})",
                   title_justify="left")
    logins.add_column("role")
    logins.add_column("e-mail")
    logins.add_column("password")
    for account in accounts["accounts"]:
        logins.add_row(account["role"], account["email"], account["password"])
    console.print(logins)


def _serve_demo(engine: Engine, settings: Settings) -> None:
    import uvicorn

    from urbansec.api.app import create_app

    # the app reads the same settings, with the database the demo just filled
    app_settings = settings.model_copy(
        update={"database_url": engine.url.render_as_string(hide_password=False)})
    uvicorn.run(create_app(app_settings, engine), host=settings.host, port=settings.port,
                log_level="warning")


def _print_demo(engine: Engine, result: dict[str, Any]) -> None:
    url = engine.url.render_as_string(hide_password=True)
    out.print(f"[bold]urbansec demo[/] on {url}")
    for report in result["imports"]:
        for f in report["files"]:
            out.print(f"  imported {Path(f['file']).name} ({report['kind']}): "
                      f"{f['inserted']:,} new, {f['updated']:,} updated, "
                      f"{f['unchanged']:,} unchanged, {f['rejected']:,} rejected")
    summary = result["summary"]
    out.print(f"\n[bold]{summary['total']:,}[/] incidents, "
              f"{summary['located_share']:.1%} located, "
              f"{_utc(summary['first'])} to {_utc(summary['last'])}")
    table = Table(title="top categories (ICCS)", title_justify="left")
    table.add_column("code")
    table.add_column("category")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    for row in summary["by_category"][:10]:
        table.add_row(row["code"] or "-", row["name"], f"{row['count']:,}",
                      f"{row['count'] / summary['total']:.1%}")
    out.print(table)
    beats = Table(title="busiest police beats", title_justify="left")
    beats.add_column("beat")
    beats.add_column("count", justify="right")
    for row in result["by_beat"]:
        beats.add_row(row["code"], f"{row['count']:,}")
    out.print(beats)
    export = result["export"]
    out.print(f"\nhotspot-ready export: {export['path']} "
              f"({export['rows']:,} located incidents, GeoJSON points, WGS84)")
    gi = result["hotspots"]
    classes = gi["classes"]
    out.print(f"Gi* hot spots ({gi['grid']}, {gi['weights']} weights, "
              f"{gi['permutations']} permutations): "
              f"{classes['hot 99%']:,} cells hot at 99%, {classes['hot 95%']:,} at 95%, "
              f"{classes['hot 90%']:,} at 90% of {gi['cells']:,} -> {gi['geojson']}, "
              f"{gi['png']}")
    patterns = result["patterns"]
    night, slot = patterns["night"], patterns["busiest_slot"]
    out.print(f"night-time ({night['window']}) share {night['share']:.1%}; busiest hour "
              f"of the week {slot['weekday']} {slot['hour']:02d}:00 -> {patterns['png']}")


# the analysis commands register themselves on ``app``
from urbansec.cli import admin as _admin  # noqa: E402, F401
from urbansec.cli import analysis as _analysis  # noqa: E402, F401
from urbansec.cli import crowd as _crowd  # noqa: E402, F401
from urbansec.cli import nighttime as _nighttime  # noqa: E402, F401
from urbansec.cli import privacy as _privacy  # noqa: E402, F401
from urbansec.cli import sensors as _sensors  # noqa: E402, F401
from urbansec.cli import serve as _serve  # noqa: E402, F401


def main() -> None:
    app()


if __name__ == "__main__":
    main()
