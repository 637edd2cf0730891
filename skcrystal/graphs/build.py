"""One structure in, one validated crystal graph out.

Besides the graph, :func:`crystal_graph` checks that the structure is physically possible
(no two atoms overlap) and finds out whether its neighbour graph repeats in all three
directions, as a bulk crystal's does (docs/structures.md explains both checks).
"""

from __future__ import annotations

import numpy as np
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from pymatgen.core import Element, Structure

from skcrystal.graphs.arrays import CrystalArrays, crystal_arrays
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


def _named(crystal: CrystalArrays, structure: Structure | None) -> Structure:
    """The structure that messages name the crystal and its sites after: ``structure``, or
    else one rebuilt from the arrays (plain elements, so the same names)."""
    return crystal.to_structure() if structure is None else structure


def _check_geometry(crystal: CrystalArrays, index: int, structure: Structure | None) -> None:
    def refuse(reason: str) -> ValueError:  # the formula is only worked out for errors
        return ValueError(f"{describe(_named(crystal, structure), index)}: {reason}")

    n_sites = len(crystal.frac_coords)
    if n_sites == 0:
        raise refuse("the structure has no sites")
    if not np.all(np.isfinite(crystal.lattice)):
        raise refuse("the lattice contains NaN or inf")
    volume = abs(np.linalg.det(crystal.lattice))
    if volume < 1e-3 * n_sites:
        raise refuse(
            f"degenerate lattice (cell volume {volume:.3g} Å^3 for {n_sites} sites); "
            "a crystal needs three independent lattice vectors"
        )
    if not np.all(np.isfinite(crystal.frac_coords)):
        raise refuse("site coordinates contain NaN or inf")


def _check_species(crystal: CrystalArrays, index: int, structure: Structure | None) -> None:
    """Refuse a site that holds a dummy or placeholder species (atomic number 0)."""
    if crystal.species_z.all():
        return
    entry = int(np.flatnonzero(crystal.species_z == 0)[0])
    first = np.cumsum(crystal.species_count) - crystal.species_count
    site = int(np.searchsorted(first, entry, side="right") - 1)
    named = _named(crystal, structure)
    species = list(named[site].species)[entry - int(first[site])]
    raise ValueError(
        f"{describe(named, index)}: site {site} holds {species!s}, which is not a chemical "
        "element (a dummy or placeholder species); replace it by an element or remove the site"
    )


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
    crystal: CrystalArrays,
    index: int,
    structure: Structure | None,
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
    named = _named(crystal, structure)
    if i == j:
        where = f"site {i} ({named[i].species_string}) is {distance:.3f} Å from its own image"
    else:
        where = (
            f"sites {i} ({named[i].species_string}) and {j} ({named[j].species_string}) "
            f"are {distance:.3f} Å apart"
        )
    raise ValueError(
        f"{describe(named, index)}: {where}, less than min_distance_ratio="
        f"{min_distance_ratio:g} times the sum of their covalent radii ({radius[i]:.2f} + "
        f"{radius[j]:.2f} Å): atoms cannot overlap like this. Fix the structure, or pass "
        "min_distance_ratio=0 to CrystalGraphTransformer to accept it"
    )


_FRAGMENT_SHAPE = {0: "a molecule or cluster", 1: "a chain", 2: "a slab or layer"}


def _periodicity_warning(
    crystal: CrystalArrays,
    structure: Structure | None,
    pairs: NeighborList,
    edges: NeighborList,
    cutoff: float,
) -> str | None:
    """Why the pairs within ``cutoff`` do not link a bulk crystal, or None if they do."""
    n_sites = len(crystal.frac_coords)
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
        f"site(s) linked to site {first} ({_named(crystal, structure)[first].species_string}) "
        f"form {_FRAGMENT_SHAPE[int(dimensions[worst])]}, repeating in {dimensions[worst]} "
        f"direction(s) only{of_fragments}, with vacuum wider than cutoff={cutoff:g} Å around "
        "it. This is not a bulk crystal, so a model trained on crystals extrapolates; pass "
        "check_periodicity=False to CrystalGraphTransformer to silence this warning"
    )


