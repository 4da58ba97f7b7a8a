"""Forecasts and their honest evaluation, as the CLI, API and dashboard ask for them.

``forecast`` fits one model on the trailing window before an origin and scores every study
cell for the horizon; ``backtest`` replays that day after day (or week after week) over a
past period and reports how often each model's flagged cells caught what happened, against
``HistoricalAverage``, with the bias check beside the accuracy.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine

from urbansec.domain.events import utc64
from urbansec.errors import UsageError
from urbansec.forecast.base import ForecastModel
from urbansec.forecast.models import MODELS
from urbansec.services.cells import CellResult
from urbansec.services.events import city_timezone
from urbansec.services.hotspots import GridOptions, Study, check_period, prepare_study
from urbansec.services.incidents import IncidentFilter, last_incident_at

DEFAULT_TRAIN_DAYS = 365


def parse_horizon(text: str) -> timedelta:
    """``1d``, ``7d``, ``12h``, ``2w`` (a bare number is days)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([hdw]?)\s*", text or "")
    if not match:
        raise UsageError(f"--horizon {text!r}: use e.g. 1d, 7d, 12h or 2w")
    value = float(match.group(1))
    unit = match.group(2) or "d"
    delta = {"h": timedelta(hours=value), "d": timedelta(days=value),
             "w": timedelta(weeks=value)}[unit]
    if delta <= timedelta(0):
        raise UsageError("--horizon must be positive")
    return delta


def model_factory(name: str) -> type[ForecastModel]:
    key = name.strip().lower()
    if key not in MODELS:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    return MODELS[key]


def local_midnight(instant: datetime, timezone: str) -> datetime:
    """The start of ``instant``'s local day, as a UTC instant (forecast days are city days)."""
    zone = ZoneInfo(timezone)
    local = instant.astimezone(zone)
    return datetime.combine(local.date(), time(), tzinfo=zone).astimezone(UTC)


def forecast(
    engine: Engine, flt: IncidentFilter, *, model: str = "sepp", horizon: str = "7d",
    origin: datetime | None = None, train_days: float = DEFAULT_TRAIN_DAYS,
    options: GridOptions | None = None, top: float = 0.05,
) -> CellResult:
    """Risk per study cell for ``[origin, origin + horizon)``; the top ``top`` share flagged.

    The origin defaults to the local midnight after the last stored incident; the model sees
    the ``train_days`` before it (and the filter's category/area/box, never its period).
    """
    factory = model_factory(model)
    span = parse_horizon(horizon)
    if not 0 < top <= 1:
        raise UsageError("--top must be a share of cells in (0, 1], e.g. 0.05")
    if train_days <= 0:
        raise UsageError("--train-days must be positive")
    timezone = city_timezone(engine)
    if origin is None:
        origin = local_midnight(last_incident_at(engine) + timedelta(days=1), timezone)
    window = replace(flt, start=origin - timedelta(days=train_days), end=origin)
    check_period(engine, window)
    study = prepare_study(engine, window, options or GridOptions())
    fitted = factory().fit(study.events)
    surface = fitted.predict(study.grid, utc64(origin), utc64(origin + span), study.keys)
    return _forecast_result(study, flt, surface, fitted, origin, span, top, train_days)


