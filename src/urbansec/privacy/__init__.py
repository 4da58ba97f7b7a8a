"""Privacy by default: small-count suppression, location generalisation, redaction, limits.

Pure helpers (standard library and numpy only) shared by the services that publish anything a
viewer or the public can see: ``suppress_small_counts`` for aggregates (k-anonymity style
thresholds) and ``generalise_point`` for single locations. Redaction of contact details in free
text is in ``urbansec.privacy.redact``; the per-process rate limiter in
``urbansec.privacy.ratelimit``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, overload

import numpy as np

from urbansec.errors import UsageError

__all__ = ["METRES_PER_DEGREE", "generalise_point", "suppress_small_counts"]

#: metres per degree of latitude (and of longitude at the equator) on the WGS84 mean sphere
METRES_PER_DEGREE = 111_320.0

K = TypeVar("K")


@overload
def suppress_small_counts(counts: Mapping[K, int], k: int) -> dict[K, int | None]: ...
@overload
def suppress_small_counts(counts: np.ndarray, k: int) -> np.ndarray: ...
@overload
def suppress_small_counts(counts: Sequence[int], k: int) -> list[int | None]: ...


def suppress_small_counts(counts: Any, k: int) -> Any:
    """Hide every count ``c`` with ``0 < c < k``.

    ``counts`` is a mapping (key -> count), a numpy array of any shape, or a sequence. The
    result has the same keys/shape: a mapping or list holds ``None`` where a count is
    suppressed; an array becomes float64 with ``nan`` there. Zero stays visible: "no reports
    here" identifies nobody, and hiding zeros would make every sparse map blank. ``k <= 1``
    suppresses nothing.

    Totals published beside suppressed cells must be computed from the suppressed values (or
    themselves be >= k and not allow a single hidden cell to be recovered by subtraction); this
    helper does the cell-level part only.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise UsageError(f"k must be a whole number >= 0, not {k!r}")
    if isinstance(counts, Mapping):
        return {key: (None if 0 < value < k else value) for key, value in counts.items()}
    if isinstance(counts, np.ndarray):
        values = counts.astype(np.float64, copy=True)
        values[(values > 0) & (values < k)] = np.nan
        return values
    return [None if 0 < value < k else value for value in counts]


def generalise_point(lon: float, lat: float, cell_m: float) -> tuple[float, float]:
    """The centre of the ``cell_m`` x ``cell_m`` (metres) cell holding (lon, lat), WGS84 degrees.

    Cells are rows of constant latitude height ``cell_m / 111320`` degrees; within a row the
    longitude width is stretched by ``1 / cos(row centre latitude)`` so a cell is ``cell_m``
    wide on the ground there. The grid is global and fixed (no per-request origin), so the same
    point always lands in the same cell and repeated queries reveal nothing more than one. Every
    point within a cell maps to the same centre, at most ``cell_m * sqrt(2) / 2`` metres away.

    Returns ``(lon, lat)`` rounded to 6 decimals (~0.1 m; rounding hides nothing but keeps the
    output stable).
    """
    if not (math.isfinite(cell_m) and cell_m > 0):
        raise UsageError(f"the generalisation cell must be a positive size in metres, "
                         f"not {cell_m!r}")
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180
            and -90 <= lat <= 90):
        raise UsageError(f"({lon}, {lat}) is not a WGS84 longitude/latitude")
    dlat = cell_m / METRES_PER_DEGREE
    row = math.floor((lat + 90.0) / dlat)
    centre_lat = min(-90.0 + (row + 0.5) * dlat, 90.0)
    # near the poles the cosine vanishes; one cell then spans all longitudes of the row
    cos = max(math.cos(math.radians(centre_lat)), 1e-9)
    dlon = min(cell_m / (METRES_PER_DEGREE * cos), 360.0)
    column = math.floor((lon + 180.0) / dlon)
    centre_lon = -180.0 + (column + 0.5) * dlon
    if centre_lon > 180.0:
        centre_lon -= 360.0
    return round(centre_lon, 6), round(centre_lat, 6)
