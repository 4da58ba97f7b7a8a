"""Forecasting models, all in the estimator idiom of ``urbansec.forecast.base``.

``MODELS`` maps the names the CLI and the services accept to the model classes. ``gbm``
(gradient boosting) needs scikit-learn, the optional ``forecast`` extra.
"""

from __future__ import annotations

from urbansec.forecast.base import ForecastModel
from urbansec.forecast.models.baselines import HistoricalAverage, Naive
from urbansec.forecast.models.kernel import KDEForecast, ProspectiveHotspot
from urbansec.forecast.models.learned import GradientBoostingForecast
from urbansec.forecast.models.sepp import SEPP

MODELS: dict[str, type[ForecastModel]] = {
    "naive": Naive,
    "historical": HistoricalAverage,
    "kde": KDEForecast,
    "prospective": ProspectiveHotspot,
    "sepp": SEPP,
    # needs scikit-learn (the "forecast" extra); imported only when fitted
    "gbm": GradientBoostingForecast,
}

__all__ = ["MODELS", "SEPP", "GradientBoostingForecast", "HistoricalAverage", "KDEForecast",
           "Naive", "ProspectiveHotspot"]
