"""``CrystalGraphs``: a compact, sliceable, picklable batch of crystal graphs.

All graphs live in a few flat arrays (CSR layout): species per site, and directed edges
``center -> neighbor`` with their length and Cartesian vector. Edge features (the Gaussian
expansion of the distance) and atom feature vectors are made per mini-batch by
:meth:`CrystalGraphs.batch`, never stored: that keeps 37K Materials Project crystals in
about 300 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from skcrystal.graphs.atom_features import MAX_Z, AtomFeatureTable

#: Columns of :meth:`CrystalGraphs.composition`: one per element, H (Z = 1) to Og.
COMPOSITION_WIDTH = MAX_Z


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(s, s + n)`` for each start ``s`` and length ``n``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    shift = np.asarray(starts, dtype=np.int64) - (np.cumsum(lengths) - lengths)
    return np.repeat(shift, lengths) + np.arange(total, dtype=np.int64)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """CSR pointer array ``[0, l0, l0 + l1, ...]`` for the given lengths."""
    ptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=ptr[1:])
    return ptr


@dataclass(frozen=True)
class GraphParts:
    """Arrays of one crystal graph, as built from one structure.

    ``species_count[i]`` entries of ``species_z`` / ``species_occupancy`` belong to site
    ``i`` (one for an ordered site, several for a disordered one). ``warning`` is what
    the structure's checks found worth a warning (without the item's name, which the
    caller adds), or None.
    """

    species_count: np.ndarray  # (n_sites,) int16
    species_z: np.ndarray  # (n_species,) int16
    species_occupancy: np.ndarray  # (n_species,) float32
    center: np.ndarray  # (n_edges,) int32, site index within the crystal
    neighbor: np.ndarray  # (n_edges,) int32
    distance: np.ndarray  # (n_edges,) float32, Å
    vector: np.ndarray  # (n_edges, 3) float32, Å, from center to the neighbour's image
    warning: str | None = None

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays, in bytes."""
        arrays = (self.species_count, self.species_z, self.species_occupancy, self.center)
        return sum(a.nbytes for a in (*arrays, self.neighbor, self.distance, self.vector))


