"""Bias check: flags per area against events, concentration over time, hand-computed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from urbansec.errors import UsageError
from urbansec.forecast.bias import flag_bias, gini

# 4 folds x 5 cells
FLAGS = np.array([
    [1, 1, 0, 0, 0],
    [1, 0, 1, 0, 0],
    [1, 1, 0, 0, 0],
    [0, 1, 0, 0, 1],
], dtype=bool)
EVENTS = np.array([4.0, 0.0, 3.0, 2.0, 1.0])
AREAS = np.array(["A", "A", "B", "B", None], dtype=object)


def test_hand_case_per_area() -> None:
    r = flag_bias(FLAGS, EVENTS, AREAS)
    assert list(r.areas) == ["A", "B", None]
    np.testing.assert_array_equal(r.n_cells_in_area, [2, 2, 1])
    np.testing.assert_allclose(r.cell_share, [0.4, 0.4, 0.2])
    np.testing.assert_allclose(r.event_share, [0.4, 0.5, 0.1])
    # 8 flags: A has 3 + 3, B has 1, no area has 1
    np.testing.assert_allclose(r.flag_share, [0.75, 0.125, 0.125])
    np.testing.assert_allclose(r.flag_to_event, [1.875, 0.25, 1.25])
    np.testing.assert_allclose(r.flag_to_cell, [1.875, 0.3125, 0.625])
    rows = r.area_rows()
    assert [row["area"] for row in rows] == ["A", None, "B"]  # most over-flagged first


def test_hand_case_over_time() -> None:
    r = flag_bias(FLAGS, EVENTS, AREAS)
    np.testing.assert_array_equal(r.flag_count, [3, 3, 1, 0, 1])
    np.testing.assert_array_equal(r.flags_per_fold, [2, 2, 2, 2])
    assert r.ever_flagged_share == pytest.approx(0.8)
    # core: the 2 most often flagged cells (0 and 1), each flagged in 3 of 4 folds
    np.testing.assert_array_equal(r.core_cells, [0, 1])
    assert r.core_fold_share == pytest.approx(0.75)
    # consecutive overlaps {0}/{0,1,2}, {0}/{0,1,2}, {1}/{0,1,4}
    np.testing.assert_allclose(r.jaccard, [1 / 3, 1 / 3, 1 / 3])
    assert r.mean_jaccard == pytest.approx(1 / 3)
    assert r.jaccard_random == pytest.approx(0.4 / 1.6)
    # sorted counts 0,1,1,3,3: sum (2i - 6) x_i = 16 over 5 * 8
    assert r.gini == pytest.approx(0.4)
    # 8 flags spread as evenly as possible: 2,2,2,1,1 -> 6 / 40
    assert r.gini_min == pytest.approx(0.15)
    text = r.describe()
    assert "75% of the 4 folds" in text and "Area A" in text


def test_gini_equals_mean_absolute_difference_formula() -> None:
    rng = np.random.default_rng(9)
    x = rng.poisson(2.0, 200).astype(float)
    mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size**2 * x.mean())
    assert gini(x) == pytest.approx(mad)
    assert gini(np.full(10, 3.0)) == pytest.approx(0.0)
    assert gini(np.r_[np.zeros(9), 5.0]) == pytest.approx(0.9)
    assert np.isnan(gini(np.zeros(4)))


def test_fixed_flags_versus_rotating_flags() -> None:
    n_folds, n_cells, k = 50, 200, 10
    fixed = np.zeros((n_folds, n_cells), dtype=bool)
    fixed[:, :k] = True
    r = flag_bias(fixed, np.ones(n_cells))
    assert r.core_fold_share == 1.0 and r.mean_jaccard == 1.0
    assert r.gini == pytest.approx(1 - k / n_cells)
    rng = np.random.default_rng(4)
    rotating = np.zeros((n_folds, n_cells), dtype=bool)
    for f in range(n_folds):
        rotating[f, rng.choice(n_cells, k, replace=False)] = True
    r = flag_bias(rotating, np.ones(n_cells))
    assert r.mean_jaccard == pytest.approx(r.jaccard_random, abs=0.03)
    assert r.core_fold_share < 0.3
    assert r.gini < 0.35


def test_flags_without_events_are_infinite_ratio_and_neither_is_nan() -> None:
    flags = np.array([[True, False, False]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = flag_bias(flags, np.array([0.0, 5.0, 0.0]), np.array([1, 2, 3]))
    assert list(r.areas) == [1, 2, 3]
    assert np.isinf(r.flag_to_event[0])
    assert r.flag_to_event[1] == 0.0
    assert np.isnan(r.flag_to_event[2])


def test_no_areas_and_no_folds_are_empty_not_errors() -> None:
    r = flag_bias(FLAGS, EVENTS)
    assert r.areas.size == 0 and r.gini == pytest.approx(0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        empty = flag_bias(np.zeros((0, 5), dtype=bool), np.zeros(5), AREAS)
    assert empty.n_folds == 0 and empty.core_cells.size == 0
    assert np.all(np.isnan(empty.flag_share))
    assert "nothing to check" in empty.describe()
    assert empty.summary()["folds"] == 0


def test_mixed_area_code_types_are_grouped_as_text() -> None:
    r = flag_bias(FLAGS, EVENTS, np.array([1, 1, "1", "x", "x"], dtype=object))
    assert list(r.areas) == ["1", "x"]
    np.testing.assert_array_equal(r.n_cells_in_area, [3, 2])


def test_bad_shapes_raise_usage_errors() -> None:
    with pytest.raises(UsageError, match="folds, cells"):
        flag_bias(np.ones(5, dtype=bool), EVENTS)
    with pytest.raises(UsageError, match="one entry per cell"):
        flag_bias(FLAGS, EVENTS[:3])
    with pytest.raises(UsageError, match="one entry per cell"):
        flag_bias(FLAGS, EVENTS, AREAS[:2])
    with pytest.raises(UsageError, match=">= 0"):
        flag_bias(FLAGS, -EVENTS)
