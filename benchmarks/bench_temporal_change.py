"""Benchmark: time patterns, period change and area rates against the pandas / scipy way.

- hour x weekday: urbansec (counts + DST-honest exposure) vs pandas crosstab of the local
  times plus an hourly ``pandas.date_range`` in the zone for the exposure;
- monthly series: urbansec (counts, per-30-days, seasonal decomposition when >= 24 months) vs
  pandas ``resample("MS").size()`` (counts only);
- night share: urbansec vs pandas hour arithmetic;
- period change per 500 m cell (second half of the year against the first, exposure in
  days): urbansec's vectorised exact test vs a ``scipy.stats.binomtest`` loop (p-values checked
  equal);
- rates per cell: urbansec (exact Garwood intervals) vs ``scipy.stats.chi2.ppf`` by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from _events import best_of
from urbansec.analysis import change, rates, temporal

TZ = "America/Chicago"
CELL_M = 500.0




def _row(measure: str, n: int, cells: int | None, ours: float, ref: float | None,
         note: str) -> dict[str, Any]:
    return {"measure": measure, "events": n, "cells": cells, "urbansec_s": round(ours, 4),
            "reference_s": None if ref is None else round(ref, 4),
            "ratio": None if ref is None else round(ref / ours, 1), "note": note}


def run(events: dict, label: str) -> list[dict]:
    t = np.asarray(events["t"], dtype="datetime64[s]")
    n = int(t.size)
    start = t.min().astype("datetime64[Y]").astype("datetime64[s]")
    end = (t.max().astype("datetime64[Y]") + 1).astype("datetime64[s]")
    rows: list[dict] = []

    # hour x weekday with exposure
    def ours_hw() -> Any:
        return temporal.hour_weekday(t, period=(start, end), tz=TZ)

    def pandas_hw() -> Any:
        idx = pd.DatetimeIndex(t)
        counts = pd.crosstab(idx.day_of_week, idx.hour)
        hours = pd.date_range(pd.Timestamp(start).tz_localize(TZ),
                              pd.Timestamp(end).tz_localize(TZ), freq="h", inclusive="left")
        exposure = pd.crosstab(hours.day_of_week, hours.hour)
        return counts / exposure

    ours_s, hw = best_of(ours_hw)
    ref_s, ref = best_of(pandas_hw)
    assert np.allclose(hw.rate, ref.to_numpy())
    rows.append(_row(f"hour x weekday + DST exposure ({label})", n, 168, ours_s, ref_s,
                     "pandas crosstab + hourly date_range in the zone; rates equal"))

    # monthly series
    ours_s, ms = best_of(lambda: temporal.monthly_series(t, start=start, end=end))
    ref_s, ref = best_of(lambda: pd.Series(1, index=pd.DatetimeIndex(t)).resample("MS").size())
    assert np.array_equal(ms.counts, ref.to_numpy())
    note = "pandas resample counts only; " + (
        "urbansec adds the seasonal decomposition" if ms.seasonality is not None
        else f"no seasonality: {ms.reason}")
    rows.append(_row(f"monthly series ({label})", n, int(ms.counts.size), ours_s, ref_s, note))

    # night share
    ours_s, ns = best_of(lambda: temporal.night_share(t))
    ref_s, ref = best_of(lambda: float(((pd.DatetimeIndex(t).hour >= 22)
                                      | (pd.DatetimeIndex(t).hour < 6)).mean()))
    assert abs(ns.share - ref) < 1e-12
    rows.append(_row(f"night share 22-06 ({label})", n, None, ours_s, ref_s,
                     "urbansec adds an exact CI"))

    # change per 500 m cell: second half of the year against the first
    x, y = np.asarray(events["x"]), np.asarray(events["y"])
    key = (np.floor(x / CELL_M).astype(np.int64) << 32) + np.floor(y / CELL_M).astype(np.int64)
    cells, cell_of = np.unique(key, return_inverse=True)
    last = str(t.max().astype("datetime64[Y]"))
    half = np.datetime64(f"{last}-07-01T00:00:00")
    first_start = np.datetime64(f"{last}-01-01T00:00:00")
    last_year = t >= first_start
    later = last_year & (t >= half)
    earlier = last_year & (t < half)
    cur = np.bincount(cell_of[later], minlength=cells.size)
    bas = np.bincount(cell_of[earlier], minlength=cells.size)
    e_c = float((end - half) / np.timedelta64(1, "D"))
    e_b = float((half - first_start) / np.timedelta64(1, "D"))
    ours_s, cmp = best_of(lambda: change.compare_periods(cur, bas, current_exposure=e_c,
                                                       baseline_exposure=e_b,
                                                       correction="fdr"))

    def scipy_loop() -> np.ndarray:
        p0 = e_c / (e_c + e_b)
        return np.array([stats.binomtest(int(a), int(a + b), p0).pvalue if a + b else 1.0
                         for a, b in zip(cur, bas, strict=True)])

    ref_s, ref_p = best_of(scipy_loop, repeat=1)
    assert np.allclose(cmp.p_value, ref_p, rtol=1e-12, atol=0)
    rows.append(_row(f"change H2 vs H1 per {CELL_M:.0f} m cell ({label})", int(cur.sum()
                     + bas.sum()), int(cells.size), ours_s, ref_s,
                     f"scipy binomtest loop, p equal; {int(cmp.significant.sum())} cells "
                     "significant after FDR"))

    # rates per cell (per km2)
    counts = np.bincount(cell_of, minlength=cells.size)
    area = np.full(cells.size, (CELL_M / 1000.0) ** 2)
    ours_s, ar = best_of(lambda: rates.area_rates(counts, area, per=1.0))

    def by_hand() -> tuple[np.ndarray, np.ndarray]:
        low = np.where(counts > 0, stats.chi2.ppf(0.025, 2 * counts) / 2, 0.0) / area
        return low, stats.chi2.ppf(0.975, 2 * counts + 2) / 2 / area

    ref_s, (low, high) = best_of(by_hand)
    assert np.allclose(ar.ci_low, low) and np.allclose(ar.ci_high, high)
    rows.append(_row(f"rates per km2 + exact CI per cell ({label})", n, int(cells.size),
                     ours_s, ref_s, "chi2.ppf by hand (same maths, no validation)"))
    return rows


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _events import load_chicago_events

    years = [int(a) for a in sys.argv[1:]] or [2017]
    label = f"Chicago {years[0]}" + (f"-{years[-1]}" if len(years) > 1 else "")
    for row in run(load_chicago_events(years), label):
        print(row)
