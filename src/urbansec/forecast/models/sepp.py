"""Self-exciting point process (SEPP) on grid cells, fitted by expectation-maximisation.

The grid variant of Mohler et al. (2015, "Randomized controlled field trials of predictive
policing", JASA 110(512)) of the model of Mohler et al. (2011, "Self-exciting point process
modeling of crime", JASA 106(493)): every cell ``c`` has a constant background rate and each
event raises the rate of its own cell (and, optionally, of the cells around it) for a while,
the way one burglary makes another nearby more likely in the following days.

Model (times in days, cells ``c`` of one grid)::

    lambda_c(t) = mu_c + theta * sum_{i: t_i < t} k(c | c_i) * omega * exp(-omega * (t - t_i))

- ``mu_c`` >= 0: background events per day in cell ``c``;
- ``theta`` in [0, 1): branching ratio, the expected number of direct offspring per event;
- ``omega`` > 0: decay rate per day (mean delay from an event to its offspring ``1/omega``);
- ``k(c | c')``: where offspring land. Without ``spread`` (the default), ``k = 1`` when
  ``c == c'`` and 0 otherwise (Mohler 2015). With ``spread``, a share ``rho`` of the
  offspring lands evenly on the neighbouring cells (the 8 queen neighbours of a square cell,
  the 6 of an H3 hexagon): ``k(c|c) = 1 - rho``, ``k(c|c') = rho / m_c'`` for a neighbour
  ``c`` of ``c'``; ``rho`` is estimated too. Offspring landing outside the study area are
  simply not seen.

Log-likelihood of the events of the window ``[T0, T1]`` (``T = T1 - T0`` days, ``tau_i =
T1 - t_i``; the grid is unbounded, a cell without events contributes only its integral)::

    L = sum_j log lambda_{c_j}(t_j) - T * sum_c mu_c - theta * sum_i (1 - exp(-omega tau_i))

EM (with a per-cell background every iteration raises ``L`` or leaves it unchanged):

- E-step: for each event ``j`` the probability that it is a background event,
  ``p_jj = mu_{c_j} / lambda_{c_j}(t_j)``, and that it is an offspring of the earlier event
  ``i``, ``p_ij = theta k(c_j|c_i) omega exp(-omega (t_j - t_i)) / lambda_{c_j}(t_j)``.
- M-step, in closed form except for one 1-D maximisation: ``mu_c = sum_{j in c} p_jj / T``;
  ``rho = sum_{i,j in different cells} p_ij / S`` with ``S = sum p_ij``; ``omega`` maximises
  the profile ``S log omega - S log B(omega) - omega sum p_ij (t_j - t_i)`` (bounded Brent on
  ``log omega``) where ``B(omega) = sum_i (1 - exp(-omega tau_i))`` is the expected share of
  offspring falling inside the window; then ``theta = S / B(omega)``. Both are the exact joint
  maximiser of the expected complete-data log-likelihood, boundary term included (the common
  shortcut ``B = N``, all offspring inside the window, biases ``theta`` low and ``omega`` high
  when the window is not much longer than ``1/omega``).

Optional smoothed background (``background_bandwidth``, metres; Mohler 2011 estimates the
background by a kernel density of the background-weighted events): the M-step for ``mu``
becomes ``mu = K (sum_{j in c} p_jj) / T`` where ``K`` spreads each cell's background weight
over the cells whose centres lie within 3 bandwidths, with Gaussian weights normalised to sum
to 1 (so the expected total stays exact). This is EM with a smoothing step (EMS, Silverman et
al. 1990): fewer effective parameters, a background that also covers empty cells, but no
guarantee that ``L`` rises at every iteration. A per-cell background soaks up any persistent
clustering, so on real data it leaves ``theta`` near 0; a smooth one lets the triggering part
carry local, changing activity.

Convergence: stop when an iteration changes ``L`` by less than ``tol * |L|`` (or after
``max_iter``). Pairs whose weight ``exp(-omega dt)`` is below 1e-8 are left out of an iteration
(their share of any sum is negligible). When a huge input would give more than
:data:`MAX_PAIRS` candidate (parent, offspring) pairs, the triggering kernel is truncated at the
longest lag that fits (``max_lag_days_``); the likelihood then is the truncated kernel's.

Statistical note: with few events per cell the maximum-likelihood ``theta`` is biased low by a
few per cent (each cell's own background rate is a nuisance parameter fitted from its few
events); on simulated data with ~10-60 events per cell ``theta`` came out 4-10 % low and
``omega`` 5-15 % high (the tests state their tolerances).

On real data (Chicago burglaries, 250 m cells, 1-3 years): with a per-cell background the
fit finds ``theta`` 0.013-0.023 and a mean delay of 4-14 hours (same-night repeats in one
cell; ``spread`` puts about a third of them next door), so the forecast is essentially the
background, i.e. the historical average. With ``background_bandwidth=500`` it finds
``theta`` 0.33-0.52 with mean delays of 3-6 months: slow local changes of activity rather
than contagion, which modestly raised next-day hit rates in a 2017 backtest.

Forecast: the expected number of events in cell ``c`` over ``[start, end)`` given the events of
the window, including the offspring (and their offspring) born inside the period. For the
exponential kernel this is closed form: with ``X_c`` the excitation from past events at the
history's end ``H`` (the last event, or ``start`` if that is earlier), ``kappa = omega (1 -
theta)``, gap ``g = start - H`` and length ``D = end - start``, ``F = exp(-kappa g) (1 -
exp(-kappa D)) / kappa``::

    background_c = mu_c / (1 - theta) * (D - theta * F)   # background events and their cascades
    triggered_c  = X_c * F                                  # cascades of past events
    X_c = theta * omega * sum_{i: t_i < H} k(c | c_i) exp(-omega (H - t_i))

(exact without ``spread``; with it, the first generation is spread and later generations are
kept in the cell they were born in, an approximation that keeps the expected total exact.)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import h3
import numpy as np
from scipy import sparse
from scipy.optimize import minimize_scalar

from urbansec.domain.events import Events
from urbansec.domain.grid import Grid, HexGrid, SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.base import ForecastModel, RiskSurface, as_instant

__all__ = ["MAX_PAIRS", "SEPP"]

#: Most (parent, offspring) candidate pairs kept in memory (17 bytes each, about 50 while
#: they are listed and 40 during an EM iteration); beyond it the triggering kernel is
#: truncated at a shorter lag. One year of burglaries in Chicago on 250 m cells has 22,000.
MAX_PAIRS = 5_000_000

DAY = 86_400.0
# exp(-18.42) = 1e-8: a pair this many mean delays old adds nothing measurable to an iteration.
_NEGLIGIBLE = 18.42
# omega is searched within [1e-4, 1e4] per day: mean delays from 9 s to 27 years.
_LOG_OMEGA_BOUNDS = (math.log(1e-4), math.log(1e4))
# theta must stay below 1 (a stationary process); the bound only bites on degenerate input.
_THETA_MAX = 0.999
# the fixed start of a cold fit; the EM forgets it quickly
_THETA0, _OMEGA0, _RHO0 = 0.5, 0.1, 0.5
# Gaussian background kernel cut at this many bandwidths (weights beyond: < 1.2 %)
_SMOOTH_REACH = 3.0


@dataclass(frozen=True)
class _Window:
    """The training events of one window on one grid, sorted by (cell, time), and the
    candidate (parent, offspring) pairs.

    Events: ``cells`` (C,) sorted keys of the cells holding events; ``cell`` (N,) index of each
    event's cell in ``cells``; ``t`` (N,) seconds from the window end (<= 0); ``tau`` (N,) days
    from each event to the window end, capped at ``max_lag``; ``length`` days; ``start`` /
    ``end`` UTC instants.
    Pairs, shortest lag first: ``child`` (P,) offspring index; ``lag`` (P,) days; ``same`` (P,)
    parent in the offspring's cell; ``inv_m`` (P,) 1 / number of neighbours of the parent's
    cell (0 for same-cell pairs). ``nb_keys`` (C, m) keys around each cell (-1 padding),
    ``n_nb`` (C,) how many.
    Background: ``bg_keys`` (B,) sorted keys of the cells with a background rate;
    ``bg_of_event`` (N,) index of each event's cell in ``bg_keys``; ``smoother`` (B, C) sparse
    kernel spreading each event cell's background weight (None: per-cell background).
    """

    cells: np.ndarray
    cell: np.ndarray
    t: np.ndarray
    tau: np.ndarray
    length: float
    start: np.datetime64
    end: np.datetime64
    child: np.ndarray
    lag: np.ndarray
    same: np.ndarray
    inv_m: np.ndarray
    nb_keys: np.ndarray
    n_nb: np.ndarray
    max_lag: float
    bg_keys: np.ndarray
    bg_of_event: np.ndarray
    smoother: sparse.csr_matrix | None


@dataclass(frozen=True)
class _State:
    """``mu`` (B,) background events per day on ``_Window.bg_keys``; ``theta``; ``omega`` per
    day; ``rho`` share of offspring on neighbouring cells."""

    mu: np.ndarray
    theta: float
    omega: float
    rho: float


class SEPP(ForecastModel):
    """Grid self-exciting point process (Mohler et al. 2011, 2015), fitted by EM.

    Hyper-parameters:

    - ``window_days``: only the events of the last ``window_days`` before the latest training
      event are used; the observation window is ``[max(latest - window_days, earliest),
      latest]``.
    - ``spread``: offspring may land on the neighbouring cells (share ``rho`` estimated);
      False gives Mohler et al. (2015)'s within-cell model.
    - ``background_bandwidth``: None for a free background rate per cell (exact EM); metres
      for a Gaussian-smoothed background (standard deviation; EM with a smoothing step).
    - ``max_iter`` / ``tol``: EM stops after ``max_iter`` iterations or when an iteration
      changes the log-likelihood by less than ``tol * |log-likelihood|``.
    - ``update_iter``: most EM iterations of a warm-started ``update`` (rolling backtests).
    - ``min_events``: fewest located events in the window to fit at all.
    - ``grid``: the grid whose cells the process lives on. None: the grid of the latest
      ``predict`` if there was one, else 250 m squares in the events' CRS. ``predict`` on
      another grid fits again on that grid (warm-started), so the model always forecasts on
      the cells it was fitted on.
    - ``seed``: kept for the common idiom; the fit is deterministic (fixed start, no sampling).

    Fitted attributes: ``grid_``; ``cells_`` (B,) keys of the cells with a background rate (the
    cells with events in the window, or with a smoothed background every cell within reach of
    one); ``mu_`` (B,) background events per day per cell; ``theta_`` branching ratio;
    ``omega_`` decay rate per day; ``trigger_mean_days_`` = 1 / ``omega_``; ``spread_share_``
    (``rho``; 0 without ``spread``); ``n_iter_`` EM iterations run; ``converged_``;
    ``log_likelihood_`` of the fitted parameters; ``log_likelihood_path_`` (one value per
    iteration, before its M-step); ``n_events_``; ``window_start_`` / ``window_end_`` (UTC);
    ``max_lag_days_`` (the window length unless the pair budget truncated the kernel).
    """

    name = "sepp"

    def __init__(self, window_days: float = 365.0, spread: bool = False,
                 background_bandwidth: float | None = None, max_iter: int = 200,
                 tol: float = 1e-6, update_iter: int = 20, min_events: int = 50,
                 grid: Grid | None = None, seed: int = 0) -> None:
        self.window_days = window_days
        self.spread = spread
        self.background_bandwidth = background_bandwidth
        self.max_iter = max_iter
        self.tol = tol
        self.update_iter = update_iter
        self.min_events = min_events
        self.grid = grid
        self.seed = seed

    # ------------------------------------------------------------------ estimator idiom
    def fit(self, events: Events) -> SEPP:
        """Fit by EM from a fixed start (theta 0.5, omega 0.1 per day, rho 0.5, background
        from the counts). ``events``: all before the forecast origin; unlocated ones are
        ignored. Returns ``self``."""
        self._validate()
        located, start = self._window_events(events)
        grid = self._grid_for(located)
        window = self._prepare(located, grid, start)
        self._run(grid, located, window, _cold_state(window, self.spread), self.max_iter)
        return self

    def update(self, events: Events) -> SEPP:
        """Refit on a later window, starting from the fitted theta, omega, rho and background
        and running at most ``update_iter`` EM iterations (a full ``fit`` if not fitted)."""
        if not hasattr(self, "theta_") or self.grid_.crs != events.crs:
            return self.fit(events)
        self._validate()
        located, start = self._window_events(events)
        window = self._prepare(located, self.grid_, start)
        self._run(self.grid_, located, window, self._warm_state(window), self.update_iter)
        return self

    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        """Expected events per cell over ``[start, end)`` (``expected=True``), with
        ``details = {"background": (n,), "triggered": (n,)}`` (expected counts, summing to
        ``risk``), aligned with ``cells`` (default: the study cells of the training events)."""
        if not hasattr(self, "theta_"):
            raise UsageError("SEPP is not fitted yet: call fit(events) before predict")
        start, end = as_instant(start), as_instant(end)
        if end <= start:
            raise UsageError(f"the forecast period must end after it starts ({start} .. {end})")
        if grid != self.grid_:
            # the process lives on cells: refit on the cells asked for, from the current fit
            window = self._prepare(self._events, grid, self.window_start_)
            self._run(grid, self._events, window, self._warm_state(window, same_grid=False),
                      self.max_iter)
        keys = self._cells(grid, self._events, cells)
        background, triggered = self._expected(keys, start, end)
        return RiskSurface(grid=grid, keys=keys, risk=background + triggered, start=start,
                           end=end, model=self.name, expected=True,
                           details={"background": background, "triggered": triggered})

    # ------------------------------------------------------------------ helpers
    def _validate(self) -> None:
        def number(value: Any) -> bool:
            return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)

        def whole(value: Any) -> bool:
            return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)

        checks = [
            (number(self.window_days) and self.window_days > 0,
             f"window_days must be a positive number of days, not {self.window_days!r}"),
            (isinstance(self.spread, bool), f"spread must be True or False, not {self.spread!r}"),
            (self.background_bandwidth is None or (number(self.background_bandwidth)
                                                   and self.background_bandwidth > 0),
             "background_bandwidth must be None or a positive number of metres, not "
             f"{self.background_bandwidth!r}"),
            (whole(self.max_iter) and self.max_iter >= 1,
             f"max_iter must be a whole number >= 1, not {self.max_iter!r}"),
            (whole(self.update_iter) and self.update_iter >= 1,
             f"update_iter must be a whole number >= 1, not {self.update_iter!r}"),
            (number(self.tol) and self.tol > 0,
             f"tol must be a positive number, not {self.tol!r}"),
            (whole(self.min_events) and self.min_events >= 2,
             f"min_events must be a whole number >= 2, not {self.min_events!r}"),
            (self.grid is None or isinstance(self.grid, SquareGrid | HexGrid),
             f"grid must be None, a SquareGrid or a HexGrid, not {self.grid!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"SEPP: {message}")

    def _window_events(self, events: Events) -> tuple[Events, np.datetime64]:
        """The located events of the window and the window's start."""
        located = self._check_events(events)
        latest = located.t.max()
        start = max(located.t.min(), latest - np.timedelta64(round(self.window_days * DAY),
                                                              "s"))
        # the window may have cut the input below what the model needs
        return self._check_events(located.subset(located.t >= start)), start

    def _grid_for(self, events: Events) -> Grid:
        if self.grid is not None:
            return self.grid
        previous = getattr(self, "grid_", None)
        if previous is not None and previous.crs == events.crs:
            return previous
        return SquareGrid(size=250.0, crs=events.crs)

    def _prepare(self, events: Events, grid: Grid, start: np.datetime64) -> _Window:
        if events.crs != grid.crs:
            raise UsageError(f"SEPP: the events are in {events.crs} but the grid in "
                             f"{grid.crs}; project them to the same CRS")
        return _prepare(events, grid, start, self.spread, self.background_bandwidth)

    def _warm_state(self, window: _Window, same_grid: bool = True) -> _State:
        cold = _cold_state(window, self.spread)
        # cells fitted before keep their background rate; new cells start from their counts
        # (keys of another grid name other cells: then every cell starts from its counts)
        known = _index_of(self.cells_ if same_grid else self.cells_[:0], window.bg_keys)
        mu = np.where(known >= 0, self.mu_[np.maximum(known, 0)], cold.mu)
        rho = self.spread_share_ if 0 < self.spread_share_ < 1 else cold.rho
        # theta exactly 0 is a fixed point of EM: restart it slightly above
        return _State(mu=mu, theta=max(self.theta_, 1e-3), omega=self.omega_, rho=rho)

    def _run(self, grid: Grid, events: Events, window: _Window, state: _State,
             max_iter: int) -> None:
        state, path, n_iter, converged = _em(window, state, max_iter, self.tol)
        self._events = events
        self._window = window
        self.grid_ = grid
        self.cells_ = window.bg_keys
        self.mu_ = state.mu
        self.theta_ = state.theta
        self.omega_ = state.omega
        self.trigger_mean_days_ = 1.0 / state.omega
        self.spread_share_ = state.rho
        self.n_iter_ = n_iter
        self.converged_ = converged
        self.log_likelihood_ = _log_likelihood(window, state)
        self.log_likelihood_path_ = np.asarray(path)
        self.n_events_ = int(window.cell.size)
        self.window_start_ = window.start
        self.window_end_ = window.end
        self.max_lag_days_ = window.max_lag

    def _expected(self, keys: np.ndarray, start: np.datetime64, end: np.datetime64
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Background and triggered expected counts (n,) per cell of ``keys`` (module doc)."""
        window = self._window
        theta, omega, rho = self.theta_, self.omega_, self.spread_share_
        to_start = int((start - window.end).astype(np.int64))  # seconds, may be negative
        # the history is the events before start; it ends at the last event or at start
        if to_start >= 0:
            history, history_end = np.ones(window.t.size, dtype=bool), 0.0
        else:
            history, history_end = window.t < to_start, float(to_start)
        age = (history_end - window.t[history]) / DAY
        weight = np.exp(-np.minimum(omega * age, 700.0))
        weight[age > window.max_lag] = 0.0  # a truncated kernel forgets older events
        excitation = np.bincount(window.cell[history], weights=weight,
                                 minlength=window.cells.size)  # (C,) per event cell
        index = _index_of(window.cells, keys)
        inside = index >= 0
        excite = np.zeros(keys.size)
        excite[inside] = (1.0 - rho) * excitation[index[inside]]
        if rho > 0 and window.nb_keys.size:
            share = rho * excitation / np.maximum(window.n_nb, 1)
            targets = _index_of(keys, window.nb_keys.ravel())
            values = np.repeat(share, window.nb_keys.shape[1])
            ok = targets >= 0
            excite += np.bincount(targets[ok], weights=values[ok], minlength=keys.size)
        excite *= theta * omega
        bg_index = _index_of(self.cells_, keys)
        mu = np.where(bg_index >= 0, self.mu_[np.maximum(bg_index, 0)], 0.0)
        kappa = omega * (1.0 - theta)
        gap = max(to_start, 0) / DAY
        length = float((end - start).astype(np.int64)) / DAY
        factor = math.exp(-kappa * gap) * -math.expm1(-kappa * length) / kappa
        background = mu / (1.0 - theta) * max(length - theta * factor, 0.0)
        return background, excite * factor


# ---------------------------------------------------------------------- preparation
def _index_of(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Position of each key in ``sorted_keys``, -1 where absent."""
    keys = np.asarray(keys, dtype=np.int64)
    if sorted_keys.size == 0:
        return np.full(keys.shape, -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(sorted_keys, keys), 0, sorted_keys.size - 1)
    return np.where((sorted_keys[pos] == keys) & (keys >= 0), pos, -1)


def _neighbour_keys(grid: Grid, cells: np.ndarray) -> np.ndarray:
    """(C, m) keys of the cells around each cell (-1 where a hexagon has fewer)."""
    if isinstance(grid, SquareGrid):
        col, row = SquareGrid.col_row(cells)
        offsets = [(dc, dr) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dc, dr) != (0, 0)]
        return np.stack([SquareGrid.key(col + dc, row + dr) for dc, dr in offsets], axis=1)
    if isinstance(grid, HexGrid):
        out = np.full((cells.size, 6), -1, dtype=np.int64)
        ring = h3.api.basic_int.grid_ring
        for i, key in enumerate(cells.astype(np.uint64).tolist()):
            around = np.array(sorted(ring(int(key), 1)), dtype=np.uint64).astype(np.int64)
            out[i, : around.size] = around
        return out
    raise UsageError(f"SEPP needs a square or H3 grid, not {grid!r}")


