"""Forecasting in long format (unique_id, ds, y) with any rnnzoo mixer, beside the classical baselines.

Not imported by ``import rnnzoo``: it pulls in pandas (and statsforecast for the baselines).
"""
from rnnzoo.forecast.forecaster import Forecaster, ForecastState

__all__ = ["ForecastState", "Forecaster"]
