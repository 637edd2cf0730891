"""One structure in, one validated crystal graph out.

Besides the graph, :func:`crystal_graph` checks that the structure is physically possible
(no two atoms overlap) and finds out whether its neighbour graph repeats in all three
directions, as a bulk crystal's does (docs/structures.md explains both checks).
"""

from __future__ import annotations

import numpy as np
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from pymatgen.core import DummySpecies, Element, Structure

from skcrystal.graphs.container import GraphParts
from skcrystal.graphs.neighbors import (
    NeighborList,
    links_bulk_crystal,
    nearest_neighbors,
    neighbor_pairs,
    neighbor_shells,
    periodic_dimensions,
    radius_neighbors,
)

#: Radius (Å) used for elements that have no covalent radius (Bk to Fm, Z 97-100, and
#: beyond): that of curium, the heaviest element that has one.
FALLBACK_RADIUS = 1.69

#: Two partially occupied sites whose occupancies add up to at most this are alternative
#: positions of a disordered crystal ("split sites", never occupied at once), exempt from
#: the distance check. Refined occupancies of split sites often add up to a little over 1
#: (up to 1.08 in the OBELiX CIFs).
SPLIT_SITES_MAX_OCCUPANCY = 1.2

#: How the edges of each atom are chosen (``CrystalGraphTransformer(neighbor_rule=...)``):
#: "nearest", its ``max_neighbors`` nearest atoms (CGCNN); "shell", every atom out to the
#: shell of its ``max_neighbors``-th nearest, and the graph made symmetric (ALIGNN);
#: "radius", every atom within the cutoff, however many (MEGNet).
NEIGHBOR_RULES = ("nearest", "shell", "radius")


class StructureWarning(UserWarning):
    """A crystal of ``X`` was read and turned into a graph, but may not be what it seems.

    The message names the item (``X[i]``) and the reason: a note from pymatgen's CIF
    reader, or a neighbour graph that does not repeat in all three directions.
    """


def _covalent_radii() -> np.ndarray:
    """Covalent radius (Å) by atomic number, 0 to 118 (Cordero et al., Dalton Trans. 2008)."""
    radius = np.full(119, FALLBACK_RADIUS)
    for symbol, value in CovalentRadius.radius.items():
        radius[Element(symbol).Z] = value
    return radius


#: Covalent radius (Å) of each element, indexed by atomic number (pymatgen's table of
#: Cordero et al. 2008, H to Cm; :data:`FALLBACK_RADIUS` for the heavier elements).
COVALENT_RADIUS = _covalent_radii()


def describe(structure: Structure, index: int) -> str:
    """``X[index] (formula)``, the name of an item in messages."""
    try:
        return f"X[{index}] ({structure.composition.reduced_formula})"
    except Exception:  # a broken structure may not even have a formula
        return f"X[{index}]"


def _element_z(species, structure: Structure, index: int, site_index: int) -> int:
    """Atomic number of a site's species, or a ValueError for a dummy or placeholder one."""
    if isinstance(species, DummySpecies) or not 1 <= getattr(species, "Z", 0) <= 118:
        raise ValueError(
            f"{describe(structure, index)}: site {site_index} holds {species!s}, which is not "
            "a chemical element (a dummy or placeholder species); replace it by an element "
            "or remove the site"
        )
    return species.Z


