"""From crystal structures to crystal graphs (no torch needed)."""

from skcrystal.graphs.atom_features import (
    AtomFeatureTable,
    cgcnn_atom_features,
    cgcnn_authors_atom_features,
)
from skcrystal.graphs.build import StructureWarning
from skcrystal.graphs.composition import CompositionTransformer
from skcrystal.graphs.container import CrystalGraphs
from skcrystal.graphs.store import GraphStore
from skcrystal.graphs.transformer import CrystalGraphTransformer, GraphReport

__all__ = [
    "AtomFeatureTable",
    "CompositionTransformer",
    "CrystalGraphTransformer",
    "CrystalGraphs",
    "GraphReport",
    "GraphStore",
    "StructureWarning",
    "cgcnn_atom_features",
    "cgcnn_authors_atom_features",
]
