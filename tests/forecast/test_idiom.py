"""The one test every forecasting model passes: the estimator idiom of the DESIGN.

Hyper-parameters stored untouched; ``fit`` returns the model; ``predict`` before ``fit`` is a
clear error; a surface aligned with the given cells, finite and non-negative; the same seed
gives the same surface; too few events say how many are needed.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from urbansec.domain.events import Events
from urbansec.domain.grid import SquareGrid
from urbansec.errors import UsageError
from urbansec.forecast.base import ForecastModel, RiskSurface
from urbansec.forecast.models import MODELS

ORIGIN = np.datetime64("2017-07-01T05:00:00", "s")


def simulated_events(seed: int = 0, n: int = 2000) -> Events:
    """A year of events: uniform background plus a stationary hotspot, before ORIGIN."""
    rng = np.random.default_rng(seed)
    n_hot = n // 4
    x = np.concatenate([rng.uniform(0, 5000, n - n_hot), rng.normal(1200, 80, n_hot)])
    y = np.concatenate([rng.uniform(0, 5000, n - n_hot), rng.normal(3700, 80, n_hot)])
    age = rng.uniform(0, 365 * 86400, n).astype("timedelta64[s]")
    t = ORIGIN - age
    order = np.argsort(t)
    return Events(x=x[order] + 440_000, y=y[order] + 4_630_000, t=t[order],
                  category=np.full(n, "0501", dtype=object), crs="EPSG:32616",
                  timezone="America/Chicago")


@pytest.fixture(scope="module")
def events() -> Events:
    return simulated_events()


@pytest.fixture(scope="module")
def grid_and_cells(events: Events) -> tuple[SquareGrid, np.ndarray]:
    grid = SquareGrid(size=250.0, crs=events.crs)
    return grid, grid.study_cells(events.x, events.y)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_hyper_parameters_are_stored_untouched(name: str) -> None:
    model = MODELS[name]()
    signature = inspect.signature(type(model).__init__)
    params = model.get_params()
    assert set(params) == {p for p in signature.parameters if p != "self"}
    for key, parameter in signature.parameters.items():
        if key != "self" and parameter.default is not inspect.Parameter.empty:
            assert params[key] == parameter.default
    assert isinstance(model, ForecastModel)
    assert repr(model).startswith(type(model).__name__ + "(")
    # nothing fitted yet: no attribute with a trailing underscore
    assert not [a for a in vars(model) if a.endswith("_") and not a.startswith("_")]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_predict_before_fit_is_a_clear_error(name: str, grid_and_cells) -> None:
    grid, cells = grid_and_cells
    with pytest.raises(UsageError):
        MODELS[name]().predict(grid, ORIGIN, ORIGIN + np.timedelta64(7, "D"), cells)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fit_predict_surface_is_aligned_reproducible_and_finds_the_hotspot(
        name: str, events: Events, grid_and_cells) -> None:
    grid, cells = grid_and_cells
    model = MODELS[name]()
    assert model.fit(events) is model
    end = ORIGIN + np.timedelta64(7, "D")
    surface = model.predict(grid, ORIGIN, end, cells)
    assert isinstance(surface, RiskSurface)
    np.testing.assert_array_equal(surface.keys, cells)
    assert surface.risk.shape == cells.shape
    assert np.all(np.isfinite(surface.risk)) and surface.risk.min() >= 0
    assert surface.start == ORIGIN and surface.end == end
    again = MODELS[name]().fit(events).predict(grid, ORIGIN, end, cells)
    np.testing.assert_array_equal(surface.risk, again.risk)
    # the planted hotspot (around x+1200, y+3700) is among the riskiest 1% of cells
    top = surface.keys[surface.ranking()[: max(1, cells.size // 100)]]
    cx, cy = grid.centroids(top)
    distance = np.hypot(cx - 441_200, cy - 4_633_700)
    assert distance.min() < 300


@pytest.mark.parametrize("name", sorted(MODELS))
def test_too_few_events_say_how_many_are_needed(name: str, events: Events) -> None:
    model = MODELS[name]()
    few = events.subset(np.arange(len(events)) < max(model.min_events - 1, 0))
    if model.min_events <= 1:
        few = events.subset(np.zeros(len(events), dtype=bool))
    with pytest.raises(UsageError, match=r"at least \d+"):
        model.fit(few)
