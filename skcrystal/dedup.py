"""Find structures that repeat an earlier one (pymatgen ``StructureMatcher``).

Pretraining sets gathered from several databases, or from one database over time, hold
the same crystal under different ids; duplicates weigh those crystals twice and leak
between a pretraining set and its held-out part.
"""

from __future__ import annotations

import itertools
import warnings
from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def find_duplicates(structures: Sequence, matcher=None, volume_decimals: int = 1) -> np.ndarray:
    """Indices of the structures that match an earlier structure of the list.

    Candidates share reduced formula, number of sites and volume per atom (rounded to
    ``volume_decimals`` Å³), then ``matcher.fit`` (pymatgen's ``StructureMatcher()`` with
    its default tolerances unless given) decides. The first of each group of matches is
    kept. Cells that describe the same crystal with different numbers of sites
    (supercells) are not compared.

    Parameters
    ----------
    structures : sequence of pymatgen Structure
    matcher : pymatgen StructureMatcher, optional
    volume_decimals : int, default=1

    Returns
    -------
    ndarray of int
        Sorted indices to drop.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> a = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    >>> b = Structure(Lattice.cubic(4.1), ["Cl", "Cs"], [[0, 0, 0], [0.5] * 3])  # shifted
    >>> c = Structure(Lattice.cubic(4.5), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    >>> find_duplicates([a, b, c]).tolist()
    [1]
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher

    matcher = matcher or StructureMatcher()
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(structures):
        per_atom = round(s.volume / len(s), volume_decimals)
        groups[(s.composition.reduced_formula, len(s), per_atom)].append(i)
    drop: set[int] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spglib / matcher chatter on odd cells
        for members in groups.values():
            for first, second in itertools.combinations(members, 2):
                if first in drop or second in drop:
                    continue
                if matcher.fit(structures[first], structures[second]):
                    drop.add(second)
    return np.asarray(sorted(drop), dtype=np.int64)
