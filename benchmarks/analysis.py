"""Analysis benchmark: urbansec's statistics against the reference implementations.

On Chicago crimes (``../shared/data/chicago/crimes_<year>.csv.gz``, located events projected
to UTM 16N) at 1, 2 and 3 years (2017; 2016-2017; 2015-2017), in one run on this machine:

- Gi* with 999 conditional permutations on a 250 m grid (every cell of the events' box,
  empty ones included, queen weights) against ``esda.G_Local(star=True, transform="B",
  permutations=999)``, with the largest difference of the analytical z-scores;
  Local Moran's I against ``esda.Moran_Local`` (``bench_gi.py``);
- Gaussian KDE on a 100 m grid against ``scipy.stats.gaussian_kde`` evaluated at the same
  cell centres, and the quartic kernel; the Knox test with 999 permutations on burglaries
  (``bench_kde_knox.py``);
- emerging hot spots by week (``bench_emerging.py``);
- hour x weekday, monthly series, night share, change and rates against pandas/scipy
  (``bench_temporal_change.py``).

Each module's ``run(events, label)`` returns rows; this script prints them as one table and
writes ``benchmarks/results/analysis.json``. ``--sizes 1y`` runs one size only; the reference
implementations are measured at every size (scipy's KDE on a random subset of the cells,
scaled, as the note says).

Run: ``.venv/bin/python benchmarks/analysis.py`` (about 10-20 minutes on 2 CPUs).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _events import load_chicago_events, write_results

RESULTS = Path(__file__).resolve().parent / "results" / "analysis.json"
MODULES = ("bench_gi", "bench_kde_knox", "bench_emerging", "bench_temporal_change")
SIZES = {"1y": (2017,), "2y": (2016, 2017), "3y": (2015, 2016, 2017)}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if value < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = ("size", "measure", "events", "cells", "urbansec s", "reference s", "ratio",
               "note")
    table = [[r.get("size"), r.get("measure"), _fmt(r.get("events")), _fmt(r.get("cells")),
              _fmt(r.get("urbansec_s")), _fmt(r.get("reference_s")),
              _fmt(r.get("ratio"), 1) + ("x" if r.get("ratio") is not None else ""),
              r.get("note") or ""] for r in rows]
    widths = [max(len(str(h)), *(len(str(row[i])) for row in table)) if table else len(h)
              for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in table:
        print(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1y,2y,3y", help="comma list of 1y,2y,3y")
    parser.add_argument("--only", default=",".join(MODULES), help="comma list of modules")
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    modules = [importlib.import_module(m.strip()) for m in args.only.split(",") if m.strip()]
    for size in sizes:
        events = load_chicago_events(SIZES[size])
        print(f"# {size}: {len(events['x']):,} located events", file=sys.stderr, flush=True)
        for module in modules:
            t0 = time.perf_counter()
            for row in module.run(events, size):
                rows.append({"size": size, **row})
            print(f"#   {module.__name__}: {time.perf_counter() - t0:.1f} s", file=sys.stderr,
                  flush=True)
    print_table(rows)
    write_results(RESULTS, "analysis", started, rows)


if __name__ == "__main__":
    main()
