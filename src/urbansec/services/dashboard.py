"""What the web dashboard asks for: configuration, the category tree, area outlines, and the
analyst view (cells, hour x weekday, months, categories) for any filter in well under a second.

The view is answered from the in-memory event cube (``services.dashboard_cube``): numpy masks,
a ``bincount`` over grid keys and the pure statistics of ``urbansec.analysis`` (Gi* with the
analytic z: no permutations on an interactive map). Viewers and the public get the same
privacy rules as every other aggregate (``services.aggregates``): cells of at least
``public_cell_m``, counts below ``k`` suppressed (``null``), complementary suppression per
table. Results that cost more (emerging hot spots, forecasts, backtests, area outlines) are
kept in a small cache per data version.
"""

from __future__ import annotations

import gc
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
from shapely.geometry import mapping, shape
from sqlalchemy import Engine, func, select

from urbansec.analysis import emerging as emerging_analysis
from urbansec.analysis import hotspots as hotspot_analysis
from urbansec.analysis import kde as kde_analysis
from urbansec.analysis import weights as spatial_weights
from urbansec.config import Settings
from urbansec.domain.events import WGS84, transformer, utm_crs_for
from urbansec.domain.grid import SquareGrid, reproject
from urbansec.domain.taxonomy import CATEGORIES
from urbansec.errors import NotFoundError, UsageError
from urbansec.services.access import Principal, can
from urbansec.services.aggregates import MAX_CELL_M, MIN_CELL_M, Privacy, suppress_counts
from urbansec.services.dashboard_cube import (
    CubeFilter,
    EventCube,
    cache_for,
    data_version,
    get_cube,
    mask,
    parse_time_window,
)
from urbansec.services.events import load_boundaries
from urbansec.services.incidents import AREAS, IncidentFilter, iso_utc

LANGUAGES = ("en", "el", "fi", "it")
LAYERS = ("count", "kde", "gi")
#: the most grid cells one view may lay over its box (Gi*/KDE need every cell of it)
MAX_VIEW_CELLS = 250_000
#: the most features one view returns (the browser draws each one)
MAX_VIEW_FEATURES = 30_000
#: emerging hot spots: cells and cells x slices of one request
MAX_EMERGING_CELLS = 50_000
MAX_EMERGING_BINS = 5_000_000
#: backtest: located incidents in the training and test windows of one request
MAX_BACKTEST_EVENTS = 60_000
#: half a year of training before each origin: SEPP's EM grows faster than linearly with
#: the window, and the dashboard's table should come back in seconds (the CLI can go longer)
BACKTEST_TRAIN_DAYS = 182
BACKTEST_WEEKS = 12
BACKTEST_MODELS = ("naive", "historical", "kde", "sepp")
BACKTEST_COVERAGES = (0.01, 0.02, 0.05, 0.10, 0.20)
#: a full fit every 4 weekly folds, warm-started updates between (SEPP's EM is the cost)
BACKTEST_REFIT_EVERY = 4
#: area outlines are simplified in metres (a local UTM zone) before drawing
SIMPLIFY_M = 15.0
COORD_DECIMALS = 6
GI_CLASSES = {3: "hot-99", 2: "hot-95", 1: "hot-90", 0: "ns", -1: "cold-90", -2: "cold-95",
              -3: "cold-99"}
GI_LEGEND = [
    {"class": "hot-99", "label": "Hot spot, 99% confidence"},
    {"class": "hot-95", "label": "Hot spot, 95% confidence"},
    {"class": "hot-90", "label": "Hot spot, 90% confidence"},
    {"class": "ns", "label": "Not significant"},
    {"class": "cold-90", "label": "Cold spot, 90% confidence"},
    {"class": "cold-95", "label": "Cold spot, 95% confidence"},
    {"class": "cold-99", "label": "Cold spot, 99% confidence"},
]
EMERGING_PATTERNS = ("new", "consecutive", "intensifying", "persistent", "diminishing",
                     "sporadic", "oscillating", "historical")


_gc_lock = threading.Lock()
_gc_pauses = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """A view builds tens of thousands of small acyclic lists (cell rings) that reference
    counting frees; the cycle collector would rescan the heap (the cube, the app) again and
    again meanwhile: 4-5x the time of building the features, measured. Paused while any
    request builds, re-enabled when the last one is done."""
    global _gc_pauses
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled[0] = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled[0]:
                gc.enable()


_gc_was_enabled = [True]


# --------------------------------------------------------------------------------------------
# Small cache of derived results, per engine, keyed with the data version


_DERIVED_SIZE = 48
_derived_lock = threading.Lock()
_key_locks: dict[Any, threading.Lock] = {}


#: rendered views (JSON bytes) kept per data version: a few hundred kB each
_VIEWS_SIZE = 32


def cached(engine: Engine, key: tuple[Any, ...], compute: Callable[[], Any], *,
           store_name: str = "lru", size: int = _DERIVED_SIZE) -> Any:
    """``compute()`` once per ``key`` (which must include the data version); the same
    request arriving twice while it runs waits for the first instead of doing it again."""
    store: OrderedDict[Any, Any] = _derived(engine, store_name)
    with _derived_lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
        lock = _key_locks.setdefault((id(engine), key), threading.Lock())
    with lock:
        with _derived_lock:
            if key in store:
                return store[key]
        try:
            value = compute()
        finally:
            with _derived_lock:
                _key_locks.pop((id(engine), key), None)
        with _derived_lock:
            store[key] = value
            while len(store) > size:
                store.popitem(last=False)
        return value


def _derived(engine: Engine, name: str = "lru") -> OrderedDict[Any, Any]:
    cache = cache_for(engine)
    store = cache.derived.get(name)
    if store is None:
        store = cache.derived.setdefault(name, OrderedDict())
    return store


# --------------------------------------------------------------------------------------------
# Configuration, taxonomy, areas


def current_version(engine: Engine) -> tuple[int, ...]:
    """The data version the dashboard's answers are computed from (the cube's)."""
    return get_cube(engine).version


def dashboard_config(engine: Engine, settings: Settings) -> dict[str, Any]:
    """What the map page needs before its first request: title, time zone, extent, period,
    area kinds (and whether each has imported boundaries to draw), tiles, the privacy
    settings it must respect and how long report contacts are kept. Kept per data version:
    the page asks for it on every load."""
    cube = get_cube(engine)
    shown = (settings.dashboard_title, settings.tile_url, settings.tile_attribution,
             int(settings.k_anonymity), float(settings.public_cell_m),
             int(settings.contact_retention_days))
    return cached(engine, ("config", cube.version, shown),
                  lambda: _dashboard_config(engine, cube, settings))


