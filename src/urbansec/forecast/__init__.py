"""Forecasting where risk will be next: models in the estimator idiom, metrics, backtests."""
