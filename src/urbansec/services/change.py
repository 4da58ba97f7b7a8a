"""Change detection: this period against a baseline, per area or cell, with an exact test.

"Burglary rose 40% in beat 1123" is only said when the rise is unlikely under equal rates:
each unit gets counts, the rate ratio (adjusted for periods of different length), an exact
conditional binomial p-value and, optionally, a multiple-testing correction across units.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine

from urbansec.analysis import change as change_analysis
from urbansec.domain.events import utc64
from urbansec.domain.grid import make_grid
from urbansec.errors import UsageError
from urbansec.services.events import assign_areas, load_events_with_codes
from urbansec.services.hotspots import check_period
from urbansec.services.incidents import IncidentFilter, last_incident_at, stored_period

BASELINES = ("previous", "last-year")
CORRECTIONS = ("none", "fdr", "bonferroni")


def _one_year_earlier(instant: datetime) -> datetime:
    try:
        return instant.replace(year=instant.year - 1)
    except ValueError:  # 29 February
        return instant.replace(year=instant.year - 1, day=28)


def periods(engine: Engine, flt: IncidentFilter, baseline: str
            ) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """The current period (the filter's, or else the last 28 days of data) and its baseline."""
    if baseline not in BASELINES:
        raise UsageError(f"--baseline {baseline!r}: use previous or last-year")
    end = flt.end
    start = flt.start
    if end is None or start is None:
        last = last_incident_at(engine)
        if end is None:
            end = datetime.combine(last.date() + timedelta(days=1), datetime.min.time(), UTC)
        if start is None:
            start = end - timedelta(days=28)
    if baseline == "previous":
        base = (start - (end - start), start)
    else:
        base = (_one_year_earlier(start), _one_year_earlier(end))
    return (start, end), base


#: the first stored incident may fall a little after the baseline's first instant (a local
#: midnight against a UTC one, a quiet first hour) without the baseline being short of data
_BASELINE_SLACK = timedelta(days=1)


def _check_covered(engine: Engine, current: tuple[datetime, datetime],
                   base: tuple[datetime, datetime], baseline: str) -> None:
    """A period that starts before the stored data would count the missing days as zero
    incidents (a baseline: every unit a significant rise; the current period: a fall):
    refuse it and say what is possible."""
    first, _last = stored_period(engine)
    for name, (start, end) in (("current period", current), (f"{baseline} baseline", base)):
        if start + _BASELINE_SLACK < first:
            other = ("the previous baseline" if baseline == "last-year" and name != "current period"
                     else "a later or shorter period (from, to)")
            raise UsageError(
                f"the {name} ({start.date().isoformat()} to {end.date().isoformat()}) starts "
                f"before the stored data ({first.date().isoformat()}): missing days would "
                f"count as zero incidents; use {other} or import the earlier data")


def change(
    engine: Engine, flt: IncidentFilter, *, baseline: str = "previous", by: str | None = None,
    cell: float = 500.0, alpha: float = 0.05, correction: str = "fdr", limit: int | None = None,
) -> dict[str, Any]:
    """Counts in the current period and the baseline per unit (area kind ``by`` or cells)."""
    if correction not in CORRECTIONS:
        raise UsageError(f"--correction {correction!r}: use none, fdr or bonferroni")
    if not 0 < alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    current, base = periods(engine, flt, baseline)
    check_period(engine, replace(flt, start=current[0], end=current[1]))
    _check_covered(engine, current, base, baseline)
    span = replace(flt, start=min(base[0], current[0]), end=max(base[1], current[1]))
    events, codes = load_events_with_codes(engine, span, by)
    t = events.t
    in_current = (t >= utc64(current[0])) & (t < utc64(current[1]))
    in_base = (t >= utc64(base[0])) & (t < utc64(base[1]))
    if by:
        units = assign_areas(engine, events, codes, by)
        unit_label = by
    else:
        grid = make_grid(events.crs, cell=cell) if events.located.any() else None
        keys = grid.locate(events.x, events.y) if grid else np.full(len(events), -1)
        names = np.array(grid.cell_ids(np.unique(keys[keys >= 0]))) if grid else np.array([])
        lookup = dict(zip(np.unique(keys[keys >= 0]).tolist(), names.tolist(), strict=True))
        units = np.array([lookup.get(k) for k in keys.tolist()], dtype=object)
        unit_label = f"{cell:g} m cell"
    known = np.array([u is not None for u in units.tolist()], dtype=bool)
    unit_names = sorted({u for u in units[known].tolist()})
    index = {u: i for i, u in enumerate(unit_names)}
    pos = np.array([index.get(u, -1) for u in units.tolist()], dtype=np.int64)
    cur = np.bincount(pos[in_current & known], minlength=len(unit_names)).astype(float)
    bas = np.bincount(pos[in_base & known], minlength=len(unit_names)).astype(float)
    exposure_c = (current[1] - current[0]).total_seconds() / 86400.0
    exposure_b = (base[1] - base[0]).total_seconds() / 86400.0
    summary: dict[str, Any] = {
        "filter": flt.description, "unit": unit_label, "baseline": baseline,
        "current": {"start": current[0].isoformat(), "end": current[1].isoformat(),
                    "days": round(exposure_c, 3), "count": int(in_current.sum())},
        "baseline_period": {"start": base[0].isoformat(), "end": base[1].isoformat(),
                            "days": round(exposure_b, 3), "count": int(in_base.sum())},
        "alpha": alpha, "correction": correction,
        "unassigned": int((~known & (in_current | in_base)).sum()),
    }
    total = change_analysis.compare_periods(
        np.array([in_current.sum()], dtype=float), np.array([in_base.sum()], dtype=float),
        current_exposure=exposure_c, baseline_exposure=exposure_b, alpha=alpha,
        correction="none")
    summary["overall"] = _rows(total, ["all"])[0]
    if not unit_names:
        summary["units"] = []
        summary["message"] = "no incidents match this filter in either period"
        return summary
    result = change_analysis.compare_periods(
        cur, bas, current_exposure=exposure_c, baseline_exposure=exposure_b, alpha=alpha,
        correction=correction)
    rows = _rows(result, unit_names)
    rows.sort(key=lambda r: (not r["significant"], r["p"] if r["p"] is not None else 1.0,
                             -abs(r["difference"])))
    summary["significant"] = {
        "up": sum(1 for r in rows if r["significant"] and r["direction"] == "up"),
        "down": sum(1 for r in rows if r["significant"] and r["direction"] == "down")}
    summary["units"] = rows[:limit] if limit else rows
    summary["units_total"] = len(rows)
    return summary


def _num(value: Any) -> Any:
    value = float(value)
    if np.isnan(value):
        return None
    if np.isinf(value):
        return "inf" if value > 0 else "-inf"
    return round(value, 6)


def _rows(result: Any, names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for i, name in enumerate(names):
        rows.append({
            "unit": name,
            "current": int(np.asarray(result.current)[i]),
            "baseline": int(np.asarray(result.baseline)[i]),
            "difference": int(np.asarray(result.difference)[i]),
            "ratio": _num(np.asarray(result.ratio)[i]),
            "percent_change": _num(np.asarray(result.percent_change)[i]),
            "p": _num(np.asarray(result.p_value)[i]),
            "ci_low": _num(np.asarray(result.ci_low)[i]),
            "ci_high": _num(np.asarray(result.ci_high)[i]),
            "direction": str(np.asarray(result.direction)[i]),
            "significant": bool(np.asarray(result.significant)[i]),
        })
    return rows
