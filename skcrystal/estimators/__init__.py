"""scikit-learn / skorch estimators."""

from skcrystal.estimators.regressors import CGCNNRegressor

__all__ = ["CGCNNRegressor"]
