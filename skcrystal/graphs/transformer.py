"""``CrystalGraphTransformer``: crystal structures in, :class:`CrystalGraphs` out."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from skcrystal.graphs.atom_features import AtomFeatureTable, get_atom_feature_table
from skcrystal.graphs.build import NEIGHBOR_RULES, StructureWarning, crystal_graph, describe
from skcrystal.graphs.cache import GRAPH_CACHE, structure_key
from skcrystal.graphs.container import CrystalGraphs, GraphParts
from skcrystal.graphs.inputs import as_item_list, to_structure
from skcrystal.graphs.symmetry import space_group_number

# Space group numbers already found in this process, by structure digest (a few bytes each).
SPACE_GROUP_CACHE: dict[bytes, int] = {}


def _build_chunk(items: list[tuple[int, Any]], *settings) -> list[GraphParts]:
    return [crystal_graph(s, i, *settings) for i, s in items]


def _space_group_chunk(items: list[tuple[int, Any]]) -> list[int]:
    return [space_group_number(s) for _, s in items]


class GraphsOutput(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """What the transformers that make :class:`CrystalGraphs` share: they need no fit, take
    a sequence rather than a 2-D array, and keep their output under ``set_output``."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.two_d_array = False
        return tags

    def set_output(self, *, transform: str | None = None) -> GraphsOutput:
        """Accept scikit-learn's output configuration, which does not apply here.

        The output is a :class:`CrystalGraphs`, not a table, so it stays one whatever
        ``transform`` asks for; this method exists so that
        ``Pipeline(...).set_output(transform="pandas")`` works with the transformer in it.

        Returns
        -------
        self
        """
        return self


