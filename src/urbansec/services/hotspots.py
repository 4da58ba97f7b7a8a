"""Hotspots and emerging hotspots: where incidents concentrate, and how that changes.

One service per question, shared by the CLI, the API and the dashboard: load the filtered
incidents, lay the grid over the study area (empty cells included), call the pure statistic
from ``urbansec.analysis`` and return the cells with their properties.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import Engine, select

from urbansec.analysis import emerging as emerging_analysis
from urbansec.analysis import hotspots as hotspot_analysis
from urbansec.analysis import kde as kde_analysis
from urbansec.domain.events import Events
from urbansec.domain.grid import Grid, SquareGrid, make_grid, project_geometry, union_of
from urbansec.errors import NotFoundError, UsageError
from urbansec.services.cells import CellResult, build_weights
from urbansec.services.events import (
    filter_area_geometry,
    load_boundaries,
    load_events,
)
from urbansec.services.incidents import INCIDENTS, IncidentFilter, stored_period

METHODS = ("count", "kde", "gi", "lisa")
GI_LABELS = {3: "hot 99%", 2: "hot 95%", 1: "hot 90%", 0: "not significant",
             -1: "cold 90%", -2: "cold 95%", -3: "cold 99%"}


@dataclass(frozen=True)
class GridOptions:
    """How the study area is cut into cells."""

    cell: float = 250.0
    hex_resolution: int | None = None
    # the study area: all imported areas of a kind ("district") or some ("district:1,18")
    within: str | None = None
    boundaries: str | None = None  # area kind drawn on maps (defaults to ``within``)


@dataclass
class Study:
    events: Events  # located events of the filter
    grid: Grid
    keys: np.ndarray
    counts: np.ndarray
    boundaries: list[Any]
    period: tuple[datetime | None, datetime | None]
    notes: list[str]


def check_period(engine: Engine, flt: IncidentFilter) -> None:
    """A period that holds no incident at all (whatever the other filters) is a mistake worth
    saying so, with the period the store does cover."""
    if flt.start is None and flt.end is None:
        return
    first, last = stored_period(engine)
    c = INCIDENTS.c
    with engine.connect() as connection:
        query = select(c.id).limit(1)
        if flt.start is not None:
            query = query.where(c.occurred_at >= flt.start)
        if flt.end is not None:
            query = query.where(c.occurred_at < flt.end)
        if connection.execute(query).first() is None:
            raise UsageError(
                f"no incidents at all in the period {_day(flt.start)} to {_day(flt.end)}; "
                f"the store covers {_day(first)} to {_day(last)}")


def _day(value: Any) -> str:
    if value is None:
        return "open"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.date().isoformat()


def prepare_study(engine: Engine, flt: IncidentFilter, options: GridOptions) -> Study:
    check_period(engine, flt)
    events = load_events(engine, flt)
    notes: list[str] = []
    unlocated = int((~events.located).sum())
    if unlocated:
        notes.append(f"{unlocated} matching incidents have no coordinates and are not mapped")
    located = events.only_located()
    grid = make_grid(located.crs, cell=options.cell, hex_resolution=options.hex_resolution)
    area_wgs84 = filter_area_geometry(engine, flt)
    within_kind, within_codes = _parse_within(options.within)
    boundary_kind = options.boundaries or within_kind
    boundaries = [b.geometry for b in load_boundaries(engine, boundary_kind)] \
        if boundary_kind else []
    if within_kind:
        chosen = [b for b in load_boundaries(engine, within_kind)
                  if within_codes is None or b.code in within_codes]
        missing = sorted((within_codes or set()) - {b.code for b in chosen})
        if missing:
            raise NotFoundError(f"--within {options.within}: no imported {within_kind} "
                                f"{', '.join(missing)}")
        within = union_of([b.geometry for b in chosen])
        area_wgs84 = within if area_wgs84 is None else area_wgs84.intersection(within)
    if area_wgs84 is not None and not boundaries:
        boundaries = [area_wgs84]
    if area_wgs84 is None:
        notes.append("study area: the box around the incidents (use --within KIND to keep "
                     "only cells inside imported areas)")
    area = project_geometry(area_wgs84, located.crs) if area_wgs84 is not None else None
    keys = grid.study_cells(located.x, located.y, area)
    counts = grid.counts(keys, located.x, located.y)
    return Study(events=located, grid=grid, keys=keys, counts=counts, boundaries=boundaries,
                 period=(flt.start, flt.end), notes=notes)


def _parse_within(text: str | None) -> tuple[str | None, set[str] | None]:
    if not text:
        return None, None
    kind, sep, codes = text.partition(":")
    if not sep:
        return kind.strip().lower(), None
    from urbansec.ingest.areas import normalize_area_code

    chosen = {normalize_area_code(c) for c in codes.split(",") if c.strip()}
    if not kind.strip() or not chosen:
        raise UsageError(f"--within {text!r}: use KIND or KIND:CODE,CODE, e.g. district:1,18")
    return kind.strip().lower(), chosen


def _period_text(study: Study) -> str:
    """The period in the city's local dates, both ends included."""
    zone = ZoneInfo(study.events.timezone)
    start, end = study.period
    local = study.events.local_times() if study.events.t.size else None
    if start is not None:
        first = start.astimezone(zone).date()
    elif local is not None:
        first = local.min().astype("datetime64[D]").astype(date)
    else:
        return "no data"
    if end is not None:
        last = (end.astimezone(zone) - timedelta(microseconds=1)).date()  # end is exclusive
    elif local is not None:
        last = local.max().astype("datetime64[D]").astype(date)
    else:
        return "no data"
    return f"{first.isoformat()} to {last.isoformat()}"


