"""A crystal as plain arrays: what its graph is built from, cheap to send to a worker.

Pickling a pymatgen ``Structure`` costs more than building its graph, so
:class:`~skcrystal.CrystalGraphTransformer` sends worker processes the lattice,
coordinates and species of each crystal instead (:func:`crystal_arrays`), and
:func:`~skcrystal.graphs.build.crystal_graph_from_arrays` builds the same graph from them.
Pickling many small arrays is slow too, so a chunk of crystals, and of graphs on the way
back, travels packed into a few large arrays (:func:`pack`, :func:`unpack`).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import NamedTuple

import numpy as np
from pymatgen.core import DummySpecies, Element, Lattice, Structure


class CrystalArrays(NamedTuple):
    """The lattice, sites and species of one crystal, as numpy arrays.

    ``species_count[i]`` entries of ``species_z`` / ``species_occupancy`` belong to site
    ``i`` (one for an ordered site, several for a disordered one), as in
    :class:`~skcrystal.graphs.container.GraphParts`. Made by :func:`crystal_arrays`.
    """

    lattice: np.ndarray  # (3, 3) float64, Å, one lattice vector per row
    pbc: tuple[bool, bool, bool]  # periodic along each lattice vector
    frac_coords: np.ndarray  # (n_sites, 3) float64
    cart_coords: np.ndarray  # (n_sites, 3) float64, Å, as pymatgen holds them
    species_count: np.ndarray  # (n_sites,) int16
    species_z: np.ndarray  # (n_species,) int16; 0 for a species that is not an element
    species_occupancy: np.ndarray  # (n_species,) float64, exactly as in the structure
    elements_only: bool  # every species a plain Element: no ion, no dummy species

    def to_structure(self) -> Structure:
        """The structure these arrays describe, its species as plain elements.

        With :attr:`elements_only` it has the formula and site species (``species_string``)
        of the structure the arrays were taken from, which is what messages name.

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> alloy = Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
        >>> crystal_arrays(alloy).to_structure()[0].species_string
        'Fe:0.5, Co:0.5'
        """
        elements = map(Element.from_Z, self.species_z.tolist())
        pairs = list(zip(elements, self.species_occupancy.tolist(), strict=True))
        species = [dict(site) for site in _pieces(pairs, self.species_count)]
        return Structure(Lattice(self.lattice, pbc=self.pbc), species, self.frac_coords)


def _pieces(values, lengths: np.ndarray) -> list:
    """``values`` (a list or an array) cut into consecutive pieces of these lengths."""
    bounds = [0, *np.cumsum(lengths).tolist()]
    return [values[a:b] for a, b in itertools.pairwise(bounds)]


def _atomic_number(species) -> int:
    """Z of an element or an ion; 0 for a dummy or placeholder species."""
    z = getattr(species, "Z", 0)  # a DummySpecies' is a hash of its symbol
    return z if not isinstance(species, DummySpecies) and 1 <= z <= 118 else 0


def crystal_arrays(structure: Structure) -> CrystalArrays:
    """The arrays of ``structure`` that its graph is built from; checks nothing.

    A species that is not a chemical element (a dummy or placeholder species) gets
    atomic number 0, which :func:`~skcrystal.graphs.build.crystal_graph_from_arrays`
    refuses.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> crystal = crystal_arrays(cscl)
    >>> crystal.species_z.tolist(), crystal.cart_coords[1].tolist(), crystal.elements_only
    ([55, 17], [2.05, 2.05, 2.05], True)
    """
    sites = structure.sites
    compositions = [site.species for site in sites]
    species = [pair for composition in compositions for pair in composition.items()]
    elements_only = all(type(element) is Element for element, _ in species)
    if elements_only:
        z = [element.Z for element, _ in species]
    else:
        z = [_atomic_number(element) for element, _ in species]
    lattice = structure.lattice
    return CrystalArrays(
        lattice.matrix,
        lattice.pbc,
        np.array([site.frac_coords for site in sites], dtype=np.float64).reshape(-1, 3),
        np.array([site.coords for site in sites], dtype=np.float64).reshape(-1, 3),
        np.fromiter(map(len, compositions), np.int16, len(compositions)),
        np.array(z, dtype=np.int16),
        np.array([occupancy for _, occupancy in species], dtype=np.float64),
        elements_only,
    )


class Packed(NamedTuple):
    """Items of one kind, a NamedTuple or dataclass, with each array field joined end to
    end: made by :func:`pack` so that a chunk of work pickles as a few large arrays.
    Pickling thousands of small arrays costs more than building crystal graphs."""

    kind: type
    columns: list  # per field: the items' arrays joined, or the list of their values
    lengths: list  # per field: the items' array lengths, or None


def _field_names(kind: type) -> tuple[str, ...]:
    if dataclasses.is_dataclass(kind):
        return tuple(field.name for field in dataclasses.fields(kind))
    return kind._fields


def pack(kind: type, items: list) -> Packed:
    """Join the array fields of ``items`` (all of type ``kind``) end to end.

    A field that holds an array in the first item must hold one in every item.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> packed = pack(CrystalArrays, [crystal_arrays(cscl), crystal_arrays(cscl * 2)])
    >>> packed.columns[2].shape, packed.lengths[2].tolist()  # frac_coords
    ((18, 3), [2, 16])
    >>> [len(crystal.species_z) for crystal in unpack(packed)]
    [2, 16]
    """
    columns, lengths = [], []
    for name in _field_names(kind):
        values = [getattr(item, name) for item in items]
        if values and isinstance(values[0], np.ndarray):
            lengths.append(np.fromiter(map(len, values), np.int64, len(values)))
            columns.append(np.concatenate(values))
        else:
            lengths.append(None)
            columns.append(values)
    return Packed(kind, columns, lengths)


def unpack(packed: Packed) -> list:
    """The items that :func:`pack` packed, their arrays views of the joined ones."""
    columns = [
        values if lengths is None else _pieces(values, lengths)
        for values, lengths in zip(packed.columns, packed.lengths, strict=True)
    ]
    return [packed.kind(*fields) for fields in zip(*columns, strict=True)]
