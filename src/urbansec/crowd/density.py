"""Occupancy, density and flow of zones from what sensors report.

Three kinds of sensor tell how many people are in a zone:

- **in/out counters** at the zone's entrances (line-crossing cameras, beam counters): the
  occupancy is the running sum of ins minus outs from a known start. Counters miss and double
  count, so the sum drifts; it is clipped at zero (a zone cannot hold fewer than nobody) and
  **re-anchored** whenever an area count is available.
- **area counts** (a camera counting heads in the zone, a steward's count): the occupancy at
  that minute, when present.
- **beacon / Wi-Fi / Bluetooth detections**: the number of distinct devices seen, which is a
  fraction of the people present. The estimate is devices x calibration factor, the factor being
  persons per detected device, measured against reference counts (:func:`calibrate_beacons`)
  and stated with every estimate: it changes with the crowd (age, phones, settings), so it is
  never hidden in a constant.

Arrays are per minute, oldest first: shape ``(n_minutes,)`` for one zone or
``(n_zones, n_minutes)`` for many; NaN marks a minute without a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from urbansec.errors import UsageError

__all__ = ["BeaconCalibration", "OccupancyResult", "beacon_estimate", "calibrate_beacons",
           "density", "flow_rate", "occupancy_from_flows", "space_per_person"]


@dataclass(frozen=True, eq=False)
class OccupancyResult:
    """Occupancy per zone and minute.

    Attributes:
        occupancy: persons in the zone at the end of each minute, same shape as the inputs.
        clipped: persons added at each minute to keep the occupancy from going negative (more
            outs than ins since the last anchor: a sign of a miscounting sensor).
        anchored: True where an area count set the occupancy.
    """

    occupancy: NDArray[np.float64]
    clipped: NDArray[np.float64]
    anchored: NDArray[np.bool_]


def occupancy_from_flows(inflow: ArrayLike, outflow: ArrayLike, *, initial: ArrayLike = 0.0,
                         area_counts: ArrayLike | None = None) -> OccupancyResult:
    """Occupancy at the end of each minute from the persons in and out during it.

    ``occupancy[t] = occupancy[t-1] + inflow[t] - outflow[t]``, starting from ``initial``
    (persons present before the first minute), clipped at zero; a missing in or out count
    (NaN) counts as zero movement. Where ``area_counts[t]`` is not NaN the occupancy is set to
    it (the count is the truth; the flows integrate on from there).

    Args:
        inflow, outflow: persons per minute, shape ``(n_minutes,)`` or ``(n_zones,
            n_minutes)``, non-negative.
        initial: persons at the start, a scalar or one per zone.
        area_counts: optional counts of persons in the zone, NaN where none, same shape.
    """
    inflow = np.asarray(inflow, dtype=float)
    outflow = np.asarray(outflow, dtype=float)
    if inflow.shape != outflow.shape or inflow.ndim not in (1, 2):
        raise UsageError("inflow and outflow must have the same shape: (minutes,) or "
                         "(zones, minutes)")
    if np.any(inflow < 0) or np.any(outflow < 0):
        raise UsageError("counts of persons in and out cannot be negative")
    one_zone = inflow.ndim == 1
    net = np.nan_to_num(np.atleast_2d(inflow)) - np.nan_to_num(np.atleast_2d(outflow))
    anchors = (np.full(net.shape, np.nan) if area_counts is None
               else np.atleast_2d(np.asarray(area_counts, dtype=float)))
    if anchors.shape != net.shape:
        raise UsageError("area_counts must have the shape of the flows")
    start = np.broadcast_to(np.asarray(initial, dtype=float), (net.shape[0],)).copy()
    if np.any(start < 0) or not np.all(np.isfinite(start)):
        raise UsageError("the initial occupancy must be a non-negative number")

    # Between anchors the occupancy is a random walk reflected at zero (Lindley's recursion
    # O[t] = max(O[t-1] + x[t], 0)), whose closed form O[t] = S[t] - min(0, min S[..t]) (S the
    # unclipped running sum from the run's start) is a cumulative sum and a running minimum:
    # vectorised over minutes too, exactly equal to the minute-by-minute loop on counts.
    anchored = ~np.isnan(anchors)
    n_zones, n_minutes = net.shape
    rows = np.arange(n_zones)[:, None]
    run = np.cumsum(anchored, axis=1)  # 0 before the first anchor, k after the k-th
    total = np.cumsum(np.where(anchored, 0.0, net), axis=1)  # an anchor overrides its flow
    last = np.maximum.accumulate(np.where(anchored, np.arange(n_minutes), -1), axis=1)
    at_last = np.maximum(last, 0)
    base = np.where(last >= 0, anchors[rows, at_last], start[:, None])
    walk = base + total - np.where(last >= 0, total[rows, at_last], 0.0)
    # the running minimum within each run: every run is shifted below all earlier ones, so a
    # running minimum over the whole row never reaches back into a previous run
    shift = 2.0 * (np.max(np.abs(walk), initial=0.0) + 1.0) * run
    low = np.minimum.accumulate(walk - shift, axis=1) + shift
    added = np.maximum(-low, 0.0)  # persons added since the run's start to stay at zero
    occupancy = walk + added
    before = np.zeros_like(added)
    before[:, 1:] = added[:, :-1]
    clipped = np.where(anchored, 0.0, added - before)
    if one_zone:
        return OccupancyResult(occupancy[0], clipped[0], anchored[0])
    return OccupancyResult(occupancy, clipped, anchored)


def density(persons: ArrayLike, area_m2: ArrayLike) -> NDArray[np.float64]:
    """Persons per m²: ``persons / area_m2`` (area per zone broadcasts over the minutes when
    ``persons`` is ``(n_zones, n_minutes)`` and ``area_m2`` is ``(n_zones,)``)."""
    persons = np.asarray(persons, dtype=float)
    area = np.asarray(area_m2, dtype=float)
    if np.any(area <= 0):
        raise UsageError("a zone's usable area must be positive")
    if persons.ndim == 2 and area.ndim == 1:
        area = area[:, None]
    return persons / area


def space_per_person(density_ppm2: ArrayLike) -> NDArray[np.float64]:
    """m² per person (Fruin's measure), the inverse of density; infinite for an empty zone."""
    d = np.asarray(density_ppm2, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), np.inf)


