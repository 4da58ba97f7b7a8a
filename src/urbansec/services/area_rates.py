"""Counts and rates per imported area: incidents per police district or beat, and the
counts police forces publish per area (e.g. the Berlin crime atlas), per population or any
other denominator the analyst gives."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from urbansec.analysis import rates
from urbansec.errors import InputFormatError, UsageError
from urbansec.services.events import assign_areas, load_boundaries, load_events_with_codes
from urbansec.services.hotspots import check_period
from urbansec.services.incidents import IncidentFilter
from urbansec.store.tables import Area, AreaCount

AREA_COUNTS = AreaCount.__table__
AREAS = Area.__table__


def read_denominators(path: Path) -> dict[str, float]:
    """``code,value`` CSV (a header row; the first column is the code, the last the value)."""
    from urbansec.ingest.areas import normalize_area_code

    out: dict[str, float] = {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None or len(header) < 2:
                raise InputFormatError(f"{path}: expected a header like code,population")
            for line, row in enumerate(reader, start=2):
                if not row or not "".join(row).strip():
                    continue
                try:
                    out[normalize_area_code(row[0])] = float(row[-1])
                except (ValueError, IndexError):
                    raise InputFormatError(
                        f"{path}, line {line}: {row!r} is not code,number") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    return out


def _denominators_from_attributes(engine: Engine, kind: str, key: str) -> dict[str, float]:
    out: dict[str, float] = {}
    with engine.connect() as connection:
        for code, attributes in connection.execute(
                select(AREAS.c.code, AREAS.c.attributes).where(AREAS.c.kind == kind)):
            value = (attributes or {}).get(key) if isinstance(attributes, dict) else None
            try:
                if value is not None:
                    out[code] = float(value)
            except (TypeError, ValueError):
                continue
    return out


def area_rates(
    engine: Engine, flt: IncidentFilter, *, kind: str, denominators: dict[str, float] | None = None,
    denominator_attribute: str | None = None, per: float = 1000.0, source: str = "incidents",
    year: int | None = None,
) -> dict[str, Any]:
    """Counts per area of ``kind`` with rates per ``per`` units of the denominator.

    ``source="incidents"`` counts stored incidents (the source's own area codes, else the
    imported polygons); ``source="area-counts"`` sums published area counts (one ``year``).
    """
    if per <= 0:
        raise UsageError("--per must be positive")
    names: dict[str, str | None] = {}
    if source == "incidents":
        check_period(engine, flt)
        events, codes = load_events_with_codes(engine, flt, kind)
        units = assign_areas(engine, events, codes, kind)
        known = [u for u in units.tolist() if u is not None]
        try:
            names = {b.code: b.name for b in load_boundaries(engine, kind)}
        except Exception:
            names = {}
        codes_all = sorted(set(known) | set(names))
        index = {c: i for i, c in enumerate(codes_all)}
        counts = np.bincount([index[u] for u in known], minlength=len(codes_all)).astype(float)
        unassigned = len(units) - len(known)
    elif source == "area-counts":
        c = AREA_COUNTS.c
        query = select(c.area_code, func.max(c.area_name), func.sum(c.count)).where(
            c.area_kind == kind).group_by(c.area_code).order_by(c.area_code)
        if flt.categories is not None:
            query = query.where(c.category.in_(flt.categories))
        if year is not None:
            query = query.where(func.extract("year", c.period_start) == year) \
                if engine.dialect.name == "postgresql" else \
                query.where(func.strftime("%Y", c.period_start) == str(year))
        with engine.connect() as connection:
            rows = connection.execute(query).all()
        if not rows:
            raise UsageError(f"no published area counts of kind {kind!r}"
                             + (f" for {year}" if year else ""))
        codes_all = [r[0] for r in rows]
        names = {r[0]: r[1] for r in rows}
        counts = np.array([float(r[2]) for r in rows])
        unassigned = 0
    else:
        raise UsageError("--source must be incidents or area-counts")
    denom_map = dict(denominators or {})
    if denominator_attribute:
        denom_map.update(_denominators_from_attributes(engine, kind, denominator_attribute))
    out: dict[str, Any] = {"filter": flt.description, "kind": kind, "source": source,
                           "per": per, "unassigned": unassigned, "areas": []}
    if not codes_all:
        out["message"] = "no incidents match this filter"
        return out
    denom = np.array([denom_map.get(code, np.nan) for code in codes_all], dtype=float)
    result = rates.area_rates(counts, denom, per=per)
    total = counts.sum()
    for i, code in enumerate(codes_all):
        rate = float(np.asarray(result.rate)[i])
        out["areas"].append({
            "code": code, "name": names.get(code), "count": int(counts[i]),
            "share": round(float(counts[i] / total), 4) if total else None,
            "denominator": None if np.isnan(denom[i]) else float(denom[i]),
            "rate": None if np.isnan(rate) else round(rate, 4),
            "ci_low": _round(np.asarray(result.ci_low)[i]),
            "ci_high": _round(np.asarray(result.ci_high)[i]),
        })
    out["areas"].sort(key=lambda a: (-a["count"], a["code"]))
    out["total"] = int(total)
    out["with_denominator"] = int(np.isfinite(denom).sum())
    return out


def _round(value: Any) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else round(value, 4)