def _bond_vectors(crystal: CrystalArrays, edges: NeighborList) -> np.ndarray:
    """Cartesian displacement (Å) from each edge's center to its neighbour's image."""
    frac = crystal.frac_coords
    step = frac[edges.neighbor] + edges.image - frac[edges.center]
    return step @ crystal.lattice


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
    return crystal_graph_from_arrays(
        crystal_arrays(structure),
        index,
        cutoff,
        max_neighbors,
        min_distance_ratio,
        check_periodicity,
        neighbor_rule,
        structure=structure,
    )


def crystal_graph_from_arrays(
    crystal: CrystalArrays,
    index: int,
    cutoff: float,
    max_neighbors: int,
    min_distance_ratio: float = 0.5,
    check_periodicity: bool = True,
    neighbor_rule: str = "nearest",
    structure: Structure | None = None,
) -> GraphParts:
    """:func:`crystal_graph` from a crystal's arrays: the same graph, checks and messages.

    Worker processes build graphs this way, without a pymatgen Structure.

    Parameters
    ----------
    crystal : CrystalArrays
        The crystal, from :func:`~skcrystal.graphs.arrays.crystal_arrays`.
    index, cutoff, max_neighbors, min_distance_ratio, check_periodicity, neighbor_rule
        As for :func:`crystal_graph`.
    structure : pymatgen.core.Structure, optional
        The structure the arrays were taken from, which messages name the crystal and its
        sites after. Without it, a structure rebuilt from the arrays
        (:meth:`~skcrystal.graphs.arrays.CrystalArrays.to_structure`) is named, which is
        the same when ``crystal.elements_only``; give it otherwise.

    Returns
    -------
    GraphParts

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.graphs.arrays import crystal_arrays
    >>> co = Structure(Lattice.cubic(15.0), ["C", "O"], [[0, 0, 0], [0.075, 0, 0]])
    >>> parts = crystal_graph_from_arrays(crystal_arrays(co), 0, cutoff=8.0, max_neighbors=12)
    >>> parts.warning  # doctest: +ELLIPSIS
    'its neighbour graph does not repeat in all three directions: the 2 site(s) linked to \
site 0 (C) form a molecule or cluster, ...'
    """
    _check_geometry(crystal, index, structure)
    _check_species(crystal, index, structure)
    species_occupancy = crystal.species_occupancy.astype(np.float32)
    radius, occupancy = _per_site(crystal.species_count, crystal.species_z, species_occupancy)
    search = max(cutoff, min_distance_ratio * 2 * float(radius.max()))
    pairs = neighbor_pairs(crystal, search)
    if min_distance_ratio > 0:
        _check_distances(crystal, index, structure, pairs, radius, occupancy, min_distance_ratio)
    if search > cutoff:
        pairs = pairs.within(cutoff)
    if neighbor_rule == "shell":
        edges = neighbor_shells(pairs, max_neighbors)
    elif neighbor_rule == "radius":
        edges = radius_neighbors(pairs)
    else:
        edges = nearest_neighbors(pairs, max_neighbors)
    has_neighbor = np.zeros(len(crystal.frac_coords), dtype=bool)
    has_neighbor[edges.center] = True
    if not has_neighbor.all():
        lonely = int(np.flatnonzero(~has_neighbor)[0])
        named = _named(crystal, structure)
        raise ValueError(
            f"{describe(named, index)}: site {lonely} ({named[lonely].species_string}) "
            f"has no neighbour within cutoff={cutoff} Å; use a larger cutoff"
        )
    warning = None
    if check_periodicity:
        warning = _periodicity_warning(crystal, structure, pairs, edges, cutoff)
    return GraphParts(
        crystal.species_count,
        crystal.species_z,
        species_occupancy,
        edges.center.astype(np.int32),
        edges.neighbor.astype(np.int32),
        edges.distance.astype(np.float32),
        _bond_vectors(crystal, edges).astype(np.float32),
        warning=warning,
    )
