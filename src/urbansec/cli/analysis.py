"""Identify-and-assess commands: hotspots, emerging, patterns, near-repeat, change, areas.

Each command parses its flags, calls one service and renders the result (Rich tables on a
terminal, ``--json`` for machines); files (GeoJSON, CSV, PNG) are written by the services'
shared writers so every face writes the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from urbansec.cli import (
    AreaOption,
    BboxOption,
    CategoryOption,
    FromOption,
    JsonFlag,
    SourceOption,
    ToOption,
    _filter,
    _print_json,
    _ready_engine,
    _run,
    app,
    err,
    out,
)

CellOption = Annotated[float, typer.Option("--cell", help="Square cell size in metres.")]
HexOption = Annotated[int | None, typer.Option("--hex", help="Use H3 hexagons at this "
                                                              "resolution instead of squares.")]
WeightsOption = Annotated[str, typer.Option(
    "--weights", help="queen, rook or distance:METRES (binary; Gi* includes the cell itself).")]
WithinOption = Annotated[str | None, typer.Option(
    "--within", help="Study area: the union of the imported areas of this kind, e.g. district "
                     "(default: the box around the incidents, or the --area polygon).")]
BoundariesOption = Annotated[str | None, typer.Option(
    "--boundaries", help="Area kind drawn on PNG maps (default: --within).")]
OutOption = Annotated[Path | None, typer.Option("--out", "-o", help="GeoJSON file to write.")]
PngOption = Annotated[Path | None, typer.Option("--png", help="PNG map to draw.")]
CsvOption = Annotated[Path | None, typer.Option("--csv", help="CSV file to write.")]
PermutationsOption = Annotated[int, typer.Option(
    "--permutations", help="Conditional permutations for pseudo p-values (0: analytical).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed (results reproducible).")]


@contextmanager
def _working(message: str, as_json: bool) -> Iterator[None]:
    """A spinner while a statistic runs (terminal only; pipes and --json stay clean)."""
    if as_json or not err.is_terminal:
        yield
        return
    with err.status(message):
        yield


def _write_outputs(result: Any, out_path: Path | None, png: Path | None, csv_path: Path | None
                   ) -> dict[str, str]:
    from urbansec.services import cells

    written: dict[str, str] = {}
    if result.keys.size == 0:
        return written
    if out_path is not None:
        written["geojson"] = str(cells.write_geojson(result, out_path))
    if csv_path is not None:
        written["csv"] = str(cells.write_csv(result, csv_path))
    if png is not None:
        written["png"] = str(cells.write_png(result, png))
    return written


def _cell_table(result: Any, sort_field: str, title: str, limit: int = 10,
                columns: tuple[str, ...] = ()) -> Table:
    import numpy as np

    table = Table(title=title, title_justify="left")
    table.add_column("cell")
    for name in columns:
        table.add_column(name, justify="right")
    values = np.asarray(result.properties[sort_field], dtype=float)
    order = np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable")[:limit]
    ids = result.grid.cell_ids(result.keys[order])
    for cell_id, i in zip(ids, order.tolist(), strict=True):
        row = []
        for name in columns:
            v = result.properties[name][i]
            if isinstance(v, float | np.floating):
                row.append(f"{int(v):,}" if float(v).is_integer() else f"{v:,.3g}")
            else:
                row.append(str(v))
        table.add_row(cell_id, *row)
    return table


@app.command("hotspots")
def hotspots_command(
    method: Annotated[str, typer.Option("--method", help="count, kde, gi or lisa.")] = "gi",
    cell: CellOption = 250.0, hex_resolution: HexOption = None,
    weights: WeightsOption = "queen", permutations: PermutationsOption = 999,
    seed: SeedOption = 0,
    fdr: Annotated[bool, typer.Option("--fdr", help="False-discovery-rate correction.")
                   ] = False,
    bandwidth: Annotated[float | None, typer.Option(
        "--bandwidth", help="KDE bandwidth in metres (default: a rule of thumb).")] = None,
    kernel: Annotated[str, typer.Option("--kernel", help="quartic or gaussian.")] = "quartic",
    within: WithinOption = None, boundaries: BoundariesOption = None,
    out_path: OutOption = None, png: PngOption = None, csv_path: CsvOption = None,
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Where incidents concentrate: counts, kernel density, Gi* or Local Moran's I per cell."""

    def action() -> None:
        from urbansec.services.hotspots import GridOptions, hotspots

        flt = _filter(category, start, end, bbox, area, source)
        options = GridOptions(cell=cell, hex_resolution=hex_resolution, within=within,
                              boundaries=boundaries)
        with _working(f"computing {method} hotspots", as_json):
            result = hotspots(_ready_engine(), flt, method=method, options=options,
                              weights=weights, permutations=permutations, seed=seed, fdr=fdr,
                              bandwidth=bandwidth, kernel=kernel)
            written = _write_outputs(result, out_path, png, csv_path)
        summary = {**result.summary, "written": written}
        if as_json:
            _print_json(summary)
            return
        if result.keys.size == 0:
            out.print(summary["message"])
            return
        out.print(f"[bold]{result.title}[/]")
        out.print(f"{summary['events']:,} located incidents in {summary['cells']:,} cells "
                  f"({summary['empty_cells']:,} empty)")
        for note in summary.get("notes", []):
            out.print(f"  note: {note}")
        if method == "gi":
            out.print(f"weights: {summary['weights']}, p-values: {summary['p_values']}"
                      + (f" ({permutations} permutations, seed {seed})" if permutations else "")
                      + (", FDR-corrected" if fdr else ""))
            classes = Table(title="cells by class", title_justify="left")
            classes.add_column("class")
            classes.add_column("cells", justify="right")
            for label, n in summary["classes"].items():
                classes.add_row(label, f"{n:,}")
            out.print(classes)
            out.print(_cell_table(result, "z", "strongest hot spots",
                                  columns=("count", "z", "p", "label")))
        elif method == "lisa":
            clusters = Table(title="cells by cluster", title_justify="left")
            clusters.add_column("cluster")
            clusters.add_column("cells", justify="right")
            for label, n in summary["clusters"].items():
                clusters.add_row(label or "not significant", f"{n:,}")
            out.print(clusters)
        elif method == "kde":
            out.print(f"{summary['kernel']} kernel, bandwidth {summary['bandwidth_m']} m "
                      f"({summary['bandwidth_rule']})")
            out.print(_cell_table(result, "density_km2", "densest cells (incidents per km²)",
                                  columns=("count", "density_km2")))
        else:
            out.print(_cell_table(result, "count", "busiest cells", columns=("count",)))
        for kind, path in written.items():
            out.print(f"wrote {kind}: {path}")

    _run(action, as_json)


