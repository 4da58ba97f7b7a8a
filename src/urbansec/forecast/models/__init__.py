"""Forecasting models, all in the estimator idiom of ``urbansec.forecast.base``.

``MODELS`` maps the names the CLI and the services accept to the model classes.
"""

from __future__ import annotations

from urbansec.forecast.base import ForecastModel
from urbansec.forecast.models.baselines import HistoricalAverage, Naive
from urbansec.forecast.models.kernel import KDEForecast, ProspectiveHotspot

MODELS: dict[str, type[ForecastModel]] = {
    "naive": Naive,
    "historical": HistoricalAverage,
    "kde": KDEForecast,
    "prospective": ProspectiveHotspot,
    # SEPP (engineer H): add its import above and its entry on this line.
}

__all__ = ["MODELS", "HistoricalAverage", "KDEForecast", "Naive", "ProspectiveHotspot"]
