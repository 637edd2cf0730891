"""A bounded in-process cache of crystal graphs, keyed by structure content.

``GridSearchCV`` clones the pipeline for every candidate and fold, so a transformer
instance cannot remember anything; this module-level cache lets every clone reuse graphs
already built for the same structure and neighbour settings.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
from pymatgen.core import Structure

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
        if key in self._store:
            return
        self._store[key] = parts
        self._bytes += parts.nbytes
        while self._bytes > self.max_bytes and self._store:
            _, evicted = self._store.popitem(last=False)
            self._bytes -= evicted.nbytes

    def clear(self) -> None:
        self._store.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._store)


GRAPH_CACHE = GraphCache(max_bytes=512 * 2**20)