def flow_rate(persons: ArrayLike, width_m: ArrayLike, minutes: float = 1.0
              ) -> NDArray[np.float64]:
    """Specific flow in persons per metre of effective width per minute: persons crossing a
    line of ``width_m`` metres in ``minutes`` minutes (both directions added by the caller
    when the flow is two-way)."""
    persons = np.asarray(persons, dtype=float)
    width = np.asarray(width_m, dtype=float)
    if np.any(width <= 0) or minutes <= 0:
        raise UsageError("flow needs a positive width and a positive duration")
    if persons.ndim == 2 and width.ndim == 1:
        width = width[:, None]
    return persons / (width * minutes)


@dataclass(frozen=True)
class BeaconCalibration:
    """Persons per detected device, with how it was measured.

    Attributes:
        factor: persons per device (1 / the share of people whose device is detected).
        low, high: the 10th and 90th percentiles of the per-minute ratios behind it, a plain
            statement of how much the ratio varies.
        n: number of minutes with both a reference count and devices seen.
    """

    factor: float
    low: float
    high: float
    n: int


def calibrate_beacons(devices: ArrayLike, reference_persons: ArrayLike) -> BeaconCalibration:
    """The calibration factor from minutes where devices were seen and people counted by a
    reference (an area count, a manual count): ``sum(persons) / sum(devices)`` (the ratio
    estimator, which weighs busy minutes most, as they matter most), with the spread of the
    per-minute ratios."""
    devices = np.asarray(devices, dtype=float).ravel()
    persons = np.asarray(reference_persons, dtype=float).ravel()
    if devices.shape != persons.shape:
        raise UsageError("devices and reference counts must have the same shape")
    use = np.isfinite(devices) & np.isfinite(persons) & (devices > 0)
    if not np.any(use):
        raise UsageError("beacon calibration needs minutes with devices seen and a reference "
                         "count")
    ratios = persons[use] / devices[use]
    low, high = np.quantile(ratios, [0.1, 0.9])
    return BeaconCalibration(float(persons[use].sum() / devices[use].sum()), float(low),
                             float(high), int(use.sum()))


def beacon_estimate(devices: ArrayLike, calibration: BeaconCalibration | float
                    ) -> NDArray[np.float64]:
    """Persons estimated from distinct devices seen: ``devices x factor``."""
    factor = calibration.factor if isinstance(calibration, BeaconCalibration) else calibration
    if not np.isfinite(factor) or factor <= 0:
        raise UsageError("the beacon calibration factor must be a positive number")
    devices = np.asarray(devices, dtype=float)
    if np.any(devices < 0):
        raise UsageError("a count of devices cannot be negative")
    return devices * float(factor)
