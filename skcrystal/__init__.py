"""skcrystal: crystal graph neural networks with the scikit-learn API."""

from skcrystal.estimators import CGCNNRegressor
from skcrystal.graphs import CrystalGraphs, CrystalGraphTransformer

__all__ = ["CGCNNRegressor", "CrystalGraphTransformer", "CrystalGraphs"]
__version__ = "0.1.0.dev0"
