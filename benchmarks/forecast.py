"""Forecast benchmark: model timings and the real-data backtests of the closing note.

On Chicago crimes (``../shared/data/chicago/crimes_<year>.csv.gz``, located events projected
to UTM 16N; times are Chicago's local wall clock, so folds start at local midnight), 250 m
cells over the box of the city's events:

1. ``timing``: fit + predict seconds per model on one year of burglaries (2017, ~13k events;
   the median over 5 origins), and how fit time grows with 1, 2 and 3 years (2017; 2016-2017;
   2015-2017; models with a ``window_days`` get one as long as the data). Goal: SEPP fits one
   year in under 20 s.
2. ``daily``: a whole daily rolling-origin backtest over one year (365 folds of 2017, one
   year of training before each origin, every model) on burglaries. Goal: under 10 minutes.
3. ``tables``: the backtests the issue asks for, on burglary and robbery, 2016-2017 data,
   origins through 2017, daily (1-day horizon, 365 folds) and weekly (7-day horizon, 52
   folds); per model, metric and coverage the mean, its 95% bootstrap interval and the
   difference against HistoricalAverage with its interval.

Run: ``.venv/bin/python benchmarks/forecast.py`` (everything) or ``--parts timing`` etc.
Results: ``benchmarks/results/forecast.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _events import load_chicago_events, write_results
from urbansec.domain.events import Events
from urbansec.domain.grid import SquareGrid
from urbansec.forecast.backtest import rolling_origin_backtest
from urbansec.forecast.models import MODELS

RESULTS = Path(__file__).resolve().parent / "results" / "forecast.json"
CELL = 250.0
COVERAGES = (0.01, 0.02, 0.05, 0.10)
START_2017 = np.datetime64("2017-01-01T00:00:00", "s")
END_2017 = np.datetime64("2018-01-01T00:00:00", "s")


def events_of(years: tuple[int, ...], primary_type: str) -> Events:
    raw = load_chicago_events(years)
    keep = raw["primary_type"] == primary_type
    order = np.argsort(raw["t"][keep], kind="stable")
    return Events(x=raw["x"][keep][order], y=raw["y"][keep][order], t=raw["t"][keep][order],
                  category=raw["primary_type"][keep][order], crs=raw["crs"],
                  timezone="America/Chicago")


def city_cells(grid: SquareGrid) -> np.ndarray:
    """The study cells: the box of all 2017 events (any type), the same for every run."""
    raw = load_chicago_events((2017,))
    return grid.study_cells(raw["x"], raw["y"])


def timing(rows: list[dict[str, Any]]) -> None:
    grid = SquareGrid(CELL, "EPSG:32616")
    cells = city_cells(grid)
    for years in ((2017,), (2016, 2017), (2015, 2016, 2017)):
        events = events_of(years, "BURGLARY")
        label = f"{len(years)}y"
        origins = [END_2017 - np.timedelta64(d, "D") for d in (0, 7, 14, 21, 28)]
        for name, model_class in MODELS.items():
            # a window as long as the data, so fit time shows how each model grows with events
            params = ({"window_days": 365.0 * len(years)}
                      if "window_days" in model_class().get_params() else {})

            def factory(model_class: Any = model_class, params: Any = params) -> Any:
                return model_class(**params)

            fits, predicts = [], []
            fitted: dict[str, Any] = {}
            for origin in origins:
                window = events.subset(events.t < origin)
                t0 = time.perf_counter()
                model = factory().fit(window)
                t1 = time.perf_counter()
                model.predict(grid, origin, origin + np.timedelta64(1, "D"), cells)
                t2 = time.perf_counter()
                fits.append(t1 - t0)
                predicts.append(t2 - t1)
                fitted = {k: float(v) for k, v in vars(model).items()
                          if k.endswith("_") and not k.startswith("_") and np.ndim(v) == 0
                          and isinstance(v, float | int | np.floating | np.integer)}
            row = {"part": "timing", "size": label, "model": name, "events": len(events),
                   "cells": int(cells.size), "fit_s": round(statistics.median(fits), 4),
                   "predict_s": round(statistics.median(predicts), 4), "fitted": fitted}
            rows.append(row)
            print(f"# timing {label} {name}: fit {row['fit_s']:.3f} s, predict "
                  f"{row['predict_s']:.3f} s", file=sys.stderr, flush=True)


def run_backtest(events: Events, horizon: float, models: list[str]) -> tuple[Any, float]:
    grid = SquareGrid(CELL, "EPSG:32616")
    cells = city_cells(grid)
    t0 = time.perf_counter()
    result = rolling_origin_backtest(
        events, grid, cells, {m: MODELS[m] for m in models}, start=START_2017, end=END_2017,
        horizon_days=horizon, train_days=365, coverages=COVERAGES, seed=0)
    return result, time.perf_counter() - t0


def daily(rows: list[dict[str, Any]]) -> None:
    events = events_of((2016, 2017), "BURGLARY")
    result, seconds = run_backtest(events, 1.0, list(MODELS))
    per_model = {name: round(float(np.sum(result.seconds[i])), 2)
                 for i, name in enumerate(result.models)}
    rows.append({"part": "daily", "folds": len(result.origins), "models": result.models,
                 "events": len(events), "seconds": round(seconds, 1),
                 "model_seconds": per_model})
    print(f"# daily backtest: {len(result.origins)} folds, {seconds:.1f} s {per_model}",
          file=sys.stderr, flush=True)


def tables(rows: list[dict[str, Any]]) -> None:
    for primary_type in ("BURGLARY", "ROBBERY"):
        events = events_of((2016, 2017), primary_type)
        for horizon in (1.0, 7.0):
            result, seconds = run_backtest(events, horizon, list(MODELS))
            bias = {name: report.summary() for name, report in result.bias().items()}
            rows.append({"part": "table", "category": primary_type, "horizon_days": horizon,
                         "folds": len(result.origins), "events": len(events),
                         "seconds": round(seconds, 1), "rows": result.summary_rows(),
                         "bias": bias})
            print(f"# table {primary_type} {horizon:g}d: {seconds:.1f} s", file=sys.stderr,
                  flush=True)


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.3f}"


def print_results(rows: list[dict[str, Any]]) -> None:
    timings = [r for r in rows if r["part"] == "timing"]
    if timings:
        print("fit + predict per fold (median of 5 origins), burglaries, 250 m cells")
        print(f"{'size':<5} {'model':<12} {'events':>7} {'cells':>7} {'fit s':>8} "
              f"{'predict s':>10}  fitted")
        for r in timings:
            fitted = ", ".join(f"{k} {v:.4g}" for k, v in r["fitted"].items())
            print(f"{r['size']:<5} {r['model']:<12} {r['events']:>7,} {r['cells']:>7,} "
                  f"{r['fit_s']:>8.3f} {r['predict_s']:>10.3f}  {fitted}")
    for r in rows:
        if r["part"] == "daily":
            print(f"\ndaily backtest of 2017 burglaries: {r['folds']} folds x "
                  f"{len(r['models'])} models in {r['seconds']:.1f} s (goal < 600 s); "
                  f"per model: {r['model_seconds']}")
    for r in rows:
        if r["part"] != "table":
            continue
        print(f"\n{r['category']}, horizon {r['horizon_days']:g} day(s), {r['folds']} folds "
              f"(2017), {r['events']:,} events 2016-2017, {r['seconds']:.0f} s")
        print(f"{'model':<12} {'metric':<9} {'cov':>4} {'mean':>8} {'interval':>19} "
              f"{'diff vs hist':>13} {'diff interval':>19}")
        for s in r["rows"]:
            cov = "-" if s["coverage"] is None else f"{s['coverage']:g}%"
            mark = " *" if s.get("better") else ""
            print(f"{s['model']:<12} {s['metric']:<9} {cov:>4} {_num(s['mean']):>8} "
                  f"[{_num(s['low'])}, {_num(s['high'])}]".ljust(60)
                  + f" {_num(s['diff_vs_historical']):>8}{mark} "
                  f"[{_num(s.get('diff_low'))}, {_num(s.get('diff_high'))}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="timing,daily,tables")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for part in parts:
        {"timing": timing, "daily": daily, "tables": tables}[part](rows)
    print_results(rows)
    write_results(RESULTS, "forecast", started, rows, parts=parts)


if __name__ == "__main__":
    main()