def _title(what: str, study: Study, flt: IncidentFilter) -> str:
    parts = [f"{k} {v}" for k, v in flt.description.items() if k not in ("from", "to")]
    return (f"{what} · {study.grid.label} · {_period_text(study)}"
            + (f" · {', '.join(parts)}" if parts else ""))


def _empty_result(study: Study, flt: IncidentFilter, what: str, kind: str, fld: str
                  ) -> CellResult:
    return CellResult(grid=study.grid, keys=np.empty(0, dtype=np.int64), properties={},
                      summary={"filter": flt.description, "events": 0, "cells": 0,
                               "message": "no located incidents match this filter",
                               "notes": study.notes},
                      title=_title(what, study, flt), map_kind=kind, map_field=fld,
                      boundaries=study.boundaries)


def hotspots(
    engine: Engine, flt: IncidentFilter, *, method: str = "gi", options: GridOptions | None = None,
    weights: str = "queen", permutations: int = 999, seed: int = 0, fdr: bool = False,
    bandwidth: float | None = None, kernel: str = "quartic",
) -> CellResult:
    """Counts, kernel density, Getis-Ord Gi* or Local Moran's I per study cell."""
    if method not in METHODS:
        raise UsageError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if permutations < 0 or permutations > 99_999:
        raise UsageError("--permutations must be between 0 and 99999")
    options = options or GridOptions()
    study = prepare_study(engine, flt, options)
    names = {"count": "Incident counts", "kde": f"Kernel density ({kernel})",
             "gi": "Getis-Ord Gi* hot spots", "lisa": "Local Moran's I clusters"}
    if study.events.x.size == 0 or study.keys.size == 0:
        kind = {"gi": "gi", "lisa": "lisa"}.get(method, "sequential")
        return _empty_result(study, flt, names[method], kind, "count")
    summary: dict[str, Any] = {
        "filter": flt.description, "method": method, "grid": study.grid.label,
        "crs": study.grid.crs, "events": int(study.events.x.size),
        "cells": int(study.keys.size), "empty_cells": int((study.counts == 0).sum()),
        "period": _period_text(study), "notes": study.notes,
    }
    properties: dict[str, np.ndarray] = {"count": study.counts}
    kind, fld = "sequential", "count"
    if method == "kde":
        if not isinstance(study.grid, SquareGrid):
            raise UsageError("kernel density is computed on square cells; drop --hex")
        h = bandwidth if bandwidth is not None else kde_analysis.default_bandwidth(
            study.events.x, study.events.y)
        properties["density_km2"] = _kde_at_cells(study, float(h), kernel)
        summary.update(bandwidth_m=round(float(h), 1), kernel=kernel,
                       bandwidth_rule="given" if bandwidth is not None else "default")
        fld = "density_km2"
    elif method in ("gi", "lisa"):
        w, weights_label = build_weights(study.grid, study.keys, weights)
        islands = int((np.asarray(w.sum(axis=1)).ravel() == 0).sum())
        summary.update(weights=weights_label, permutations=permutations, seed=seed, fdr=fdr,
                       islands=islands)
        if method == "gi":
            gi = hotspot_analysis.gi_star(study.counts, w, permutations=permutations, seed=seed,
                                          fdr=fdr)
            properties["z"] = np.asarray(gi.z)
            # the two-sided p-value the class was decided on (2x the folded pseudo p-value
            # with permutations, so 5% means 5% on a random map)
            properties["p"] = np.asarray(gi.p)
            properties["p_norm"] = np.asarray(gi.p_norm)
            if gi.p_sim is not None:
                properties["p_sim"] = np.asarray(gi.p_sim)
            classes = np.asarray(gi.classes).astype(int)
            properties["class"] = classes
            properties["label"] = np.array([GI_LABELS[c] for c in classes.tolist()],
                                           dtype=object)
            summary["classes"] = {GI_LABELS[c]: int((classes == c).sum())
                                  for c in sorted(GI_LABELS, reverse=True)}
            summary["p_values"] = "permutation" if permutations else "analytical"
            kind, fld = "gi", "class"
        else:
            if permutations == 0:
                raise UsageError("Local Moran's I needs permutations for its p-values "
                                 "(--permutations 99 or more)")
            lisa = hotspot_analysis.local_moran(study.counts, w, permutations=permutations,
                                                seed=seed, fdr=fdr)
            properties["I"] = np.asarray(lisa.I)
            properties["p"] = np.asarray(lisa.p)
            properties["p_sim"] = np.asarray(lisa.p_sim)
            properties["quadrant"] = np.asarray(lisa.quadrant).astype(int)
            clusters = np.asarray(lisa.cluster, dtype=object)
            properties["cluster"] = clusters
            summary["clusters"] = {c: int((clusters == c).sum())
                                   for c in ("HH", "LL", "HL", "LH", "")}
            kind, fld = "lisa", "cluster"
    result = CellResult(grid=study.grid, keys=study.keys, properties=properties,
                        summary=summary, title=_title(names[method], study, flt),
                        map_kind=kind, map_field=fld, boundaries=study.boundaries)
    return result


