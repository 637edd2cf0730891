"""One structure in, one validated crystal graph out."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure

from skcrystal.graphs.container import GraphParts
from skcrystal.graphs.neighbors import nearest_neighbors


def _describe(structure: Structure, index: int) -> str:
    try:
        return f"X[{index}] ({structure.composition.reduced_formula})"
    except Exception:  # a broken structure may not even have a formula
        return f"X[{index}]"


def _species(structure: Structure, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-site species: counts, atomic numbers and occupancies (CSR over sites)."""
    if structure.is_ordered:
        z = np.asarray(structure.atomic_numbers, dtype=np.int16)
        return np.ones(len(z), np.int16), z, np.ones(len(z), np.float32)
    counts, zs, occupancies = [], [], []
    for site_index, site in enumerate(structure):
        counts.append(len(site.species))
        for species, occupancy in site.species.items():
            z = getattr(species, "Z", 0)
            if not z:
                raise ValueError(
                    f"{_describe(structure, index)}: site {site_index} holds {species}, "
                    "which is not a chemical element"
                )
            zs.append(z)
            occupancies.append(occupancy)
    return (
        np.asarray(counts, np.int16),
        np.asarray(zs, np.int16),
        np.asarray(occupancies, np.float32),
    )


def _check_geometry(structure: Structure, index: int) -> None:
    def refuse(reason: str) -> ValueError:  # the formula is only worked out for errors
        return ValueError(f"{_describe(structure, index)}: {reason}")

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


def crystal_graph(
    structure: Structure, index: int, cutoff: float, max_neighbors: int
) -> GraphParts:
    """Build the graph of one crystal: species per site and nearest-neighbour edges.

    Parameters
    ----------
    structure : pymatgen.core.Structure
    index : int
        Position of the structure in the user's ``X``, used in error messages.
    cutoff : float
        Neighbour search radius in Å.
    max_neighbors : int
        Largest number of neighbours kept per site.

    Raises
    ------
    ValueError
        For an empty structure, a degenerate lattice, NaN/inf coordinates, a site that is
        not an element, or a site with no neighbour within ``cutoff``.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    >>> parts = crystal_graph(si, 0, cutoff=3.0, max_neighbors=12)  # 4 bonds of 2.35 Å each
    >>> len(parts.species_z), len(parts.center), set(parts.species_z.tolist())
    (8, 32, {14})
    """
    _check_geometry(structure, index)
    species_count, species_z, species_occupancy = _species(structure, index)
    edges = nearest_neighbors(structure, cutoff, max_neighbors)
    has_neighbor = np.zeros(len(structure), dtype=bool)
    has_neighbor[edges.center] = True
    if not has_neighbor.all():
        lonely = int(np.flatnonzero(~has_neighbor)[0])
        raise ValueError(
            f"{_describe(structure, index)}: site {lonely} ({structure[lonely].species_string}) "
            f"has no neighbour within cutoff={cutoff} Å; use a larger cutoff"
        )
    return GraphParts(species_count, species_z, species_occupancy, *edges)
