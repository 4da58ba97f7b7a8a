"""k-suppression, point generalisation and the sliding-window rate limiter."""

from __future__ import annotations

import math

import numpy as np
import pytest

from urbansec.errors import RateLimitedError, UsageError
from urbansec.privacy import generalise_point, suppress_small_counts
from urbansec.privacy.ratelimit import SlidingWindowLimiter, limiter_for


def test_suppress_mapping_list_and_array() -> None:
    assert suppress_small_counts({"a": 0, "b": 1, "c": 4, "d": 5, "e": 12}, 5) == {
        "a": 0, "b": None, "c": None, "d": 5, "e": 12}
    assert suppress_small_counts([0, 1, 4, 5], 5) == [0, None, None, 5]
    out = suppress_small_counts(np.array([[0, 3], [5, 7]]), 5)
    assert out.dtype == np.float64
    assert out[0, 0] == 0 and math.isnan(out[0, 1]) and out[1, 0] == 5 and out[1, 1] == 7


def test_suppress_k_one_or_zero_hides_nothing() -> None:
    assert suppress_small_counts([0, 1, 2], 1) == [0, 1, 2]
    assert suppress_small_counts([0, 1, 2], 0) == [0, 1, 2]


@pytest.mark.parametrize("k", [-1, 2.5, True])
def test_suppress_bad_k(k: object) -> None:
    with pytest.raises(UsageError):
        suppress_small_counts([1], k)  # type: ignore[arg-type]


def _distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((p2 - p1) / 2) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def test_generalise_point_stays_within_half_diagonal_and_snaps() -> None:
    rng = np.random.default_rng(7)
    for cell in (100.0, 250.0, 1000.0):
        for lon, lat in zip(rng.uniform(-179, 179, 300), rng.uniform(-70, 70, 300),
                            strict=True):
            glon, glat = generalise_point(float(lon), float(lat), cell)
            # within the cell: at most half the diagonal away (small slack for the sphere)
            assert _distance_m(lon, lat, glon, glat) <= cell * math.sqrt(2) / 2 * 1.01
            # the centre maps to itself: the grid is fixed
            assert generalise_point(glon, glat, cell) == (glon, glat)


def test_generalise_point_same_cell_same_centre_and_cell_size() -> None:
    # two points 10 m apart in the middle of a cell share the centre; 300 m apart do not
    lon, lat = generalise_point(-87.63, 41.88, 250)
    dlat = 10 / 111_320
    assert generalise_point(lon, lat + dlat, 250) == (lon, lat)
    assert generalise_point(lon, lat + 30 * dlat, 250) != (lon, lat)
    # neighbouring centres are one cell apart on the ground
    north = generalise_point(lon, lat + 250 / 111_320, 250)
    east = generalise_point(lon + 250 / (111_320 * math.cos(math.radians(lat))), lat, 250)
    assert _distance_m(lon, lat, *north) == pytest.approx(250, rel=0.01)
    assert _distance_m(lon, lat, *east) == pytest.approx(250, rel=0.01)


@pytest.mark.parametrize(("lon", "lat", "cell"), [(0, 0, 0), (0, 0, -5), (0, 0, math.nan),
                                                  (200, 0, 250), (0, 95, 250)])
def test_generalise_point_bad_input(lon: float, lat: float, cell: float) -> None:
    with pytest.raises(UsageError):
        generalise_point(lon, lat, cell)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_limits_and_slides() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    for _ in range(3):
        limiter.hit("a")
        clock.now += 10
    # hits at 1000, 1010, 1020; now 1030: the next slot frees at 1060
    with pytest.raises(RateLimitedError) as caught:
        limiter.hit("a")
    assert caught.value.details["retry_after"] == 30
    limiter.hit("b")  # other clients are independent
    clock.now = 1060.0
    limiter.hit("a")  # the first hit left the window
    with pytest.raises(RateLimitedError):
        limiter.hit("a")
    assert limiter.check("a") == pytest.approx(10.0)
    clock.now = 1200.0
    assert limiter.check("a") == 0.0


def test_refused_hits_are_not_counted() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(1, 10, clock=clock)
    limiter.hit("a")
    for _ in range(5):
        clock.now += 1
        with pytest.raises(RateLimitedError):
            limiter.hit("a")
    clock.now = 1010.0
    limiter.hit("a")


def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(1, 1, clock=clock)
    limiter.hit("a")
    clock.now += 0.999
    with pytest.raises(RateLimitedError) as caught:
        limiter.hit("a")
    assert caught.value.details["retry_after"] == 1


def test_idle_clients_are_forgotten() -> None:
    clock = FakeClock()
    limiter = SlidingWindowLimiter(2, 5, clock=clock)
    for i in range(100):
        limiter.hit(f"client-{i}")
    clock.now += 20
    limiter.hit("late")
    assert set(limiter._hits) == {"late"}


def test_bad_limits_and_registry() -> None:
    with pytest.raises(UsageError):
        SlidingWindowLimiter(0, 10)
    with pytest.raises(UsageError):
        SlidingWindowLimiter(1, 0)
    assert limiter_for("x", 2, 5) is limiter_for("x", 2, 5.0)
    assert limiter_for("x", 2, 5) is not limiter_for("y", 2, 5)