def _kde_at_cells(study: Study, bandwidth: float, kernel: str) -> np.ndarray:
    grid = study.grid
    assert isinstance(grid, SquareGrid)
    cols, rows = SquareGrid.col_row(study.keys)
    c0, r0 = int(cols.min()), int(rows.min())
    n_cols, n_rows = int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1
    surface = kde_analysis.kernel_density(
        study.events.x, study.events.y, x0=c0 * grid.size, y0=r0 * grid.size,
        cell_size=grid.size, n_cols=n_cols, n_rows=n_rows, bandwidth=bandwidth, kernel=kernel)
    return np.asarray(surface)[rows - r0, cols - c0]


SLICES = ("week", "month")


def slice_index(t_local: np.ndarray, slice_by: str) -> tuple[np.ndarray, np.ndarray]:
    """Slice number of each local time and the start (local date) of every slice in range.

    Weeks start on Monday (ISO weeks), months on the first; slices are consecutive from the
    first to the last event's slice, empty ones included.
    """
    days = t_local.astype("datetime64[D]")
    if slice_by == "week":
        # numpy's day 0 (1970-01-01) was a Thursday: shift so weeks start on Monday
        week = (days.astype(np.int64) + 3) // 7
        first, last = int(week.min()), int(week.max())
        starts = (np.arange(first, last + 1) * 7 - 3).astype("datetime64[D]")
        return week - first, starts
    if slice_by == "month":
        month = days.astype("datetime64[M]").astype(np.int64)
        first, last = int(month.min()), int(month.max())
        starts = np.arange(first, last + 1).astype("datetime64[M]").astype("datetime64[D]")
        return month - first, starts
    raise UsageError(f"--slice {slice_by!r}: use week or month")


def emerging(
    engine: Engine, flt: IncidentFilter, *, slice_by: str = "month",
    options: GridOptions | None = None, weights: str = "queen", alpha: float = 0.05,
) -> CellResult:
    """Emerging hot spot analysis over a space-time cube (cells x weeks or months)."""
    if slice_by not in SLICES:
        raise UsageError(f"--slice {slice_by!r}: use week or month")
    options = options or GridOptions()
    study = prepare_study(engine, flt, options)
    what = f"Emerging hot spots by {slice_by}"
    if study.events.x.size == 0 or study.keys.size == 0:
        return _empty_result(study, flt, what, "emerging", "category")
    local = study.events.local_times()
    slices, starts = slice_index(local, slice_by)
    if starts.size < 4:
        raise UsageError(f"emerging hot spots need at least 4 {slice_by}s of data to judge a "
                         f"trend; this filter spans {starts.size}")
    pos = study.grid.index_of(study.keys, study.grid.locate(study.events.x, study.events.y))
    inside = pos >= 0
    cube = np.zeros((study.keys.size, starts.size))
    np.add.at(cube, (pos[inside], slices[inside]), 1.0)
    w, weights_label = build_weights(study.grid, study.keys, weights)
    result = emerging_analysis.emerging_hotspots(cube, w, alpha=alpha)
    categories = np.asarray(result.category, dtype=object)
    properties: dict[str, np.ndarray] = {
        "count": cube.sum(axis=1), "category": categories,
        "trend_z": np.asarray(result.trend_z), "trend_p": np.asarray(result.trend_p),
        "final_z": np.asarray(result.z)[:, -1],
    }
    counts = {c: int(n) for c, n in zip(*np.unique(categories, return_counts=True),
                                        strict=True)}
    summary: dict[str, Any] = {
        "filter": flt.description, "grid": study.grid.label, "crs": study.grid.crs,
        "events": int(study.events.x.size), "cells": int(study.keys.size),
        "slice": slice_by, "slices": int(starts.size),
        "first_slice": str(starts[0]), "last_slice": str(starts[-1]),
        "weights": weights_label, "alpha": alpha, "categories": counts,
        "period": _period_text(study), "notes": study.notes,
    }
    overall = result.cube_trend
    if overall is not None:
        summary["overall_trend"] = _plain_trend(overall)
    return CellResult(grid=study.grid, keys=study.keys, properties=properties, summary=summary,
                      title=_title(what, study, flt), map_kind="emerging",
                      map_field="category", boundaries=study.boundaries)


def _plain_trend(trend: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("z", "p", "tau", "s"):
        value = getattr(trend, name, None)
        if value is not None:
            array = np.asarray(value).ravel()
            out[name] = round(float(array[0]), 6) if array.size else None
    return out