class CrystalGraphs:
    """A batch of crystal graphs, made by :class:`~skcrystal.CrystalGraphTransformer`.

    Behaves like a sequence of crystals: ``len(graphs)``; ``graphs[i]``, ``graphs[2:5]``,
    ``graphs[[0, 3]]`` and ``graphs[mask]`` return a new ``CrystalGraphs`` (a single index
    gives a batch of one, so that scikit-learn's list indexing and
    :meth:`concatenate` compose). It pickles with plain numpy arrays. It is not an array:
    ``np.asarray(graphs)`` raises a ``TypeError`` saying what to do instead.

    Use :meth:`from_parts` or the transformer to make one; the constructor takes the flat
    arrays as they are stored.

    Parameters
    ----------
    node_ptr, edge_ptr : ndarray of int64, shape (n_crystals + 1,)
        CSR pointers: sites ``node_ptr[i]:node_ptr[i+1]`` and edges
        ``edge_ptr[i]:edge_ptr[i+1]`` belong to crystal ``i``.
    species_ptr : ndarray of int64, shape (n_sites + 1,)
        Species entries ``species_ptr[s]:species_ptr[s+1]`` belong to site ``s``.
    species_z, species_occupancy : ndarray
        Atomic number (int16) and occupancy (float32) of each species entry.
    center, neighbor, distance : ndarray
        Directed edges: site index within its crystal (int32) and length in Å (float32).
        The edges of a crystal are sorted by center, then by length.
    vector : ndarray of float32, shape (n_edges, 3)
        Cartesian displacement (Å) from each edge's center to the periodic image of its
        neighbour that the edge links to, so that bond angles can be computed; its norm is
        ``distance``.
    atom_features : AtomFeatureTable
        Table that turns species into atom feature vectors.
    cutoff : float
        Neighbour search radius (Å) the graphs were built with.
    max_neighbors : int
        The ``max_neighbors`` the graphs were built with.
    neighbor_rule : {"nearest", "shell", "radius", "composition"}, default="nearest"
        How each atom's edges were chosen (see
        :class:`~skcrystal.CrystalGraphTransformer`).
    space_group : ndarray of int16, shape (n_crystals,), optional
        International space group number of each crystal; 0 where it was not determined
        (the default, and what :class:`~skcrystal.CrystalGraphTransformer` gives unless
        ``symmetry=True``).
    symmetry : bool, default=False
        Whether ``space_group`` was searched for (see :mod:`skcrystal.graphs.symmetry`).

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CrystalGraphTransformer
    >>> nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
    ...                                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> graphs = CrystalGraphTransformer().transform([nacl, nacl])
    >>> len(graphs), graphs.n_atoms.tolist(), graphs.n_edges.tolist()
    (2, [8, 8], [96, 96])
    >>> batch = graphs.batch([1])
    >>> batch["atom_features"].shape, batch["distance"].shape, batch["vector"].shape
    ((8, 92), (96,), (96, 3))
    """

    _ARRAYS = (
        "node_ptr",
        "edge_ptr",
        "species_ptr",
        "species_z",
        "species_occupancy",
        "center",
        "neighbor",
        "distance",
        "vector",
        "space_group",
    )

    def __init__(
        self,
        *,
        node_ptr: np.ndarray,
        edge_ptr: np.ndarray,
        species_ptr: np.ndarray,
        species_z: np.ndarray,
        species_occupancy: np.ndarray,
        center: np.ndarray,
        neighbor: np.ndarray,
        distance: np.ndarray,
        vector: np.ndarray,
        atom_features: AtomFeatureTable,
        cutoff: float,
        max_neighbors: int,
        neighbor_rule: str = "nearest",
        space_group: np.ndarray | None = None,
        symmetry: bool = False,
    ) -> None:
        self.node_ptr = np.asarray(node_ptr, dtype=np.int64)
        self.edge_ptr = np.asarray(edge_ptr, dtype=np.int64)
        self.species_ptr = np.asarray(species_ptr, dtype=np.int64)
        self.species_z = np.asarray(species_z, dtype=np.int16)
        self.species_occupancy = np.asarray(species_occupancy, dtype=np.float32)
        self.center = np.asarray(center, dtype=np.int32)
        self.neighbor = np.asarray(neighbor, dtype=np.int32)
        self.distance = np.asarray(distance, dtype=np.float32)
        self.vector = np.asarray(vector, dtype=np.float32).reshape(len(self.distance), 3)
        self.atom_features = atom_features
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)
        self.neighbor_rule = str(neighbor_rule)
        n_crystals = len(self.node_ptr) - 1
        if space_group is None:
            space_group = np.zeros(n_crystals, dtype=np.int16)
        self.space_group = np.asarray(space_group, dtype=np.int16)
        if self.space_group.shape != (n_crystals,):
            raise ValueError(f"space_group must have shape ({n_crystals},)")
        self.symmetry = bool(symmetry)

    def __setstate__(self, state: dict) -> None:
        if "vector" not in state:
            raise ValueError(
                "these CrystalGraphs were pickled by skcrystal 0.1, which did not store bond "
                "vectors; build them again from the structures with CrystalGraphTransformer"
            )
        self.__dict__.update(state)

    @property
    def settings(self) -> tuple[float, int, str, str]:
        """``(cutoff, max_neighbors, atom feature table name, neighbor_rule)``: what a
        model trained on these graphs needs the graphs it predicts on to share."""
        return (self.cutoff, self.max_neighbors, self.atom_features.name, self.neighbor_rule)

    @classmethod
    def from_parts(
        cls,
        parts: Sequence[GraphParts],
        atom_features: AtomFeatureTable,
        cutoff: float,
        max_neighbors: int,
        neighbor_rule: str = "nearest",
        space_group: np.ndarray | None = None,
    ) -> CrystalGraphs:
        """Assemble one container from the graphs of single crystals, in order.

        ``space_group`` (one number per crystal) marks the result as ``symmetry=True``.
        """

        def cat(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype)

        return cls(
            node_ptr=_offsets([len(p.species_count) for p in parts]),
            edge_ptr=_offsets([len(p.center) for p in parts]),
            species_ptr=_offsets(cat([p.species_count for p in parts], np.int64)),
            species_z=cat([p.species_z for p in parts], np.int16),
            species_occupancy=cat([p.species_occupancy for p in parts], np.float32),
            center=cat([p.center for p in parts], np.int32),
            neighbor=cat([p.neighbor for p in parts], np.int32),
            distance=cat([p.distance for p in parts], np.float32),
            vector=cat([p.vector for p in parts], np.float32),
            atom_features=atom_features,
            cutoff=cutoff,
            max_neighbors=max_neighbors,
            neighbor_rule=neighbor_rule,
            space_group=space_group,
            symmetry=space_group is not None,
        )

    # --- sequence protocol -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.node_ptr) - 1

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray) -> CrystalGraphs:
        indices = np.arange(len(self))[key if isinstance(key, slice) else np.asarray(key)]
        indices = np.atleast_1d(indices)
        n_atoms, n_edges = self.n_atoms[indices], self.n_edges[indices]
        nodes = _ranges(self.node_ptr[indices], n_atoms)
        species_start = self.species_ptr[nodes]
        species_count = self.species_ptr[nodes + 1] - species_start
        entries = _ranges(species_start, species_count)
        edges = _ranges(self.edge_ptr[indices], n_edges)
        return CrystalGraphs(
            node_ptr=_offsets(n_atoms),
            edge_ptr=_offsets(n_edges),
            species_ptr=_offsets(species_count),
            species_z=self.species_z[entries],
            species_occupancy=self.species_occupancy[entries],
            center=self.center[edges],
            neighbor=self.neighbor[edges],
            distance=self.distance[edges],
            vector=self.vector[edges],
            atom_features=self.atom_features,
            cutoff=self.cutoff,
            max_neighbors=self.max_neighbors,
            neighbor_rule=self.neighbor_rule,
            space_group=self.space_group[indices],
            symmetry=self.symmetry,
        )

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None):
        """Refuse to become a numpy array: a batch of graphs is not a table of numbers.

        Without this, numpy would iterate the batch (each item is a batch again) down to
        32 or 64 dimensions, and tools that call ``np.asarray(X)`` would fail far away.
        """
        raise TypeError(
            f"a CrystalGraphs of {len(self)} crystal graphs cannot be converted to a numpy "
            "array: index it with graphs[indices] (a CrystalGraphs again) or take the arrays "
            "of some crystals with graphs.batch(indices). For tools that need X as a "
            "table (e.g. permutation_importance), use a pipeline that starts with "
            "CrystalGraphTransformer and give it the structures as a one-column "
            "DataFrame, e.g. df[['structure']]"
        )

    def __repr__(self) -> str:
        return (
            f"CrystalGraphs(n_crystals={len(self)}, n_atoms={int(self.n_atoms.sum())}, "
            f"n_edges={int(self.n_edges.sum())}, cutoff={self.cutoff}, "
            f"max_neighbors={self.max_neighbors}, neighbor_rule={self.neighbor_rule!r}, "
            f"atom_features={self.atom_features.name!r})"
        )

    @classmethod
    def concatenate(cls, batches: Sequence[CrystalGraphs]) -> CrystalGraphs:
        """Join batches built with the same settings into one, in order."""
        if not batches:
            raise ValueError("cannot concatenate an empty list of CrystalGraphs")
        first = batches[0]
        names = ("cutoff", "max_neighbors", "atom_features", "neighbor_rule")
        for i, other in enumerate(batches):
            if other.settings != first.settings:
                theirs = ", ".join(f"{n}={v!r}" for n, v in zip(names, other.settings, strict=True))
                ours = ", ".join(f"{n}={v!r}" for n, v in zip(names, first.settings, strict=True))
                raise ValueError(f"CrystalGraphs #{i} was built with {theirs}, unlike #0 ({ours})")

        def joined_ptr(name: str) -> np.ndarray:
            lengths = [np.diff(getattr(b, name)) for b in batches]
            return _offsets(np.concatenate(lengths))

        return cls(
            node_ptr=joined_ptr("node_ptr"),
            edge_ptr=joined_ptr("edge_ptr"),
            species_ptr=joined_ptr("species_ptr"),
            **{
                name: np.concatenate([getattr(b, name) for b in batches])
                for name in cls._ARRAYS[3:]
            },
            atom_features=first.atom_features,
            cutoff=first.cutoff,
            max_neighbors=first.max_neighbors,
            neighbor_rule=first.neighbor_rule,
            symmetry=all(b.symmetry for b in batches),
        )

    # --- other graph rules and libraries -------------------------------------------------
    def nearest(self, max_neighbors: int | None = None) -> CrystalGraphs:
        """The graphs of the "nearest" rule with ``max_neighbors`` (default: the graphs'
        own) that these graphs contain: each atom's ``max_neighbors`` shortest edges.

        A "shell" graph (ALIGNN's) contains the "nearest" graph with the same settings
        exactly, edge for edge (see :func:`~skcrystal.graphs.neighbors.neighbor_shells`),
        so one build serves a model of either rule, such as an ALIGNN student distilled
        from a CGCNN-graph teacher.

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> from skcrystal import CrystalGraphTransformer
        >>> si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
        >>> shell = CrystalGraphTransformer(neighbor_rule="shell").transform([si])
        >>> nearest = CrystalGraphTransformer().transform([si])
        >>> int(shell.n_edges[0]), int(shell.nearest().n_edges[0]), int(nearest.n_edges[0])
        (128, 96, 96)
        """
        k = self.max_neighbors if max_neighbors is None else int(max_neighbors)
        if not 1 <= k <= self.max_neighbors:
            raise ValueError(
                f"max_neighbors must be in [1, {self.max_neighbors}] for graphs built with "
                f"max_neighbors={self.max_neighbors}, got {max_neighbors!r}"
            )
        crystal = np.repeat(np.arange(len(self)), self.n_edges)
        center = self.center.astype(np.int64) + self.node_ptr[crystal]
        first = np.searchsorted(center, center, side="left")
        keep = np.arange(len(center)) - first < k
        n_edges = np.bincount(crystal[keep], minlength=len(self))
        arrays = {name: getattr(self, name) for name in self._ARRAYS}
        for name in ("center", "neighbor", "distance", "vector"):
            arrays[name] = arrays[name][keep]
        arrays["edge_ptr"] = _offsets(n_edges)
        return CrystalGraphs(
            **arrays,
            atom_features=self.atom_features,
            cutoff=self.cutoff,
            max_neighbors=k,
            neighbor_rule="nearest",
            symmetry=self.symmetry,
        )

    def to_pyg(self, indices: Sequence[int] | np.ndarray | None = None):
        """The crystals as a torch-geometric ``Batch`` (see :mod:`skcrystal.graphs.pyg`)."""
        from skcrystal.graphs.pyg import to_pyg

        return to_pyg(self, indices)

    @classmethod
    def from_pyg(cls, data, **settings) -> CrystalGraphs:
        """Graphs from torch-geometric ``Data`` (:func:`skcrystal.graphs.pyg.from_pyg`)."""
        from skcrystal.graphs.pyg import from_pyg

        return from_pyg(data, **settings)

    # --- per-crystal views --------------------------------------------------------------
    @property
    def n_atoms(self) -> np.ndarray:
        """Number of sites of each crystal."""
        return np.diff(self.node_ptr)

    @property
    def n_edges(self) -> np.ndarray:
        """Number of directed edges of each crystal."""
        return np.diff(self.edge_ptr)

    @property
    def nbytes(self) -> int:
        """Memory held by the graph arrays, in bytes."""
        return sum(getattr(self, name).nbytes for name in self._ARRAYS)

    # --- mini-batches -------------------------------------------------------------------
    def node_features(self, nodes: np.ndarray) -> np.ndarray:
        """Atom feature vectors of the given global site indices.

        A disordered site gets the occupancy-weighted sum of its species' vectors.
        """
        start = self.species_ptr[nodes]
        count = self.species_ptr[nodes + 1] - start
        entries = _ranges(start, count)
        weighted = (
            self.atom_features.values[self.species_z[entries]]
            * self.species_occupancy[entries, None]
        )
        if len(entries) == len(nodes):
            return weighted
        return np.add.reduceat(weighted, _offsets(count)[:-1], axis=0)

    def composition(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Element fractions of the chosen crystals: column ``Z - 1`` is element ``Z``.

        Each species counts with its occupancy (a disordered site adds its elements in
        proportion); the fractions of a crystal sum to 1, vacancies not counted.

        Returns
        -------
        ndarray of float32, shape (len(indices), 118)

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> from skcrystal import CrystalGraphTransformer
        >>> fe2o3 = Structure(Lattice.cubic(5.0), ["Fe", "Fe", "O", "O", "O"],
        ...                   [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0],
        ...                    [0, 0, 0.5]])
        >>> fractions = CrystalGraphTransformer().transform([fe2o3]).composition([0])
        >>> fractions.shape, round(float(fractions[0, 25]), 2), round(float(fractions[0, 7]), 2)
        ((1, 118), 0.4, 0.6)
        """
        indices = np.asarray(indices, dtype=np.int64)
        n_atoms = self.n_atoms[indices]
        nodes = _ranges(self.node_ptr[indices], n_atoms)
        start = self.species_ptr[nodes]
        count = self.species_ptr[nodes + 1] - start
        entries = _ranges(start, count)
        crystal = np.repeat(np.repeat(np.arange(len(indices)), n_atoms), count)
        fractions = np.zeros((len(indices), COMPOSITION_WIDTH), dtype=np.float32)
        np.add.at(
            fractions,
            (crystal, self.species_z[entries].astype(np.int64) - 1),
            self.species_occupancy[entries],
        )
        total = fractions.sum(axis=1, keepdims=True)
        return fractions / np.where(total > 0, total, 1.0)

    def batch(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Merge the chosen crystals into one disconnected graph, as numpy arrays.

        Returns
        -------
        dict
            ``atom_features`` (n_atoms, n_features) float32; ``center`` and ``neighbor``
            (n_edges,) int64 row indices into ``atom_features``; ``distance`` (n_edges,)
            and ``vector`` (n_edges, 3) float32; ``crystal_index`` (n_atoms,) int64, the
            position in ``indices`` that each atom belongs to; ``n_atoms`` (len(indices),)
            int64; ``space_group`` (len(indices),) int64, 0 where unknown;
            ``composition`` (len(indices), 118) float32, the element fractions of
            :meth:`composition`.
        """
        indices = np.asarray(indices, dtype=np.int64)
        n_atoms = self.n_atoms[indices]
        n_edges = self.n_edges[indices]
        nodes = _ranges(self.node_ptr[indices], n_atoms)
        edges = _ranges(self.edge_ptr[indices], n_edges)
        shift = np.repeat(np.cumsum(n_atoms) - n_atoms, n_edges)
        return {
            "atom_features": self.node_features(nodes),
            "center": self.center[edges] + shift,
            "neighbor": self.neighbor[edges] + shift,
            "distance": self.distance[edges],
            "vector": self.vector[edges],
            "crystal_index": np.repeat(np.arange(len(indices)), n_atoms),
            "n_atoms": n_atoms.astype(np.int64),
            "space_group": self.space_group[indices].astype(np.int64),
            "composition": self.composition(indices),
        }
