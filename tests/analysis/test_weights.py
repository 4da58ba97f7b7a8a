"""Spatial weights: checked against libpysal and against brute force on irregular cell sets."""

from __future__ import annotations

import time

import libpysal
import numpy as np
import pytest
from scipy import sparse

from urbansec.analysis.weights import (
    as_binary_weights,
    cardinalities,
    distance_band,
    from_pairs,
    islands,
    square_contiguity,
)
from urbansec.errors import UsageError


def _dense(w: sparse.csr_array) -> np.ndarray:
    return w.toarray()


def _check_canonical(w: sparse.csr_array, n: int) -> None:
    assert isinstance(w, sparse.csr_array)
    assert w.shape == (n, n)
    assert w.dtype == np.float64
    assert np.all(w.data == 1.0)
    assert np.all(w.diagonal() == 0)
    assert (w != w.T).nnz == 0


def _brute_contiguity(rows: np.ndarray, cols: np.ndarray, kind: str) -> np.ndarray:
    dr = np.abs(rows[:, None] - rows[None, :])
    dc = np.abs(cols[:, None] - cols[None, :])
    steps = np.maximum(dr, dc) if kind == "queen" else dr + dc
    return (steps == 1).astype(float)


@pytest.mark.parametrize(("kind", "rook"), [("queen", False), ("rook", True)])
def test_full_lattice_equals_libpysal_lat2w(kind: str, rook: bool) -> None:
    nrows, ncols = 7, 5
    rows, cols = np.divmod(np.arange(nrows * ncols), ncols)
    w = square_contiguity(rows, cols, kind=kind)
    _check_canonical(w, nrows * ncols)
    ref = libpysal.weights.lat2W(nrows, ncols, rook=rook).sparse.toarray()
    np.testing.assert_array_equal(_dense(w), ref)
    expected_max = 8 if kind == "queen" else 4
    assert cardinalities(w).max() == expected_max
    assert cardinalities(w)[0] == (3 if kind == "queen" else 2)  # a corner


@pytest.mark.parametrize("kind", ["queen", "rook"])
def test_irregular_shuffled_cells_match_brute_force(kind: str) -> None:
    rng = np.random.default_rng(7)
    rows, cols = np.divmod(np.arange(20 * 17), 17)
    keep = rng.random(rows.size) > 0.3
    order = rng.permutation(int(keep.sum()))
    # Negative and offset indices must work too: only relative positions matter.
    r = rows[keep][order] - 5
    c = cols[keep][order] + 1000
    w = square_contiguity(r, c, kind=kind)
    _check_canonical(w, r.size)
    np.testing.assert_array_equal(_dense(w), _brute_contiguity(r, c, kind))


def test_contiguity_does_not_wrap_across_rows() -> None:
    # Last cell of row 0 and first cell of row 1 are far apart on the map.
    rows = np.array([0, 1])
    cols = np.array([3, 0])
    assert square_contiguity(rows, cols).nnz == 0
    w = square_contiguity(np.array([0, 1, 5]), np.array([0, 1, 5]))
    np.testing.assert_array_equal(islands(w), [2])


def test_contiguity_errors_and_empty() -> None:
    with pytest.raises(UsageError, match="given twice"):
        square_contiguity([0, 1, 0], [0, 0, 0])
    with pytest.raises(UsageError, match="queen"):
        square_contiguity([0], [0], kind="bishop")
    with pytest.raises(UsageError, match="as many rows"):
        square_contiguity([0, 1], [0])
    with pytest.raises(UsageError, match="integers"):
        square_contiguity([0.5], [0.0])
    assert square_contiguity([], []).shape == (0, 0)


def test_distance_band_equals_libpysal_with_island() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 2000, 150)
    y = rng.uniform(0, 2000, 150)
    x[0], y[0] = 10_000.0, 10_000.0  # far away: an island
    w = distance_band(x, y, 300.0)
    _check_canonical(w, x.size)
    ref = libpysal.weights.DistanceBand(np.column_stack([x, y]), threshold=300.0, binary=True,
                                        silence_warnings=True).sparse.toarray()
    np.testing.assert_array_equal(_dense(w), ref)
    assert 0 in islands(w)
    assert cardinalities(w)[0] == 0


