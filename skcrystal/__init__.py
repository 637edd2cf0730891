"""skcrystal: crystal graph neural networks with the scikit-learn API."""

from importlib import import_module

from skcrystal.graphs import CompositionTransformer, CrystalGraphs, CrystalGraphTransformer

__all__ = [
    "ALIGNNRegressor",
    "CGCNNRegressor",
    "CompositionTransformer",
    "CrysAEPretrainer",
    "CrysGNNPretrainer",
    "CrysGNNRegressor",
    "CrysXPPRegressor",
    "CrystalGraphTransformer",
    "CrystalGraphs",
    "DistilledRegressor",
    "ElemNetRegressor",
    "GATGNNRegressor",
    "GraphNetworkRegressor",
    "MEGNetRegressor",
]
__version__ = "0.1.0.dev0"

# The estimators import torch and skorch; graph building needs neither, so the worker
# processes of CrystalGraphTransformer(n_jobs=...) start without them.
_ESTIMATORS = {
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
}


def __getattr__(name: str):
    if name in _ESTIMATORS:
        return getattr(import_module("skcrystal.estimators"), name)
    raise AttributeError(f"module 'skcrystal' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ESTIMATORS)