class CrystalGraphTransformer(GraphsOutput):
    """Build crystal graphs: every atom linked to its nearest neighbours within a cutoff.

    The graph of a crystal has one node per site, described by the atom feature vector
    of its element (occupancy-weighted for disordered sites), and directed edges from each
    atom to at most ``max_neighbors`` nearest atoms (periodic images included) within
    ``cutoff``; each edge carries its length. This is the graph of CGCNN (Xie & Grossman,
    2018), CrysXPP and CrysGNN, except that atoms with fewer neighbours in range keep only
    the ones they have instead of being padded with fake edges.

    The transformer learns nothing from data (``fit`` only checks parameters), so
    ``transform`` may be called without ``fit``.

    Every structure is checked before its graph is built (docs/structures.md has the
    details and the measurements behind the defaults):

    * Two atoms closer than ``min_distance_ratio`` (0.5) times the sum of their covalent
      radii are refused with a ``ValueError`` naming the item, the two sites and their
      distance: atoms on top of each other, 0.08 Å apart, or one Fe atom in a 0.8 Å cell
      are not crystals. Real bonds are longer: the shortest found in 3,000 Materials
      Project crystals is 0.65 times the radii's sum. Two partially occupied sites whose
      occupancies add up to at most 1.2 (split sites of a disordered crystal, never
      occupied at once) are exempt.
    * A structure whose neighbour graph does not repeat in all three directions, such
      as a molecule in a box, a slab with vacuum or a chain, gets a
      :class:`~skcrystal.graphs.build.StructureWarning` naming the item: no pair of
      atoms within ``cutoff`` crosses its vacuum, so it is not a bulk crystal. The
      warning is given again when the graph comes from the cache, and with ``n_jobs``.
    * CIF files and CIF text are read with pymatgen's notes on them passed on as a
      ``StructureWarning`` naming the item (implicit hydrogens, missing symmetry
      operations, occupancies above 1, ...); only harmless notes such as rounded
      fractional coordinates stay quiet (:data:`~skcrystal.graphs.inputs.QUIET_NOTES`).
      A CIF with several structures (data blocks) is refused: split it into one file
      per structure.

    The output is a :class:`CrystalGraphs`, not a table: ``set_output`` (as
    ``Pipeline(...).set_output(transform="pandas")`` calls it) is accepted and leaves
    it unchanged.

    Parameters
    ----------
    cutoff : float, default=8.0
        Neighbour search radius in Å.
    max_neighbors : int, default=12
        Number of nearest neighbours each atom links to (fewer where fewer are within
        ``cutoff``; with ``neighbor_rule="shell"``, the whole shell of the last one).
    atom_features : {"cgcnn", "cgcnn-authors"}, AtomFeatureTable or path, default="cgcnn"
        Element feature table: the 92-dimensional one-hot encoding of nine element
        properties used by CGCNN and CrysXPP, rebuilt from element data ("cgcnn") or the
        authors' own ``atom_init.json`` ("cgcnn-authors", for parity with published
        CGCNN-family weights); see :mod:`skcrystal.graphs.atom_features` and
        docs/atom_features.md for how they differ and why "cgcnn" is the default. A path
        reads a CGCNN ``atom_init.json``.
    neighbor_rule : {"nearest", "shell", "radius"}, default="nearest"
        "nearest": each atom links to its ``max_neighbors`` nearest atoms (CGCNN's graph;
        ties at the last distance broken in pymatgen's order, so the graph is directed:
        ``i`` may link to ``j`` and not ``j`` to ``i``). "shell": ALIGNN's graph (Choudhary
        & DeCost 2021): each atom links to every atom out to the distance of its
        ``max_neighbors``-th nearest (the whole shell, ties included, within
        :data:`~skcrystal.graphs.neighbors.SHELL_TOLERANCE`), and every link is made
        mutual. On MP crystals it has about 14 edges per atom for 12 (docs/models.md).
        A "shell" graph contains the "nearest" one (:meth:`CrystalGraphs.nearest`).
        Unlike ALIGNN's code, the cutoff is not raised for atoms with fewer neighbours,
        and a bond to an atom's own image is not doubled. "radius": each atom links to
        every atom within ``cutoff``, however many (MEGNet's graph, symmetric by
        construction); ``max_neighbors`` is not used.
    n_jobs : int, default=None
        Processes used to build graphs (joblib semantics: None means 1, -1 all cores).
        Sending pymatgen Structures to worker processes costs more than building their
        graphs (docs/benchmarks.md, speed_graphs), so for structures already in memory
        the default single process is the fastest today.
    cache : bool, default=True
        Reuse graphs already built in this process for identical structures and
        neighbour settings (bounded to 512 MB), so that cross-validation and grid search
        do not rebuild them for every candidate.
    symmetry : bool, default=False
        Also find each crystal's space group (spglib through pymatgen, tolerance
        :data:`~skcrystal.graphs.symmetry.SYMPREC`), stored as ``graphs.space_group`` and
        cached with the graph; CrysGNN pretraining needs it. Crystals whose symmetry
        cannot be determined get 0 (see :mod:`skcrystal.graphs.symmetry`).
    min_distance_ratio : float, default=0.5
        Refuse two atoms closer than this times the sum of their covalent radii
        (:data:`~skcrystal.graphs.build.COVALENT_RADIUS`). 0 turns the check off.
    check_periodicity : bool, default=True
        Warn (:class:`~skcrystal.graphs.build.StructureWarning`) for a structure whose
        neighbour graph does not repeat in all three directions. False turns it off.
    verbose : bool, default=False
        Show a progress bar.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> graphs = CrystalGraphTransformer(cutoff=5.0).fit_transform([cscl])
    >>> graphs
    CrystalGraphs(n_crystals=1, n_atoms=2, n_edges=24, cutoff=5.0, max_neighbors=12, \
neighbor_rule='nearest', atom_features='cgcnn')

    A CO molecule in a 15 Å box is not a crystal:

    >>> import warnings
    >>> co = Structure(Lattice.cubic(15.0), ["C", "O"], [[0, 0, 0], [0.075, 0, 0]])
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = CrystalGraphTransformer().transform([cscl, co])
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    X[1] (CO): its neighbour graph does not repeat in all three directions: the 2 \
site(s) linked to site 0 (C) form a molecule or cluster, repeating in 0 direction(s) \
only, ...
    """

    def __init__(
        self,
        cutoff: float = 8.0,
        max_neighbors: int = 12,
        atom_features: str | AtomFeatureTable = "cgcnn",
        neighbor_rule: str = "nearest",
        n_jobs: int | None = None,
        cache: bool = True,
        symmetry: bool = False,
        min_distance_ratio: float = 0.5,
        check_periodicity: bool = True,
        verbose: bool = False,
    ) -> None:
        self.cutoff = cutoff
        self.max_neighbors = max_neighbors
        self.neighbor_rule = neighbor_rule
        self.atom_features = atom_features
        self.n_jobs = n_jobs
        self.cache = cache
        self.symmetry = symmetry
        self.min_distance_ratio = min_distance_ratio
        self.check_periodicity = check_periodicity
        self.verbose = verbose

    def _check_params(self) -> AtomFeatureTable:
        if not isinstance(self.cutoff, numbers.Real) or not self.cutoff > 0:
            raise ValueError(f"cutoff must be a positive number of Å, got {self.cutoff!r}")
        if not isinstance(self.max_neighbors, numbers.Integral) or self.max_neighbors < 1:
            raise ValueError(f"max_neighbors must be a positive int, got {self.max_neighbors!r}")
        if self.neighbor_rule not in NEIGHBOR_RULES:
            raise ValueError(
                f"neighbor_rule must be one of {NEIGHBOR_RULES}, got {self.neighbor_rule!r}"
            )
        ratio = self.min_distance_ratio
        if not isinstance(ratio, numbers.Real) or not (math.isfinite(ratio) and ratio >= 0):
            raise ValueError(f"min_distance_ratio must be a number >= 0, got {ratio!r}")
        if not isinstance(self.check_periodicity, (bool, np.bool_)):
            raise ValueError(
                f"check_periodicity must be True or False, got {self.check_periodicity!r}"
            )
        return get_atom_feature_table(self.atom_features)

    def fit(self, X: Any = None, y: Any = None) -> CrystalGraphTransformer:
        """Check the parameters; nothing is learned from ``X``."""
        self.atom_feature_table_ = self._check_params()
        return self

    def transform(self, X: Any) -> CrystalGraphs:
        """Build the graphs of the crystals in ``X``.

        Parameters
        ----------
        X : sequence of crystals
            List, tuple, 1-D object array or pandas Series of pymatgen Structures, ASE
            Atoms, paths to structure files (CIF, POSCAR, ... as pymatgen reads them), or
            the text of a CIF or POSCAR file.

        Returns
        -------
        CrystalGraphs

        Raises
        ------
        ValueError
            Naming the item (``X[i]``) and the reason when a crystal cannot be read or
            turned into a graph (atoms too close, a dummy species, several structures in
            one CIF, ...), or when an element has no atom feature data.

        Warns
        -----
        StructureWarning
            Naming the item, for pymatgen's notes on a CIF it reads, and for a neighbour
            graph that does not repeat in all three directions.
        """
        table = self._check_params()
        settings = (
            float(self.cutoff),
            int(self.max_neighbors),
            float(self.min_distance_ratio),
            bool(self.check_periodicity),
            self.neighbor_rule,
        )
        key_settings = (*settings[:4], NEIGHBOR_RULES.index(self.neighbor_rule))
        items = as_item_list(X)
        structures = [to_structure(item, i) for i, item in enumerate(items)]
        keys = [structure_key(s, *key_settings) for s in structures] if self.cache else []
        parts: list[GraphParts | None] = [GRAPH_CACHE.get(k) for k in keys] or [None] * len(items)
        missing = [i for i, p in enumerate(parts) if p is None]
        for i, built in zip(missing, self._build(structures, missing, settings), strict=True):
            parts[i] = built
            if self.cache:
                GRAPH_CACHE.put(keys[i], built)
        for i, p in enumerate(parts):  # here, not in the workers: they do not forward warnings
            if p.warning is not None:
                message = f"{describe(structures[i], i)}: {p.warning}"
                warnings.warn(message, StructureWarning, stacklevel=2)
        space_group = self._space_groups(structures) if self.symmetry else None
        graphs = CrystalGraphs.from_parts(
            parts, table, *settings[:2], self.neighbor_rule, space_group=space_group
        )
        _check_elements(graphs, structures)
        return graphs

    def _space_groups(self, structures: list) -> np.ndarray:
        keys = [structure_key(s) for s in structures] if self.cache else []
        numbers = [SPACE_GROUP_CACHE.get(k) for k in keys] or [None] * len(structures)
        missing = [i for i, n in enumerate(numbers) if n is None]
        found = self._in_chunks(_space_group_chunk, structures, missing, "space groups")
        for i, number in zip(missing, found, strict=True):
            numbers[i] = number
            if self.cache:
                SPACE_GROUP_CACHE[keys[i]] = number
        return np.asarray(numbers, dtype=np.int16)

    def _in_chunks(self, work, structures, indices, desc: str, *args) -> list:
        """``work(items, *args)`` over ``(i, structures[i])`` for ``indices``, in joblib chunks."""
        n_jobs = 1 if self.n_jobs is None else self.n_jobs
        if n_jobs == 1 or len(indices) < 64:
            progress = tqdm(indices, disable=not self.verbose, desc=desc)
            return work([(i, structures[i]) for i in progress], *args)
        n_chunks = 8 * Parallel(n_jobs=n_jobs)._effective_n_jobs()
        chunks = [c.tolist() for c in np.array_split(np.asarray(indices), n_chunks) if len(c)]
        jobs = (delayed(work)([(i, structures[i]) for i in chunk], *args) for chunk in chunks)
        results = Parallel(n_jobs=n_jobs, return_as="generator")(jobs)
        progress = tqdm(results, total=len(chunks), disable=not self.verbose, desc=desc)
        return [p for chunk in progress for p in chunk]

    def _build(self, structures, indices, settings) -> list[GraphParts]:
        return self._in_chunks(_build_chunk, structures, indices, "crystal graphs", *settings)


def _check_elements(graphs: CrystalGraphs, structures: list) -> None:
    """Refuse elements absent from the atom feature table, naming the first crystal."""
    table = graphs.atom_features
    z = graphs.species_z.astype(np.int64)
    known = np.zeros(len(z), dtype=bool)
    in_table = z < len(table.known)
    known[in_table] = table.known[z[in_table]]
    if known.all():
        return
    entry = int(np.flatnonzero(~known)[0])
    site = int(np.searchsorted(graphs.species_ptr, entry, side="right") - 1)
    crystal = int(np.searchsorted(graphs.node_ptr, site, side="right") - 1)
    from pymatgen.core import Element

    symbol = Element.from_Z(int(z[entry])).symbol
    formula = structures[crystal].composition.reduced_formula
    raise ValueError(
        f"X[{crystal}] ({formula}): element {symbol} has no data in the atom feature "
        f"table {table.name!r}; remove the structure or use another atom_features table"
    )