def test_distance_band_keeps_neighbours_at_exactly_the_threshold() -> None:
    # Centroids computed as origin + (col + 0.5) * size carry rounding noise; a band of one
    # cell size must still link edge neighbours (and a band of sqrt(2) sizes the diagonals).
    size = 250.0
    origin = 447_123.37
    rows, cols = np.divmod(np.arange(6 * 6), 6)
    x = origin + (cols + 0.5) * size
    y = 4_631_987.11 + (rows + 0.5) * size
    np.testing.assert_array_equal(_dense(distance_band(x, y, size)),
                                  _dense(square_contiguity(rows, cols, "rook")))
    np.testing.assert_array_equal(_dense(distance_band(x, y, size * np.sqrt(2))),
                                  _dense(square_contiguity(rows, cols, "queen")))


def test_distance_band_errors_and_empty() -> None:
    with pytest.raises(UsageError, match="positive"):
        distance_band([0.0], [0.0], 0)
    with pytest.raises(UsageError, match="positive"):
        distance_band([0.0], [0.0], float("nan"))
    with pytest.raises(UsageError, match="finite"):
        distance_band([0.0, np.nan], [0.0, 1.0], 5)
    with pytest.raises(UsageError, match="as many x"):
        distance_band([0.0, 1.0], [0.0], 5)
    assert distance_band([], [], 10).shape == (0, 0)


def test_from_pairs_symmetrises_deduplicates_and_drops_self_pairs() -> None:
    w = from_pairs(5, np.array([0, 1, 1, 3, 2]), np.array([1, 0, 2, 3, 1]))
    _check_canonical(w, 5)
    expected = np.zeros((5, 5))
    for a, b in [(0, 1), (1, 2)]:
        expected[a, b] = expected[b, a] = 1
    np.testing.assert_array_equal(_dense(w), expected)
    np.testing.assert_array_equal(islands(w), [3, 4])
    np.testing.assert_array_equal(cardinalities(w), [1, 2, 1, 0, 0])
    assert from_pairs(3, [], []).nnz == 0
    with pytest.raises(UsageError, match="out of range"):
        from_pairs(3, [0], [3])
    with pytest.raises(UsageError, match="out of range"):
        from_pairs(3, [-1], [0])
    with pytest.raises(UsageError, match="as many"):
        from_pairs(3, [0, 1], [2])
    with pytest.raises(UsageError, match="non-negative integer"):
        from_pairs(-1, [], [])


def test_as_binary_weights_normalises_any_sparse_input() -> None:
    m = sparse.csr_matrix(np.array([[2.0, 0.5, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]))
    w = as_binary_weights(m)
    assert isinstance(w, sparse.csr_array)
    # Diagonal dropped, values binarised, asymmetry kept (Gi* works row by row).
    np.testing.assert_array_equal(w.toarray(), [[0, 1, 0], [0, 0, 1], [0, 0, 0]])
    with pytest.raises(UsageError, match="3 cells but 4 values"):
        as_binary_weights(m, 4)
    with pytest.raises(UsageError, match="square"):
        as_binary_weights(sparse.csr_array((2, 3)))
    with pytest.raises(UsageError, match="sparse"):
        as_binary_weights([[0, 1], [1, 0]])  # type: ignore[arg-type]


def test_builders_are_fast_on_200k_cells() -> None:
    rows, cols = np.divmod(np.arange(450 * 450), 450)
    t0 = time.perf_counter()
    w = square_contiguity(rows, cols)
    t1 = time.perf_counter()
    band = distance_band(cols * 250.0, rows * 250.0, 250.0 * np.sqrt(2))
    t2 = time.perf_counter()
    assert (w != band).nnz == 0
    # Directed links: horizontal + vertical edges, plus both diagonals, each counted twice.
    assert w.nnz == 2 * (2 * 450 * 449 + 2 * 449 * 449)
    # ~0.1 s each on a shared 2-CPU machine; the bound only catches accidental quadratic code.
    assert t1 - t0 < 5.0
    assert t2 - t1 < 5.0