def _smoother(grid: Grid, cells: np.ndarray, bandwidth: float
              ) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Support keys (B,) and the (B, C) Gaussian kernel from each event cell to the cells
    whose centres lie within ``_SMOOTH_REACH`` bandwidths; each column sums to 1."""
    reach = _SMOOTH_REACH * bandwidth
    if isinstance(grid, SquareGrid):
        r = math.ceil(reach / grid.size)
        dc, dr = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1))
        d2 = (dc.ravel() ** 2 + dr.ravel() ** 2) * grid.size**2
        near = d2 <= reach**2
        dc, dr, d2 = dc.ravel()[near], dr.ravel()[near], d2[near]
        weight = np.exp(-d2 / (2 * bandwidth**2))
        weight /= weight.sum()
        col, row = SquareGrid.col_row(cells)
        source = np.repeat(np.arange(cells.size), dc.size)
        targets = SquareGrid.key(col[source] + np.tile(dc, cells.size),
                                 row[source] + np.tile(dr, cells.size))
        values = np.tile(weight, cells.size)
    elif isinstance(grid, HexGrid):
        spacing = math.sqrt(2.0 * float(np.mean(grid.cell_area_km2(cells[:1]))) * 1e6
                            / math.sqrt(3.0))  # centre-to-centre distance of hexagons
        rings = math.ceil(reach / spacing) + 1
        disk = h3.api.basic_int.grid_disk
        parts = [np.array(disk(int(k), rings), dtype=np.uint64).astype(np.int64)
                 for k in cells.astype(np.uint64).tolist()]
        source = np.repeat(np.arange(cells.size), [p.size for p in parts])
        targets = np.concatenate(parts)
        unique, inverse = np.unique(targets, return_inverse=True)
        ux, uy = grid.centroids(unique)
        cx, cy = grid.centroids(cells)
        d2 = (ux[inverse] - cx[source]) ** 2 + (uy[inverse] - cy[source]) ** 2
        near = d2 <= reach**2
        source, targets, d2 = source[near], targets[near], d2[near]
        values = np.exp(-d2 / (2 * bandwidth**2))
        values /= np.bincount(source, weights=values, minlength=cells.size)[source]
    else:
        raise UsageError(f"SEPP needs a square or H3 grid, not {grid!r}")
    keys, rows = np.unique(targets, return_inverse=True)
    matrix = sparse.csr_matrix((values, (rows, source)), shape=(keys.size, cells.size))
    return keys, matrix


def _prepare(events: Events, grid: Grid, start: np.datetime64, spread: bool,
             bandwidth: float | None) -> _Window:
    """Sort the window's events by (cell, time) and list the candidate pairs (see _Window).
    The window runs from ``start`` to the last event."""
    end = events.t.max()
    length = float((end - start).astype(np.int64)) / DAY
    if length <= 0:
        raise UsageError("SEPP needs training events spread over time; these all happen at "
                         f"the same instant ({end})")
    keys = grid.locate(events.x, events.y)
    cells, cell = np.unique(keys, return_inverse=True)
    seconds = (events.t - end).astype(np.int64)  # <= 0
    order = np.lexsort((seconds, cell))
    cell, seconds = cell[order], seconds[order]
    if spread:
        nb_keys = _neighbour_keys(grid, cells)
        nb_index = _index_of(cells, nb_keys)
        n_nb = (nb_keys >= 0).sum(axis=1)
    else:
        nb_keys = np.empty((cells.size, 0), dtype=np.int64)
        nb_index = np.empty((cells.size, 0), dtype=np.int64)
        n_nb = np.zeros(cells.size, dtype=np.int64)
    # one sorted composite key (cell, time) finds every parent range by binary search
    span = int(-seconds.min()) + 1
    composite = cell.astype(np.int64) * span + (seconds + span - 1)
    parent_cells = [cell] + [nb_index[cell, o] for o in range(nb_index.shape[1])]

    def ranges(max_lag_s: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per parent-cell offset: offspring with such a cell, first and end parent."""
        out = []
        for pc in parent_cells:
            ok = np.flatnonzero(pc >= 0)
            offset = seconds[ok] + span - 1
            base = pc[ok].astype(np.int64) * span
            hi = np.searchsorted(composite, base + offset, side="left")  # strictly earlier
            lo = np.searchsorted(composite, base + np.maximum(offset - max_lag_s, 0),
                                 side="left")
            out.append((ok, lo, hi))
        return out

    max_lag_s = round(length * DAY)
    found = ranges(max_lag_s)
    if sum(int((hi - lo).sum()) for _, lo, hi in found) > MAX_PAIRS:
        # truncate the kernel at the longest lag (to a minute) whose pairs fit (bisection)
        low, high = 0, max_lag_s
        while high - low > 60:
            mid = (low + high) // 2
            if sum(int((h - lo_).sum()) for _, lo_, h in ranges(mid)) > MAX_PAIRS:
                high = mid
            else:
                low = mid
        max_lag_s = low
        found = ranges(max_lag_s)
    child_parts, parent_parts, same_parts = [], [], []
    for o, (ok, lo, hi) in enumerate(found):
        n = hi - lo
        child = np.repeat(ok, n)
        # parents of one offspring are the consecutive positions lo .. hi - 1
        parent = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(child.size)
        child_parts.append(child)
        parent_parts.append(parent)
        same_parts.append(np.full(child.size, o == 0))
    child = np.concatenate(child_parts)
    parent = np.concatenate(parent_parts)
    same = np.concatenate(same_parts)
    lag = (seconds[child] - seconds[parent]) / DAY
    by_lag = np.argsort(lag, kind="stable")
    child, parent, same, lag = child[by_lag], parent[by_lag], same[by_lag], lag[by_lag]
    inv_m = np.where(same, 0.0, 1.0 / np.maximum(n_nb[cell[parent]], 1)).astype(np.float32)
    child = child.astype(np.int32)  # the pair arrays dominate memory: keep them small
    max_lag = max_lag_s / DAY
    if bandwidth is None:
        bg_keys, bg_of_event, smoother = cells, cell, None
    else:
        bg_keys, smoother = _smoother(grid, cells, bandwidth)
        bg_of_event = _index_of(bg_keys, cells)[cell]
    return _Window(cells=cells, cell=cell, t=seconds, tau=np.minimum(-seconds / DAY, max_lag),
                   length=length, start=start, end=end, child=child, lag=lag, same=same,
                   inv_m=inv_m, nb_keys=nb_keys, n_nb=n_nb, max_lag=max_lag, bg_keys=bg_keys,
                   bg_of_event=bg_of_event, smoother=smoother)


