"""Shared by the benchmarks: Chicago crimes as projected event arrays, timing and the results
file. (A throw-away PostgreSQL schema comes from ``urbansec.store.engine.scratch_schema``.)

Reads ``../shared/data/chicago/crimes_<year>.csv.gz`` with pandas (only the columns the
benchmarks need) and projects the located rows to UTM 16N (EPSG:32616) metres. ``t`` is the
local wall-clock time Chicago published (the analyses compared here do not depend on the
time zone).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyproj import Transformer

ROOT = Path(__file__).resolve().parents[1]
CHICAGO = ROOT.parent / "shared" / "data" / "chicago"
CRS = "EPSG:32616"


def chicago_path(year: int) -> Path:
    path = CHICAGO / f"crimes_{year}.csv.gz"
    if not path.exists():
        raise SystemExit(f"benchmark data missing: {path} (see ../shared/data/README)")
    return path


def load_chicago_events(years: Sequence[int]) -> dict[str, Any]:
    """Located events of the given years: x, y (metres), t (datetime64[s]), primary_type."""
    frames = [pd.read_csv(chicago_path(year), usecols=["Date", "Primary Type", "Latitude",
                                                       "Longitude"]) for year in years]
    df = pd.concat(frames, ignore_index=True).dropna(subset=["Latitude", "Longitude"])
    t = pd.to_datetime(df["Date"], format="%m/%d/%Y %I:%M:%S %p").to_numpy("datetime64[s]")
    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(
        df["Longitude"].to_numpy(float), df["Latitude"].to_numpy(float))
    return {"x": np.asarray(x), "y": np.asarray(y), "t": t,
            "primary_type": df["Primary Type"].to_numpy(object), "crs": CRS,
            "years": list(years)}


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs (seconds) and the last result: the least noisy figure
    on a shared machine."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def write_results(path: Path, benchmark: str, started: float, rows: list[dict[str, Any]],
                  **extra: Any) -> None:
    """The JSON every driver writes beside its table: figures, when, how long, on what."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "benchmark": benchmark, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "total_seconds": round(time.perf_counter() - started, 1), **extra,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "rows": rows}, indent=2, default=str) + "\n")
    print(f"\nwritten: {path}")

