"""Spatial weights between grid cells, as sparse matrices.

Every builder here returns a ``scipy.sparse.csr_array`` of shape ``(n, n)``, float64, binary
(1.0 for neighbours, nothing stored otherwise), symmetric, with a zero diagonal, rows and
columns in the order of the cells given. Statistics that need the cell itself among its
neighbours (Getis-Ord Gi*) add the diagonal themselves, so the matrices stay the same for
every statistic.

A cell with no neighbour is an *island*: its row is empty. Builders never drop islands, so the
row order always matches the values vector the caller holds.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse
from scipy.spatial import cKDTree

from urbansec.errors import UsageError

__all__ = [
    "as_binary_weights",
    "cardinalities",
    "distance_band",
    "from_pairs",
    "islands",
    "square_contiguity",
]

# Relative slack on the distance threshold: cell centroids computed as ``origin + (col + 0.5) *
# size`` carry rounding noise, and a band of exactly one cell size must not lose half of the
# neighbours to it.
_DISTANCE_RTOL = 1e-9

# (row, col) offsets looking "forward" only; the reverse direction comes from symmetrising.
_FORWARD_OFFSETS = {
    "rook": ((0, 1), (1, 0)),
    "queen": ((0, 1), (1, 0), (1, 1), (1, -1)),
}


def from_pairs(n: int, i: ArrayLike, j: ArrayLike) -> sparse.csr_array:
    """Symmetric binary weights from neighbour index pairs.

    Parameters
    ----------
    n : number of cells (rows of the result).
    i, j : integer arrays of equal length (m,), cell indices in ``[0, n)``; pair ``(i[k], j[k])``
        makes the two cells neighbours both ways. Duplicates and either direction are fine;
        self pairs (``i == j``) are ignored so the diagonal stays zero.

    Returns
    -------
    ``csr_array`` (n, n), float64, 1.0 per neighbour pair, symmetric, zero diagonal.
    """
    n = _check_n(n)
    i_arr = np.asarray(i).ravel()
    j_arr = np.asarray(j).ravel()
    if i_arr.shape != j_arr.shape:
        raise UsageError(f"neighbour pairs need as many i as j indices ({i_arr.size} vs "
                         f"{j_arr.size})")
    if i_arr.size and not (np.issubdtype(i_arr.dtype, np.integer)
                           and np.issubdtype(j_arr.dtype, np.integer)):
        raise UsageError("neighbour pair indices must be integers")
    i_arr = i_arr.astype(np.int64, copy=False)
    j_arr = j_arr.astype(np.int64, copy=False)
    if i_arr.size and (min(i_arr.min(), j_arr.min()) < 0 or max(i_arr.max(), j_arr.max()) >= n):
        raise UsageError(f"neighbour pair index out of range: cells are numbered 0..{n - 1}")
    keep = i_arr != j_arr
    return _symmetric_binary(n, i_arr[keep], j_arr[keep])


def square_contiguity(rows: ArrayLike, cols: ArrayLike, kind: str = "queen") -> sparse.csr_array:
    """Contiguity weights between square grid cells given by integer row and column.

    Only pairs among the given cells are linked (a cell missing from the input is not a
    neighbour of anything), so the cells may form any shape.

    Parameters
    ----------
    rows, cols : integer arrays (n,), the grid row and column of each cell; each (row, col)
        must appear once.
    kind : ``"queen"`` (cells sharing an edge or a corner, up to 8 neighbours) or ``"rook"``
        (cells sharing an edge, up to 4).

    Returns
    -------
    ``csr_array`` (n, n), float64 binary, symmetric, zero diagonal, rows in input order.
    """
    if kind not in _FORWARD_OFFSETS:
        raise UsageError(f"unknown contiguity kind {kind!r}: use 'queen' or 'rook'")
    r_in = np.asarray(rows).ravel()
    c_in = np.asarray(cols).ravel()
    r, c = r_in, c_in
    if r.shape != c.shape:
        raise UsageError(f"need as many rows as cols ({r.size} vs {c.size})")
    n = r.size
    if n == 0:
        return sparse.csr_array((0, 0), dtype=np.float64)
    if not (np.issubdtype(r.dtype, np.integer) and np.issubdtype(c.dtype, np.integer)):
        raise UsageError("grid rows and cols must be integers")
    r = r.astype(np.int64) - r.min()
    # One spare column on each side so that col +/- 1 never wraps onto the next row's key.
    c = c.astype(np.int64) - c.min() + 1
    width = int(c.max()) + 2
    if (int(r.max()) + 2) * width >= 2**62:
        raise UsageError("grid too wide to index: rows/cols span is absurdly large")
    keys = r * width + c
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    if n > 1 and np.any(sorted_keys[1:] == sorted_keys[:-1]):
        dup = int(order[np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])[0]])
        raise UsageError(f"cell (row {r_in[dup]}, col {c_in[dup]}) is given twice; "
                         "each cell must appear once")
    src_parts: list[NDArray[np.int64]] = []
    dst_parts: list[NDArray[np.int64]] = []
    for dr, dc in _FORWARD_OFFSETS[kind]:
        target = keys + (dr * width + dc)
        pos = np.searchsorted(sorted_keys, target)
        pos_clipped = np.minimum(pos, n - 1)
        found = sorted_keys[pos_clipped] == target
        src_parts.append(np.flatnonzero(found))
        dst_parts.append(order[pos_clipped[found]])
    src = np.concatenate(src_parts)
    dst = np.concatenate(dst_parts)
    # Forward offsets are distinct and non-zero, so no pair appears twice and none is a loop.
    return _symmetric_binary(n, src, dst)


def distance_band(x: ArrayLike, y: ArrayLike, threshold: float) -> sparse.csr_array:
    """Binary distance-band weights: cells whose centroids are within ``threshold`` metres.

    Parameters
    ----------
    x, y : float arrays (n,), cell centroids in metres (a projected CRS).
    threshold : band radius in metres, > 0. Pairs with distance ``<= threshold`` are
        neighbours (with a relative slack of 1e-9 so that rounding noise in computed centroids
        does not drop neighbours at exactly the threshold). A cell with no other cell in
        range stays an island (empty row).

    Returns
    -------
    ``csr_array`` (n, n), float64 binary, symmetric, zero diagonal.
    """
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise UsageError(f"need as many x as y coordinates ({xs.size} vs {ys.size})")
    if not np.isfinite(threshold) or threshold <= 0:
        raise UsageError(f"distance threshold must be a positive number of metres, got "
                         f"{threshold!r}")
    n = xs.size
    if n == 0:
        return sparse.csr_array((0, 0), dtype=np.float64)
    if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
        raise UsageError("cell centroids must be finite coordinates (no NaN)")
    tree = cKDTree(np.column_stack([xs, ys]))
    pairs = tree.query_pairs(r=float(threshold) * (1.0 + _DISTANCE_RTOL),
                             output_type="ndarray")
    # Narrow the pair indices at once: for wide bands the pair list dominates peak memory.
    index_dtype = np.int32 if n < 2**31 else np.int64
    i = pairs[:, 0].astype(index_dtype)
    j = pairs[:, 1].astype(index_dtype)
    del pairs
    return _symmetric_binary(n, i, j)


def cardinalities(weights: sparse.sparray | sparse.spmatrix) -> NDArray[np.int64]:
    """Number of neighbours of each cell (non-zero off-diagonal entries per row), shape (n,)."""
    w = as_binary_weights(weights)
    return np.diff(w.indptr).astype(np.int64)


def islands(weights: sparse.sparray | sparse.spmatrix) -> NDArray[np.int64]:
    """Indices (ascending) of the cells with no neighbour."""
    return np.flatnonzero(cardinalities(weights) == 0)


def as_binary_weights(weights: sparse.sparray | sparse.spmatrix,
                      n: int | None = None) -> sparse.csr_array:
    """Canonical form used by the statistics: csr_array, 1.0 where non-zero, zero diagonal.

    Accepts any scipy sparse matrix or array (or a dense 2-D array); ``n``, when given, is the
    number of values the weights must match.
    """
    if not (sparse.issparse(weights) or isinstance(weights, np.ndarray)):
        raise UsageError(f"weights must be a scipy sparse matrix, got {type(weights).__name__}")
    w = sparse.csr_array(weights)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise UsageError(f"weights must be a square matrix, got shape {w.shape}")
    if n is not None and w.shape[0] != n:
        raise UsageError(f"weights are for {w.shape[0]} cells but {n} values were given; "
                         "build both from the same list of cells")
    coo = w.tocoo()
    keep = (coo.data != 0) & (coo.row != coo.col)
    if not np.isfinite(coo.data).all():
        raise UsageError("weights contain NaN or infinite entries")
    return _binary_csr(w.shape[0], coo.row[keep], coo.col[keep])


def _symmetric_binary(n: int, i: NDArray[np.integer], j: NDArray[np.integer]) -> sparse.csr_array:
    """Binary csr_array with 1.0 at (i, j) and (j, i); pairs must not contain i == j."""
    return _binary_csr(n, np.concatenate([i, j]), np.concatenate([j, i]))


def _binary_csr(n: int, rows: NDArray[np.integer], cols: NDArray[np.integer]) -> sparse.csr_array:
    """(n, n) csr_array with 1.0 at each (rows[k], cols[k]); duplicates collapse to 1."""
    index_dtype = np.int32 if n < 2**31 and rows.size < 2**31 else np.int64
    data = np.ones(rows.size, dtype=np.float64)
    # scipy's coo -> csr conversion sorts and sums duplicates in C with compact indices (much
    # lighter than sorting int64 keys in numpy); the sums are reset to 1 to stay binary.
    w = sparse.coo_array((data, (rows.astype(index_dtype, copy=False),
                                 cols.astype(index_dtype, copy=False))), shape=(n, n)).tocsr()
    w.sum_duplicates()
    w.data[:] = 1.0
    return w


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise UsageError(f"number of cells must be a non-negative integer, got {n!r}")
    return int(n)
