"""Error bars for crystal property predictions: deep ensembles, conformal intervals and
the applicability domain.

>>> from skcrystal.uncertainty import ConformalRegressor, EnsembleRegressor, LatentDistance
"""

from skcrystal.uncertainty.conformal import ConformalRegressor, conformal_quantile
from skcrystal.uncertainty.domain import LatentDistance
from skcrystal.uncertainty.ensemble import EnsembleRegressor
from skcrystal.uncertainty.plots import calibration_curve, plot_calibration, plot_error_vs_std

__all__ = [
    "ConformalRegressor",
    "EnsembleRegressor",
    "LatentDistance",
    "calibration_curve",
    "conformal_quantile",
    "plot_calibration",
    "plot_error_vs_std",
]
