"""Privacy-safe aggregates: counts per grid cell, per area, per category, per hour x weekday.

Viewers and the public never receive individual incidents, only counts, and a count below
``k`` (``settings.k_anonymity``, default 5) is never shown to them. The rules, applied to
every group of counts that is published together with its total ("a table"):

1. **Primary suppression**: a count ``0 < n < k`` becomes ``null`` with ``"suppressed":
   true``. Zero is published: "nothing happened here" identifies nobody.
2. **Complementary suppression**: when exactly one count of a table is suppressed, the
   published total minus the visible counts would give it back; so the smallest visible
   non-zero count is suppressed too. If there is none, the total itself is withheld.
3. **Totals**: a table's total below ``k`` (but above zero) is withheld as well.
4. **Locations** are generalised to at least ``settings.public_cell_m`` (square cells of at
   least that side, H3 hexagons of at least that area); no first/last incident times.
5. **Filters** that make differencing easy are refused for suppressed callers: a bounding
   box (cells already give the spatial breakdown), and times finer than a day.

What this does not prevent (documented in docs/privacy.md): differencing two overlapping
queries (e.g. one period and the period one day longer) can still reveal a small difference.
Partners and analysts (``incidents:read``) get unsuppressed counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, func, select

from urbansec.domain.grid import HexGrid, make_grid
from urbansec.errors import NotFoundError, UsageError
from urbansec.services.access import Principal, sees_individual_records
from urbansec.services.events import assign_areas, load_boundaries, load_events_with_codes
from urbansec.services.incidents import (
    INCIDENTS,
    IncidentFilter,
    _resolve_area,
    _where,
    count_incidents,
)

if TYPE_CHECKING:
    from urbansec.config import Settings

#: the smallest square cell anyone may ask for (bounds the work of one request)
MIN_CELL_M = 50.0
MAX_CELL_M = 50_000.0
#: one study's grid cells, and its cells x (permutations + 1), at most (``check_work``)
MAX_STUDY_CELLS = 250_000
MAX_STUDY_WORK = 50_000_000


@dataclass(frozen=True)
class Privacy:
    """How one caller sees counts: ``suppress`` with threshold ``k``, or everything."""

    suppress: bool
    k: int
    min_cell_m: float

    @classmethod
    def for_principal(cls, principal: Principal, k: int, public_cell_m: float) -> Privacy:
        if sees_individual_records(principal):
            return cls(suppress=False, k=k, min_cell_m=MIN_CELL_M)
        return cls(suppress=True, k=max(int(k), 1), min_cell_m=max(float(public_cell_m),
                                                                     MIN_CELL_M))


def privacy_for(principal: Principal, settings: Settings) -> Privacy:
    """How ``principal`` sees counts under ``settings`` (k and the public cell size)."""
    return Privacy.for_principal(principal, settings.k_anonymity, settings.public_cell_m)


def check_work(engine: Engine, flt: IncidentFilter, cell: float, hex_resolution: int | None,
               permutations: int, max_cells: int = MAX_STUDY_CELLS) -> None:
    """Refuse a study whose cell count (estimated from the incidents' bounding box) or work
    (cells x permutations) would tie up the server; say what to change."""
    with engine.connect() as connection:
        where = _where(connection, flt, _resolve_area(connection, flt))
        c = INCIDENTS.c
        box = connection.execute(select(func.min(c.lon), func.max(c.lon), func.min(c.lat),
                                        func.max(c.lat)).where(where)).one()
    if box[0] is None:
        return
    min_lon, max_lon, min_lat, max_lat = (float(v) for v in box)
    mid = math.radians((min_lat + max_lat) / 2)
    width = (max_lon - min_lon) * 111_320 * math.cos(mid) + cell
    height = (max_lat - min_lat) * 110_540 + cell
    if hex_resolution is not None:
        import h3

        cell_area = float(h3.average_hexagon_area(hex_resolution, unit="m^2"))
    else:
        cell_area = cell * cell
    cells = width * height / cell_area
    if cells > max_cells:
        raise UsageError(f"about {cells:,.0f} cells: at most {max_cells:,}; use larger cells "
                         "or a smaller area")
    if cells * (permutations + 1) > MAX_STUDY_WORK:
        raise UsageError(f"about {cells:,.0f} cells x {permutations} permutations is too much "
                         "for one request; use fewer permutations or larger cells")


@dataclass(frozen=True)
class Suppressed:
    """A table of counts after suppression: ``values[i]`` is None where suppressed."""

    values: list[int | None]
    suppressed: list[bool]
    total: int | None
    total_suppressed: bool


def suppress_counts(counts: Sequence[int], k: int, *, total: int | None = None) -> Suppressed:
    """Apply the module's rules 1-3 to one table of counts (length n, non-negative ints).

    ``total`` defaults to the sum of ``counts``; give it when the table is a breakdown of a
    larger published figure (e.g. unlocated incidents are in the total but in no cell).
    """
    values = [int(c) for c in counts]
    if any(v < 0 for v in values):
        raise ValueError("counts must be non-negative")
    total = sum(values) if total is None else int(total)
    hidden = [0 < v < k for v in values]
    total_hidden = 0 < total < k
    if sum(hidden) == 1 and not total_hidden:
        # complementary: the total minus the visible cells would reveal the one hidden cell
        candidates = [i for i, v in enumerate(values) if v > 0 and not hidden[i]]
        if candidates:
            hidden[min(candidates, key=lambda i: (values[i], i))] = True
        else:
            total_hidden = True
    return Suppressed(
        values=[None if h else v for v, h in zip(values, hidden, strict=True)],
        suppressed=hidden, total=None if total_hidden else total,
        total_suppressed=total_hidden)


def check_filter(privacy: Privacy, *, bbox: str | None, start: str | None,
                 end: str | None) -> None:
    """Rule 5: refuse the filters that make differencing attacks trivial."""
    if not privacy.suppress:
        return
    if bbox:
        raise UsageError("bbox is not available without incidents:read; use the cell or "
                         "area aggregates instead")
    for name, value in (("from", start), ("to", end)):
        if value and len(value.strip()) != 10:
            raise UsageError(f"{name} {value!r}: use a whole day (YYYY-MM-DD) without "
                             "incidents:read")


def count_summary(engine: Engine, flt: IncidentFilter, privacy: Privacy) -> dict[str, Any]:
    """``count_incidents`` as the caller may see it: by_category suppressed for viewers."""
    result = count_incidents(engine, flt)
    if not privacy.suppress:
        for row in result["by_category"]:
            row["suppressed"] = False
        result["suppressed"] = False
        return result
    table = suppress_counts([row["count"] for row in result["by_category"]], privacy.k,
                            total=result["total"])
    located = result["located"]
    out: dict[str, Any] = {
        "filter": result["filter"], "total": table.total,
        # located is a second total: publish it only when it and the unlocated rest are safe
        "located": located if table.total is not None and not (
            0 < located < privacy.k or 0 < result["total"] - located < privacy.k) else None,
        "by_category": [
            {"code": row["code"], "name": row["name"], "count": value, "suppressed": hidden}
            for row, value, hidden in zip(result["by_category"], table.values,
                                          table.suppressed, strict=True)],
        "area_match": result["area_match"], "suppressed": True, "k": privacy.k,
    }
    if out["located"] is None or table.total is None:
        out["located_share"] = None
    else:
        out["located_share"] = round(located / table.total, 4) if table.total else None
    if "message" in result:
        out["message"] = result["message"]
    return out


def cell_counts(engine: Engine, flt: IncidentFilter, privacy: Privacy, *, cell: float = 250.0,
                hex_resolution: int | None = None) -> dict[str, Any]:
    """Located incidents per grid cell, as a GeoJSON FeatureCollection (WGS84 polygons).

    Only cells holding at least one incident are listed (an empty cell is simply absent);
    properties: ``cell_id``, ``count`` (None when suppressed), ``suppressed``.
    """
    if not MIN_CELL_M <= cell <= MAX_CELL_M:
        raise UsageError(f"cell must be between {MIN_CELL_M:g} and {MAX_CELL_M:g} metres")
    if privacy.suppress and hex_resolution is None and cell < privacy.min_cell_m:
        raise UsageError(f"cell must be at least {privacy.min_cell_m:g} m without "
                         "incidents:read (locations are generalised)")
    events = load_events_with_codes(engine, flt, None)[0]
    located = events.only_located()
    grid = make_grid(located.crs, cell=cell, hex_resolution=hex_resolution)
    if privacy.suppress and isinstance(grid, HexGrid):
        import h3

        area = float(h3.average_hexagon_area(grid.resolution, unit="m^2"))
        if area < privacy.min_cell_m ** 2:
            raise UsageError(f"hex resolution {hex_resolution} is finer than "
                             f"{privacy.min_cell_m:g} m cells; use a coarser resolution")
    keys = grid.locate(located.x, located.y) if len(located) else np.empty(0, np.int64)
    unique, counts = np.unique(keys[keys >= 0], return_counts=True)
    total = len(events)
    unlocated = total - len(located)
    summary: dict[str, Any] = {"filter": flt.description, "grid": grid.label,
                               "cells": int(unique.size), "suppressed": privacy.suppress}
    if privacy.suppress:
        table = suppress_counts(counts.tolist(), privacy.k, total=total)
        values, hidden = table.values, table.suppressed
        summary.update(k=privacy.k, total=table.total,
                       unlocated=unlocated if table.total is not None
                       and not 0 < unlocated < privacy.k else None,
                       suppressed_cells=int(sum(hidden)))
    else:
        values = counts.astype(int).tolist()
        hidden = [False] * unique.size
        summary.update(total=total, unlocated=unlocated)
    features = []
    if unique.size:
        polygons = grid.polygons(unique)
        for cell_id, polygon, value, h in zip(grid.cell_ids(unique), polygons, values, hidden,
                                              strict=True):
            features.append({"type": "Feature", "id": cell_id,
                             "geometry": _geometry(polygon),
                             "properties": {"cell_id": cell_id, "count": value,
                                            "suppressed": h}})
    return {"type": "FeatureCollection", "urbansec": summary, "features": features}


def area_counts(engine: Engine, flt: IncidentFilter, privacy: Privacy, *, kind: str
                ) -> dict[str, Any]:
    """Incidents per imported area of ``kind`` (the source's code, else the polygon), every
    imported area listed (zeros included)."""
    kind = kind.strip().lower()
    if not kind:
        raise UsageError("kind: name an area kind, e.g. district")
    events, codes = load_events_with_codes(engine, flt, kind)
    try:
        boundaries = load_boundaries(engine, kind)
    except NotFoundError:
        boundaries = []
    areas = assign_areas(engine, events, codes, kind) if len(events) else codes
    tally: dict[str, int] = {}
    for code in areas.tolist():
        if code is not None:
            tally[code] = tally.get(code, 0) + 1
    if not boundaries and not tally:
        raise NotFoundError(f"no {kind!r} areas were imported and no incident carries a "
                            f"{kind} code")
    names = {b.code: b.name for b in boundaries}
    order = sorted(set(names) | set(tally), key=_natural)
    counts = [tally.get(code, 0) for code in order]
    total = len(events)
    unassigned = total - sum(counts)
    if privacy.suppress:
        table = suppress_counts(counts, privacy.k, total=total)
        values, hidden, shown_total = table.values, table.suppressed, table.total
        shown_unassigned = unassigned if shown_total is not None and not \
            0 < unassigned < privacy.k else None
    else:
        values, hidden, shown_total = counts, [False] * len(counts), total
        shown_unassigned = unassigned
    return {
        "filter": flt.description, "kind": kind, "total": shown_total,
        "unassigned": shown_unassigned, "suppressed": privacy.suppress,
        "k": privacy.k if privacy.suppress else None,
        "areas": [{"code": code, "name": names.get(code), "count": value, "suppressed": h}
                  for code, value, h in zip(order, values, hidden, strict=True)],
    }


def public_patterns(result: dict[str, Any], k: int) -> dict[str, Any]:
    """A ``time_patterns`` result reduced to what a viewer may see: the hour x weekday and
    monthly counts, each table suppressed on its own (rates, night shares and seasonal
    adjustments are derived from the counts, so they are left out rather than leak them)."""
    events = int(result.get("events", 0))
    hw = np.asarray(result["hour_weekday"]["counts"], dtype=np.int64)
    hw_table = suppress_counts(hw.ravel().tolist(), k, total=int(hw.sum()))
    out: dict[str, Any] = {
        "filter": result.get("filter", {}), "timezone": result.get("timezone"),
        "events": None if 0 < events < k else events, "suppressed": True, "k": k,
        "hour_weekday": {
            "weekdays": result["hour_weekday"]["weekdays"], "hours": list(range(24)),
            "counts": [hw_table.values[i * 24:(i + 1) * 24] for i in range(7)],
            "total": hw_table.total},
    }
    monthly = result.get("monthly")
    if monthly:
        m_table = suppress_counts(monthly["counts"], k)
        out["monthly"] = {"months": monthly["months"], "counts": m_table.values,
                          "total": m_table.total}
    if "message" in result:
        out["message"] = result["message"]
    return out


def _natural(code: str) -> tuple[int, int | str]:
    return (0, int(code)) if code.isdigit() else (1, code)


def _geometry(polygon: Any) -> dict[str, Any]:
    from shapely.geometry import mapping

    geometry = dict(mapping(polygon))
    geometry["coordinates"] = [[[round(x, 7), round(y, 7)] for x, y in ring]
                               for ring in geometry["coordinates"]]
    return geometry
