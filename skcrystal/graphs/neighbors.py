"""Periodic neighbour search, and how far the neighbour graph repeats through the lattice.

The search itself is pymatgen's cython ``find_points_in_spheres``, called as
``Structure.get_neighbor_list`` calls it but on plain arrays; choosing the
nearest neighbours per atom is one vectorised sort, with no per-atom Python loop.
:func:`periodic_dimensions` follows the pairs breadth-first, one vectorised step per
level, to find the fragments of a structure and the directions in which each repeats.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from pymatgen.optimization.neighbors import find_points_in_spheres

from skcrystal.graphs.arrays import CrystalArrays

#: Two points closer than this (Å) are the same point (``Structure.get_neighbor_list``'s
#: ``numerical_tol``): a site is not its own neighbour.
SAME_POINT = 1e-8


class NeighborList(NamedTuple):
    """Directed pairs ``center -> neighbor`` of one crystal.

    ``neighbor`` sits in the periodic image ``image`` (lattice translation, in cells) of
    the cell of ``center``.
    """

    center: np.ndarray  # (n_pairs,) int, index of the central site
    neighbor: np.ndarray  # (n_pairs,) int, index of the neighbouring site (any image)
    distance: np.ndarray  # (n_pairs,) float64, Å
    image: np.ndarray  # (n_pairs, 3) float64 of whole numbers, the neighbour's cell

    def within(self, radius: float) -> NeighborList:
        """The pairs at most ``radius`` Å apart."""
        keep = self.distance <= radius
        return NeighborList(*(array[keep] for array in self))


def neighbor_pairs(crystal: CrystalArrays, radius: float) -> NeighborList:
    """Every pair of sites closer than ``radius`` (Å), periodic images included.

    A site paired with its own image counts; a site with itself at zero distance does
    not. Two distinct sites at the same position are a pair at distance 0. The pairs are
    those of pymatgen's ``Structure.get_neighbor_list(r=radius)``, in its order.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.graphs.arrays import crystal_arrays
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> pairs = neighbor_pairs(crystal_arrays(cscl), 4.0)
    >>> len(pairs.center), sorted(set(pairs.distance.round(3).tolist()))
    (16, [3.551])
    """
    cart_coords = np.ascontiguousarray(crystal.cart_coords, dtype=float)
    center, neighbor, image, distance = find_points_in_spheres(
        cart_coords,
        cart_coords,
        r=radius,
        pbc=np.ascontiguousarray(crystal.pbc, dtype=np.int64),
        lattice=np.ascontiguousarray(crystal.lattice, dtype=float),
        tol=SAME_POINT,
    )
    keep = ~((center == neighbor) & (distance <= SAME_POINT))
    return NeighborList(center[keep], neighbor[keep], distance[keep], image[keep])


def nearest_neighbors(pairs: NeighborList, max_neighbors: int) -> NeighborList:
    """For every site, its ``max_neighbors`` nearest neighbours among ``pairs``.

    Atoms with fewer neighbours in range keep the ones they have: no padding edges are
    invented. Ties at equal distance keep pymatgen's order.

    Parameters
    ----------
    pairs : NeighborList
        The pairs within the cutoff, from :func:`neighbor_pairs`.
    max_neighbors : int
        Largest number of neighbours kept per site.

    Returns
    -------
    NeighborList
        Sorted by center, then distance.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.graphs.arrays import crystal_arrays
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> pairs = neighbor_pairs(crystal_arrays(cscl), 5.0)
    >>> nl = nearest_neighbors(pairs.within(4.0), max_neighbors=8)
    >>> nl.center.tolist()[:8] == [0] * 8, round(float(nl.distance[0]), 3)
    (True, 3.551)
    """
    order = np.lexsort((pairs.distance, pairs.center))
    center = pairs.center[order]
    first_of_center = np.searchsorted(center, center, side="left")
    keep = order[np.arange(len(order)) - first_of_center < max_neighbors]
    return NeighborList(*(array[keep] for array in pairs))


def radius_neighbors(pairs: NeighborList) -> NeighborList:
    """Every pair within the cutoff, sorted by center, then distance: the radius graph of
    MEGNet (Chen et al., 2019) and SchNet, symmetric by construction.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.graphs.arrays import crystal_arrays
    >>> si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    >>> pairs = neighbor_pairs(crystal_arrays(si), 4.0)
    >>> len(radius_neighbors(pairs).center)  # 4 + 12 neighbours per atom
    128
    """
    order = np.lexsort((pairs.distance, pairs.center))
    return NeighborList(*(array[order] for array in pairs))


#: Two neighbours of a site whose distances differ by less than this (Å) are in the same
#: shell: round-off of symmetry-equivalent neighbours is far smaller, real shells farther
#: apart.
SHELL_TOLERANCE = 1e-4


def neighbor_shells(pairs: NeighborList, max_neighbors: int) -> NeighborList:
    """For every site, every neighbour out to its ``max_neighbors``-th nearest one's shell,
    and the reverse of every such pair: the graph of ALIGNN (Choudhary & DeCost, 2021).

    A site keeps all pairs no farther than the distance of its ``max_neighbors``-th
    nearest neighbour (plus :data:`SHELL_TOLERANCE`), so the whole shell of that
    neighbour, ties included, and at least ``max_neighbors`` pairs when it has that many
    within the cutoff (else all it has). Then the graph is made symmetric: when ``i`` keeps
    ``j`` in image ``n``, ``j`` keeps ``i`` in image ``-n``. Each pair appears once.

    The pairs of one site keep the order of :func:`nearest_neighbors` (distance, then
    pymatgen's order), so the first ``max_neighbors`` pairs of every site are exactly the
    edges :func:`nearest_neighbors` gives: the CGCNN graph is contained in this one.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.graphs.arrays import crystal_arrays
    >>> si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    >>> pairs = neighbor_pairs(crystal_arrays(si), 5.0)
    >>> len(nearest_neighbors(pairs, 12).center), len(neighbor_shells(pairs, 12).center)
    (96, 128)
    """
    order = np.lexsort((pairs.distance, pairs.center))
    center = pairs.center[order]
    distance = pairs.distance[order]
    first = np.searchsorted(center, center, side="left")
    count = np.bincount(center, minlength=int(center.max(initial=-1)) + 1)
    last_kept = first + np.minimum(count[center], max_neighbors) - 1
    in_shell = distance <= distance[last_kept] + SHELL_TOLERANCE
    kept = order[in_shell]
    # The reverse of a pair is a pair too (same distance, opposite image); find each kept
    # pair's reverse by its key and keep it as well.
    image = pairs.image.astype(np.int64)
    span = int(np.abs(image).max(initial=0)) + 1
    code = ((image + span) * np.array([(2 * span + 1) ** 2, 2 * span + 1, 1])).sum(axis=1)
    n_sites = int(max(pairs.center.max(initial=-1), pairs.neighbor.max(initial=-1))) + 1
    n_codes = (2 * span + 1) ** 3
    key = (pairs.center.astype(np.int64) * n_sites + pairs.neighbor) * n_codes + code
    reverse_code = n_codes - 1 - code  # the code of -image
    reverse_key = (pairs.neighbor.astype(np.int64) * n_sites + pairs.center) * n_codes
    reverse_key += reverse_code
    keep = np.zeros(len(key), dtype=bool)
    keep[kept] = True
    by_key = np.argsort(key, kind="stable")
    position = np.searchsorted(key[by_key], reverse_key[kept])
    found = position < len(key)
    partner = by_key[np.minimum(position, len(key) - 1)]
    found &= key[partner] == reverse_key[kept]
    keep[partner[found]] = True
    ordered = order[keep[order]]
    return NeighborList(*(array[ordered] for array in pairs))


def periodic_dimensions(n_sites: int, pairs: NeighborList) -> tuple[np.ndarray, np.ndarray]:
    """The fragments that ``pairs`` link the sites into, and how many directions each repeats in.

    Following pairs from site to site (in either direction) reaches, from any site, one
    fragment of the infinite crystal. A fragment extends in as many independent lattice
    directions as the translations of its closed paths (cycles) span: 3 for a bulk
    crystal, 2 for a slab, 1 for a chain and 0 for a molecule or a lone atom.

    Parameters
    ----------
    n_sites : int
        Number of sites in the cell.
    pairs : NeighborList
        Pairs, each followed in both directions.

    Returns
    -------
    fragment : ndarray of int64, shape (n_sites,)
        Fragment number of each site, numbered from 0 in order of their first site.
    dimensions : ndarray of int64, shape (n_fragments,)
        Number of directions (0 to 3) in which each fragment repeats.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.graphs.arrays import crystal_arrays
    >>> co = Structure(Lattice.cubic(15.0), ["C", "O"], [[0, 0, 0], [0.075, 0, 0]])
    >>> fragment, dimensions = periodic_dimensions(2, neighbor_pairs(crystal_arrays(co), 8.0))
    >>> fragment.tolist(), dimensions.tolist()  # one molecule, repeating in no direction
    ([0, 0], [0])
    """
    tail = np.concatenate([pairs.center, pairs.neighbor])
    head = np.concatenate([pairs.neighbor, pairs.center])
    step = np.concatenate([pairs.image, -pairs.image])
    fragment = np.full(n_sites, -1, dtype=np.int64)
    cell = np.zeros((n_sites, 3))  # the cell of the copy of each site reached
    n_fragments = 0
    while (unreached := np.flatnonzero(fragment < 0)).size:
        on_frontier = np.zeros(n_sites, dtype=bool)
        on_frontier[unreached[0]] = True
        fragment[unreached[0]] = n_fragments
        while (outward := on_frontier[tail] & (fragment[head] < 0)).any():
            reached = head[outward]  # a site reached twice keeps one of its paths: any will do
            cell[reached] = np.take(cell, tail[outward], axis=0) + step[outward]
            fragment[reached] = n_fragments
            on_frontier[:] = False
            on_frontier[reached] = True
        n_fragments += 1
    cycles = np.take(cell, pairs.center, axis=0) + pairs.image
    cycles -= np.take(cell, pairs.neighbor, axis=0)
    of_pair = fragment[pairs.center]
    dimensions = [_rank(cycles[of_pair == k]) for k in range(n_fragments)]
    return fragment, np.asarray(dimensions, dtype=np.int64)


def links_bulk_crystal(n_sites: int, pairs: NeighborList, edges: NeighborList) -> bool:
    """A quick sufficient test that ``periodic_dimensions(n_sites, pairs)`` is ``[3]``.

    True when site 0 is paired with every site, and the translations of the closed paths
    through these pairs of site 0 and ``edges`` (a subset of ``pairs``) span three
    directions: then all the pairs link one fragment repeating in three directions. Most
    crystals pass with a few vectorised steps, without the breadth-first search.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.graphs.arrays import crystal_arrays
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> pairs = neighbor_pairs(crystal_arrays(cscl), 8.0)
    >>> links_bulk_crystal(2, pairs, nearest_neighbors(pairs, 12))
    True
    """
    of_site_0 = pairs.center == 0
    neighbor = pairs.neighbor[of_site_0]
    reached = np.zeros(n_sites, dtype=bool)
    reached[neighbor] = True
    reached[0] = True
    if not reached.all():
        return False
    image = np.compress(of_site_0, pairs.image, axis=0)
    cell = np.zeros((n_sites, 3))  # the cell of one copy of each site...
    cell[neighbor] = image  # ...paired with site 0
    cell[0] = 0
    cycles = image - np.take(cell, neighbor, axis=0)
    if _rank(cycles) == 3:  # usually: site 0 meets several copies of each site
        return True
    of_edges = np.take(cell, edges.center, axis=0) + edges.image
    return _rank(np.concatenate([cycles, of_edges - np.take(cell, edges.neighbor, axis=0)])) == 3


def _rank(vectors: np.ndarray) -> int:
    """Number of linearly independent rows of an (n, 3) array of whole numbers, exactly.

    The Gram matrix ``G = vectors.T @ vectors`` has the same rank, and is positive
    semi-definite: its rank is the number of its invariants (trace, sum of principal 2 x 2
    minors, determinant) that are not zero, computed here in Python's exact integers.
    """
    vectors = vectors.astype(np.int64)
    (a, b, c), (_, d, e), (_, _, f) = (vectors.T @ vectors).tolist()
    invariants = (a + d + f, a * d - b * b + a * f - c * c + d * f - e * e)
    determinant = a * (d * f - e * e) - b * (b * f - c * e) + c * (b * e - c * d)
    return sum(value != 0 for value in (*invariants, determinant))
