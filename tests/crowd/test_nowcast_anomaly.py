"""Nowcast models (known answers, interval coverage on simulated counts, a level shift) and
anomaly detection (planted anomalies found, episodes merged)."""

from __future__ import annotations

import numpy as np
import pytest

from urbansec.crowd.anomaly import (
    detect_anomalies,
    merge_across_series,
    seasonal_profile,
)
from urbansec.crowd.nowcast import (
    NOWCAST_MODELS,
    ProfileRegression,
    SeasonalNaive,
    interval_hits,
    mase_scale,
)
from urbansec.errors import UsageError

WEEK = 168


def weekly_pattern(n_hours: int, peak: float = 800.0) -> np.ndarray:
    """A day/night cycle (quiet nights, busy afternoons) with quieter weekends."""
    t = np.arange(n_hours)
    hour, day = t % 24, (t // 24) % 7
    daily = 0.05 + 0.95 * np.exp(-0.5 * ((hour - 14) / 4.0) ** 2)
    return peak * daily * np.where(day >= 5, 0.6, 1.0)


def simulated_counts(n_series: int, n_hours: int, seed: int, phi: float = 0.8,
                     sigma: float = 0.15) -> np.ndarray:
    """Poisson counts around the weekly pattern times a log-AR(1) level that wanders (the
    weather, events): the kind of series where the recent level carries information."""
    rng = np.random.default_rng(seed)
    noise = np.zeros((n_series, n_hours))
    shocks = rng.normal(0, sigma, (n_series, n_hours))
    for t in range(1, n_hours):
        noise[:, t] = phi * noise[:, t - 1] + shocks[:, t]
    scale = rng.uniform(0.3, 2.0, (n_series, 1))
    return rng.poisson(weekly_pattern(n_hours) * scale * np.exp(noise)).astype(float)


def test_seasonal_naive_is_last_weeks_value() -> None:
    y = np.arange(2 * WEEK, dtype=float)
    forecast = SeasonalNaive(horizon=6).fit(y).predict()
    # origin is the last hour (index 335); step h is hour 335 + h, last week 335 + h - 168
    np.testing.assert_allclose(forecast.mean, 335 + np.arange(1, 7) - WEEK)
    assert forecast.mean.shape == (6,) and forecast.steps.tolist() == [1, 2, 3, 4, 5, 6]
    # every past week-on-week error was a rise, so the whole interval lies above last week
    assert np.all(forecast.mean < forecast.lower) and np.all(forecast.lower <= forecast.upper)
    periodic = np.tile(np.r_[np.full(84, 50.0), np.full(84, 70.0)], 3)
    periodic[::5] += 3  # some week-on-week error, in both directions (168 % 5 != 0)
    steady = SeasonalNaive(horizon=6).fit(periodic).predict()
    assert np.all(steady.lower <= steady.mean) and np.all(steady.mean <= steady.upper)


def test_profile_regression_reproduces_a_pure_weekly_pattern() -> None:
    y = np.round(weekly_pattern(10 * WEEK))
    forecast = ProfileRegression(horizon=6, profile_weeks=4, train_weeks=4).fit(y).predict()
    expected = np.round(weekly_pattern(10 * WEEK + 6))[-6:]
    np.testing.assert_allclose(forecast.mean, expected, rtol=1e-6, atol=1e-6)
    # no error in sample: the interval collapses on the forecast
    np.testing.assert_allclose(forecast.upper, forecast.lower, rtol=1e-6, atol=1e-6)


def test_profile_regression_follows_a_day_that_runs_busier_than_usual() -> None:
    y = weekly_pattern(12 * WEEK)
    rng = np.random.default_rng(3)
    y = y * np.exp(rng.normal(0, 0.05, y.size))
    y[-12:] *= 2.0  # the last 12 hours twice as busy as the profile (an event nearby)
    shifted = ProfileRegression(horizon=1).fit(y[:-1]).predict().mean[0]
    naive = SeasonalNaive(horizon=1).fit(y[:-1]).predict().mean[0]
    assert abs(shifted - y[-1]) < 0.5 * abs(naive - y[-1])


def rolling_coverage(model_name: str, y: np.ndarray, origins: range, steps: tuple[int, ...]
                     ) -> tuple[dict[int, float], dict[int, float]]:
    hits: dict[int, list[np.ndarray]] = {h: [] for h in steps}
    errors: dict[int, list[np.ndarray]] = {h: [] for h in steps}
    for origin in origins:
        history = y[:, : origin + 1]
        forecast = NOWCAST_MODELS[model_name](horizon=max(steps)).fit(history).predict()
        scale = mase_scale(history, window=8 * WEEK)
        for h in steps:
            actual = y[:, origin + h]
            hits[h].append(interval_hits(actual, forecast.lower[:, h - 1],
                                         forecast.upper[:, h - 1]))
            errors[h].append(np.abs(actual - forecast.mean[:, h - 1]) / scale)
    return ({h: float(np.mean(hits[h])) for h in steps},
            {h: float(np.mean(errors[h])) for h in steps})


def test_80_percent_intervals_cover_about_80_percent_and_the_regression_beats_naive() -> None:
    y = simulated_counts(n_series=12, n_hours=26 * WEEK, seed=7)
    # 80 origins spread over the last 10 weeks, 13 hours apart (every hour of the week)
    origins = range(y.shape[1] - 10 * WEEK, y.shape[1] - 6, 13)[:80]
    naive_cov, naive_mase = rolling_coverage("seasonal_naive", y, origins, (1, 6))
    model_cov, model_mase = rolling_coverage("profile_regression", y, origins, (1, 6))
    # 960 forecasts per step: the binomial standard error of 0.8 is 0.013
    for coverage in (*naive_cov.values(), *model_cov.values()):
        assert 0.75 <= coverage <= 0.86
    assert naive_mase[1] == pytest.approx(1.0, abs=0.15)  # MASE of its own scale
    assert model_mase[1] < 0.8 * naive_mase[1]
    assert model_mase[6] < naive_mase[6]


def test_many_series_at_once_equal_one_at_a_time() -> None:
    y = simulated_counts(n_series=3, n_hours=16 * WEEK, seed=1)
    together = ProfileRegression().fit(y).predict()
    alone = ProfileRegression().fit(y[1]).predict()
    np.testing.assert_allclose(together.mean[1], alone.mean)
    np.testing.assert_allclose(together.upper[1], alone.upper)


def test_gaps_are_tolerated_and_bad_input_rejected() -> None:
    y = simulated_counts(n_series=1, n_hours=16 * WEEK, seed=2)[0]
    y[-200:-150] = np.nan  # a two-day outage shortly before the origin
    forecast = ProfileRegression().fit(y).predict()
    assert np.all(np.isfinite(forecast.mean)) and np.all(forecast.lower <= forecast.upper)
    with pytest.raises(UsageError):
        ProfileRegression().fit(y[:100])
    with pytest.raises(UsageError):
        SeasonalNaive().fit(-np.ones(400))
    with pytest.raises(UsageError):
        SeasonalNaive(horizon=200).fit(np.ones(400))
    with pytest.raises(UsageError):
        SeasonalNaive(coverage=1.5).fit(np.ones(400))


def test_mase_scale_and_interval_hits_by_hand() -> None:
    y = np.array([1.0, 2.0, 4.0, 3.0, 6.0, np.nan])
    # season 2: |4-1|, |3-2|, |6-4|, (nan) -> mean of 3, 1, 2 = 2
    assert mase_scale(y, season=2) == pytest.approx(2.0)
    assert mase_scale(y, season=2, window=2) == pytest.approx(2.0)  # |6-4| and nan
    hits = interval_hits([5.0, 10.0, np.nan, 2.0], [4.0, 4.0, 4.0, 2.0], [6.0, 6.0, 6.0, 3.0])
    np.testing.assert_array_equal(hits, [1.0, 0.0, np.nan, 1.0])


def test_seasonal_profile_is_the_median_of_past_weeks() -> None:
    y = np.concatenate([np.full(WEEK, 10.0), np.full(WEEK, 30.0), np.full(WEEK, 20.0),
                        np.full(WEEK, 0.0)])
    profile = seasonal_profile(y, weeks=3, min_weeks=2)
    assert np.all(np.isnan(profile[: 2 * WEEK]))  # fewer than two past weeks
    assert profile[2 * WEEK] == pytest.approx(20.0)  # median(10, 30)
    assert profile[3 * WEEK] == pytest.approx(20.0)  # median(10, 30, 20)


def test_planted_anomalies_are_found_where_they_were_planted() -> None:
    rng = np.random.default_rng(11)
    n = 30 * WEEK
    y = rng.poisson(weekly_pattern(n) * np.exp(rng.normal(0, 0.08, n))).astype(float)
    spike = slice(20 * WEEK + 22, 20 * WEEK + 25)  # a New Year's Eve: 3 hours at 4x
    y[spike] *= 4
    shutdown = slice(24 * WEEK, 24 * WEEK + 10 * 24)  # a lockdown: 10 days at a fifth
    y[shutdown] = np.round(y[shutdown] * 0.2)
    expected = seasonal_profile(y, weeks=12)
    found = detect_anomalies(y, expected, threshold=5.0, max_gap=12)
    big = [e for e in found.episodes if e.score > 15]
    assert len(big) == 2
    up, down = sorted(big, key=lambda e: -e.sign)
    assert up.sign == 1 and (up.start, up.end) == (spike.start, spike.stop - 1)
    assert up.observed > 3 * up.expected
    assert down.sign == -1
    assert shutdown.start <= down.start <= shutdown.start + 12
    assert shutdown.stop - 12 <= down.end <= shutdown.stop
    # hours outside the planted ones are rarely flagged (threshold 5 robust sd)
    planted = np.zeros(n, bool)
    planted[spike] = planted[shutdown] = True
    assert np.mean(np.abs(np.nan_to_num(found.z[~planted])) >= 5) < 0.002


def test_runs_merge_across_short_gaps_only() -> None:
    residual = np.tile([0.01, -0.01], 30)
    residual[[10, 11, 14, 30]] = 0.5
    observed = np.expm1(np.log1p(100.0) + residual)
    expected = np.full(residual.size, 100.0)
    merged = detect_anomalies(observed, expected, threshold=5, max_gap=2, period=1)
    assert [(e.start, e.end) for e in merged.episodes] == [(10, 14), (30, 30)]
    split = detect_anomalies(observed, expected, threshold=5, max_gap=1, period=1)
    assert [(e.start, e.end) for e in split.episodes] == [(10, 11), (14, 14), (30, 30)]
    assert [e.hours for e in split.episodes] == [2, 1, 1]
    long_only = detect_anomalies(observed, expected, threshold=5, max_gap=2, min_hours=2,
                                 period=1)
    assert [(e.start, e.end) for e in long_only.episodes] == [(10, 14)]
    with pytest.raises(UsageError):
        detect_anomalies(observed, expected[:5])


def test_common_episodes_need_a_share_of_the_counters() -> None:
    n = 40
    base = np.tile([0.5, -0.5], n // 2)  # ordinary hours: |z| well below the threshold
    queen, quay, k_road, federal = (base.copy() for _ in range(4))
    queen[10:15] = quay[11:16] = k_road[12:14] = -8.0  # three of four quieter together
    federal[0:40] = 9.0  # one counter busier all along (a broken sensor)
    quay[30] = np.nan  # a missing hour does not count as measured
    queen[30] = k_road[30] = 6.0
    combined = merge_across_series({"queen": queen, "quay": quay, "k_road": k_road,
                                    "federal": federal}, threshold=4, min_share=0.5,
                                   max_gap=0)
    quiet = [c for c in combined if c.sign < 0]
    # series are listed in the order given
    assert [(c.start, c.end, c.series) for c in quiet] == [(11, 14, ("queen", "quay",
                                                                       "k_road"))]
    # hours 11-14: queen 4, quay 4 and k_road 2 flagged hours at |z| 8
    assert quiet[0].score == pytest.approx(80.0)
    assert quiet[0].peak_z == pytest.approx(-8.0) and quiet[0].peak_share == 0.75
    busy = [c for c in combined if c.sign > 0]
    # hour 30: queen, k_road and federal busier, of the 3 measured: 100 %; elsewhere federal
    # alone (25 %) is not enough
    assert [(c.start, c.end) for c in busy] == [(30, 30)]
    assert busy[0].series == ("queen", "k_road", "federal")
    with pytest.raises(UsageError):
        merge_across_series({"a": base}, min_share=0)
