"""``CompositionTransformer``: chemical compositions in, edgeless :class:`CrystalGraphs` out.

Composition-only models (ElemNet) need the element fractions of each crystal and
nothing of its structure. Their "graphs" have one site per crystal holding every element
of the composition as a species, with its atomic fraction as occupancy, and no edges, so
that they travel through the same training, saving and uncertainty machinery as crystal
graphs; :meth:`CrystalGraphs.composition` reads the fractions back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Composition, Element, IStructure, Structure

from skcrystal.graphs.atom_features import AtomFeatureTable, get_atom_feature_table
from skcrystal.graphs.container import CrystalGraphs, _offsets
from skcrystal.graphs.inputs import as_item_list, to_structure
from skcrystal.graphs.transformer import GraphsOutput

#: The ``neighbor_rule`` of composition graphs (their settings' last entry).
COMPOSITION_RULE = "composition"

ACCEPTED = (
    "a pymatgen Composition or Structure, a chemical formula such as 'Fe2O3', an ASE "
    "Atoms, or a structure file or its text"
)


def to_composition(item: Any, index: int) -> Composition:
    """The composition of one item of ``X``; ``ValueError`` naming ``X[index]`` otherwise.

    A string is a chemical formula, unless it holds several lines (the text of a CIF or
    POSCAR file) or names an existing file, which are read as structures.

    Examples
    --------
    >>> to_composition("Fe2O3", 0).reduced_formula
    'Fe2O3'
    >>> to_composition("not a formula", 3)
    Traceback (most recent call last):
    ...
    ValueError: X[3]: 'not a formula' is neither a chemical formula nor a structure file \