@app.command("emerging")
def emerging_command(
    slice_by: Annotated[str, typer.Option("--slice", help="week or month.")] = "month",
    cell: CellOption = 250.0, hex_resolution: HexOption = None,
    weights: WeightsOption = "queen",
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
    within: WithinOption = None, boundaries: BoundariesOption = None,
    out_path: OutOption = None, png: PngOption = None, csv_path: CsvOption = None,
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Emerging hot spots: Gi* per time slice and a Mann-Kendall trend per cell."""

    def action() -> None:
        from urbansec.services.hotspots import GridOptions, emerging

        flt = _filter(category, start, end, bbox, area, source)
        options = GridOptions(cell=cell, hex_resolution=hex_resolution, within=within,
                              boundaries=boundaries)
        with _working("building the space-time cube", as_json):
            result = emerging(_ready_engine(), flt, slice_by=slice_by, options=options,
                              weights=weights, alpha=alpha)
            written = _write_outputs(result, out_path, png, csv_path)
        summary = {**result.summary, "written": written}
        if as_json:
            _print_json(summary)
            return
        if result.keys.size == 0:
            out.print(summary["message"])
            return
        out.print(f"[bold]{result.title}[/]")
        out.print(f"{summary['events']:,} located incidents, {summary['cells']:,} cells x "
                  f"{summary['slices']} {slice_by}s ({summary['first_slice']} to "
                  f"{summary['last_slice']}), weights {summary['weights']}")
        table = Table(title="cells by pattern", title_justify="left")
        table.add_column("pattern")
        table.add_column("cells", justify="right")
        for label, n in sorted(summary["categories"].items(), key=lambda kv: -kv[1]):
            table.add_row(label.replace("_", " "), f"{n:,}")
        out.print(table)
        for kind, path in written.items():
            out.print(f"wrote {kind}: {path}")

    _run(action, as_json)


@app.command("patterns")
def patterns_command(
    night: Annotated[str, typer.Option("--night", help="Night window, local time.")
                     ] = "22:00-06:00",
    png: PngOption = None,
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """When incidents happen: hour x weekday (local time), night share, monthly series."""

    def action() -> None:
        from urbansec.services.patterns import time_patterns

        flt = _filter(category, start, end, bbox, area, source)
        result = time_patterns(_ready_engine(), flt, night=night)
        if png is not None and result["events"]:
            from urbansec.render import png as render

            title = "Incidents by hour and weekday (" + result["timezone"] + ")"
            if flt.description:
                title += " · " + ", ".join(f"{k} {v}" for k, v in flt.description.items())
            import numpy as np

            render.render_hour_weekday(png, matrix=np.array(result["hour_weekday"]["counts"]),
                                       title=title)
            result["written"] = {"png": str(png)}
        if as_json:
            _print_json(result)
            return
        if not result["events"]:
            out.print(result["message"])
            return
        counts = result["hour_weekday"]["counts"]
        table = Table(title=f"incidents by hour (rows) and weekday, local time "
                            f"({result['timezone']})", title_justify="left")
        table.add_column("hour", justify="right")
        for day in result["hour_weekday"]["weekdays"]:
            table.add_column(day, justify="right")
        table.add_column("all", justify="right")
        for hour in range(24):
            row = [counts[d][hour] for d in range(7)]
            table.add_row(f"{hour:02d}", *(f"{v:,}" for v in row), f"{sum(row):,}")
        table.add_row("all", *(f"{sum(counts[d]):,}" for d in range(7)),
                      f"{result['events']:,}", end_section=True)
        out.print(table)
        night_info = result["night"]
        share = night_info["share"]
        out.print(f"night ({night_info['window']}): {night_info['count']:,} of "
                  f"{night_info['total']:,}" + (f" ({share:.1%})" if share is not None else ""))
        slot = result["busiest_slot"]
        if slot:
            out.print(f"busiest hour of the week: {slot['weekday']} {slot['hour']:02d}:00 "
                      f"({slot['count']:,})")
        if result.get("without_time_of_day"):
            out.print(f"{result['without_time_of_day']:,} incidents are dated to the day or "
                      "month only: they count by month, not in the hour x weekday table")
        monthly = result["monthly"]
        months = Table(title="by month", title_justify="left")
        months.add_column("month")
        months.add_column("count", justify="right")
        if "seasonal_index" in monthly:
            months.add_column("seasonally adjusted", justify="right")
        for i, month in enumerate(monthly["months"]):
            row = [month, f"{monthly['counts'][i]:,}"]
            if "seasonal_index" in monthly:
                row.append(f"{monthly['seasonally_adjusted'][i]:,.1f}")
            months.add_row(*row)
        out.print(months)
        if "written" in result:
            out.print(f"wrote png: {result['written']['png']}")

    _run(action, as_json)


@app.command("near-repeat")
def near_repeat_command(
    space_bands: Annotated[str, typer.Option(
        "--space-bands", help="Upper edges of the distance bands, metres.")
    ] = "100,200,300,400,500",
    time_bands: Annotated[str, typer.Option(
        "--time-bands", help="Upper edges of the time bands, days.")] = "7,14,21,28,35",
    permutations: PermutationsOption = 999, seed: SeedOption = 0,
    by_category: Annotated[bool, typer.Option("--by-category", help="One test per category.")
                           ] = False,
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The Knox near-repeat test (as in the Near Repeat Calculator), Monte Carlo p-values."""

    def action() -> None:
        from urbansec.services.near_repeat import near_repeat, parse_bands

        flt = _filter(category, start, end, bbox, area, source)
        spaces = parse_bands(space_bands, "--space-bands")
        times = parse_bands(time_bands, "--time-bands")
        with _working(f"Knox test, {permutations} permutations", as_json):
            result = near_repeat(_ready_engine(), flt, space_bands=spaces, time_bands=times,
                                 permutations=permutations, seed=seed, by_category=by_category)
        if as_json:
            _print_json(result)
            return
        if result.get("message"):
            out.print(result["message"])
            return
        for group in result["results"]:
            if "message" in group:
                out.print(f"{group['group']}: {group['message']}")
                continue
            table = Table(title=f"Knox ratios (observed/expected), {group['group']}, "
                                f"{group['events']:,} incidents; * p < 0.05",
                          title_justify="left")
            table.add_column("distance \\ time")
            for label in group["time_labels"]:
                table.add_column(label, justify="right")
            for i, label in enumerate(group["space_labels"]):
                cells = []
                for j in range(len(group["time_labels"])):
                    ratio = group["ratio"][i][j]
                    mark = "*" if group["significant"][i][j] else ""
                    cells.append("-" if ratio is None else f"{ratio:.2f}{mark}")
                table.add_row(label, *cells)
            out.print(table)
            out.print(group["summary"], highlight=False)

    _run(action, as_json)


@app.command("change")
def change_command(
    baseline: Annotated[str, typer.Option("--baseline", help="previous or last-year.")
                        ] = "previous",
    by: Annotated[str | None, typer.Option(
        "--by", help="Area kind, e.g. beat or district (default: grid cells).")] = None,
    cell: Annotated[float, typer.Option("--cell", help="Cell size when not --by.")] = 500.0,
    alpha: Annotated[float, typer.Option("--alpha")] = 0.05,
    correction: Annotated[str, typer.Option(
        "--correction", help="none, fdr or bonferroni (across units).")] = "fdr",
    limit: Annotated[int, typer.Option("--limit", help="Rows to print.")] = 15,
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """This period against a baseline per area or cell, with an exact test."""

    def action() -> None:
        from urbansec.services.change import change

        flt = _filter(category, start, end, bbox, area, source)
        result = change(_ready_engine(), flt, baseline=baseline, by=by, cell=cell, alpha=alpha,
                        correction=correction)
        if as_json:
            _print_json(result)
            return
        cur, base = result["current"], result["baseline_period"]
        overall = result["overall"]
        out.print(f"current {cur['start'][:10]} to {cur['end'][:10]}: {cur['count']:,}; "
                  f"baseline ({baseline}) {base['start'][:10]} to {base['end'][:10]}: "
                  f"{base['count']:,}; rate ratio {overall['ratio']}, p {overall['p']}")
        if result.get("message"):
            out.print(result["message"])
            return
        sig = result["significant"]
        out.print(f"significant at {alpha} ({correction}): {sig['up']} up, {sig['down']} down "
                  f"of {result['units_total']} {result['unit']}s")
        table = Table(title_justify="left")
        for name in (result["unit"], "current", "baseline", "change", "p", ""):
            table.add_column(name, justify="left" if name == result["unit"] else "right")
        for row in result["units"][:limit]:
            pct = row["percent_change"]
            table.add_row(row["unit"], f"{row['current']:,}", f"{row['baseline']:,}",
                          "new" if pct == "inf" else ("-" if pct is None else f"{pct:+.0f}%"),
                          "-" if row["p"] is None else f"{row['p']:.3g}",
                          "significant" if row["significant"] else "")
        out.print(table)

    _run(action, as_json)


@app.command("areas")
def areas_command(
    kind: Annotated[str, typer.Argument(help="Area kind, e.g. district, beat, bezirk.")],
    denominators: Annotated[Path | None, typer.Option(
        "--denominators", help="CSV code,value (e.g. population) per area.")] = None,
    attribute: Annotated[str | None, typer.Option(
        "--attribute", help="Take the denominator from this attribute of the imported areas."
    )] = None,
    per: Annotated[float, typer.Option("--per", help="Rate per this many units.")] = 1000.0,
    counts_source: Annotated[str, typer.Option(
        "--counts", help="incidents (stored incidents) or area-counts (published counts).")
    ] = "incidents",
    year: Annotated[int | None, typer.Option("--year", help="Year of published counts.")
                    ] = None,
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Counts and rates per imported area, with exact Poisson confidence intervals."""

    def action() -> None:
        from urbansec.services.area_rates import area_rates, read_denominators

        flt = _filter(category, start, end, bbox, area, source)
        denom = read_denominators(denominators) if denominators else None
        result = area_rates(_ready_engine(), flt, kind=kind, denominators=denom,
                            denominator_attribute=attribute, per=per, source=counts_source,
                            year=year)
        if as_json:
            _print_json(result)
            return
        if result.get("message"):
            out.print(result["message"])
            return
        table = Table(title=f"{result['total']:,} counted by {kind}", title_justify="left")
        for name in ("code", "name", "count", "share", f"rate per {per:g}", "95% CI"):
            table.add_column(name, justify="left" if name in ("code", "name") else "right")
        for row in result["areas"]:
            ci = ("-" if row["ci_low"] is None else f"{row['ci_low']:.2f}-{row['ci_high']:.2f}")
            table.add_row(row["code"], row["name"] or "", f"{row['count']:,}",
                          "-" if row["share"] is None else f"{row['share']:.1%}",
                          "-" if row["rate"] is None else f"{row['rate']:.2f}", ci)
        out.print(table)

    _run(action, as_json)


# --------------------------------------------------------------------------------------------
# forecast
# --------------------------------------------------------------------------------------------


@app.command("forecast")
def forecast_command(
    model: Annotated[str, typer.Option(
        "--model", help="naive, historical, kde, prospective, sepp or gbm (needs "
                        "scikit-learn).")] = "sepp",
    horizon: Annotated[str, typer.Option("--horizon", help="1d, 7d, 12h, 2w ...")] = "7d",
    origin: Annotated[str | None, typer.Option(
        "--origin", help="Forecast start, YYYY-MM-DD local day or ISO time (default: the day "
                         "after the last incident).")] = None,
    train_days: Annotated[float, typer.Option("--train-days", help="Training window, days.")
                          ] = 365.0,
    top: Annotated[float, typer.Option("--top", help="Share of cells flagged, e.g. 0.05.")
                   ] = 0.05,
    cell: CellOption = 250.0, hex_resolution: HexOption = None,
    within: WithinOption = None, boundaries: BoundariesOption = None,
    out_path: OutOption = None, png: PngOption = None, csv_path: CsvOption = None,
    category: CategoryOption = None, bbox: BboxOption = None, area: AreaOption = None,
    source: SourceOption = None, as_json: JsonFlag = False,
) -> None:
    """Where risk will be next: one model's risk per cell for the coming horizon."""

    def action() -> None:
        from urbansec.services.forecast import forecast, parse_origin
        from urbansec.services.hotspots import GridOptions

        flt = _filter(category, None, None, bbox, area, source)
        engine = _ready_engine()
        options = GridOptions(cell=cell, hex_resolution=hex_resolution, within=within,
                              boundaries=boundaries)
        with _working(f"fitting {model}", as_json):
            result = forecast(engine, flt, model=model, horizon=horizon,
                              origin=parse_origin(engine, origin), train_days=train_days,
                              options=options, top=top)
            written = _write_outputs(result, out_path, png, csv_path)
        summary = {**result.summary, "written": written}
        if as_json:
            _print_json(summary)
            return
        out.print(f"[bold]{result.title}[/]")
        out.print(f"trained on {summary['training_events']:,} incidents of the "
                  f"{summary['training_window_days']:g} days before {summary['origin'][:16]} "
                  f"UTC; {summary['cells']:,} cells; {summary['flagged_cells']:,} flagged "
                  f"(top {top:.0%})")
        if summary["fitted"]:
            out.print("fitted: " + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in summary["fitted"].items()))
        if summary["expected_events"] is not None:
            out.print(f"expected incidents over the horizon: {summary['expected_events']:,.1f}")
        out.print(_cell_table(result, "risk", "riskiest cells",
                              columns=("risk", "rank", "training_count")))
        for kind, path in written.items():
            out.print(f"wrote {kind}: {path}")

    _run(action, as_json)


@app.command("backtest")
def backtest_command(
    models: Annotated[str, typer.Option("--models", help="Comma list, e.g. "
                                                         "naive,historical,kde,prospective,"
                                                         "sepp (gbm: slow, ~2 s a fold)")
                      ] = "naive,historical,kde,prospective,sepp",
    horizon: Annotated[str, typer.Option("--horizon", help="1d, 7d ...")] = "1d",
    step: Annotated[str | None, typer.Option("--step", help="Between origins (default: the "
                                                            "horizon).")] = None,
    train_days: Annotated[float, typer.Option("--train-days", help="Training window, days.")
                          ] = 365.0,
    coverage: Annotated[str, typer.Option("--coverage", help="Percent of cells flagged.")
                        ] = "1,2,5,10",
    refit_every: Annotated[int, typer.Option(
        "--refit-every", help="Full fit every N folds; warm updates in between.")] = 1,
    bias_by: Annotated[str | None, typer.Option(
        "--bias-by", help="Area kind for the bias check (default district).")] = "district",
    seed: SeedOption = 0, cell: CellOption = 250.0, hex_resolution: HexOption = None,
    within: WithinOption = None,
    png: Annotated[Path | None, typer.Option("--png", help="Hit-rate curves PNG.")] = None,
    category: CategoryOption = None, start: FromOption = None, end: ToOption = None,
    bbox: BboxOption = None, area: AreaOption = None, source: SourceOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Rolling-origin backtest: hit rate, PAI, PEI, PEI* per model against historical."""

    def action() -> None:
        from urbansec.services.forecast import backtest, parse_coverages
        from urbansec.services.hotspots import GridOptions

        flt = _filter(category, start, end, bbox, area, source)
        options = GridOptions(cell=cell, hex_resolution=hex_resolution, within=within)
        with _fold_progress(as_json) as progress:
            result = backtest(_ready_engine(), flt, models=models.split(","), horizon=horizon,
                              step=step, train_days=train_days,
                              coverages=parse_coverages(coverage), options=options, seed=seed,
                              refit_every=refit_every, bias_kind=bias_by, progress=progress)
        if png is not None:
            import numpy as np

            from urbansec.render import png as render

            curve = result["curve"]
            render.render_curves(
                png, x=np.array(curve["area_share"]),
                series={m: np.array([np.nan if v is None else v for v in values])
                        for m, values in curve["hit_rate"].items()},
                title=f"Hit rate against area flagged · {result['folds']} folds of "
                      f"{result['horizon_days']:g} days", diagonal=True,
                xlabel="share of cells flagged", ylabel="share of incidents in flagged cells")
            result["written"] = {"png": str(png)}
        if as_json:
            _print_json(result)
            return
        _print_backtest(result)

    _run(action, as_json)


@contextmanager
def _fold_progress(as_json: bool) -> Iterator[Any]:
    """A progress bar over the folds on a terminal; nothing for pipes and --json."""
    if as_json or not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("[bold]backtest"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        task = bar.add_task("folds", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _print_backtest(result: dict[str, Any]) -> None:
    out.print(f"[bold]backtest[/] {result['folds']} folds of {result['horizon_days']:g} days "
              f"from {result['first_origin'][:10]}, training {result['train_days']:g} days, "
              f"{result['grid']} ({result['cells']:,} cells), {result['events']:,} incidents")
    for note in result.get("notes", []):
        out.print(f"  note: {note}")
    table = Table(title="mean over folds [95% bootstrap interval]; diff vs historical "
                        "(* = interval above 0)", title_justify="left")
    for name in ("model", "metric", "coverage", "mean", "interval", "diff vs historical"):
        table.add_column(name, justify="left" if name in ("model", "metric") else "right")

    def num(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}"

    for row in result["rows"]:
        diff = row.get("diff_vs_historical")
        mark = "*" if row.get("better") else ""
        table.add_row(row["model"], row["metric"],
                      "-" if row["coverage"] is None else f"{row['coverage']:g}%",
                      num(row["mean"]), f"[{num(row['low'])}, {num(row['high'])}]",
                      "" if diff is None else f"{diff:+.3f}{mark}")
    out.print(table)
    bias = result["bias"]
    out.print(f"\n[bold]bias check[/] at {bias['coverage']:g}% flagged"
              + (f", by {bias['by']}" if bias["by"] else ""))
    for name, report in bias["models"].items():
        out.print(f"[bold]{name}[/]: {report['describe']}", highlight=False)
    if "written" in result:
        out.print(f"wrote png: {result['written']['png']}")
