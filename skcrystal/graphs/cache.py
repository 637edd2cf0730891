"""A bounded in-process cache of crystal graphs, keyed by structure content.

``GridSearchCV`` clones the pipeline for every candidate and fold, so a transformer
instance cannot remember anything; this module-level cache lets every clone reuse graphs
already built for the same structure and neighbour settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict

import numpy as np
from pymatgen.core import Structure

from skcrystal.graphs.arrays import CrystalArrays
from skcrystal.graphs.container import GraphParts


def structure_key(structure: Structure, *settings: float) -> bytes:
    """A digest of lattice, coordinates, species with their exact occupancies, and settings.

    Occupancies enter as float64 values, not as pymatgen's rounded ``species_string``, so
    that ``{Li: 0.5001, Na: 0.4999}`` and ``{Li: 0.5004, Na: 0.4996}`` differ.
    ``settings`` are the graph-building parameters the result depends on.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> def alloy(li):
    ...     return Structure(Lattice.cubic(4.0), [{"Li": li, "Na": 1 - li}], [[0, 0, 0]])
    >>> structure_key(alloy(0.5001), 8.0) == structure_key(alloy(0.5004), 8.0)
    False
    >>> structure_key(alloy(0.5001), 8.0) == structure_key(alloy(0.5001), 6.0)
    False
    """
    species = [site.species for site in structure]
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.asarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    digest.update(np.asarray(structure.frac_coords, dtype=np.float64).tobytes())
    digest.update(repr([[str(sp) for sp in site] for site in species]).encode())
    occupancies = [occupancy for site in species for occupancy in site.values()]
    digest.update(np.asarray(occupancies, dtype=np.float64).tobytes())
    digest.update(np.asarray(settings, dtype=np.float64).tobytes())
    return digest.digest()


def crystal_key(crystal: CrystalArrays, *settings: float) -> bytes:
    """A digest of a crystal's arrays (:func:`~skcrystal.graphs.arrays.crystal_arrays`)
    and ``settings``: a few bytes hashed, no Python loop over the sites.

    It keys everything its graph depends on: lattice, periodicity, coordinates, atomic
    numbers and exact occupancies. Species other than plain elements (ions, dummy species)
    are not told apart by the arrays: key those structures with :func:`structure_key`.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal.graphs.arrays import crystal_arrays
    >>> def alloy(li):
    ...     return crystal_arrays(
    ...         Structure(Lattice.cubic(4.0), [{"Li": li, "Na": 1 - li}], [[0, 0, 0]])
    ...     )
    >>> crystal_key(alloy(0.5001), 8.0) == crystal_key(alloy(0.5004), 8.0)
    False
    >>> crystal_key(alloy(0.5001), 8.0) == crystal_key(alloy(0.5001), 6.0)
    False
    """
    digest = hashlib.blake2b(digest_size=20, person=b"crystal arrays")
    sizes = (len(crystal.species_count), len(crystal.species_z))
    digest.update(np.asarray(sizes, dtype=np.int64).tobytes())
    for array in (crystal.lattice, crystal.frac_coords, crystal.cart_coords):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    digest.update(np.asarray(crystal.pbc, dtype=bool).tobytes())
    digest.update(crystal.species_count.tobytes())
    digest.update(crystal.species_z.tobytes())
    digest.update(crystal.species_occupancy.tobytes())
    digest.update(np.asarray(settings, dtype=np.float64).tobytes())
    return digest.digest()


class GraphCache:
    """Least-recently-used store of :class:`GraphParts`, bounded in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._store: OrderedDict[bytes, GraphParts] = OrderedDict()
        self._bytes = 0

    def get(self, key: bytes) -> GraphParts | None:
        parts = self._store.get(key)
        if parts is not None:
            self._store.move_to_end(key)
        return parts

    def put(self, key: bytes, parts: GraphParts) -> None:
        """Store ``parts``; arrays that are views of larger ones (graphs unpacked from a
        worker's chunk) are copied, so that the bound in bytes holds."""
        if key in self._store:
            return
        self._store[key] = _owning(parts)
        self._bytes += parts.nbytes
        while self._bytes > self.max_bytes and self._store:
            _, evicted = self._store.popitem(last=False)
            self._bytes -= evicted.nbytes

    def clear(self) -> None:
        self._store.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._store)


def _owning(parts: GraphParts) -> GraphParts:
    """``parts``, with a copy of each array that is a view of another."""
    fields = {f.name: getattr(parts, f.name) for f in dataclasses.fields(parts)}
    owned = {
        name: value.copy()
        for name, value in fields.items()
        if isinstance(value, np.ndarray) and value.base is not None
    }
    return dataclasses.replace(parts, **owned) if owned else parts


GRAPH_CACHE = GraphCache(max_bytes=512 * 2**20)