def _dashboard_config(engine: Engine, cube: EventCube, settings: Settings) -> dict[str, Any]:
    with engine.connect() as connection:
        kinds = dict(connection.execute(select(AREAS.c.kind, func.count())
                                        .group_by(AREAS.c.kind)).all())
        area_box = connection.execute(select(func.min(AREAS.c.min_lon), func.min(AREAS.c.min_lat),
                                             func.max(AREAS.c.max_lon),
                                             func.max(AREAS.c.max_lat))).one()
    for kind, column in cube.areas.items():
        kinds.setdefault(kind, len(column.labels))
    bounds = None
    if cube.located.any():
        lon, lat = cube.lon[cube.located], cube.lat[cube.located]
        bounds = [_r(float(lon.min())), _r(float(lat.min())), _r(float(lon.max())),
                  _r(float(lat.max()))]
    elif area_box[0] is not None:
        bounds = [_r(float(v)) for v in area_box]
    period = None
    if len(cube):
        period = {"first": _local_day(cube, int(cube.t[0])),
                  "last": _local_day(cube, int(cube.t[-1]))}
    with_boundaries = _imported_kinds(engine)
    imported = [k for k, n in kinds.items() if n >= 2 and k in with_boundaries]
    default = "district" if "district" in kinds else (
        min(imported, key=lambda k: kinds[k]) if imported else None)
    return {
        "title": settings.dashboard_title, "timezone": cube.timezone, "bounds": bounds,
        "period": period,
        "area_kinds": [{"kind": k, "count": int(kinds[k]), "boundaries": k in with_boundaries}
                       for k in sorted(kinds)],
        "default_area_kind": default, "tile_url": settings.tile_url,
        "tile_attribution": settings.tile_attribution, "k_anonymity": int(settings.k_anonymity),
        "public_cell_m": float(settings.public_cell_m), "languages": list(LANGUAGES),
        "contact_retention_days": int(settings.contact_retention_days),
        "data_version": list(cube.version),
    }


