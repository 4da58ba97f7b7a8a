"""Near-repeat: after an incident, are nearby places hit again soon, more than by chance?"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from sqlalchemy import Engine

from urbansec.analysis import near_repeat as near_repeat_analysis
from urbansec.errors import UsageError
from urbansec.services.events import load_events
from urbansec.services.hotspots import check_period
from urbansec.services.incidents import IncidentFilter


def parse_bands(text: str, what: str) -> list[float]:
    try:
        bands = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{what} {text!r}: comma-separated numbers, e.g. 100,200,300") from None
    if not bands:
        raise UsageError(f"{what}: give at least one band")
    if any(b <= 0 for b in bands) or any(b2 <= b1 for b1, b2 in itertools.pairwise(bands)):
        raise UsageError(f"{what} {text!r}: positive and increasing, e.g. 100,200,300")
    return bands


def near_repeat(
    engine: Engine, flt: IncidentFilter, *, space_bands: list[float], time_bands: list[float],
    permutations: int = 999, seed: int = 0, by_category: bool = False,
) -> dict[str, Any]:
    """The Knox test on the filtered, located incidents (per category when asked)."""
    if not 9 <= permutations <= 99_999:
        raise UsageError("--permutations must be between 9 and 99999")
    check_period(engine, flt)
    events = load_events(engine, flt).only_located()
    out: dict[str, Any] = {"filter": flt.description, "events": len(events),
                           "space_bands_m": space_bands, "time_bands_days": time_bands,
                           "permutations": permutations, "seed": seed}
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(events), dtype=bool))]
    if by_category:
        cats = np.array([c or "unmapped" for c in events.category.tolist()], dtype=object)
        groups = [(str(c), cats == c) for c in sorted(set(cats.tolist()))]
    results = []
    for name, mask in groups:
        n = int(mask.sum())
        if n < 2:
            results.append({"group": name, "events": n,
                            "message": "fewer than two located incidents: nothing to pair"})
            continue
        sub = events.subset(mask)
        # datetime64 seconds keep pairs exactly on a band edge (7 days to the second) exact
        knox = near_repeat_analysis.knox_test(
            sub.x, sub.y, sub.t, space_bands=space_bands, time_bands=time_bands,
            permutations=permutations, seed=seed)
        results.append({"group": name, "events": n, **_knox_dict(knox)})
    out["results"] = results
    if len(events) == 0:
        out["message"] = "no located incidents match this filter"
    return out


def _knox_dict(knox: Any) -> dict[str, Any]:
    def table(values: Any, digits: int = 4) -> list[list[Any]]:
        array = np.asarray(values, dtype=float)
        return [[None if not np.isfinite(v) else round(float(v), digits) for v in row]
                for row in array]

    out: dict[str, Any] = {
        "space_labels": list(knox.space_labels), "time_labels": list(knox.time_labels),
        "observed": np.asarray(knox.observed).astype(int).tolist(),
        "expected": table(knox.expected, 2), "ratio": table(knox.ratio, 3),
        "p": table(knox.p_value, 4),
        "significant": np.asarray(knox.significant).astype(bool).tolist(),
    }
    out["pairs"] = int(knox.n_pairs)
    extent = knox.near_repeat_extent
    out["near_repeat_extent"] = None if extent is None else {
        "metres": float(extent[0]), "days": float(extent[1])}
    out["summary"] = knox.summary()
    return out
