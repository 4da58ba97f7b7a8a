"""Does the learned model earn its place? Gradient boosting against the historical average.

On Chicago crimes (``../shared/data/chicago/crimes_<year>.csv.gz``, located events projected to
UTM 16N; times are Chicago's local wall clock, so folds start at local midnight), 250 m cells
over the box of all 2017 events:

1. ``timing`` (``run``): fit + predict seconds per fold of ``GradientBoostingForecast`` on one
   year of burglaries (training for a 7-day and a 1-day horizon; then a cached prediction, as
   after ``update``), beside ``HistoricalAverage`` and ``KDEForecast``. Goal: < 10 s per fold.
2. ``tables``: rolling-origin backtests (``urbansec.forecast.backtest``) of ``historical``,
   ``gbm`` and ``kde`` on burglary and robbery, 2016-2017 data, one year of training before
   each origin, origins through 2017: weekly (7-day horizon, 52 folds, a fresh fit every
   fold) and daily (1-day horizon, 365 folds, ``refit_every=7``: gbm retrains weekly and
   reads fresh counts daily). Per model, metric and coverage: the mean, its 95% bootstrap
   interval and the paired difference against the historical average with its interval.
3. ``validation``: the same weekly backtest one year earlier (2015-2016 data, origins through
   2016), the period the model's design choices were checked on, so that 2017 stays unseen.

Run: ``.venv/bin/python benchmarks/learned.py`` (timing and weekly tables, ~5 min) or
``--parts timing,validation,weekly,daily`` (~18 min on 2 CPUs). On a shared 2-CPU machine set
``OMP_NUM_THREADS=1``: scikit-learn's OpenMP threads spin at each barrier, and when the other
CPU is busy a fit took 20-33 s with two threads against 10-12 s with one (2-3 s unloaded).
The figures in ``benchmarks/results/learned.json`` were measured so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _events import load_chicago_events
from urbansec.domain.events import Events
from urbansec.domain.grid import SquareGrid
from urbansec.forecast.backtest import BacktestResult, rolling_origin_backtest
from urbansec.forecast.base import ForecastModel
from urbansec.forecast.models import HistoricalAverage, KDEForecast
from urbansec.forecast.models.learned import GradientBoostingForecast

RESULTS = Path(__file__).resolve().parent / "results" / "learned.json"
CRS = "EPSG:32616"
CELL = 250.0
COVERAGES = (0.01, 0.02, 0.05, 0.10)
DAY = np.timedelta64(1, "D")
MODELS: dict[str, Callable[[], ForecastModel]] = {
    "historical": HistoricalAverage,
    "gbm": GradientBoostingForecast,
    "kde": KDEForecast,
}


def events_of(raw: dict[str, Any], primary_type: str) -> Events:
    """The located events of one primary type, sorted by time."""
    keep = raw["primary_type"] == primary_type
    order = np.argsort(raw["t"][keep], kind="stable")
    return Events(x=raw["x"][keep][order], y=raw["y"][keep][order], t=raw["t"][keep][order],
                  category=raw["primary_type"][keep][order], crs=raw.get("crs", CRS),
                  timezone="America/Chicago")


def study(raw_2017: dict[str, Any]) -> tuple[SquareGrid, np.ndarray]:
    """The grid and the study cells: the box of all 2017 events, the same for every run."""
    grid = SquareGrid(CELL, CRS)
    return grid, grid.study_cells(raw_2017["x"], raw_2017["y"])


def run(events: dict, label: str) -> list[dict]:
    """Fit + predict seconds per fold on the burglaries of ``events`` (one year of Chicago
    crimes; the last year in it is forecast), median over 3 weekly origins."""
    grid, cells = study(events)
    burglary = events_of(events, "BURGLARY")
    last = burglary.t.max().astype("datetime64[D]")
    origins = [last - np.timedelta64(d, "D") for d in (0, 7, 14)]
    rows: list[dict] = []
    for horizon in (7, 1):
        timings: dict[str, list[float]] = {"gbm": [], "gbm cached": [], "historical": [],
                                           "kde": []}
        n_events = []
        for origin in origins:
            start = origin.astype("datetime64[s]")
            window = burglary.subset((burglary.t < start) & (burglary.t >= start - 365 * DAY))
            n_events.append(len(window))
            end = start + horizon * DAY
            for name, factory in MODELS.items():
                t0 = time.perf_counter()
                model = factory().fit(window)
                model.predict(grid, start, end, cells)
                timings[name].append(time.perf_counter() - t0)
                if name == "gbm":
                    # what a backtest fold between two refits costs: new events, same trees
                    t0 = time.perf_counter()
                    model.update(window).predict(grid, start, end, cells)
                    timings["gbm cached"].append(time.perf_counter() - t0)
        reference = statistics.median(timings["historical"])
        for name in ("gbm", "gbm cached", "kde"):
            seconds = statistics.median(timings[name])
            rows.append({"measure": f"{name} fit+predict, {horizon}-day horizon",
                         "events": int(statistics.median(n_events)), "cells": int(cells.size),
                         "urbansec_s": round(seconds, 4), "reference_s": round(reference, 4),
                         "ratio": round(seconds / reference, 1),
                         "note": f"{label}: burglaries, 365-day window, 250 m cells; "
                                 "reference = HistoricalAverage; goal gbm < 10 s"})
    return rows


def backtest(events: Events, grid: SquareGrid, cells: np.ndarray, *, start: str, end: str,
             horizon: float, refit_every: int = 1,
             models: dict[str, Callable[[], ForecastModel]] | None = None,
             progress: bool = True) -> tuple[BacktestResult, float]:
    """A rolling-origin backtest of ``models`` (default ``MODELS``) and its wall time."""
    chosen = MODELS if models is None else models

    def report(done: int, total: int) -> None:
        if progress and done % max(1, total // 10) == 0:
            print(f"#   {done}/{total}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    result = rolling_origin_backtest(
        events, grid, cells, chosen, start=np.datetime64(start, "s"),
        end=np.datetime64(end, "s"), horizon_days=horizon, train_days=365,
        coverages=COVERAGES, refit_every=refit_every, seed=0, progress=report)
    return result, time.perf_counter() - t0


def table_row(result: BacktestResult, seconds: float, **meta: Any) -> dict[str, Any]:
    """A backtest as one JSON-ready row: summary, seconds per fold per model, bias check."""
    per_fold = {}
    for i, name in enumerate(result.models):
        refit = result.refitted[i]
        per_fold[name] = {
            "refit_s": round(float(np.median(result.seconds[i][refit])), 3),
            "update_s": (round(float(np.median(result.seconds[i][~refit])), 3)
                         if (~refit).any() else None),
            "total_s": round(float(result.seconds[i].sum()), 1)}
    bias = {name: report.summary() for name, report in result.bias().items()}
    return {"part": "table", **meta, "folds": result.n_folds, "seconds": round(seconds, 1),
            "seconds_per_fold": per_fold, "rows": result.summary_rows(), "bias": bias}


def tables(rows: list[dict[str, Any]], parts: Sequence[str]) -> None:
    raw = load_chicago_events((2015, 2016, 2017) if "validation" in parts else (2016, 2017))
    grid, cells = study(load_chicago_events((2017,)))
    plans = []
    if "validation" in parts:
        plans.append(("validation", 7.0, 1, "2016-01-01", "2017-01-01", (2015, 2016)))
    if "weekly" in parts:
        plans.append(("weekly", 7.0, 1, "2017-01-01", "2018-01-01", (2016, 2017)))
    if "daily" in parts:
        plans.append(("daily", 1.0, 7, "2017-01-01", "2018-01-01", (2016, 2017)))
    years_of = raw["t"].astype("datetime64[Y]").astype(int) + 1970
    for primary_type in ("BURGLARY", "ROBBERY"):
        for part, horizon, refit_every, start, end, years in plans:
            keep = np.isin(years_of, years)
            subset = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in raw.items()}
            events = events_of(subset, primary_type)
            print(f"# {part} {primary_type}: {len(events):,} events", file=sys.stderr,
                  flush=True)
            result, seconds = backtest(events, grid, cells, start=start, end=end,
                                       horizon=horizon, refit_every=refit_every)
            rows.append(table_row(result, seconds, name=part, category=primary_type,
                                  horizon_days=horizon, refit_every=refit_every,
                                  period=f"{start} to {end}", years=list(years),
                                  events=len(events)))
            print_table(rows[-1])


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def print_table(r: dict[str, Any], metrics: Sequence[str] = ("hit_rate", "pai", "pei", "auc")
                ) -> None:
    print(f"\n{r['category']}, {r['name']}: horizon {r['horizon_days']:g} d, {r['folds']} folds "
          f"({r['period']}), refit every {r['refit_every']}, {r['events']:,} events, "
          f"{r['seconds']:.0f} s")
    for name, s in r["seconds_per_fold"].items():
        print(f"  {name}: {s['refit_s']} s per fit+predict, {s['update_s']} s per "
              f"update+predict, {s['total_s']} s in all")
    print(f"{'model':<11} {'metric':<9} {'cov':>4} {'mean':>7} {'interval':<17} "
          f"{'diff':>8} {'diff interval':<19} better")
    for s in r["rows"]:
        if s["metric"] not in metrics:
            continue
        cov = "-" if s["coverage"] is None else f"{s['coverage']:g}%"
        better = "" if s["better"] is None else ("yes" if s["better"] else "no")
        print(f"{s['model']:<11} {s['metric']:<9} {cov:>4} {_num(s['mean']):>7} "
              f"[{_num(s['low'])}, {_num(s['high'])}]".ljust(52)
              + f" {_num(s['diff_vs_historical'], 4):>8} "
              f"[{_num(s['diff_low'], 4)}, {_num(s['diff_high'], 4)}]".ljust(22) + better)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parts", default="timing,weekly",
                        help="comma-separated: timing, weekly, daily, validation")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"timing", "weekly", "daily", "validation"}
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if "timing" in parts:
        timing = run(load_chicago_events((2017,)), "2017")
        for row in timing:
            print(f"{row['measure']:<40} {row['urbansec_s']:>8.3f} s  (historical "
                  f"{row['reference_s']:.3f} s)")
        rows.extend({"part": "timing", **row} for row in timing)
    if set(parts) & {"weekly", "daily", "validation"}:
        tables(rows, parts)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "learned", "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - started, 1), "parts": parts,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "rows": rows}, indent=2, default=str) + "\n")
    print(f"\nwritten: {RESULTS}")


if __name__ == "__main__":
    main()