# ---------------------------------------------------------------------- EM
def _cold_state(window: _Window, spread: bool) -> _State:
    counts = np.bincount(window.cell, minlength=window.cells.size).astype(float)
    return _State(mu=_background(window, (1 - _THETA0) * counts), theta=_THETA0,
                  omega=_OMEGA0, rho=_RHO0 if spread else 0.0)


def _background(window: _Window, weight: np.ndarray) -> np.ndarray:
    """Background rates (B,) from background event weights (C,) per event cell."""
    if window.smoother is None:
        return weight / window.length
    return np.asarray(window.smoother @ weight) / window.length


def _kernel(window: _Window, n: int, rho: float) -> np.ndarray | float:
    """k(c_j | c_i) of the first ``n`` pairs."""
    if window.nb_keys.shape[1] == 0:
        return 1.0
    return np.where(window.same[:n], 1.0 - rho, rho * window.inv_m[:n])


def _active(window: _Window, omega: float) -> int:
    """Number of pairs (shortest lags first) whose kernel weight is not negligible."""
    return int(np.searchsorted(window.lag, _NEGLIGIBLE / omega, side="right"))


def _compensator_share(window: _Window, omega: float) -> float:
    """B(omega): expected offspring per unit theta falling inside the window."""
    return float(-np.expm1(-omega * window.tau).sum())


