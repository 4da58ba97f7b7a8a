"""The pure ambient-population arithmetic: night windows, slot profiles, Garwood rates and the
exact rate-ratio interval, each checked against an independent computation with scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from urbansec.analysis.ambient import (
    NightWindow,
    ambient_profile,
    rate_ratio,
    rates_per,
    slot_index,
)
from urbansec.errors import UsageError


def garwood(k: int, exposure: float, per: float = 1000.0) -> tuple[float, float]:
    low = stats.chi2.ppf(0.025, 2 * k) / 2 if k else 0.0
    high = stats.chi2.ppf(0.975, 2 * k + 2) / 2
    return low / exposure * per, high / exposure * per


def test_night_window_crossing_midnight_and_within_a_day() -> None:
    night = NightWindow.parse("22:00-06:00")
    assert night.label == "22:00-06:00"
    assert np.flatnonzero(night.mask()).tolist() == [0, 1, 2, 3, 4, 5, 22, 23]
    evening = NightWindow.parse("18:00-24:00")
    assert np.flatnonzero(evening.mask()).tolist() == [18, 19, 20, 21, 22, 23]
    assert evening.label == "18:00-00:00"
    assert NightWindow.parse("18:00-00:00") == evening
    assert np.flatnonzero(NightWindow.parse(" 1:00 - 4:00 ").mask()).tolist() == [1, 2, 3]
    assert night.contains(np.array([21, 22, 5, 6])).tolist() == [False, True, True, False]


@pytest.mark.parametrize("text", ["", "22-06", "22:30-06:00", "25:00-06:00", "22:00-22:00",
                                  "00:00-24:00", "22:00-06:00-07:00", "ab:cd-ef:gh"])
def test_bad_night_windows_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        NightWindow.parse(text)


def test_rates_per_passers_by_match_garwood() -> None:
    result = rates_per([0, 3, 12], [5000.0, 1500.0, 0.0])
    for i, (k, exposure) in enumerate([(0, 5000.0), (3, 1500.0)]):
        low, high = garwood(k, exposure)
        assert result.rate[i] == pytest.approx(k / exposure * 1000)
        assert result.ci_low[i] == pytest.approx(low)
        assert result.ci_high[i] == pytest.approx(high)
    # no footfall, no rate (never an infinite one)
    assert math.isnan(result.rate[2]) and math.isnan(result.ci_high[2])


def test_rate_ratio_matches_the_exact_binomial_interval() -> None:
    a, e_a, b, e_b = 9, 20_000.0, 14, 120_000.0
    got = rate_ratio(a, e_a, b, e_b)
    ci = stats.binomtest(a, a + b).proportion_ci(0.95, method="exact")

    def to_ratio(p: float) -> float:
        return p / (1 - p) * e_b / e_a

    assert got.value == pytest.approx((a / e_a) / (b / e_b))
    assert got.ci_low == pytest.approx(to_ratio(ci.low))
    assert got.ci_high == pytest.approx(to_ratio(ci.high))
    assert got.ci_low < got.value < got.ci_high
    # no night incidents: ratio 0, lower bound 0; no day incidents: unbounded above
    zero = rate_ratio(0, e_a, 5, e_b)
    assert zero.value == 0 and zero.ci_low == 0 and zero.ci_high > 0
    unbounded = rate_ratio(4, e_a, 0, e_b)
    assert math.isinf(unbounded.value) and math.isinf(unbounded.ci_high)
    assert unbounded.ci_low > 0
    assert all(math.isnan(v) for v in (rate_ratio(0, e_a, 0, e_b).value,
                                      rate_ratio(3, 0.0, 2, e_b).ci_low))


def test_profile_uses_only_hours_with_footfall() -> None:
    # two days of hourly slots, local hours 0..23 twice; footfall missing at 23:00 of day 2
    hours = np.tile(np.arange(24), 2)
    footfall = np.tile(np.arange(24) * 100.0 + 50.0, 2)
    footfall[47] = np.nan
    incidents = np.zeros(48, dtype=int)
    incidents[[1, 23, 47, 47, 12, 36]] = 1
    incidents[47] = 2
    night = NightWindow.parse("22:00-06:00")
    profile = ambient_profile(hours, footfall, incidents, night)
    assert profile.slots.tolist() == [2] * 24
    assert profile.slots_with_footfall[23] == 1 and profile.slots_with_footfall[22] == 2
    assert profile.incidents[23] == 3 and profile.incidents_counted[23] == 1
    assert profile.footfall[23] == pytest.approx(2350.0)
    assert profile.rate[23] == pytest.approx(1 / 2350 * 1000)
    low, high = garwood(1, 2350.0)
    assert (profile.ci_low[23], profile.ci_high[23]) == (pytest.approx(low), pytest.approx(high))
    assert profile.rate[12] == pytest.approx(2 / 2500 * 1000)
    # night: hours 22-5 of both days, minus the uncounted slot
    night_mask = night.contains(hours)
    counted = np.isfinite(footfall)
    night_flow = footfall[night_mask & counted].sum()
    assert profile.night.footfall == pytest.approx(night_flow)
    assert profile.night.incidents == 4 and profile.night.incidents_counted == 2
    assert profile.night.slots == 16 and profile.night.slots_with_footfall == 15
    assert profile.night.rate == pytest.approx(2 / night_flow * 1000)
    day_flow = footfall[~night_mask].sum()
    assert profile.day.rate == pytest.approx(2 / day_flow * 1000)
    assert profile.night_vs_day.value == pytest.approx((2 / night_flow) / (2 / day_flow))
    assert profile.coverage == pytest.approx(47 / 48)
    assert profile.total.incidents == 6


def test_profile_without_any_footfall_has_counts_but_no_rates() -> None:
    hours = np.arange(24)
    profile = ambient_profile(hours, np.full(24, np.nan), np.ones(24, dtype=int),
                              NightWindow.parse("22:00-06:00"))
    assert profile.coverage == 0
    assert profile.incidents.sum() == 24 and profile.incidents_counted.sum() == 0
    assert np.isnan(profile.rate).all() and math.isnan(profile.night.rate)
    assert math.isnan(profile.night_vs_day.value)


def test_profile_refuses_inconsistent_input() -> None:
    night = NightWindow.parse("22:00-06:00")
    with pytest.raises(UsageError):
        ambient_profile([0, 1], [1.0], [0, 0], night)
    with pytest.raises(UsageError):
        ambient_profile([0, 24], [1.0, 1.0], [0, 0], night)
    with pytest.raises(UsageError):
        ambient_profile([0, 1], [1.0, -5.0], [0, 0], night)
    with pytest.raises(UsageError):
        ambient_profile([0, 1], [1.0, 1.0], [0, 1.5], night)


def test_slot_index() -> None:
    start = np.datetime64("2024-04-06T11:00:00")
    t = np.array(["2024-04-06T10:59:59", "2024-04-06T11:00:00", "2024-04-06T13:59:59",
                  "2024-04-06T14:00:00", "NaT"], dtype="datetime64[s]")
    assert slot_index(t, start, 3).tolist() == [-1, 0, 2, -1, -1]
