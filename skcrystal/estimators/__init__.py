"""scikit-learn / skorch estimators."""

from skcrystal.estimators.crysgnn import CrysGNNPretrainer
from skcrystal.estimators.crysxpp import CrysXPPRegressor
from skcrystal.estimators.distill import DistilledRegressor
from skcrystal.estimators.pretrainers import CrysAEPretrainer
from skcrystal.estimators.regressors import CGCNNRegressor

__all__ = [
    "CGCNNRegressor",
    "CrysAEPretrainer",
    "CrysGNNPretrainer",
    "CrysXPPRegressor",
    "DistilledRegressor",
]