def _forecast_result(study: Study, flt: IncidentFilter, surface: Any, fitted: ForecastModel,
                     origin: datetime, span: timedelta, top: float, train_days: float
                     ) -> CellResult:
    order = surface.ranking()
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(1, order.size + 1)
    flagged = surface.flagged(top)
    properties: dict[str, np.ndarray] = {
        "risk": np.asarray(surface.risk, dtype=float), "rank": rank,
        "flagged": flagged.astype(bool), "training_count": study.counts,
    }
    zone = ZoneInfo(study.events.timezone)
    start_local = origin.astimezone(zone)
    end_local = (origin + span).astimezone(zone)
    fitted_state = {k: _plain(v) for k, v in vars(fitted).items()
                    if k.endswith("_") and not k.startswith("_") and np.ndim(v) == 0}
    summary: dict[str, Any] = {
        "filter": flt.description, "model": fitted.name, "params": fitted.get_params(),
        "fitted": fitted_state, "grid": study.grid.label, "crs": study.grid.crs,
        "cells": int(study.keys.size), "training_events": int(study.events.x.size),
        "training_window_days": train_days,
        "origin": origin.isoformat(), "horizon_hours": span.total_seconds() / 3600,
        "period_local": f"{start_local:%Y-%m-%d %H:%M} to {end_local:%Y-%m-%d %H:%M}",
        "risk_is_expected_count": bool(surface.expected),
        "flagged_share": top, "flagged_cells": int(flagged.sum()),
        "expected_events": round(float(surface.risk.sum()), 3) if surface.expected else None,
        "notes": study.notes,
    }
    title = (f"{fitted.name} forecast · {study.grid.label} · "
             f"{start_local:%Y-%m-%d} + {span.total_seconds() / 86400:g} days")
    if flt.description:
        title += " · " + ", ".join(f"{k} {v}" for k, v in flt.description.items())
    return CellResult(grid=study.grid, keys=study.keys, properties=properties, summary=summary,
                      title=title, map_kind="sequential", map_field="risk",
                      boundaries=study.boundaries)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def parse_origin(engine: Engine, text: str | None) -> datetime | None:
    """``--origin``: a bare date is that local day's midnight in the city's time zone."""
    if not text:
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).date()
            zone = ZoneInfo(city_timezone(engine))
            return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--origin {text!r}: use YYYY-MM-DD or an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_coverages(text: str) -> tuple[float, ...]:
    """``1,2,5,10`` (percent of the study area's cells) -> shares."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--coverage {text!r}: percentages, e.g. 1,2,5,10") from None
    if not values or any(not 0 < v <= 100 for v in values):
        raise UsageError(f"--coverage {text!r}: percentages between 0 and 100, e.g. 1,5,10")
    return tuple(sorted(set(v / 100.0 for v in values)))


def cell_areas(engine: Engine, study: Study, kind: str) -> np.ndarray:
    """The ``kind`` area code of each study cell (the imported polygon holding its centre)."""
    from urbansec.domain.events import WGS84, transformer
    from urbansec.services.events import area_codes_at, load_boundaries

    x, y = study.grid.centroids(study.keys)
    lon, lat = transformer(study.grid.crs, WGS84).transform(x, y)
    return area_codes_at(load_boundaries(engine, kind), np.asarray(lon), np.asarray(lat))


def backtest(
    engine: Engine, flt: IncidentFilter, *, models: list[str], horizon: str = "1d",
    step: str | None = None, train_days: float = DEFAULT_TRAIN_DAYS,
    coverages: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10), options: GridOptions | None = None,
    seed: int = 0, refit_every: int = 1, bias_kind: str | None = "district",
    progress: Any = None,
) -> dict[str, Any]:
    """Rolling-origin backtest of ``models`` over the filter's period (``--from``/``--to``).

    Fold origins are the city's local midnights from ``--from``, one ``step`` (default: the
    horizon) apart; each fold trains on the ``train_days`` before its origin and is scored on
    the incidents of ``[origin, origin + horizon)``. ``historical`` is always run: it is the
    baseline every difference is measured against.
    """
    from urbansec.forecast.backtest import rolling_origin_backtest

    if flt.start is None or flt.end is None:
        raise UsageError("a backtest needs its period: --from YYYY-MM-DD --to YYYY-MM-DD")
    names = []
    for name in [m.strip().lower() for m in models if m.strip()] or ["historical"]:
        model_factory(name)
        if name not in names:
            names.append(name)
    if "historical" not in names:
        names.insert(0, "historical")
    span = parse_horizon(horizon)
    step_span = parse_horizon(step) if step else span
    if refit_every < 1:
        raise UsageError("--refit-every must be 1 or more")
    timezone = city_timezone(engine)
    first_origin = local_midnight(flt.start, timezone)
    window = replace(flt, start=first_origin - timedelta(days=train_days), end=flt.end)
    check_period(engine, replace(flt, start=first_origin, end=flt.end))
    study = prepare_study(engine, window, options or GridOptions())
    result = rolling_origin_backtest(
        study.events, study.grid, study.keys, {name: MODELS[name] for name in names},
        start=utc64(first_origin), end=utc64(flt.end),
        horizon_days=span.total_seconds() / 86400, step_days=step_span.total_seconds() / 86400,
        train_days=train_days, coverages=coverages, refit_every=refit_every, seed=seed,
        progress=progress)
    out: dict[str, Any] = {
        "filter": flt.description, "models": names, "grid": study.grid.label,
        "cells": int(study.keys.size), "events": int(study.events.x.size),
        "horizon_days": span.total_seconds() / 86400,
        "step_days": step_span.total_seconds() / 86400, "train_days": train_days,
        "folds": len(result.origins), "seed": seed, "refit_every": refit_every,
        "coverages": [round(c * 100, 6) for c in coverages],
        "first_origin": first_origin.isoformat(), "notes": study.notes,
        "rows": [_clean_row(row) for row in result.summary_rows()],
    }
    codes = None
    if bias_kind:
        try:
            codes = cell_areas(engine, study, bias_kind)
        except Exception as exc:
            out["notes"] = [*study.notes, f"bias per {bias_kind}: {exc}"]
    bias = result.bias(area_of_cell=codes)
    out["bias"] = {"coverage": round(max(coverages) * 100, 6), "by": bias_kind if codes is not
                   None else None, "models": {
                       name: {"summary": _clean_row(report.summary()),
                              "areas": [_clean_row(r) for r in report.area_rows()],
                              "describe": report.describe()}
                       for name, report in bias.items()}}
    out["curve"] = {"area_share": np.round(np.linspace(0, 1, result.curve.shape[1]), 4).tolist(),
                    "hit_rate": {name: [None if not np.isfinite(v) else round(float(v), 5)
                                        for v in result.curve[i]]
                                 for i, name in enumerate(result.models)}}
    return out


def _clean_row(row: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float):
            value = None if not np.isfinite(value) else round(value, 6)
        clean[key] = value
    return clean