def _species(structure: Structure, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-site species: counts, atomic numbers and occupancies (CSR over sites)."""
    if structure.is_ordered:
        z = np.asarray(structure.atomic_numbers, np.int64)  # a DummySpecies' is a hash
        if not np.all((z >= 1) & (z <= 118)):
            site = int(np.flatnonzero((z < 1) | (z > 118))[0])
            _element_z(structure[site].specie, structure, index, site)
        n_sites = len(z)
        return np.ones(n_sites, np.int16), z.astype(np.int16), np.ones(n_sites, np.float32)
    counts, zs, occupancies = [], [], []
    for site_index, site in enumerate(structure):
        counts.append(len(site.species))
        for species, occupancy in site.species.items():
            zs.append(_element_z(species, structure, index, site_index))
            occupancies.append(occupancy)
    return (
        np.asarray(counts, np.int16),
        np.asarray(zs, np.int16),
        np.asarray(occupancies, np.float32),
    )


def _check_geometry(structure: Structure, index: int) -> None:
    def refuse(reason: str) -> ValueError:  # the formula is only worked out for errors
        return ValueError(f"{describe(structure, index)}: {reason}")

    if len(structure) == 0:
        raise refuse("the structure has no sites")
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)):
        raise refuse("the lattice contains NaN or inf")
    volume = abs(np.linalg.det(matrix))
    if volume < 1e-3 * len(structure):
        raise refuse(
            f"degenerate lattice (cell volume {volume:.3g} Å^3 for {len(structure)} sites); "
            "a crystal needs three independent lattice vectors"
        )
    if not np.all(np.isfinite(structure.frac_coords)):
        raise refuse("site coordinates contain NaN or inf")


def _per_site(
    species_count: np.ndarray, species_z: np.ndarray, species_occupancy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Radius (the smallest of its species') and total occupancy of each site."""
    radius = COVALENT_RADIUS[species_z]
    if len(species_z) == len(species_count):  # ordered: one species per site
        return radius, species_occupancy.astype(np.float64)
    first = np.cumsum(species_count) - species_count
    return np.minimum.reduceat(radius, first), np.add.reduceat(species_occupancy, first)


def _check_distances(
    structure: Structure,
    index: int,
    pairs: NeighborList,
    radius: np.ndarray,
    occupancy: np.ndarray,
    min_distance_ratio: float,
) -> None:
    """Refuse two atoms closer than ``min_distance_ratio`` times their radii's sum."""
    close = np.flatnonzero(pairs.distance < min_distance_ratio * 2 * radius.max())
    if not close.size:  # the usual case, found without working out every pair's limit
        return
    i, j = pairs.center[close], pairs.neighbor[close]
    ratio = pairs.distance[close] / (radius[i] + radius[j])
    split = np.maximum(occupancy[i], occupancy[j]) < 1
    split &= occupancy[i] + occupancy[j] <= SPLIT_SITES_MAX_OCCUPANCY
    refused = (ratio < min_distance_ratio) & ~split
    if not refused.any():
        return
    worst = close[np.flatnonzero(refused)[np.argmin(ratio[refused])]]
    i, j = sorted((int(pairs.center[worst]), int(pairs.neighbor[worst])))
    distance = float(pairs.distance[worst])
    if i == j:
        where = f"site {i} ({structure[i].species_string}) is {distance:.3f} Å from its own image"
    else:
        where = (
            f"sites {i} ({structure[i].species_string}) and {j} ({structure[j].species_string}) "
            f"are {distance:.3f} Å apart"
        )
    raise ValueError(
        f"{describe(structure, index)}: {where}, less than min_distance_ratio="
        f"{min_distance_ratio:g} times the sum of their covalent radii ({radius[i]:.2f} + "
        f"{radius[j]:.2f} Å): atoms cannot overlap like this. Fix the structure, or pass "
        "min_distance_ratio=0 to CrystalGraphTransformer to accept it"
    )


_FRAGMENT_SHAPE = {0: "a molecule or cluster", 1: "a chain", 2: "a slab or layer"}


def _periodicity_warning(
    structure: Structure, pairs: NeighborList, edges: NeighborList, cutoff: float
) -> str | None:
    """Why the pairs within ``cutoff`` do not link a bulk crystal, or None if they do."""
    n_sites = len(structure)
    if links_bulk_crystal(n_sites, pairs, edges):  # most crystals, in a few steps
        return None
    fragment, dimensions = periodic_dimensions(n_sites, edges)  # large cells: fewer pairs
    if dimensions.tolist() != [3]:  # edges are some of the pairs: follow them all
        fragment, dimensions = periodic_dimensions(n_sites, pairs)
    worst = int(np.argmin(dimensions))
    if dimensions[worst] == 3:
        return None
    sites = np.flatnonzero(fragment == worst)
    first = int(sites[0])
    of_fragments = f" ({len(dimensions)} fragments in all)" if len(dimensions) > 1 else ""
    return (
        f"its neighbour graph does not repeat in all three directions: the {len(sites)} "
        f"site(s) linked to site {first} ({structure[first].species_string}) form "
        f"{_FRAGMENT_SHAPE[int(dimensions[worst])]}, repeating in {dimensions[worst]} "
        f"direction(s) only{of_fragments}, with vacuum wider than cutoff={cutoff:g} Å around "
        "it. This is not a bulk crystal, so a model trained on crystals extrapolates; pass "
        "check_periodicity=False to CrystalGraphTransformer to silence this warning"
    )


def _bond_vectors(structure: Structure, edges: NeighborList) -> np.ndarray:
    """Cartesian displacement (Å) from each edge's center to its neighbour's image."""
    frac = structure.frac_coords
    step = frac[edges.neighbor] + edges.image - frac[edges.center]
    return step @ structure.lattice.matrix


def crystal_graph(
    structure: Structure,
    index: int,
    cutoff: float,
    max_neighbors: int,
    min_distance_ratio: float = 0.5,
    check_periodicity: bool = True,
    neighbor_rule: str = "nearest",
) -> GraphParts:
    """Build the graph of one crystal: species per site and nearest-neighbour edges.

    Parameters
    ----------
    structure : pymatgen.core.Structure
    index : int
        Position of the structure in the user's ``X``, used in messages.
    cutoff : float
        Neighbour search radius in Å.
    max_neighbors : int
        Largest number of neighbours kept per site.
    min_distance_ratio : float, default=0.5
        Refuse two atoms closer than this times the sum of their covalent radii
        (:data:`COVALENT_RADIUS`); two partially occupied sites whose occupancies add up to
        at most :data:`SPLIT_SITES_MAX_OCCUPANCY` are exempt. 0 turns the check off.
    check_periodicity : bool, default=True
        Find out whether the pairs of atoms within ``cutoff`` link the structure into a
        graph that repeats in all three directions; if not, say why in the returned
        ``warning``, for the caller to emit (worker processes do not forward warnings).
    neighbor_rule : {"nearest", "shell", "radius"}, default="nearest"
        Which atoms each atom links to (:data:`NEIGHBOR_RULES`):
        :func:`~skcrystal.graphs.neighbors.nearest_neighbors`,
        :func:`~skcrystal.graphs.neighbors.neighbor_shells` or
        :func:`~skcrystal.graphs.neighbors.radius_neighbors` (``max_neighbors`` unused).

    Returns
    -------
    GraphParts

    Raises
    ------
    ValueError
        For an empty structure, a degenerate lattice, NaN/inf coordinates, a site that is
        not an element, two atoms closer than allowed, or a site with no neighbour within
        ``cutoff``.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    >>> parts = crystal_graph(si, 0, cutoff=3.0, max_neighbors=12)  # 4 bonds of 2.35 Å each
    >>> len(parts.species_z), len(parts.center), set(parts.species_z.tolist()), parts.warning
    (8, 32, {14}, None)
    >>> bond = parts.vector[0]  # from site 0 to a neighbour, Å
    >>> [round(float(x), 4) for x in bond], round(float(np.linalg.norm(bond)), 4)
    ([-1.3575, -1.3575, 1.3575], 2.3513)
    >>> fe = Structure(Lattice.cubic(0.8), ["Fe"], [[0, 0, 0]])
    >>> crystal_graph(fe, 3, cutoff=3.0, max_neighbors=12)
    Traceback (most recent call last):
    ...
    ValueError: X[3] (Fe): site 0 (Fe) is 0.800 Å from its own image, less than \
min_distance_ratio=0.5 times the sum of their covalent radii (1.42 + 1.42 Å): atoms cannot \
overlap like this. Fix the structure, or pass min_distance_ratio=0 to CrystalGraphTransformer \
to accept it
    """
    _check_geometry(structure, index)
    species_count, species_z, species_occupancy = _species(structure, index)
    radius, occupancy = _per_site(species_count, species_z, species_occupancy)
    search = max(cutoff, min_distance_ratio * 2 * float(radius.max()))
    pairs = neighbor_pairs(structure, search)
    if min_distance_ratio > 0:
        _check_distances(structure, index, pairs, radius, occupancy, min_distance_ratio)
    if search > cutoff:
        pairs = pairs.within(cutoff)
    if neighbor_rule == "shell":
        edges = neighbor_shells(pairs, max_neighbors)
    elif neighbor_rule == "radius":
        edges = radius_neighbors(pairs)
    else:
        edges = nearest_neighbors(pairs, max_neighbors)
    has_neighbor = np.zeros(len(structure), dtype=bool)
    has_neighbor[edges.center] = True
    if not has_neighbor.all():
        lonely = int(np.flatnonzero(~has_neighbor)[0])
        raise ValueError(
            f"{describe(structure, index)}: site {lonely} ({structure[lonely].species_string}) "
            f"has no neighbour within cutoff={cutoff} Å; use a larger cutoff"
        )
    warning = None
    if check_periodicity:
        warning = _periodicity_warning(structure, pairs, edges, cutoff)
    return GraphParts(
        species_count,
        species_z,
        species_occupancy,
        edges.center.astype(np.int32),
        edges.neighbor.astype(np.int32),
        edges.distance.astype(np.float32),
        _bond_vectors(structure, edges).astype(np.float32),
        warning=warning,
    )
