"""The estimator idiom every forecasting model follows, and the surface it predicts.

A model keeps its hyper-parameters untouched in ``__init__``; ``fit(events)`` learns from the
events up to the forecast origin and stores fitted state in attributes ending in ``_``;
``predict(grid, start, end, cells)`` returns a ``RiskSurface``: one non-negative score per study
cell for the period ``[start, end)``, larger meaning riskier. Where the model can, the score is
the expected number of events in the cell over the period (then ``surface.expected`` is True),
so that surfaces of different models can be compared on one scale.

Times are UTC ``datetime64[s]``; coordinates metres in the events' CRS; cells are the keys of
a ``urbansec.domain.grid.Grid`` (the study area's cells, empty ones included), so every model's
surface lines up cell by cell with the others and with the evaluation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from urbansec.domain.events import Events
from urbansec.domain.grid import Grid
from urbansec.errors import UsageError


def as_instant(value: Any) -> np.datetime64:
    """A UTC instant as ``datetime64[s]`` (naive datetimes and strings are taken as UTC)."""
    try:
        instant = np.datetime64(value, "s")
    except (TypeError, ValueError):
        raise UsageError(f"not a time: {value!r}") from None
    if np.isnat(instant):
        raise UsageError("a forecast period needs real start and end times")
    return instant


@dataclass(frozen=True)
class RiskSurface:
    """Risk per study cell for ``[start, end)``.

    ``keys``: (n,) int64 cell keys of ``grid`` (sorted, as ``Grid.study_cells`` gives them);
    ``risk``: (n,) float64 >= 0; ``expected``: True when ``risk`` is an expected count of events
    in the period; ``model``: the model's name; ``details``: model-specific extras (e.g. the
    background and triggered parts of a self-exciting process).
    """

    grid: Grid
    keys: np.ndarray
    risk: np.ndarray
    start: np.datetime64
    end: np.datetime64
    model: str
    expected: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.keys.shape != self.risk.shape:
            raise ValueError("RiskSurface: keys and risk must have the same shape")
        if self.risk.size and (not np.all(np.isfinite(self.risk)) or self.risk.min() < 0):
            raise ValueError(f"RiskSurface of {self.model}: risk must be finite and >= 0")

    def ranking(self, seed: int = 0) -> np.ndarray:
        """Cell positions from riskiest to least risky; ties broken at random (seeded), never
        by cell order, so a flat surface does not pretend to know the north-west corner."""
        tiebreak = np.random.default_rng(seed).random(self.risk.size)
        return np.lexsort((tiebreak, -self.risk))

    def flagged(self, coverage: float, seed: int = 0) -> np.ndarray:
        """Boolean mask of the top ``coverage`` share of cells (at least one cell)."""
        if not 0 < coverage <= 1:
            raise UsageError(f"coverage must be in (0, 1], not {coverage}")
        k = max(1, round(coverage * self.risk.size))
        mask = np.zeros(self.risk.size, dtype=bool)
        mask[self.ranking(seed)[:k]] = True
        return mask


class ForecastModel(ABC):
    """Base of every model: ``fit`` then ``predict``; ``name`` says what it is."""

    name: str = "model"
    #: fewest events the model needs in its training window to say anything
    min_events: int = 1

    def _check_events(self, events: Events) -> Events:
        located = events.only_located()
        if len(located) < self.min_events:
            raise UsageError(
                f"{self.name} needs at least {self.min_events} located events in its training "
                f"window; this one has {len(located)} (widen the window or the filter)")
        return located

    @abstractmethod
    def fit(self, events: Events) -> ForecastModel:
        """Learn from ``events`` (all before the forecast origin); returns ``self``."""

    @abstractmethod
    def predict(self, grid: Grid, start: Any, end: Any, cells: np.ndarray | None = None
                ) -> RiskSurface:
        """Risk per cell for ``[start, end)``; ``cells`` are the study cells (default: the
        cells of the box around the training events)."""

    def update(self, events: Events) -> ForecastModel:
        """Refresh with the events up to a later origin (same window length). Models that can
        reuse their fitted state (warm starts) override this; the default fits again."""
        return self.fit(events)

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters as given to ``__init__`` (scikit-learn style)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def _cells(self, grid: Grid, events: Events, cells: np.ndarray | None) -> np.ndarray:
        if cells is not None:
            return np.asarray(cells, dtype=np.int64)
        return grid.study_cells(events.x, events.y)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"
