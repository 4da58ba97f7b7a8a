"""Forecast metrics: hand-computed hit rate, PAI, PEI, PEI*, ties, zero events, random and
perfect forecasts, flagging by area."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from urbansec.domain.grid import SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.base import RiskSurface
from urbansec.forecast.metrics import (
    evaluate,
    flag_count,
    hit_rate,
    hit_rate_curve,
    pai,
    pei,
    pei_star,
)

GRID = SquareGrid(250.0, "EPSG:32616")


def surface(risk: np.ndarray) -> RiskSurface:
    keys = GRID.key(np.arange(risk.size), np.zeros(risk.size, dtype=np.int64))
    return RiskSurface(GRID, keys, np.asarray(risk, dtype=float), np.datetime64("2017-01-01"),
                       np.datetime64("2017-01-08"), "test")


# ten cells ranked 0..9 (distinct risks), 10 events
RISK = np.arange(10, 0, -1, dtype=float)
OBSERVED = np.array([0, 2, 1, 0, 0, 3, 0, 0, 0, 4], dtype=float)


def test_hand_computed_case_at_four_coverages() -> None:
    s = evaluate(RISK, OBSERVED, coverages=[0.1, 0.2, 0.3, 0.5])
    # flagged cells: {0}, {0,1}, {0,1,2}, {0..4}; they caught 0, 2, 3, 3 of 10 events
    np.testing.assert_array_equal(s.n_flagged, [1, 2, 3, 5])
    np.testing.assert_allclose(s.area_share, [0.1, 0.2, 0.3, 0.5])
    np.testing.assert_allclose(s.captured, [0, 2, 3, 3])
    np.testing.assert_allclose(s.hit_rate, [0.0, 0.2, 0.3, 0.3])
    np.testing.assert_allclose(s.pai, [0.0, 1.0, 1.0, 0.6])
    # best k cells hold 4, 7, 9, 10 events
    np.testing.assert_allclose(s.pei, [0.0, 2 / 7, 3 / 9, 3 / 10])
    # smallest busiest-first set catching 0, 2, 3, 3 events: 0, 1, 1, 1 cells
    np.testing.assert_allclose(s.pei_star, [0.0, 0.1 / 0.2, 0.1 / 0.3, 0.1 / 0.5])
    # hit-rate curve 0,.2,.3,.3,.3,.6,.6,.6,.6,1 over steps of 0.1 (trapezoids)
    assert s.auc == pytest.approx(0.4)
    assert s.spearman == pytest.approx(stats.spearmanr(RISK, OBSERVED).statistic)
    assert not s.empty and s.n_events == 10 and s.by == "cells"


def test_pei_star_hand_case_needing_several_cells() -> None:
    risk = np.array([6, 5, 4, 3, 2, 1], dtype=float)
    observed = np.array([1, 1, 1, 1, 0, 2], dtype=float)
    # 50% = 3 cells catch 3 of 6 events; the busiest cells (2, then 1s) need 2 cells for 3
    s = evaluate(risk, observed, coverages=0.5)
    assert s.hit_rate[0] == pytest.approx(0.5)
    assert s.pai[0] == pytest.approx(1.0)
    assert s.pei[0] == pytest.approx(3 / 4)  # best 3 cells hold 2 + 1 + 1
    assert s.pei_star[0] == pytest.approx(2 / 3)
    # PAI* = (3/6) / (2/6) = 1.5 and PEI* = PAI / PAI*
    assert s.pei_star[0] == pytest.approx(s.pai[0] / 1.5)


def test_scalar_helpers_match_vectorised_scores() -> None:
    rng = np.random.default_rng(1)
    risk = rng.gamma(1.0, 1.0, 500)
    observed = rng.poisson(risk * 0.3).astype(float)
    levels = [0.01, 0.02, 0.05, 0.10, 0.5, 1.0]
    s = evaluate(risk, observed, coverages=levels, seed=3)
    for j, c in enumerate(levels):
        assert hit_rate(risk, observed, c, seed=3) == pytest.approx(s.hit_rate[j])
        assert pai(risk, observed, c, seed=3) == pytest.approx(s.pai[j])
        assert pei(risk, observed, c, seed=3) == pytest.approx(s.pei[j])
        assert pei_star(risk, observed, c, seed=3) == pytest.approx(s.pei_star[j])
    assert np.asarray(hit_rate(risk, observed, levels, seed=3)).shape == (6,)
    # flagging everything: hit rate 1, PAI 1, PEI 1
    assert s.hit_rate[-1] == pytest.approx(1.0)
    assert s.pai[-1] == pytest.approx(1.0)
    assert s.pei[-1] == pytest.approx(1.0)


def test_spearman_equals_scipy_with_many_ties() -> None:
    rng = np.random.default_rng(12)
    risk = rng.integers(0, 5, 2000).astype(float)
    observed = rng.poisson(0.2 + 0.1 * risk).astype(float)
    areas = rng.uniform(0.1, 0.2, 2000)
    for a in (None, areas):
        s = evaluate(risk, observed, areas=a, seed=4)
        assert s.spearman == pytest.approx(stats.spearmanr(risk, observed).statistic,
                                           rel=1e-12)
    # an order that does not sort the risk still gives the right correlation
    order = rng.permutation(2000)
    assert evaluate(risk, observed, order=order).spearman == pytest.approx(
        stats.spearmanr(risk, observed).statistic, rel=1e-12)


def test_flagged_set_is_exactly_risk_surface_flagged_with_ties() -> None:
    rng = np.random.default_rng(7)
    risk = rng.integers(0, 3, 300).astype(float)  # many ties
    observed = rng.poisson(1.0, 300).astype(float)
    surf = surface(risk)
    for seed in (0, 1, 2):
        for c in (0.01, 0.05, 0.1, 0.333):
            mask = surf.flagged(c, seed)
            s = evaluate(surf, observed, coverages=c, seed=seed)
            assert s.n_flagged[0] == mask.sum()
            assert s.captured[0] == observed[mask].sum()
            # a bare array is ranked by the same rule as the surface
            assert evaluate(risk, observed, coverages=c, seed=seed).captured[0] == \
                s.captured[0]


def test_ties_are_broken_at_random_not_by_cell_order() -> None:
    risk = np.array([1.0, 1.0, 0.0, 0.0])
    observed = np.array([1.0, 0.0, 0.0, 0.0])
    hits = [evaluate(risk, observed, coverages=0.25, seed=s).hit_rate[0] for s in range(400)]
    assert set(hits) == {0.0, 1.0}
    assert np.mean(hits) == pytest.approx(0.5, abs=0.08)
    # the same seed gives the same answer
    assert evaluate(risk, observed, coverages=0.25, seed=5).hit_rate[0] == hits[5]


def test_perfect_forecast_has_pei_one() -> None:
    rng = np.random.default_rng(11)
    observed = rng.poisson(0.4, 1000).astype(float)  # many zero ties
    s = evaluate(observed, observed, coverages=[0.01, 0.02, 0.05, 0.1, 0.2], seed=2)
    np.testing.assert_allclose(s.pei, 1.0)
    # while the flagged cells all had events, no smaller area catches as many: PEI* = 1
    busy = (observed > 0).mean()
    small = s.coverages < busy
    np.testing.assert_allclose(s.pei_star[small], 1.0)
    assert np.all(s.pei_star <= 1.0 + 1e-12)
    # the best ranking is as good as any: its curve dominates a random one
    assert s.auc > evaluate(rng.random(1000), observed).auc


def test_random_forecast_pai_is_one_on_average() -> None:
    rng = np.random.default_rng(2024)
    n = 400
    intensity = rng.gamma(0.5, 2.0, n)
    pais, aucs = [], []
    for _ in range(400):
        observed = rng.poisson(intensity).astype(float)
        s = evaluate(rng.random(n), observed, coverages=[0.05, 0.1], seed=int(rng.integers(1e9)))
        pais.append(s.pai)
        aucs.append(s.auc)
    mean_pai = np.mean(pais, axis=0)
    np.testing.assert_allclose(mean_pai, 1.0, atol=0.06)
    assert np.mean(aucs) == pytest.approx(0.5, abs=0.01)


def test_zero_events_gives_nan_and_empty_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = evaluate(RISK, np.zeros(10), coverages=[0.1, 0.5])
    assert s.empty
    for values in (s.hit_rate, s.pai, s.pei, s.pei_star):
        assert np.all(np.isnan(values))
    assert np.isnan(s.auc) and np.isnan(s.spearman)
    np.testing.assert_array_equal(s.n_flagged, [1, 5])
    x, y = hit_rate_curve(RISK, np.zeros(10))
    assert x[-1] == 1.0 and np.all(np.isnan(y))


def test_no_cells_gives_empty_scores() -> None:
    s = evaluate(np.empty(0), np.empty(0), coverages=[0.1])
    assert s.empty and np.isnan(s.hit_rate[0]) and s.n_flagged[0] == 0


def test_constant_forecast_has_nan_spearman_but_scores() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = evaluate(np.ones(10), OBSERVED, coverages=0.5)
    assert np.isnan(s.spearman)
    assert np.isfinite(s.pai[0])


def test_flagging_by_area_hand_case() -> None:
    areas = np.array([1.0, 1.0, 2.0, 4.0])  # km², total 8
    risk = np.array([4.0, 3.0, 2.0, 1.0])
    observed = np.array([1.0, 0.0, 2.0, 1.0])
    s = evaluate(risk, observed, areas=areas, coverages=0.3)
    assert s.by == "area"
    # cumulative area shares .125, .25, .5, 1: 25% is closest to 30% -> two cells
    assert s.n_flagged[0] == 2
    assert s.area_share[0] == pytest.approx(0.25)
    assert s.hit_rate[0] == pytest.approx(0.25)
    assert s.pai[0] == pytest.approx(1.0)
    # best by density: cells 0 and 2 (1 event/km²) over 3 km² (37.5%, closest to 30%)
    # hold 3 events: PAI_max = 0.75 / 0.375 = 2
    assert s.pei[0] == pytest.approx(0.5)
    # one event caught; the densest cell alone (1 km², 12.5%) holds one: PEI* = .125 / .25
    assert s.pei_star[0] == pytest.approx(0.5)
    # forcing cells: 30% of 4 cells rounds to one cell
    cells = evaluate(risk, observed, areas=areas, coverages=0.3, by="cells")
    assert cells.by == "cells" and cells.n_flagged[0] == 1
    # equal areas switch to cells automatically
    assert evaluate(risk, observed, areas=np.full(4, 0.0625), coverages=0.3).by == "cells"
    np.testing.assert_array_equal(flag_count(4, [0.3], areas, np.arange(4), by="area"), [2])


def test_auc_matches_curve_trapezoid() -> None:
    rng = np.random.default_rng(3)
    risk = rng.random(50)
    observed = rng.poisson(0.7, 50).astype(float)
    x, y = hit_rate_curve(risk, observed, seed=4)
    assert (x[0], y[0], x[-1], y[-1]) == (0.0, 0.0, 1.0, 1.0)
    trapezoid = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))
    assert evaluate(risk, observed, seed=4).auc == pytest.approx(trapezoid)
    s = evaluate(risk, observed, seed=4, curve_points=np.array([0.0, 0.1, 1.0]))
    assert s.curve is not None
    np.testing.assert_allclose(s.curve, np.interp([0.0, 0.1, 1.0], x, y))


def test_bad_inputs_raise_usage_errors() -> None:
    with pytest.raises(UsageError, match="aligned"):
        evaluate(RISK, OBSERVED[:5])
    with pytest.raises(UsageError, match=r"\(0, 1\]"):
        evaluate(RISK, OBSERVED, coverages=[0.0])
    with pytest.raises(UsageError, match=r"\(0, 1\]"):
        evaluate(RISK, OBSERVED, coverages=5)
    with pytest.raises(UsageError, match=">= 0"):
        evaluate(RISK, -OBSERVED)
    with pytest.raises(UsageError, match="areas"):
        evaluate(RISK, OBSERVED, areas=np.zeros(10))
    with pytest.raises(UsageError, match="unknown metric"):
        evaluate(RISK, OBSERVED).metric("accuracy")
