"""scikit-learn / skorch estimators."""

from skcrystal.estimators.alignn import ALIGNNRegressor
from skcrystal.estimators.crysgnn import CrysGNNPretrainer
from skcrystal.estimators.crysgnn_regressor import CrysGNNRegressor
from skcrystal.estimators.crysxpp import CrysXPPRegressor
from skcrystal.estimators.distill import DistilledRegressor
from skcrystal.estimators.elemnet import ElemNetRegressor
from skcrystal.estimators.gatgnn import GATGNNRegressor
from skcrystal.estimators.megnet import MEGNetRegressor
from skcrystal.estimators.network import GraphNetworkRegressor
from skcrystal.estimators.pretrainers import CrysAEPretrainer
from skcrystal.estimators.regressors import CGCNNRegressor

__all__ = [
    "ALIGNNRegressor",
    "CGCNNRegressor",
    "CrysAEPretrainer",
    "CrysGNNPretrainer",
    "CrysGNNRegressor",
    "CrysXPPRegressor",
    "DistilledRegressor",
    "ElemNetRegressor",
    "GATGNNRegressor",
    "GraphNetworkRegressor",
    "MEGNetRegressor",
]
