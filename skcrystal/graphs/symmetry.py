"""Space group and crystal system of a structure, from spglib through pymatgen.

CrysGNN's graph-level pretraining tasks need them. A structure whose symmetry spglib
cannot determine gets space group 0 ("unknown"): it is still used for the node-level
losses, and left out of the space-group and crystal-system losses.
"""

from __future__ import annotations

import warnings

import numpy as np
from pymatgen.core import Structure

#: Crystal systems in space-group order; ``crystal_system(n)`` indexes this tuple.
CRYSTAL_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)
#: The last space group number of each crystal system (International Tables).
LAST_SPACE_GROUP_OF_SYSTEM = np.array([2, 15, 74, 142, 167, 194, 230])

#: Distance tolerance (Å) of the symmetry search; the Materials Project uses 0.1 too.
SYMPREC = 0.1


def space_group_number(structure: Structure, symprec: float = SYMPREC) -> int:
    """International space group number (1-230) of ``structure``, or 0 if undetermined.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
    ...                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> space_group_number(nacl)
    225
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spglib's own deprecation chatter
            return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # spglib found no symmetry (a distorted or broken cell)
        return 0


def crystal_system(space_group: np.ndarray | int) -> np.ndarray:
    """Index into :data:`CRYSTAL_SYSTEMS` of each space group number; -1 for 0 (unknown).

    Examples
    --------
    >>> crystal_system([1, 14, 62, 139, 166, 194, 225, 0]).tolist()
    [0, 1, 2, 3, 4, 5, 6, -1]
    """
    numbers = np.asarray(space_group, dtype=np.int64)
    systems = np.searchsorted(LAST_SPACE_GROUP_OF_SYSTEM, numbers, side="left")
    return np.where(numbers > 0, systems, -1)
