"""Rolling-origin backtests: would the forecast have helped, fold after fold, against a baseline?

Fold ``i`` has its origin at ``start + i * step``; the model learns from the events in
``[origin - train_days, origin)`` and forecasts ``[origin, origin + horizon)``, which is then
scored with ``urbansec.forecast.metrics`` against the events of that period in the study cells.
Folds are made while ``origin + horizon <= end``, so every test period lies inside
``[start, end)``. The caller passes local-midnight-aligned instants (UTC ``datetime64``) when
folds should follow the city's days.

Rules worth knowing:

- Only located events are used; ``N`` of a fold is the events of its test period inside the
  study cells. A fold with no such event is kept, its metrics NaN (``empty``): the models still
  forecast it (their flags count in the bias check) but it enters no mean.
- ``refit_every = k``: every ``k``-th fold (the first included) a fresh model from the factory
  is fitted on its window; in between ``model.update(window events)`` refreshes the previous
  one (models with warm starts make that cheap; the default refits). ``seconds`` is the time of
  that fit or update plus the prediction.
- Ties in risk are broken at random with a seed drawn from ``(seed, fold)``: the same for every
  model within a fold (fair), different from fold to fold (so a flat surface does not flag the
  same arbitrary cells every time and fake a concentration in the bias check).
- Summary per (model, metric, coverage): the mean over the non-empty folds, a 95% percentile
  bootstrap interval of that mean (``n_boot`` resamples of folds with replacement, seeded), and
  the paired difference ``model - baseline`` fold by fold with its own bootstrap interval.
  A model is ``better`` than the baseline on a metric when that interval lies entirely above 0.
  Folds are resampled independently, which ignores their serial correlation: with many short
  folds the intervals are somewhat too narrow, so read "better" as necessary, not sufficient.
- A model that cannot fit a fold's window (too few events) stops the backtest with its
  ``UsageError``, prefixed with the fold and the model, so the user can widen the window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from urbansec.domain.events import Events
from urbansec.domain.grid import Grid
from urbansec.errors import UsageError
from urbansec.forecast.base import ForecastModel, as_instant
from urbansec.forecast.bias import BiasReport, flag_bias
from urbansec.forecast.metrics import (
    COVERAGE_METRICS,
    DEFAULT_COVERAGES,
    RANKING_METRICS,
    evaluate,
    ranking_of,
)

__all__ = [
    "BacktestResult",
    "SummaryRow",
    "bootstrap_mean",
    "fold_origins",
    "rolling_origin_backtest",
]

DAY = np.timedelta64(86_400, "s")
#: Area shares at which the mean hit-rate curve of each model is kept (for plots).
CURVE_POINTS = np.linspace(0.0, 1.0, 101)


def _days(value: float, what: str) -> np.timedelta64:
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number of days, not {value!r}") from None
    if not np.isfinite(days) or days <= 0:
        raise UsageError(f"{what} must be a positive number of days, not {value!r}")
    seconds = round(days * 86_400)
    if seconds < 1:
        raise UsageError(f"{what} of {days} days is shorter than a second")
    return np.timedelta64(seconds, "s")


def _fmt_days(span: np.timedelta64) -> str:
    return f"{span / DAY:g} days"


def fold_origins(start: Any, end: Any, horizon_days: float,
                 step_days: float | None = None) -> np.ndarray:
    """Origins ``start + i * step`` of the folds whose test period ends by ``end``:
    (folds,) ``datetime64[s]``. Raises ``UsageError`` when no fold fits."""
    t0, t1 = as_instant(start), as_instant(end)
    horizon = _days(horizon_days, "the horizon")
    step = horizon if step_days is None else _days(step_days, "the step")
    if t1 <= t0:
        raise UsageError(f"the backtest period must end after it starts ({t0} to {t1})")
    if t0 + horizon > t1:
        raise UsageError(f"a horizon of {_fmt_days(horizon)} does not fit in the backtest "
                         f"period {t0} to {t1} ({_fmt_days(t1 - t0)}); use a shorter horizon "
                         "or a longer period")
    n = int((t1 - horizon - t0) // step) + 1
    return t0 + np.arange(n) * step


def bootstrap_mean(values: np.ndarray, *, n_boot: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> tuple[float, float, float, int]:
    """Mean of the finite values and its percentile bootstrap interval.

    Returns ``(mean, low, high, n)`` with ``n`` the number of finite values; NaNs when there
    is none (one value gives a zero-width interval). Resamples are seeded by ``(seed, n)``.
    """
    return _bootstrap(values, n_boot, confidence, seed, {})


def _bootstrap(values: np.ndarray, n_boot: int, confidence: float, seed: int,
               cache: dict[int, np.ndarray]) -> tuple[float, float, float, int]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    if v.size not in cache:
        # a summary resamples the same folds for every model, metric and coverage: the
        # weights are drawn once per number of folds
        cache[v.size] = _resample_weights(v.size, n_boot, seed)
    means = cache[v.size] @ v
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(v.mean()), float(low), float(high), int(v.size)


def _resample_weights(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) weights such that ``weights @ v`` are the means of ``n_boot`` resamples of
    ``v`` with replacement, seeded by ``(seed, n)``."""
    if n_boot < 1:
        raise UsageError(f"the bootstrap needs at least one resample, not {n_boot}")
    rng = np.random.default_rng([seed, n])
    draws = rng.integers(0, n, size=(n_boot, n))
    flat = (draws + (np.arange(n_boot) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n) / n


@dataclass(frozen=True)
class SummaryRow:
    """One line of the backtest table: a model's metric at one coverage over the folds.

    ``coverage`` is a share (0.05) or None for a ranking metric; ``low``/``high`` the bootstrap
    interval of ``mean``; ``diff*`` the paired difference against the baseline (NaN when the
    baseline is not in the run); ``better`` True when the difference's interval is above 0
    (None for the baseline itself or without a baseline); ``folds`` the non-empty folds used.
    """

    model: str
    metric: str
    coverage: float | None
    mean: float
    low: float
    high: float
    diff: float
    diff_low: float
    diff_high: float
    better: bool | None
    folds: int
    baseline: str = "historical"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: coverage as a percentage, ``diff_vs_<baseline>`` and its interval."""
        def num(x: float) -> float | None:
            return None if not np.isfinite(x) else float(x)

        return {"model": self.model, "metric": self.metric,
                "coverage": None if self.coverage is None else _pct(self.coverage),
                "mean": num(self.mean), "low": num(self.low), "high": num(self.high),
                f"diff_vs_{self.baseline}": num(self.diff),
                "diff_low": num(self.diff_low), "diff_high": num(self.diff_high),
                "better": self.better, "folds": self.folds}


def _pct(share: float) -> float:
    return float(round(share * 100.0, 10))


@dataclass(frozen=True, eq=False)  # arrays inside: compare fields, not objects
class BacktestResult:
    """Everything a backtest measured. ``M`` models, ``F`` folds, ``m`` coverages, ``n`` cells.

    Attributes:
        models: model names, in the order given.
        cells: (n,) study cell keys; ``coverages``: (m,) shares.
        origins, ends: (F,) ``datetime64[s]`` UTC bounds of each fold's test period.
        n_events: (F,) events of each test period in the study cells.
        scores: metric name -> (M, F, m) for ``COVERAGE_METRICS``, (M, F) for
            ``RANKING_METRICS``; NaN for empty folds.
        n_flagged: (M, F, m) cells flagged; ``area_share``: (M, F, m) area share flagged.
        seconds: (M, F) fit-or-update plus predict time; ``refitted``: (M, F) True for a full
            fit, False for an update.
        events_per_cell: (n,) test events per cell summed over the folds (the bias check's
            reference).
        curve: (M, 101) mean hit rate over non-empty folds at ``CURVE_POINTS`` area shares.
        summary: the table, one ``SummaryRow`` per (model, metric, coverage).
        params: the backtest's settings (horizon, step, train days, refit_every, seed, ...).
    """

    models: tuple[str, ...]
    cells: np.ndarray
    coverages: np.ndarray
    origins: np.ndarray
    ends: np.ndarray
    n_events: np.ndarray
    scores: dict[str, np.ndarray]
    n_flagged: np.ndarray
    area_share: np.ndarray
    seconds: np.ndarray
    refitted: np.ndarray
    events_per_cell: np.ndarray
    curve: np.ndarray
    summary: tuple[SummaryRow, ...]
    baseline: str
    params: dict[str, Any] = field(default_factory=dict)
    # (M, F, k_max) ranked cell positions, enough to rebuild every flagged set
    _top: np.ndarray = field(default_factory=lambda: np.empty((0, 0, 0), dtype=np.int32),
                             repr=False)

    @property
    def n_folds(self) -> int:
        return int(self.origins.size)

    @property
    def empty(self) -> np.ndarray:
        """(F,) True for folds with no event in the study cells."""
        return ~(self.n_events > 0)

    def flagged_masks(self, model: str, coverage: float | None = None) -> np.ndarray:
        """(F, n) bool: the cells ``model`` flagged in each fold at ``coverage`` (one of the
        backtest's levels; default the largest)."""
        if model not in self.models:
            raise UsageError(f"no model {model!r} in this backtest; it ran "
                             f"{', '.join(self.models)}")
        j = self._coverage_index(coverage)
        i = self.models.index(model)
        masks = np.zeros((self.n_folds, self.cells.size), dtype=bool)
        for f in range(self.n_folds):
            masks[f, self._top[i, f, : self.n_flagged[i, f, j]]] = True
        return masks

    def _coverage_index(self, coverage: float | None) -> int:
        if coverage is None:
            return int(np.argmax(self.coverages))
        hits = np.flatnonzero(np.isclose(self.coverages, coverage, rtol=0, atol=1e-12))
        if hits.size == 0:
            raise UsageError(f"coverage {coverage} was not evaluated; the backtest has "
                             f"{', '.join(f'{_pct(c):g}%' for c in self.coverages)}")
        return int(hits[0])

    def bias(self, area_of_cell: np.ndarray | None = None, coverage: float | None = None
             ) -> dict[str, BiasReport]:
        """The bias check of every model at ``coverage`` (default the largest level);
        ``area_of_cell`` is aligned with ``self.cells`` (sorted keys)."""
        return {name: flag_bias(self.flagged_masks(name, coverage), self.events_per_cell,
                                area_of_cell) for name in self.models}

    def fold_rows(self) -> list[dict[str, Any]]:
        """One plain dict per (fold, model): origin, end, events, metrics per coverage (keys
        like ``pai_5`` for 5%), ranking scores, seconds and whether the model was refitted."""
        rows: list[dict[str, Any]] = []
        labels = [f"{_pct(c):g}" for c in self.coverages]
        for f in range(self.n_folds):
            for i, name in enumerate(self.models):
                row: dict[str, Any] = {
                    "fold": f, "model": name, "origin": str(self.origins[f]),
                    "end": str(self.ends[f]), "n_events": int(self.n_events[f]),
                    "empty": bool(self.empty[f]), "refit": bool(self.refitted[i, f]),
                    "seconds": float(self.seconds[i, f])}
                for metric in COVERAGE_METRICS:
                    for j, label in enumerate(labels):
                        row[f"{metric}_{label}"] = float(self.scores[metric][i, f, j])
                for metric in RANKING_METRICS:
                    row[metric] = float(self.scores[metric][i, f])
                rows.append(row)
        return rows

    def summary_rows(self) -> list[dict[str, Any]]:
        """The summary table as JSON-ready dicts (``SummaryRow.as_dict``)."""
        return [row.as_dict() for row in self.summary]


def _summarise(models: Sequence[str], coverages: np.ndarray, scores: dict[str, np.ndarray],
               baseline: str, n_boot: int, confidence: float, seed: int
               ) -> tuple[SummaryRow, ...]:
    base = models.index(baseline) if baseline in models else None
    cache: dict[int, np.ndarray] = {}
    rows: list[SummaryRow] = []
    series: list[tuple[int, str, float | None, np.ndarray]] = []
    for i in range(len(models)):
        for metric in COVERAGE_METRICS:
            for j, c in enumerate(coverages):
                series.append((i, metric, float(c), scores[metric][:, :, j]))
        for metric in RANKING_METRICS:
            series.append((i, metric, None, scores[metric]))
    for i, metric, coverage, table in series:
        name = models[i]
        mean, low, high, n = _bootstrap(table[i], n_boot, confidence, seed, cache)
        if base is None:
            diff = d_low = d_high = float("nan")
            better = None
        else:
            # paired: the same folds for both, so fold-to-fold difficulty cancels out
            diff, d_low, d_high, _ = _bootstrap(table[i] - table[base], n_boot, confidence,
                                                seed, cache)
            better = None if i == base or not np.isfinite(d_low) else bool(d_low > 0)
        rows.append(SummaryRow(name, metric, coverage, mean, low, high, diff, d_low, d_high,
                               better, n, baseline))
    return tuple(rows)


def _fold_seed(seed: int, fold: int) -> int:
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


def rolling_origin_backtest(
    events: Events, grid: Grid, cells: np.ndarray,
    models: Mapping[str, Callable[[], ForecastModel]], *,
    start: Any, end: Any, horizon_days: float, step_days: float | None = None,
    train_days: float = 365, coverages: Sequence[float] = DEFAULT_COVERAGES,
    refit_every: int = 1, seed: int = 0, baseline: str = "historical", n_boot: int = 2000,
    confidence: float = 0.95, progress: Callable[[int, int], None] | None = None,
) -> BacktestResult:
    """Run every model over rolling folds and summarise against ``baseline``.

    Args:
        events: the incidents (any category filter already applied); UTC times.
        grid: the grid every model predicts on; ``cells``: (n,) its study cell keys.
        models: name -> factory making a fresh, unfitted model (e.g. ``lambda: KDEForecast(
            bandwidth=300)``); the baseline's name is ``baseline`` ("historical").
        start, end: the backtest period; fold origins are ``start + i * step``, test periods
            ``[origin, origin + horizon)`` inside ``[start, end)``.
        horizon_days, step_days (default: the horizon), train_days: lengths in days.
        coverages: coverage levels (shares); refit_every: full fit every k folds, update in
            between; seed: tie-breaking and bootstrap seed.
        n_boot, confidence: bootstrap resamples and interval level.
        progress: called as ``progress(done, total)`` after each (fold, model).

    Returns:
        A ``BacktestResult`` with per-fold scores and the summary table.
    """
    if not models:
        raise UsageError("give at least one model to backtest")
    if isinstance(refit_every, bool) or not isinstance(refit_every, int | np.integer) \
            or refit_every < 1:
        raise UsageError(f"refit_every must be a whole number >= 1, not {refit_every!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int | np.integer) or n_boot < 1:
        raise UsageError(f"the bootstrap needs a whole number of resamples >= 1, not {n_boot!r}")
    if not 0 < confidence < 1:
        raise UsageError(f"confidence must be in (0, 1), not {confidence}")
    levels = np.asarray(coverages, dtype=float).ravel()
    if levels.size == 0 or not np.all((levels > 0) & (levels <= 1)):
        raise UsageError(f"coverage levels must be shares in (0, 1], not {list(coverages)}")
    keys = np.unique(np.asarray(cells, dtype=np.int64))
    if keys.size == 0:
        raise UsageError("the study area has no cells: nothing to forecast")
    horizon = _days(horizon_days, "the horizon")
    train = _days(train_days, "the training window")

    # sorted, located events: each window is then a slice found by binary search (a view)
    located = events.only_located()
    located = located.subset(~np.isnat(located.t))
    if len(located) == 0:
        raise UsageError("no located events to backtest on")
    located = located.subset(np.argsort(located.t, kind="stable"))
    t = located.t.astype("datetime64[s]")
    span = t[-1] - t[0]
    if horizon > span:
        raise UsageError(f"a horizon of {_fmt_days(horizon)} is longer than the data "
                         f"({_fmt_days(span)} from {t[0]} to {t[-1]}); use a shorter horizon "
                         "or more data")
    origins = fold_origins(start, end, horizon_days, step_days)
    ends = origins + horizon
    n_folds = origins.size
    names = tuple(models)
    n_models = len(names)
    n_cells = keys.size
    m = levels.size

    pos = grid.index_of(keys, grid.locate(located.x, located.y))
    areas = grid.cell_area_km2(keys)
    test_lo = np.searchsorted(t, origins, side="left")
    test_hi = np.searchsorted(t, ends, side="left")
    train_lo = np.searchsorted(t, origins - train, side="left")

    scores = {name: np.full((n_models, n_folds, m), np.nan) for name in COVERAGE_METRICS}
    scores.update({name: np.full((n_models, n_folds), np.nan) for name in RANKING_METRICS})
    n_flagged = np.zeros((n_models, n_folds, m), dtype=np.int64)
    area_share = np.zeros((n_models, n_folds, m))
    seconds = np.zeros((n_models, n_folds))
    refitted = np.zeros((n_models, n_folds), dtype=bool)
    n_events = np.zeros(n_folds)
    events_per_cell = np.zeros(n_cells)
    curve_sum = np.zeros((n_models, CURVE_POINTS.size))
    curve_n = np.zeros(n_models)
    top = np.zeros((n_models, n_folds, 0), dtype=np.int32)
    fitted: dict[str, ForecastModel] = {}
    total = n_folds * n_models
    done = 0

    for f in range(n_folds):
        window = located.subset(slice(int(train_lo[f]), int(test_lo[f])))
        test_pos = pos[test_lo[f]:test_hi[f]]
        observed = np.bincount(test_pos[test_pos >= 0], minlength=n_cells).astype(float)
        n_events[f] = observed.sum()
        events_per_cell += observed
        fold_seed = _fold_seed(seed, f)
        for i, name in enumerate(names):
            refit = f % refit_every == 0 or name not in fitted
            t_start = time.perf_counter()
            try:
                if refit:
                    model = models[name]()
                    fitted[name] = model.fit(window)
                else:
                    fitted[name] = fitted[name].update(window)
                surface = fitted[name].predict(grid, origins[f], ends[f], cells=keys)
            except UsageError as exc:
                raise UsageError(
                    f"fold {f + 1} of {n_folds} (training {origins[f] - train} to "
                    f"{origins[f]}), model {name}: {exc.message}", details=exc.details
                ) from exc
            seconds[i, f] = time.perf_counter() - t_start
            refitted[i, f] = refit
            if surface.keys.shape != keys.shape or not np.array_equal(surface.keys, keys):
                raise RuntimeError(f"model {name} returned a surface not aligned with the "
                                   "study cells it was given")
            order = ranking_of(surface, fold_seed)
            s = evaluate(surface, observed, areas=areas, coverages=levels, seed=fold_seed,
                         curve_points=CURVE_POINTS, order=order)
            n_flagged[i, f] = s.n_flagged
            area_share[i, f] = s.area_share
            need = int(s.n_flagged.max())
            if need > top.shape[2]:
                # by cells every fold flags the same number; by area it varies a little
                grown = np.zeros((n_models, n_folds, need), dtype=np.int32)
                grown[:, :, : top.shape[2]] = top
                top = grown
            top[i, f, :need] = order[:need]
            for metric in COVERAGE_METRICS:
                scores[metric][i, f] = getattr(s, metric)
            for metric in RANKING_METRICS:
                scores[metric][i, f] = getattr(s, metric)
            if not s.empty and s.curve is not None:
                curve_sum[i] += s.curve
                curve_n[i] += 1
            done += 1
            if progress is not None:
                progress(done, total)

    with np.errstate(invalid="ignore", divide="ignore"):
        curve = curve_sum / curve_n[:, None]
    summary = _summarise(names, levels, scores, baseline, n_boot, confidence, seed)
    params = {"start": str(as_instant(start)), "end": str(as_instant(end)),
              "horizon_days": float(horizon / DAY), "step_days": float(
                  (horizon if step_days is None else _days(step_days, "the step")) / DAY),
              "train_days": float(train / DAY), "refit_every": int(refit_every),
              "seed": int(seed), "n_boot": int(n_boot), "confidence": float(confidence),
              "grid": grid.label, "cells": int(n_cells)}
    return BacktestResult(
        models=names, cells=keys, coverages=levels, origins=origins, ends=ends,
        n_events=n_events, scores=scores, n_flagged=n_flagged, area_share=area_share,
        seconds=seconds, refitted=refitted, events_per_cell=events_per_cell, curve=curve,
        summary=summary, baseline=baseline, params=params, _top=top)
