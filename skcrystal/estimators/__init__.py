"""scikit-learn / skorch estimators."""

from skcrystal.estimators.crysxpp import CrysXPPRegressor
from skcrystal.estimators.pretrainers import CrysAEPretrainer
from skcrystal.estimators.regressors import CGCNNRegressor

__all__ = ["CGCNNRegressor", "CrysAEPretrainer", "CrysXPPRegressor"]
