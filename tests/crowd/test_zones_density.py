"""Zones, events, occupancy from flows and area counts, density, flow and beacon estimates:
hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import Polygon

from urbansec.crowd.density import (
    beacon_estimate,
    calibrate_beacons,
    density,
    flow_rate,
    occupancy_from_flows,
    space_per_person,
)
from urbansec.crowd.los import STANDING_CROWD
from urbansec.crowd.zones import Event, Zone, ZoneType, geodesic_area_m2
from urbansec.errors import UsageError


def test_geodesic_area_of_a_small_square_near_auckland() -> None:
    # 0.001 degree square at 36.85 S: 0.001 deg of latitude is ~110.98 m there, and of
    # longitude 111.32 km x cos(36.85 deg) / 1000 ~ 89.17 m, so ~9,896 m²
    lon, lat = 174.766, -36.85
    square = Polygon([(lon, lat), (lon + 0.001, lat), (lon + 0.001, lat + 0.001),
                      (lon, lat + 0.001)])
    assert geodesic_area_m2(square) == pytest.approx(110.98 * 89.17, rel=0.01)
    # orientation does not matter
    assert geodesic_area_m2(square.reverse()) == pytest.approx(geodesic_area_m2(square))


def test_zone_from_polygon_uses_the_usable_fraction_and_derives_capacity() -> None:
    lon, lat = 174.766, -36.85
    square = Polygon([(lon, lat), (lon + 0.001, lat), (lon + 0.001, lat + 0.001),
                      (lon, lat + 0.001)])
    zone = Zone.from_polygon("stage-front", "standing", square, usable_fraction=0.5)
    assert zone.zone_type is ZoneType.STANDING
    assert zone.area_m2 == pytest.approx(geodesic_area_m2(square) / 2)
    # 4.7 persons/m² (Green Guide) x usable area, rounded down
    assert zone.capacity_for(STANDING_CROWD.capacity_density) == int(zone.area_m2 * 4.7)
    assert Zone("a", "walkway", 100.0, capacity=250).capacity_for(4.7) == 250
    assert Zone("b", "queue", 100.0).capacity_for(4.7) == 470


@pytest.mark.parametrize("kwargs", [{"area_m2": 0.0}, {"area_m2": -5.0},
                                    {"area_m2": float("nan")}, {"area_m2": 10.0, "width_m": 0},
                                    {"area_m2": 10.0, "capacity": -1}])
def test_zone_rejects_impossible_geometry(kwargs: dict) -> None:
    with pytest.raises(UsageError):
        Zone("z", ZoneType.WALKWAY, **kwargs)


def test_zone_type_must_be_known() -> None:
    with pytest.raises(ValueError):
        Zone("z", "balcony", 10.0)  # type: ignore[arg-type]


def test_event_window_is_half_open() -> None:
    event = Event("concert", np.datetime64("2025-03-01T18:00"), "2025-03-01T23:00",
                  ("a", "b"), 40_000)
    assert event.is_active("2025-03-01T18:00:00")
    assert event.is_active("2025-03-01T22:59:59")
    assert not event.is_active("2025-03-01T23:00:00")
    assert not event.is_active("2025-03-01T17:59:59")
    with pytest.raises(UsageError):
        Event("backwards", "2025-03-01T23:00", "2025-03-01T18:00", ())


def test_occupancy_is_the_running_sum_of_ins_minus_outs() -> None:
    inflow = [10, 20, 5, 0, 0]
    outflow = [0, 5, 10, 10, 0]
    result = occupancy_from_flows(inflow, outflow, initial=3)
    # 3+10=13, 13+15=28, 28-5=23, 23-10=13, 13
    np.testing.assert_array_equal(result.occupancy, [13, 28, 23, 13, 13])
    assert not result.clipped.any()


def test_occupancy_is_clipped_at_zero_and_the_clipping_reported() -> None:
    result = occupancy_from_flows([0, 0, 4], [3, 2, 1], initial=1)
    # 1-3 -> clipped to 0 (2 added), 0-2 -> 0 (2 added), 0+3 = 3
    np.testing.assert_array_equal(result.occupancy, [0, 0, 3])
    np.testing.assert_array_equal(result.clipped, [2, 2, 0])


def test_area_counts_reanchor_the_flow_sum_and_missing_flows_count_as_no_movement() -> None:
    inflow = np.array([[10, np.nan, 10, 10], [1, 1, 1, 1]], dtype=float)
    outflow = np.array([[0, 0, 0, 5], [0, 0, 0, 0]], dtype=float)
    counts = np.array([[np.nan, 50, np.nan, np.nan], [np.nan] * 4])
    result = occupancy_from_flows(inflow, outflow, initial=[0, 100], area_counts=counts)
    np.testing.assert_array_equal(result.occupancy, [[10, 50, 60, 65], [101, 102, 103, 104]])
    np.testing.assert_array_equal(result.anchored[0], [False, True, False, False])


def test_occupancy_rejects_negative_counts_and_mismatched_shapes() -> None:
    with pytest.raises(UsageError):
        occupancy_from_flows([1, -1], [0, 0])
    with pytest.raises(UsageError):
        occupancy_from_flows([1, 2], [0, 0, 0])
    with pytest.raises(UsageError):
        occupancy_from_flows([1, 2], [0, 0], area_counts=[1.0])


def test_density_space_and_flow_by_hand() -> None:
    # 650 persons on 200 m² = 3.25 /m²; two zones broadcast their areas over minutes
    assert density(650, 200) == pytest.approx(3.25)
    np.testing.assert_allclose(density([[100, 200], [30, 60]], [50, 300]),
                               [[2.0, 4.0], [0.1, 0.2]])
    np.testing.assert_allclose(space_per_person([0.5, 0.0]), [2.0, np.inf])
    # 240 persons through a 4 m wide gate in 2 minutes = 30 persons/m/min
    assert flow_rate(240, 4.0, minutes=2) == pytest.approx(30.0)
    with pytest.raises(UsageError):
        density(10, 0)
    with pytest.raises(UsageError):
        flow_rate(10, 0.0)


def test_beacon_calibration_is_the_ratio_of_sums_and_is_applied_explicitly() -> None:
    devices = np.array([10, 20, 0, 40, np.nan])
    persons = np.array([25, 50, 7, 100, 30])
    cal = calibrate_beacons(devices, persons)
    # minutes 1, 2 and 4 have devices and a count: 175 persons / 70 devices
    assert cal.factor == pytest.approx(2.5)
    assert cal.n == 3
    assert cal.low == pytest.approx(2.5) and cal.high == pytest.approx(2.5)
    np.testing.assert_allclose(beacon_estimate([4, 8], cal), [10.0, 20.0])
    np.testing.assert_allclose(beacon_estimate([4], 3.0), [12.0])
    with pytest.raises(UsageError):
        beacon_estimate([4], 0.0)
    with pytest.raises(UsageError):
        calibrate_beacons([0, 0], [5, 5])
