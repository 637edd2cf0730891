"""skcrystal: crystal graph neural networks with the scikit-learn API."""

from skcrystal.estimators import CGCNNRegressor, CrysAEPretrainer, CrysXPPRegressor
from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer

__all__ = [
    "CGCNNRegressor",
    "CrysAEPretrainer",
    "CrysXPPRegressor",
    "CrystalGraphTransformer",
    "CrystalGraphs",
]
__version__ = "0.1.0.dev0"