def _imported_kinds(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return set(connection.execute(select(AREAS.c.kind).distinct()).scalars().all())


def taxonomy(engine: Engine, privacy: Privacy) -> dict[str, Any]:
    """The ICCS sections and divisions that occur in the data (with the sections of the
    divisions that occur), with their counts; a section's count includes its divisions."""
    cube = get_cube(engine)
    per_code = np.bincount(cube.category, minlength=len(cube.categories)) if len(cube) else \
        np.zeros(len(cube.categories), dtype=np.int64)
    own = {code: int(n) for code, n in zip(cube.categories, per_code.tolist(), strict=True)
           if code is not None and n}
    sections: dict[str, int] = {}
    for code, n in own.items():
        known = CATEGORIES.get(code)
        parent = known.parent if known is not None else None
        sections[parent or code] = sections.get(parent or code, 0) + n
    codes = sorted(set(own) | set(sections))
    counts = {c: sections.get(c, own.get(c, 0)) for c in codes}
    shown: dict[str, int | None] = dict(counts)
    if privacy.suppress:
        total = int(sum(sections.values()))
        # each level is one table: the sections against the total, and each section's own
        # incidents plus its divisions against the section's count
        top = [c for c in codes if c in sections]
        table = suppress_counts([counts[c] for c in top], privacy.k, total=total)
        shown.update(dict(zip(top, table.values, strict=True)))
        for section in top:
            parts = [c for c in codes if c not in sections and _parent(c) == section]
            if not parts:
                continue
            rest = counts[section] - sum(counts[c] for c in parts)
            sub = suppress_counts([*(counts[c] for c in parts), rest], privacy.k,
                                  total=counts[section])
            shown.update(dict(zip(parts, sub.values[:-1], strict=True)))
    categories = []
    for code in codes:
        known = CATEGORIES.get(code)
        categories.append({"code": code, "name": known.name if known else code,
                           "level": known.level if known else 1,
                           "parent": known.parent if known else None, "count": shown[code]})
    return {"categories": categories, "suppressed": privacy.suppress,
            "k": privacy.k if privacy.suppress else None}


def _parent(code: str) -> str | None:
    known = CATEGORIES.get(code)
    return known.parent if known else None


def area_outlines(engine: Engine, kind: str) -> dict[str, Any]:
    """Every imported area of ``kind`` as GeoJSON, simplified to ~15 m for drawing."""
    kind = kind.strip().lower()
    key = ("areas", data_version(engine, count=False), kind)
    return cached(engine, key, lambda: _area_outlines(engine, kind))


def _area_outlines(engine: Engine, kind: str) -> dict[str, Any]:
    boundaries = load_boundaries(engine, kind)
    centre = shapely.union_all([b.geometry.envelope for b in boundaries]).centroid
    crs = utm_crs_for(max(-180.0, min(180.0, centre.x)), max(-80.0, min(84.0, centre.y)))
    features = []
    for b in boundaries:
        local = reproject(b.geometry, WGS84, crs)
        simple = local.simplify(SIMPLIFY_M, preserve_topology=True)
        if simple.is_empty:
            simple = local
        geometry = _rounded(mapping(reproject(simple, crs, WGS84)))
        features.append({"type": "Feature", "id": f"{kind}:{b.code}", "geometry": geometry,
                         "properties": {"code": b.code, "name": b.name, "kind": kind}})
    return {"type": "FeatureCollection", "kind": kind, "simplified_m": SIMPLIFY_M,
            "features": features}


def _rounded(geometry: Any) -> Any:
    """A GeoJSON geometry mapping with coordinates rounded to 6 decimals (~0.1 m)."""
    def walk(value: Any) -> Any:
        if isinstance(value, int | float):
            return round(float(value), COORD_DECIMALS)
        return [walk(v) for v in value]

    return {"type": geometry["type"], "coordinates": walk(geometry["coordinates"])}


# --------------------------------------------------------------------------------------------
# The analyst view


@dataclass(frozen=True)
class ViewRequest:
    """The query of one view, as typed (echoed back) and as parsed."""

    category: str | None = None
    start: str | None = None
    end: str | None = None
    time: str = "all"
    area: str | None = None
    layer: str = "count"
    cell: float = 250.0
    bandwidth: float | None = None

    def parse(self) -> tuple[IncidentFilter, CubeFilter]:
        if self.layer not in LAYERS:
            raise UsageError(f"layer {self.layer!r}: use one of {', '.join(LAYERS)}")
        if not (math.isfinite(self.cell) and MIN_CELL_M <= self.cell <= MAX_CELL_M):
            raise UsageError(f"cell must be between {MIN_CELL_M:g} and {MAX_CELL_M:g} metres")
        for name, value in (("from", self.start), ("to", self.end)):
            if value is not None and not _is_day(value):
                raise UsageError(f"{name} {value!r}: use a day, YYYY-MM-DD")
        flt = IncidentFilter.parse(category=self.category, start=self.start, end=self.end,
                                   area=self.area)
        return flt, CubeFilter.from_incident_filter(flt, parse_time_window(self.time))

    def echo(self) -> dict[str, Any]:
        return {"category": self.category, "from": self.start, "to": self.end,
                "time": self.time, "area": self.area, "layer": self.layer, "cell": self.cell}


def _is_day(text: str) -> bool:
    try:
        return len(text) == 10 and date.fromisoformat(text) is not None
    except ValueError:
        return False


def view(engine: Engine, request: ViewRequest, privacy: Privacy) -> dict[str, Any]:
    """Everything the map page draws for one filter (see the module docstring)."""
    started = time.perf_counter()
    flt, cube_filter = request.parse()
    cube = get_cube(engine)
    with gc_paused():
        return _view(cube, request, flt, cube_filter, privacy, started)


def view_json(engine: Engine, request: ViewRequest, privacy: Privacy, *,
              geojson: bool = False) -> bytes:
    """``view`` serialised (``dumps``), kept per data version and privacy: the same filter
    asked again (a reload, the next visitor, the back button) is answered from memory.
    ``geojson``: the cells as a GeoJSON FeatureCollection (``cell_features``)."""
    started = time.perf_counter()
    flt, cube_filter = request.parse()
    cube = get_cube(engine)
    key = ("view", cube.version, request, privacy.suppress, privacy.k, privacy.min_cell_m,
           geojson)

    def render() -> bytes:
        with gc_paused():
            body = _view(cube, request, flt, cube_filter, privacy, started)
            if geojson:
                body["cells"] = cell_features(body["cells"])
            return dumps(body)

    return cached(engine, key, render, store_name="views", size=_VIEWS_SIZE)


def _view(cube: EventCube, request: ViewRequest, flt: IncidentFilter, cube_filter: CubeFilter,
          privacy: Privacy, started: float) -> dict[str, Any]:
    selected = mask(cube, cube_filter)
    cell = max(float(request.cell), privacy.min_cell_m) if privacy.suppress else \
        float(request.cell)
    total = int(selected.sum())
    located_mask = selected & cube.located
    located = int(located_mask.sum())
    start, end = _period(cube, cube_filter)
    out: dict[str, Any] = {
        "filter": request.echo(), "total": total, "located": located,
        "suppressed": privacy.suppress, "k": privacy.k if privacy.suppress else None,
        "period": _period_out(cube, start, end),
    }
    if out["period"] is not None:
        # the days asked for are UTC days (as in every route): echo them as given
        if request.start:
            out["period"]["from"] = request.start
        if request.end:
            out["period"]["last"] = request.end
            out["period"]["to"] = (date.fromisoformat(request.end)
                                   + timedelta(days=1)).isoformat()
    if privacy.suppress:
        out["total"] = None if 0 < total < privacy.k else total
        out["located"] = located if out["total"] is not None and not (
            0 < located < privacy.k or 0 < total - located < privacy.k) else None
    out["cells"] = _cells(cube, located_mask, request, cell, privacy, flt, total)
    out["hour_weekday"] = _hour_weekday(cube, selected, privacy)
    out["monthly"] = _monthly(cube, cube_filter, selected, start, end, privacy)
    out["categories"] = _categories(cube, selected, total, privacy)
    out["elapsed_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return out


def _period(cube: EventCube, flt: CubeFilter) -> tuple[int | None, int | None]:
    """The view's period in UTC seconds [start, end): the filter's, else the data's."""
    if not len(cube):
        return flt.start, flt.end
    start = flt.start if flt.start is not None else int(cube.t[0])
    end = flt.end if flt.end is not None else int(cube.t[-1]) + 1
    return start, end


def _period_out(cube: EventCube, start: int | None, end: int | None) -> dict[str, Any] | None:
    if start is None or end is None:
        return None
    zone = ZoneInfo(cube.timezone)
    first = datetime.fromtimestamp(start, UTC).astimezone(zone).date()
    last = datetime.fromtimestamp(end - 1, UTC).astimezone(zone).date()
    return {"from": first.isoformat(), "to": (last + timedelta(days=1)).isoformat(),
            "last": last.isoformat(), "timezone": cube.timezone}


def _local_day(cube: EventCube, seconds: int) -> str:
    zone = ZoneInfo(cube.timezone)
    return datetime.fromtimestamp(seconds, UTC).astimezone(zone).date().isoformat()


def _categories(cube: EventCube, selected: np.ndarray, total: int, privacy: Privacy
                ) -> list[dict[str, Any]]:
    counts = np.bincount(cube.category[selected], minlength=len(cube.categories))
    rows = [(code, int(n)) for code, n in zip(cube.categories, counts.tolist(), strict=True)
            if n]
    rows.sort(key=lambda r: (-r[1], r[0] or ""))
    values: list[int | None] = [n for _, n in rows]
    if privacy.suppress:
        values = suppress_counts([n for _, n in rows], privacy.k, total=total).values
    return [{"code": code, "name": CATEGORIES[code].name if code in CATEGORIES else "unmapped",
             "count": value} for (code, _), value in zip(rows, values, strict=True)]


def _hour_weekday(cube: EventCube, selected: np.ndarray, privacy: Privacy) -> dict[str, Any]:
    exact = selected & cube.exact
    flat = cube.weekday[exact].astype(np.int64) * 24 + cube.hour[exact]
    counts = np.bincount(flat, minlength=168).tolist()
    values: list[int | None] = counts
    if privacy.suppress:
        values = suppress_counts(counts, privacy.k).values
    return {"counts": [values[d * 24:(d + 1) * 24] for d in range(7)],
            "weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
            "timezone": cube.timezone}


def _month_of(cube: EventCube, seconds: int) -> int:
    zone = ZoneInfo(cube.timezone)
    local = datetime.fromtimestamp(seconds, UTC).astimezone(zone)
    return (local.year - 1970) * 12 + local.month - 1


def _monthly(cube: EventCube, flt: CubeFilter, selected: np.ndarray, start: int | None,
             end: int | None, privacy: Privacy) -> dict[str, Any]:
    """Counts per local month of the period, and the same months a year earlier (same
    filter otherwise) where the data reaches back that far."""
    if start is None or end is None or not len(cube):
        return {"months": [], "counts": [], "last_year": None}
    m0, m1 = _month_of(cube, start), _month_of(cube, end - 1)
    n = m1 - m0 + 1
    months = [f"{1970 + m // 12:04d}-{m % 12 + 1:02d}" for m in range(m0, m1 + 1)]
    counts = np.bincount(cube.month[selected] - m0, minlength=n)[:n].tolist()
    last_year: list[int | None] | None = None
    earlier = replace(flt, start=_year_before(start), end=_year_before(end))
    first_month = int(cube.month[0])
    if earlier.end is not None and earlier.end > int(cube.t[0]):
        previous = mask(cube, earlier)
        shifted = cube.month[previous] + 12 - m0
        shifted = shifted[(shifted >= 0) & (shifted < n)]
        values = np.bincount(shifted, minlength=n)[:n].tolist()
        # months before the data begins are unknown, not zero
        last_year = [None if m - 12 < first_month else v
                     for m, v in zip(range(m0, m1 + 1), values, strict=True)]
    shown: list[int | None] = counts
    if privacy.suppress:
        shown = suppress_counts(counts, privacy.k).values
        if last_year is not None:
            known = [i for i, v in enumerate(last_year) if v is not None]
            table = suppress_counts([last_year[i] or 0 for i in known], privacy.k).values
            for i, v in zip(known, table, strict=True):
                last_year[i] = v
    return {"months": months, "counts": shown, "last_year": last_year}


def _year_before(seconds: int) -> int:
    instant = datetime.fromtimestamp(seconds, UTC)
    try:
        earlier = instant.replace(year=instant.year - 1)
    except ValueError:  # 29 February
        earlier = instant.replace(year=instant.year - 1, day=28)
    return int(earlier.timestamp())


# --- cells -----------------------------------------------------------------------------------


@dataclass
class _Raster:
    """Located events binned on square cells over their box: counts[row - r0, col - c0]."""

    size: float
    c0: int
    r0: int
    counts: np.ndarray  # (rows, cols) int64

    def nonzero(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = np.nonzero(self.counts)
        return cols + self.c0, rows + self.r0, self.counts[rows, cols]

    def at(self, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
        r, c = rows - self.r0, cols - self.c0
        inside = (r >= 0) & (r < self.counts.shape[0]) & (c >= 0) & (c < self.counts.shape[1])
        out = np.zeros(cols.shape, dtype=np.int64)
        out[inside] = self.counts[r[inside], c[inside]]
        return out


def _raster(x: np.ndarray, y: np.ndarray, size: float, pad: int = 0) -> _Raster:
    col = np.floor(x / size).astype(np.int64)
    row = np.floor(y / size).astype(np.int64)
    c0, r0 = int(col.min()) - pad, int(row.min()) - pad
    n_cols, n_rows = int(col.max()) + pad - c0 + 1, int(row.max()) + pad - r0 + 1
    if n_cols * n_rows > MAX_VIEW_CELLS:
        raise UsageError(f"{size:g} m cells would give about {n_cols * n_rows:,} cells over "
                         f"these incidents (at most {MAX_VIEW_CELLS:,}); use larger cells or "
                         "narrow the area")
    flat = (row - r0) * n_cols + (col - c0)
    counts = np.bincount(flat, minlength=n_cols * n_rows).reshape(n_rows, n_cols)
    return _Raster(size=size, c0=c0, r0=r0, counts=counts)


def _cells(cube: EventCube, located: np.ndarray, request: ViewRequest, cell: float,
           privacy: Privacy, flt: IncidentFilter, total: int) -> dict[str, Any]:
    layer = request.layer
    out: dict[str, Any] = {"type": "grid", "cell_m": cell, "layer": layer, "legend": [],
                           **_grid_cells(cube.crs, cell, np.empty(0), np.empty(0), [], [])}
    if layer == "gi":
        out["legend"] = GI_LEGEND
    if not located.any():
        return out
    x, y = cube.x[located], cube.y[located]
    if layer == "count":
        raster = _raster(x, y, cell)
        cols, rows, counts = raster.nonzero()
        _check_features(cols.size)
        values: list[Any] = counts.tolist()
        hidden = [False] * len(values)
        if privacy.suppress:
            table = suppress_counts(values, privacy.k, total=total)
            values, hidden = table.values, table.suppressed
        legend, classes = _quantile_classes([v for v in values if v is not None], values,
                                            integer=True)
        classes = ["suppressed" if h else c for c, h in zip(classes, hidden, strict=True)]
        if privacy.suppress and any(hidden):
            legend.append({"class": "suppressed", "label": f"fewer than {privacy.k}",
                           "min": None, "max": None})
        out["legend"] = legend
        out.update(_grid_cells(cube.crs, cell, cols, rows, values, classes))
    elif layer == "kde":
        out.update(_kde_cells(cube, x, y, cell, request.bandwidth, privacy))
    else:
        out.update(_gi_cells(cube, x, y, cell, flt, privacy))
    return out


def _check_features(n: int) -> None:
    if n > MAX_VIEW_FEATURES:
        raise UsageError(f"{n:,} cells to draw (at most {MAX_VIEW_FEATURES:,}); use larger "
                         "cells or narrow the filter")


def _kde_cells(cube: EventCube, x: np.ndarray, y: np.ndarray, cell: float,
               bandwidth: float | None, privacy: Privacy) -> dict[str, Any]:
    """Quartic kernel density (incidents per km²) at the cell centres. The incidents are
    binned to the cells first (each non-empty cell centre weighted by its count): the
    surface moves by at most half a cell, and costs the same for 800k incidents as for 8k."""
    if bandwidth is None:
        try:
            bandwidth = kde_analysis.default_bandwidth(x, y)
        except UsageError:
            bandwidth = 2 * cell
        # a bandwidth under two cells would draw the binning, not a surface
        bandwidth = max(float(bandwidth), 2 * cell)
    reach = math.ceil(bandwidth / cell)
    raster = _raster(x, y, cell, pad=reach)
    cols, rows, counts = raster.nonzero()
    n_rows, n_cols = raster.counts.shape
    density = kde_analysis.kernel_density(
        (cols + 0.5) * cell, (rows + 0.5) * cell, x0=raster.c0 * cell, y0=raster.r0 * cell,
        cell_size=cell, n_cols=n_cols, n_rows=n_rows, bandwidth=bandwidth, kernel="quartic",
        weights=counts.astype(float))
    # drop the numerical dust at the kernel's edge
    keep = density > density.max() * 1e-6 if density.size and density.max() > 0 else \
        np.zeros(density.shape, dtype=bool)
    if privacy.suppress:
        # a surface drawn from fewer than k incidents would show where they are: keep a cell
        # only when the square inscribed in its kernel disc already holds k incidents
        half = max(math.floor(bandwidth / math.sqrt(2) / cell - 0.5), 0)
        keep &= _box_sums(raster.counts, half) >= privacy.k
    r_idx, c_idx = np.nonzero(keep)
    _check_features(r_idx.size)
    values = np.round(density[r_idx, c_idx], 3).tolist()
    legend, classes = _quantile_classes(values, values, integer=False)
    return {"legend": legend, "bandwidth_m": round(bandwidth, 1), "units": "incidents per km²",
            **_grid_cells(cube.crs, cell, c_idx + raster.c0, r_idx + raster.r0, values,
                          classes)}


def _box_sums(counts: np.ndarray, half: int) -> np.ndarray:
    """Sum of counts over the (2 half + 1)² square centred on every cell."""
    padded = np.pad(counts, half + 1)
    table = padded.cumsum(axis=0).cumsum(axis=1)
    n_rows, n_cols = counts.shape
    size = 2 * half + 1
    top = table[size:size + n_rows, size:size + n_cols]
    left = table[size:size + n_rows, 0:n_cols]
    up = table[0:n_rows, size:size + n_cols]
    corner = table[0:n_rows, 0:n_cols]
    return top - left - up + corner


def _gi_cells(cube: EventCube, x: np.ndarray, y: np.ndarray, cell: float,
              flt: IncidentFilter, privacy: Privacy) -> dict[str, Any]:
    """Getis-Ord Gi* (queen contiguity, analytic z) over the study cells: those meeting the
    filter's imported area, else the box of the incidents (empty cells included), as the
    hotspots service lays them."""
    grid = SquareGrid(size=cell, crs=cube.crs)
    area = cube.area_polygon(*flt.area) if flt.area is not None else None
    raster = _raster(x, y, cell)
    if area is None:
        n_rows, n_cols = raster.counts.shape
        rows, cols = np.divmod(np.arange(n_rows * n_cols, dtype=np.int64), n_cols)
        cols, rows = cols + raster.c0, rows + raster.r0
        counts = raster.counts.ravel()
    else:
        keys = grid.study_cells(x, y, area)
        if keys.size > MAX_VIEW_CELLS:
            raise UsageError(f"{keys.size:,} cells (at most {MAX_VIEW_CELLS:,}); use larger "
                             "cells")
        cols, rows = SquareGrid.col_row(keys)
        counts = raster.at(cols, rows)
    w = spatial_weights.square_contiguity(rows, cols, kind="queen")
    gi = hotspot_analysis.gi_star(counts.astype(float), w, permutations=0)
    classes = np.asarray(gi.classes).astype(int)
    show = (classes != 0) | (counts > 0)
    _check_features(int(show.sum()))
    z = np.asarray(gi.z)[show]
    values: list[Any] = ([None] * int(show.sum()) if privacy.suppress
                         else np.round(z, 3).tolist())
    labels = [GI_CLASSES[c] for c in classes[show].tolist()]
    tally = {GI_CLASSES[c]: int((classes == c).sum()) for c in sorted(GI_CLASSES, reverse=True)}
    return {"legend": GI_LEGEND, "study_cells": int(counts.size), "classes": tally,
            "value": "z" if not privacy.suppress else None,
            **_grid_cells(cube.crs, cell, cols[show], rows[show], values, labels)}


def _quantile_classes(visible: Sequence[float], values: Sequence[Any], *, integer: bool
                      ) -> tuple[list[dict[str, Any]], list[str]]:
    """Up to five classes q1..q5 at the quintiles of the visible positive values; the legend
    and each value's class (None values get "q1" here and are re-labelled by the caller)."""
    positive = np.asarray([v for v in visible if v is not None and v > 0], dtype=float)
    if positive.size == 0:
        return [], ["q1"] * len(values)
    uppers = np.unique(np.quantile(positive, [0.2, 0.4, 0.6, 0.8, 1.0], method="higher"))
    legend = []
    low = float(positive.min())
    for i, high in enumerate(uppers.tolist()):
        lo = low if i == 0 else (float(uppers[i - 1]) + 1 if integer else float(uppers[i - 1]))
        if integer:
            label = f"{int(lo)}" if int(lo) == int(high) else f"{int(lo)}–{int(high)}"
            legend.append({"class": f"q{i + 1}", "label": label, "min": int(lo),
                           "max": int(high)})
        else:
            legend.append({"class": f"q{i + 1}", "label": f"{_g(lo)}–{_g(high)}",
                           "min": _g(lo), "max": _g(high)})
    array = np.asarray([v if v is not None else 0 for v in values], dtype=float)
    index = np.clip(np.searchsorted(uppers, array, side="left"), 0, uppers.size - 1)
    return legend, [f"q{i + 1}" for i in index.tolist()]


def _g(value: float) -> float:
    return float(f"{value:.3g}")


#: the fields of each cell of a view, in order
GRID_COLUMNS = ["col", "row", "value", "class"]


def utm_zone(crs: str) -> tuple[int, bool]:
    """``(zone, south)`` of a WGS84 UTM CRS given as ``EPSG:326zz`` / ``EPSG:327zz``."""
    match = re.fullmatch(r"EPSG:32([67])(\d{2})", crs.strip().upper())
    if match is None or not 1 <= int(match.group(2)) <= 60:
        raise ValueError(f"{crs!r} is not a WGS84 UTM zone (EPSG:326zz or EPSG:327zz)")
    return int(match.group(2)), match.group(1) == "7"


def _grid_cells(crs: str, size: float, cols: np.ndarray, rows: np.ndarray,
                values: Sequence[Any], classes: Sequence[str]) -> dict[str, Any]:
    """Square cells, compactly: the grid once (its UTM zone and cell side: cell ``(col,
    row)`` covers ``[col, col + 1) x [row, row + 1)`` times the side, in UTM metres) and one
    ``[col, row, value, class]`` row per cell. A GeoJSON polygon per cell was 5 times the
    bytes and most of the browser's time (parsing, and a Leaflet layer per cell); the page
    projects the corners itself (``static/js/grid.js``), and ``cell_features`` turns this
    back into GeoJSON for whoever wants it."""
    zone: int | None
    south: bool | None
    if np.asarray(cols).size == 0 and not crs.upper().startswith("EPSG:32"):
        # no located incident: the cube's CRS is a placeholder and there is nothing to draw
        zone, south = None, None
    else:
        zone, south = utm_zone(crs)
    cells = [list(row) for row in zip(np.asarray(cols, dtype=np.int64).tolist(),
                                      np.asarray(rows, dtype=np.int64).tolist(), values,
                                      classes, strict=True)]
    return {"grid": {"crs": crs, "size": float(size), "utm_zone": zone, "south": south},
            "columns": GRID_COLUMNS, "cells": cells}


def cell_features(cells: dict[str, Any]) -> dict[str, Any]:
    """The cells of a view (``_grid_cells``) as a GeoJSON FeatureCollection, each cell a
    WGS84 polygon with ``value`` and ``class`` (what ``format=geojson`` answers)."""
    out = {k: v for k, v in cells.items() if k not in ("grid", "columns", "cells")}
    grid = cells["grid"]
    rows = cells["cells"]
    out["type"] = "FeatureCollection"
    out["features"] = _features(grid["crs"], grid["size"],
                                np.array([r[0] for r in rows], dtype=np.int64),
                                np.array([r[1] for r in rows], dtype=np.int64),
                                [r[2] for r in rows], [r[3] for r in rows])
    return out


def _features(crs: str, size: float, cols: np.ndarray, rows: np.ndarray,
              values: Sequence[Any], classes: Sequence[str]) -> list[dict[str, Any]]:
    """Square cells as GeoJSON features with WGS84 rings rounded to 6 decimals: the corners
    are projected in one call (fast for tens of thousands of cells)."""
    n = int(np.asarray(cols).size)
    if n == 0:
        return []
    cols = np.asarray(cols, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    x0, y0 = cols * size, rows * size
    xs = np.stack([x0, x0 + size, x0 + size, x0], axis=1).astype(float).ravel()
    ys = np.stack([y0, y0, y0 + size, y0 + size], axis=1).astype(float).ravel()
    lon, lat = transformer(crs, WGS84).transform(xs, ys)
    lon = np.round(np.asarray(lon), COORD_DECIMALS).reshape(n, 4).tolist()
    lat = np.round(np.asarray(lat), COORD_DECIMALS).reshape(n, 4).tolist()
    label = f"{size:g}m"
    features = []
    for i, (c, r, lo, la, value, klass) in enumerate(zip(cols.tolist(), rows.tolist(), lon, lat,
                                                         values, classes, strict=True)):
        del i
        ring = [[lo[0], la[0]], [lo[1], la[1]], [lo[2], la[2]], [lo[3], la[3]], [lo[0], la[0]]]
        features.append({"type": "Feature", "id": f"{label}_{c}_{r}",
                         "geometry": {"type": "Polygon", "coordinates": [ring]},
                         "properties": {"value": value, "class": klass}})
    return features


def _r(value: float) -> float:
    return round(value, COORD_DECIMALS)


# --------------------------------------------------------------------------------------------
# Emerging hot spots, forecast, backtest (partners and analysts)


def emerging(engine: Engine, *, category: str | None, area: str | None, cell: float,
             time_of_day: str | None, slice_by: str = "month") -> dict[str, Any]:
    """Emerging hot spots over the whole stored period (cells x weeks or months), from the
    cube: Gi* per bin and a Mann-Kendall trend per cell (``analysis.emerging``)."""
    if slice_by not in ("week", "month"):
        raise UsageError(f"slice {slice_by!r}: use week or month")
    flt = IncidentFilter.parse(category=category, area=area)
    cube_filter = CubeFilter.from_incident_filter(flt, parse_time_window(time_of_day))
    cube = get_cube(engine)
    key = ("emerging", cube.version, category, area, float(cell), time_of_day or "all",
           slice_by)
    return cached(engine, key, lambda: _emerging(cube, flt, cube_filter, cell, slice_by))


def _emerging(cube: EventCube, flt: IncidentFilter, cube_filter: CubeFilter, cell: float,
              slice_by: str) -> dict[str, Any]:
    from urbansec.services.cells import build_weights
    from urbansec.services.hotspots import slice_index

    selected = mask(cube, cube_filter) & cube.located
    legend = [{"pattern": p, "kind": k, "class": f"{p}-{k}",
               "label": f"{p.capitalize()} {k} spot"}
              for k in ("hot", "cold") for p in EMERGING_PATTERNS]
    out: dict[str, Any] = {"type": "FeatureCollection", "legend": legend, "features": [],
                           "urbansec": {"cell_m": cell, "slice": slice_by, "slices": 0,
                                        "events": int(selected.sum())}}
    if not selected.any():
        out["urbansec"]["message"] = "no located incidents match this filter"
        return out
    grid = SquareGrid(size=cell, crs=cube.crs)
    x, y = cube.x[selected], cube.y[selected]
    area = cube.area_polygon(*flt.area) if flt.area is not None else None
    raster = _raster(x, y, cell)
    del raster  # checks the box is not too large before listing its cells
    keys = grid.study_cells(x, y, area)
    slices, starts = slice_index(cube.local[selected].astype("datetime64[s]"), slice_by)
    if starts.size < 4:
        raise UsageError(f"emerging hot spots need at least 4 {slice_by}s of data; this filter "
                         f"spans {starts.size}")
    if keys.size > MAX_EMERGING_CELLS or keys.size * starts.size > MAX_EMERGING_BINS:
        raise UsageError(f"{keys.size:,} cells x {starts.size} {slice_by}s is too much for one "
                         "request; use larger cells or narrow the area")
    pos = grid.index_of(keys, grid.locate(x, y))
    inside = pos >= 0
    counts = np.bincount(pos[inside] * starts.size + slices[inside],
                         minlength=keys.size * starts.size).reshape(keys.size, starts.size)
    w, _ = build_weights(grid, keys, "queen")
    result = emerging_analysis.emerging_hotspots(counts.astype(float), w)
    names = np.asarray(result.category).tolist()
    show = [i for i, name in enumerate(names) if name != "no_pattern"]
    cols, rows = SquareGrid.col_row(keys[show])
    totals = counts.sum(axis=1)
    trend = np.asarray(result.trend_z)
    features = _features(cube.crs, cell, cols, rows, [int(totals[i]) for i in show],
                         [names[i].replace("_", "-") for i in show])
    for feature, i in zip(features, show, strict=True):
        pattern, _, kind = names[i].partition("_")
        properties = feature["properties"]
        properties.update(pattern=pattern, kind=kind, count=int(totals[i]),
                          trend_z=None if not np.isfinite(trend[i]) else round(float(trend[i]),
                                                                               3))
        properties["value"] = properties.pop("value")
    out["features"] = features
    out["urbansec"].update(slices=int(starts.size), first_slice=str(starts[0]),
                           last_slice=str(starts[-1]), cells=int(keys.size),
                           patterns=result.tally())
    return out


def cache_get(engine: Engine, key: tuple[Any, ...]) -> Any:
    """A cached result (None if absent); ``key`` must include the data version."""
    store = _derived(engine)
    with _derived_lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    return None


def cache_put(engine: Engine, key: tuple[Any, ...], value: Any) -> None:
    store = _derived(engine)
    with _derived_lock:
        store[key] = value
        while len(store) > _DERIVED_SIZE:
            store.popitem(last=False)


def forecast_key(engine: Engine, flt: IncidentFilter, *, model: str, horizon: str,
                 cell: float, top: float) -> tuple[Any, ...]:
    return ("forecast", data_version(engine, count=False), tuple(flt.categories or ()),
            flt.area, model, horizon, float(cell), float(top))


def forecast_layer(engine: Engine, flt: IncidentFilter, *, model: str, horizon: str,
                   cell: float, top: float) -> dict[str, Any]:
    """Risk per cell for the next ``horizon`` (``services.forecast.forecast``): the cells
    with any risk, each with its risk, rank and whether it is in the flagged top share."""
    from urbansec.services.forecast import forecast as run
    from urbansec.services.hotspots import GridOptions

    result = run(engine, flt, model=model, horizon=horizon, options=GridOptions(cell=cell),
                 top=top)
    risk = np.asarray(result.properties.get("risk", np.empty(0)), dtype=float)
    rank = np.asarray(result.properties.get("rank", np.empty(0)))
    flagged = np.asarray(result.properties.get("flagged", np.empty(0)), dtype=bool)
    keep = np.flatnonzero((risk > 0) | flagged)
    cols, rows = SquareGrid.col_row(result.keys[keep])
    features = _features(result.grid.crs, cell, cols, rows,
                         [_sig(v) for v in risk[keep].tolist()],
                         ["top" if f else "rest" for f in flagged[keep].tolist()])
    for feature, i in zip(features, keep.tolist(), strict=True):
        properties = feature["properties"]
        properties.update(risk=properties["value"], rank=int(rank[i]), top=bool(flagged[i]))
    summary = result.summary
    return {"type": "FeatureCollection", "features": features,
            "urbansec": {"model": summary.get("model", model), "horizon": horizon,
                         "origin": summary.get("origin"), "top": top,
                         "cells": int(result.keys.size),
                         "flagged_cells": summary.get("flagged_cells"),
                         "training_events": summary.get("training_events"),
                         "period_local": summary.get("period_local"),
                         "risk_is_expected_count": summary.get("risk_is_expected_count")}}


def _sig(value: float) -> float | None:
    if not math.isfinite(value):
        return None
    return float(f"{value:.4g}")


@dataclass(frozen=True)
class BacktestPlan:
    """The backtest one request asks for: its period and its cache key."""

    flt: IncidentFilter
    horizon: str
    key: tuple[Any, ...]


def plan_backtest(engine: Engine, flt: IncidentFilter, *, horizon: str = "7d"
                  ) -> BacktestPlan:
    """The last 12 weeks of data as weekly fold origins (up to the local midnight after the
    last incident), refused when its windows hold too many incidents for one request."""
    from urbansec.services.forecast import local_midnight, parse_horizon

    span = parse_horizon(horizon)
    if span > timedelta(days=28):
        raise UsageError("horizon: at most 4 weeks for the dashboard backtest")
    cube = get_cube(engine)
    if not len(cube):
        raise UsageError("the store holds no incidents yet; import some first")
    last = datetime.fromtimestamp(int(cube.t[-1]), UTC)
    end = local_midnight(last + timedelta(days=1), cube.timezone)
    start = end - timedelta(weeks=BACKTEST_WEEKS)
    window_start = start - timedelta(days=BACKTEST_TRAIN_DAYS)
    cube_filter = CubeFilter.from_incident_filter(replace(flt, start=window_start, end=end),
                                                  None)
    events = int((mask(cube, cube_filter) & cube.located).sum())
    if events > MAX_BACKTEST_EVENTS:
        raise UsageError(f"{events:,} located incidents in the backtest's windows (at most "
                         f"{MAX_BACKTEST_EVENTS:,}); narrow the filter (category or area)")
    key = ("backtest", cube.version, tuple(flt.categories or ()), flt.area, horizon)
    return BacktestPlan(flt=replace(flt, start=start, end=end), horizon=horizon, key=key)


def backtest_table(engine: Engine, plan: BacktestPlan) -> dict[str, Any]:
    """Weekly-origin rolling backtest over the planned 12 weeks: naive, historical, kde and
    sepp at 1, 2, 5, 10 and 20% of the cells (``services.forecast.backtest``, 250 m cells,
    half a year of training before each origin): mean hit rate and PAI over the folds."""
    from urbansec.services.forecast import backtest as run
    from urbansec.services.hotspots import GridOptions

    result = run(engine, plan.flt, models=list(BACKTEST_MODELS), horizon=plan.horizon,
                 step="7d", coverages=BACKTEST_COVERAGES, train_days=BACKTEST_TRAIN_DAYS,
                 options=GridOptions(cell=250.0), bias_kind=None,
                 refit_every=BACKTEST_REFIT_EVERY)
    models: dict[str, dict[str, list[float | None]]] = {
        name: {"hit_rate": [None] * len(BACKTEST_COVERAGES),
               "pai": [None] * len(BACKTEST_COVERAGES)} for name in BACKTEST_MODELS}
    percents = [round(c * 100, 6) for c in BACKTEST_COVERAGES]
    for row in result["rows"]:
        if row["metric"] in ("hit_rate", "pai") and row["coverage"] in percents \
                and row["model"] in models:
            value = row["mean"]
            models[row["model"]][row["metric"]][percents.index(row["coverage"])] = \
                None if value is None else round(float(value), 4)
    folds = int(result["folds"])
    first = datetime.fromisoformat(result["first_origin"])
    last_origin = first + timedelta(weeks=max(folds - 1, 0))
    return {"coverages": list(BACKTEST_COVERAGES), "models": models, "folds": folds,
            "horizon": plan.horizon,
            "origins": {"first": first.date().isoformat(),
                        "last": last_origin.date().isoformat()},
            "cells": result["cells"], "events": result["events"],
            "train_days": result["train_days"]}


# --------------------------------------------------------------------------------------------
# Citizen reports and risks on the map


def reports_layer(engine: Engine, principal: Principal, settings: Settings, *,
                  category: str | None, start: str | None, end: str | None) -> dict[str, Any]:
    """Approved (and later closed) citizen reports: points for partners and staff, counts
    per ``public_cell_m`` cell, k-suppressed, for viewers and the public."""
    from urbansec.domain.report_categories import BY_CODE
    from urbansec.services.incidents import parse_instant
    from urbansec.services.reports import PUBLIC_STATUSES, REPORTS

    codes: list[str] | None = None
    if category:
        codes = []
        for part in (p.strip() for p in category.split(",") if p.strip()):
            if part in BY_CODE:
                codes.append(part)
                continue
            from urbansec.domain.taxonomy import resolve_filter

            canonical = set(resolve_filter(part))
            codes.extend(c.code for c in BY_CODE.values() if c.taxonomy in canonical)
    for name, value in (("from", start), ("to", end)):
        if value is not None and not _is_day(value):
            raise UsageError(f"{name} {value!r}: use a day, YYYY-MM-DD")
    c = REPORTS.c
    query = select(c.public_id, c.service_code, c.status, c.submitted_at, c.lon, c.lat).where(
        c.status.in_(PUBLIC_STATUSES), c.lon.is_not(None), c.lat.is_not(None))
    if codes is not None:
        query = query.where(c.service_code.in_(codes))
    if start:
        query = query.where(c.submitted_at >= parse_instant(start, "from"))
    if end:
        query = query.where(c.submitted_at < parse_instant(end, "to", end_of_day=True))
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(c.submitted_at.desc()).limit(50_000)).all()
    if can(principal, "reports:read"):
        features = [{"type": "Feature", "id": r.public_id,
                     "geometry": {"type": "Point", "coordinates": [_r(r.lon), _r(r.lat)]},
                     "properties": {"public_id": r.public_id, "category": r.service_code,
                                    "status": r.status,
                                    "created_at": iso_utc(r.submitted_at)}} for r in rows]
        return {"type": "FeatureCollection", "aggregated": False, "features": features}
    cell = max(float(settings.public_cell_m), MIN_CELL_M)
    k = max(int(settings.k_anonymity), 1)
    out: dict[str, Any] = {"type": "FeatureCollection", "aggregated": True, "cell_m": cell,
                           "k": k, "features": []}
    if not rows:
        out["total"] = 0
        return out
    lon = np.array([r.lon for r in rows], dtype=float)
    lat = np.array([r.lat for r in rows], dtype=float)
    crs = utm_crs_for(float(np.median(lon)), float(np.median(lat)))
    x, y = transformer(WGS84, crs).transform(lon, lat)
    raster = _raster(np.asarray(x), np.asarray(y), cell)
    cols, rows_, counts = raster.nonzero()
    table = suppress_counts(counts.tolist(), k, total=len(rows))
    out["total"] = table.total
    out["features"] = _features(crs, cell, cols, rows_, table.values,
                                ["suppressed" if h else "reports" for h in table.suppressed])
    return out


def risks_layer(engine: Engine, principal: Principal) -> dict[str, Any]:
    """Register risks the caller may see that have an area: the drawn polygon, the imported
    area named, or (for a risk seen as a summary) the generalised box of its polygon."""
    from urbansec.services.risks import list_risks

    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = list_risks(engine, principal, limit=500, offset=offset)
        items.extend(page["items"])
        offset += 500
        if offset >= page["total"] or offset >= 5000:
            break
    outlines: dict[str, dict[str, Any]] = {}
    features = []
    for item in items:
        area = item.get("area")
        geometry: dict[str, Any] | None = None
        if isinstance(area, dict) and area.get("type") and area.get("coordinates"):
            geometry = _rounded(mapping(shape(area)))
        elif isinstance(area, dict) and "bbox" in area:
            w, s, e, n = area["bbox"]
            geometry = {"type": "Polygon",
                        "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
        elif isinstance(area, dict) and area.get("kind") and area.get("code"):
            kind = str(area["kind"])
            if kind not in outlines:
                try:
                    outlines[kind] = {f["properties"]["code"]: f["geometry"]
                                      for f in area_outlines(engine, kind)["features"]}
                except NotFoundError:
                    outlines[kind] = {}
            geometry = outlines[kind].get(str(area["code"]))
        if geometry is None:
            continue
        features.append({"type": "Feature", "id": item["id"], "geometry": geometry,
                         "properties": {"id": item["id"], "title": item["title"],
                                        "level": item["level"], "status": item["status"],
                                        "owner": item.get("owner_organisation"),
                                        "view": item.get("view")}})
    return {"type": "FeatureCollection", "features": features}


def dumps(value: Any) -> bytes:
    """Compact JSON (no NaN: the builders above already replaced non-finite numbers)."""
    with gc_paused():
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
