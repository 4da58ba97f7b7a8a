"""Level of service (LoS): how crowded a zone is, on the scale that suits what people do there.

Fruin's scales (J. J. Fruin, *Pedestrian Planning and Design*, Metropolitan Association of
Urban Designers and Environmental Planners, New York, 1971; revised ed. 1987) grade a space
from A (free) to F (breakdown) by the **space per person** and, for moving crowds, the **flow
per unit width**. Fruin published them in ft² per person and persons per foot of width per
minute (ppfm); they are kept here in those units, exactly as published, and converted to
m²/person and persons/m/min (1 ft² = 0.09290304 m², 1 ppfm = 3.2808 persons/m/min):

=====  ====================  ===========  ====================  ==========  ==========
LoS    walkway space         walkway      queuing space          stairway    stairway
       ft² (m²) per person   flow ppfm    ft² (m²) per person    space ft²   flow ppfm
=====  ====================  ===========  ====================  ==========  ==========
A      >= 35 (3.25)          <= 7         >= 13 (1.21)           >= 20       <= 5
B      25-35 (2.32-3.25)     7-10         10-13 (0.93-1.21)      15-20       5-7
C      15-25 (1.39-2.32)     10-15        7-10 (0.65-0.93)       10-15       7-10
D      10-15 (0.93-1.39)     15-20        3-7 (0.28-0.65)        7-10        10-13
E      5-10 (0.46-0.93)      20-25        2-3 (0.19-0.28)        4-7         13-17
F      < 5 (< 0.46)          > 25         < 2 (< 0.19)           < 4         > 17
=====  ====================  ===========  ====================  ==========  ==========

A boundary value belongs to the better level (Fruin: "35 ft² or more" is A, "7 ppfm or less"
is A). Where a flow is measured as well as a density, the zone's level is the worse of the two.

**Standing crowds** (audiences, viewing areas) are judged by density in persons/m². The default
bands follow the ones used in crowd-safety guidance: below 1 person/m² people move freely;
about 2/m² is a busy but comfortable crowd; 4/m² is dense but tolerable for a standing
audience; the UK *Guide to Safety at Sports Grounds* ("Green Guide", 6th ed., Sports Grounds
Safety Authority, 2018) allows at most 47 persons per 10 m² (4.7/m²) on standing terraces;
above about 5/m² G. Keith Still (*Introduction to Crowd Science*, CRC Press, 2014) places the
onset of dangerous crowd dynamics, and Fruin ("The causes and effects of crowd disasters",
1993) describes crowd pressures and shockwaves at about 7/m². Hence A < 1, B 1-2, C 2-3,
D 3-4, E 4-5 and F >= 5 persons/m². These are defaults: every scale is a plain object, and
:class:`LosConfig` maps each zone type to the scale the event's safety plan prescribes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from urbansec.crowd.zones import ZoneType
from urbansec.errors import UsageError

__all__ = ["FRUIN_QUEUING", "FRUIN_STAIRS", "FRUIN_WALKWAY", "LETTERS", "STANDING_CROWD",
           "LosConfig", "LosScale"]

FT2_TO_M2 = 0.09290304
PPFM_TO_PPMM = 1 / 0.3048  # persons per foot per minute -> persons per metre per minute
LETTERS = ("A", "B", "C", "D", "E", "F")
# a density at most this much (relatively) above a bound still counts as the bound: a density
# computed as 100 / 325 must fall on the same side of 1 / 3.25 as the value itself
_BOUNDARY_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LosScale:
    """A six-level scale A..F.

    Attributes:
        name: short name, e.g. ``"fruin-walkway"``.
        density_bounds: 5 ascending densities (persons/m²): a density above bound ``k`` is at
            least level ``k + 1`` (B is 1, F is 5).
        flow_bounds: 5 ascending flow rates (persons/m/min) with the same meaning, or None when
            flow does not grade this space (queues, standing areas).
        capacity_density: persons/m² that define a zone's default capacity.
        source: where the numbers come from.
    """

    name: str
    density_bounds: tuple[float, ...]
    flow_bounds: tuple[float, ...] | None
    capacity_density: float
    source: str = ""
    labels: tuple[str, ...] = field(default=LETTERS)

    def __post_init__(self) -> None:
        for bounds, what in ((self.density_bounds, "density"), (self.flow_bounds, "flow")):
            if bounds is None:
                continue
            values = np.asarray(bounds, dtype=float)
            if values.shape != (5,) or not np.all(np.diff(values) > 0) or values[0] <= 0:
                raise UsageError(f"LoS scale {self.name!r}: {what} bounds must be 5 "
                                 "increasing positive numbers")
        if len(self.labels) != 6:
            raise UsageError(f"LoS scale {self.name!r}: needs 6 labels")
        if self.capacity_density <= 0:
            raise UsageError(f"LoS scale {self.name!r}: capacity density must be positive")

    @classmethod
    def from_fruin(cls, name: str, space_ft2: tuple[float, ...],
                   flow_ppfm: tuple[float, ...] | None, capacity_level: str,
                   source: str) -> LosScale:
        """A scale from Fruin's published units: the 5 space-per-person bounds in ft²
        (descending: A/B, B/C, ..., E/F) and the 5 flow bounds in persons/ft/min (ascending).
        The capacity density is the densest end of level ``capacity_level``."""
        density = tuple(1.0 / (s * FT2_TO_M2) for s in space_ft2)
        flow = None if flow_ppfm is None else tuple(f * PPFM_TO_PPMM for f in flow_ppfm)
        capacity = density[LETTERS.index(capacity_level)]
        return cls(name, density, flow, capacity, source)

    def density_level(self, density: ArrayLike) -> NDArray[np.int8]:
        """Level index 0 (A) .. 5 (F) of each density (persons/m²); NaN gives -1."""
        return _grade(density, self.density_bounds)

    def flow_level(self, flow: ArrayLike) -> NDArray[np.int8]:
        """Level index of each flow rate (persons/m/min); NaN (or a scale without flow
        bounds) gives -1, which never makes the combined level worse."""
        flow = np.asarray(flow, dtype=float)
        if self.flow_bounds is None:
            return np.full(flow.shape, -1, dtype=np.int8)
        return _grade(flow, self.flow_bounds)

    def level(self, density: ArrayLike, flow: ArrayLike | None = None) -> NDArray[np.int8]:
        """The worse of the density and the flow level (flow optional), 0 (A) .. 5 (F);
        -1 where nothing was measured."""
        by_density = self.density_level(density)
        if flow is None:
            return by_density
        return np.maximum(by_density, self.flow_level(flow))

    def letters(self, levels: ArrayLike) -> NDArray[np.str_]:
        """The labels of level indices (-1 gives "")."""
        table = np.array(("", *self.labels))
        return table[np.asarray(levels, dtype=int) + 1]


def _grade(values: ArrayLike, bounds: tuple[float, ...]) -> NDArray[np.int8]:
    values = np.asarray(values, dtype=float)
    edges = np.asarray(bounds, dtype=float) * (1 + _BOUNDARY_TOLERANCE)
    # side="left": a value equal to a bound stays in the better level
    level = np.searchsorted(edges, values, side="left").astype(np.int8)
    return np.where(np.isnan(values), np.int8(-1), level).astype(np.int8)


FRUIN_WALKWAY = LosScale.from_fruin(
    "fruin-walkway", (35, 25, 15, 10, 5), (7, 10, 15, 20, 25), "E",
    "Fruin 1971, walkway level of service (space per person and flow per unit width)")
FRUIN_QUEUING = LosScale.from_fruin(
    "fruin-queuing", (13, 10, 7, 3, 2), None, "D",
    "Fruin 1971, queuing level of service (space per person)")
FRUIN_STAIRS = LosScale.from_fruin(
    "fruin-stairs", (20, 15, 10, 7, 4), (5, 7, 10, 13, 17), "E",
    "Fruin 1971, stairway level of service (space per person and flow per unit width)")
STANDING_CROWD = LosScale(
    "standing-crowd", (1.0, 2.0, 3.0, 4.0, 5.0), None, 4.7,
    "crowd-safety guidance: Green Guide 2018 (4.7/m² on standing terraces), Still 2014 "
    "(dangerous above about 5/m²), Fruin 1993")


def _default_scales() -> dict[ZoneType, LosScale]:
    return {ZoneType.WALKWAY: FRUIN_WALKWAY, ZoneType.EXIT: FRUIN_WALKWAY,
            ZoneType.QUEUE: FRUIN_QUEUING, ZoneType.STANDING: STANDING_CROWD,
            ZoneType.STAIRS: FRUIN_STAIRS}


@dataclass(frozen=True)
class LosConfig:
    """Which scale grades which zone type. Exits use the walkway scale by default (an exit is
    a short walkway whose flow is what matters); any type can be given another scale."""

    scales: Mapping[ZoneType, LosScale] = field(default_factory=_default_scales)

    def with_scale(self, zone_type: ZoneType | str, scale: LosScale) -> LosConfig:
        """A copy with ``zone_type`` graded by ``scale``."""
        return LosConfig({**self.scales, ZoneType(zone_type): scale})

    def scale_for(self, zone_type: ZoneType | str) -> LosScale:
        try:
            return self.scales[ZoneType(zone_type)]
        except (KeyError, ValueError):
            raise UsageError(f"no level-of-service scale for zone type {zone_type!r}") from None

    def level(self, zone_type: ZoneType | str, density: ArrayLike,
              flow: ArrayLike | None = None) -> NDArray[np.int8]:
        """Level index (0 = A .. 5 = F, -1 = unknown) on the zone type's scale."""
        return self.scale_for(zone_type).level(density, flow)