(pymatgen: ...)
    """
    if isinstance(item, Composition):
        composition = item
    elif isinstance(item, (Structure, IStructure)):
        composition = item.composition
    elif isinstance(item, str) and "\n" not in item and not _is_file(item):
        try:
            composition = Composition(item)
        except (ValueError, KeyError) as err:
            raise ValueError(
                f"X[{index}]: {item!r} is neither a chemical formula nor a structure file "
                f"(pymatgen: {err})"
            ) from None
    elif isinstance(item, (str, os.PathLike)) or _is_ase_atoms(item):
        composition = to_structure(item, index).composition
    else:
        raise ValueError(f"X[{index}]: expected {ACCEPTED}, got {type(item).__name__}")
    composition = composition.element_composition  # oxidation states and isotopes off
    dummies = [str(e) for e in composition if not isinstance(e, Element)]
    if dummies:
        raise ValueError(
            f"X[{index}]: {', '.join(dummies)} in {composition.formula!r} is not a chemical element"
        )
    if composition.num_atoms <= 0 or any(amount < 0 for amount in composition.values()):
        raise ValueError(
            f"X[{index}]: the composition {composition.formula!r} has no atoms or a negative amount"
        )
    return composition


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # a name too long, or with a NUL
        return False


def _is_ase_atoms(item: Any) -> bool:
    ase = sys.modules.get("ase")  # an Atoms can only exist if ase was imported
    return ase is not None and isinstance(item, ase.Atoms)


def composition_graphs(
    compositions: list[Composition], atom_features: AtomFeatureTable
) -> CrystalGraphs:
    """Edgeless graphs, one site per composition holding its elements at their fractions.

    Raises
    ------
    ValueError
        Naming the item, for an element without data in ``atom_features``.
    """
    z, fraction, count = [], [], []
    for i, composition in enumerate(compositions):
        fractions = composition.fractional_composition
        for element, amount in fractions.items():
            if element.Z >= len(atom_features.known) or not atom_features.known[element.Z]:
                raise ValueError(
                    f"X[{i}] ({composition.reduced_formula}): element {element.symbol} has "
                    f"no data in the atom feature table {atom_features.name!r}"
                )
            z.append(element.Z)
            fraction.append(amount)
        count.append(len(fractions))
    n = len(compositions)
    return CrystalGraphs(
        node_ptr=np.arange(n + 1),
        edge_ptr=np.zeros(n + 1, dtype=np.int64),
        species_ptr=_offsets(np.asarray(count, dtype=np.int64)),
        species_z=np.asarray(z, dtype=np.int16),
        species_occupancy=np.asarray(fraction, dtype=np.float32),
        center=np.zeros(0, dtype=np.int32),
        neighbor=np.zeros(0, dtype=np.int32),
        distance=np.zeros(0, dtype=np.float32),
        vector=np.zeros((0, 3), dtype=np.float32),
        atom_features=atom_features,
        cutoff=0.0,
        max_neighbors=0,
        neighbor_rule=COMPOSITION_RULE,
    )


def collapse_to_compositions(graphs: CrystalGraphs) -> CrystalGraphs:
    """The composition graphs of crystal graphs (their sites' species summed per crystal)."""
    if graphs.neighbor_rule == COMPOSITION_RULE:
        return graphs
    fractions = graphs.composition(np.arange(len(graphs)))
    crystal, column = np.nonzero(fractions)
    return CrystalGraphs(
        node_ptr=np.arange(len(graphs) + 1),
        edge_ptr=np.zeros(len(graphs) + 1, dtype=np.int64),
        species_ptr=_offsets(np.bincount(crystal, minlength=len(graphs))),
        species_z=(column + 1).astype(np.int16),
        species_occupancy=fractions[crystal, column],
        center=np.zeros(0, dtype=np.int32),
        neighbor=np.zeros(0, dtype=np.int32),
        distance=np.zeros(0, dtype=np.float32),
        vector=np.zeros((0, 3), dtype=np.float32),
        atom_features=graphs.atom_features,
        cutoff=0.0,
        max_neighbors=0,
        neighbor_rule=COMPOSITION_RULE,
    )


class CompositionTransformer(GraphsOutput):
    """Turn compositions, formulas or structures into composition graphs.

    The input of composition-only models such as
    :class:`~skcrystal.estimators.ElemNetRegressor`: each crystal becomes one site
    holding its elements at their atomic fractions, without edges (see the module
    docstring). Structures keep only their composition; no neighbour is searched.

    Parameters
    ----------
    atom_features : {"cgcnn", "cgcnn-authors"}, AtomFeatureTable or path, default="cgcnn"
        Element feature table of the sites (occupancy-weighted, as for disordered sites);
        every element must have data in it.

    Attributes
    ----------
    cutoff, max_neighbors, neighbor_rule
        0.0, 0 and "composition": the settings of every graph it makes.

    Examples
    --------
    >>> from pymatgen.core import Composition
    >>> graphs = CompositionTransformer().transform(["Fe2O3", Composition("NaCl")])
    >>> graphs.settings
    (0.0, 0, 'cgcnn', 'composition')
    >>> round(float(graphs.composition([0])[0, 7]), 2)  # the fraction of O (Z = 8)
    0.6
    """

    cutoff = 0.0
    max_neighbors = 0
    neighbor_rule = COMPOSITION_RULE

    def __init__(self, atom_features: str | AtomFeatureTable = "cgcnn") -> None:
        self.atom_features = atom_features

    def fit(self, X: Any = None, y: Any = None) -> CompositionTransformer:
        """Check the parameters; nothing is learned from ``X``."""
        self.atom_feature_table_ = get_atom_feature_table(self.atom_features)
        return self

    def transform(self, X: Any) -> CrystalGraphs:
        """Composition graphs of the items of ``X``.

        Parameters
        ----------
        X : sequence
            pymatgen Compositions or Structures, chemical formulas, ASE Atoms, structure
            files or their text (see :func:`to_composition`); or :class:`CrystalGraphs`,
            whose compositions are kept.

        Returns
        -------
        CrystalGraphs
            With ``neighbor_rule="composition"``.
        """
        table = get_atom_feature_table(self.atom_features)
        if isinstance(X, CrystalGraphs):
            return collapse_to_compositions(X)
        compositions = [to_composition(item, i) for i, item in enumerate(as_item_list(X))]
        return composition_graphs(compositions, table)
