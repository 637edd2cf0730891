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


def structure_key(structure: Structure, cutoff: float, max_neighbors: int) -> bytes:
    """A digest of lattice, coordinates, species and the neighbour settings."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(np.asarray(structure.lattice.matrix, dtype=np.float64).tobytes())
    digest.update(np.asarray(structure.frac_coords, dtype=np.float64).tobytes())
    digest.update(repr([site.species_string for site in structure]).encode())
    digest.update(np.asarray([cutoff, max_neighbors], dtype=np.float64).tobytes())
    return digest.digest()


def _nbytes(parts: GraphParts) -> int:
    return sum(a.nbytes for a in vars(parts).values())


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
        self._bytes += _nbytes(parts)
        while self._bytes > self.max_bytes and self._store:
            _, evicted = self._store.popitem(last=False)
            self._bytes -= _nbytes(evicted)

    def clear(self) -> None:
        self._store.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._store)


GRAPH_CACHE = GraphCache(max_bytes=512 * 2**20)
