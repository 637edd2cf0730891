"""Periodic neighbour search: the ``max_neighbors`` nearest atoms within ``cutoff``.

The search itself is pymatgen's cython ``Structure.get_neighbor_list``; choosing the
nearest neighbours per atom is one vectorised sort, with no per-atom Python loop.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from pymatgen.core import Structure


class NeighborList(NamedTuple):
    """Directed edges ``center -> neighbor`` of one crystal, sorted by center then distance."""

    center: np.ndarray  # (n_edges,) int32, index of the central site
    neighbor: np.ndarray  # (n_edges,) int32, index of the neighbouring site (any image)
    distance: np.ndarray  # (n_edges,) float32, Å


def nearest_neighbors(structure: Structure, cutoff: float, max_neighbors: int) -> NeighborList:
    """Return, for every site, its ``max_neighbors`` nearest neighbours within ``cutoff``.

    Periodic images count as neighbours (a site may neighbour its own image); the site
    itself at zero distance does not. Atoms with fewer neighbours in range keep the ones
    they have: no padding edges are invented. Ties at equal distance keep pymatgen's order.

    Parameters
    ----------
    structure : pymatgen.core.Structure
    cutoff : float
        Search radius in Å.
    max_neighbors : int
        Largest number of neighbours kept per site.

    Returns
    -------
    NeighborList

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> nl = nearest_neighbors(cscl, cutoff=4.0, max_neighbors=8)
    >>> nl.center.tolist()[:8] == [0] * 8, round(float(nl.distance[0]), 3)
    (True, 3.551)
    """
    center, neighbor, _, distance = structure.get_neighbor_list(r=cutoff)
    order = np.lexsort((distance, center))
    center, neighbor, distance = center[order], neighbor[order], distance[order]
    first_of_center = np.searchsorted(center, center, side="left")
    keep = np.arange(len(center)) - first_of_center < max_neighbors
    return NeighborList(
        center[keep].astype(np.int32),
        neighbor[keep].astype(np.int32),
        distance[keep].astype(np.float32),
    )