def _intensity(window: _Window, state: _State) -> tuple[int, np.ndarray, np.ndarray,
                                                        np.ndarray]:
    """Active pairs ``n``, their triggering terms (n,), background (N,) and lambda (N,)."""
    n = _active(window, state.omega)
    g = state.theta * state.omega * np.exp(-state.omega * window.lag[:n]) * _kernel(
        window, n, state.rho)
    mu_j = state.mu[window.bg_of_event]
    lam = mu_j + np.bincount(window.child[:n], weights=g, minlength=window.cell.size)
    return n, g, mu_j, np.maximum(lam, 1e-300)


def _log_likelihood_of(window: _Window, state: _State, lam: np.ndarray) -> float:
    return float(np.log(lam).sum() - window.length * state.mu.sum()
                 - state.theta * _compensator_share(window, state.omega))


def _log_likelihood(window: _Window, state: _State) -> float:
    return _log_likelihood_of(window, state, _intensity(window, state)[3])


def _em(window: _Window, state: _State, max_iter: int, tol: float
        ) -> tuple[_State, list[float], int, bool]:
    """EM iterations from ``state``; returns the final state, the log-likelihood before each
    M-step (and of the final state when converged), the number of M-steps, and whether the
    relative change fell below ``tol``."""
    path: list[float] = []
    n_iter = 0
    spread = window.nb_keys.shape[1] > 0
    for _ in range(max_iter):
        n, g, mu_j, lam = _intensity(window, state)
        log_l = _log_likelihood_of(window, state, lam)
        done = bool(path) and abs(log_l - path[-1]) <= tol * abs(log_l)
        path.append(log_l)
        if done:
            return state, path, n_iter, True
        n_iter += 1
        # E-step: probabilities of being background (per event) and offspring (per pair)
        p = g / lam[window.child[:n]]
        mu = _background(window, np.bincount(window.cell, weights=mu_j / lam,
                                              minlength=window.cells.size))
        # M-step
        s = float(p.sum())
        if s <= 0.0:
            state = _State(mu=mu, theta=0.0, omega=state.omega, rho=state.rho)
            continue
        lag = window.lag[:n]
        rho = float(p[~window.same[:n]].sum()) / s if spread else 0.0
        omega = _best_omega(window, s, float(p @ lag), state.omega)
        theta = min(s / _compensator_share(window, omega), _THETA_MAX)
        state = _State(mu=mu, theta=theta, omega=omega, rho=rho)
    return state, path, n_iter, False


def _best_omega(window: _Window, s: float, d: float, omega: float) -> float:
    """argmax over omega of ``s log omega - s log B(omega) - omega d`` (the profile of the
    expected complete-data log-likelihood in omega, theta set to its optimum s / B)."""

    def minus_profile(log_omega: float) -> float:
        w = math.exp(log_omega)
        return -(s * log_omega - s * math.log(_compensator_share(window, w)) - w * d)

    centre = math.log(omega)
    low = max(_LOG_OMEGA_BOUNDS[0], centre - 4.0)
    high = min(_LOG_OMEGA_BOUNDS[1], centre + 4.0)
    result = minimize_scalar(minus_profile, bounds=(low, high), method="bounded",
                             options={"xatol": 1e-9})
    best = float(result.x)
    # generalised EM: never accept a step that lowers the profile
    if minus_profile(best) > minus_profile(centre):
        return omega
    return math.exp(best)
