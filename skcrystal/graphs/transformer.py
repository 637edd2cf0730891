"""``CrystalGraphTransformer``: crystal structures in, :class:`CrystalGraphs` out."""

from __future__ import annotations

import math
import numbers
import os
import warnings
from typing import Any, NamedTuple

import numpy as np
from joblib import Parallel, delayed, effective_n_jobs
from pymatgen.core import Element, IStructure, Structure
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from skcrystal.graphs.arrays import CrystalArrays, Packed, crystal_arrays, pack, unpack
from skcrystal.graphs.atom_features import AtomFeatureTable, get_atom_feature_table
from skcrystal.graphs.build import (
    NEIGHBOR_RULES,
    StructureWarning,
    crystal_graph,
    crystal_graph_from_arrays,
    describe,
)
from skcrystal.graphs.cache import GRAPH_CACHE, crystal_key, structure_key
from skcrystal.graphs.container import CrystalGraphs, GraphParts
from skcrystal.graphs.inputs import Reading, as_item_list, give_warnings, read_recorded
from skcrystal.graphs.symmetry import space_group_number

# Space group numbers already found in this process, by structure digest (a few bytes each).
SPACE_GROUP_CACHE: dict[bytes, int] = {}

#: Chunks of work sent to each worker: enough to share the work out evenly, few enough
#: that sending them costs little.
CHUNKS_PER_WORKER = 8

#: Fewer items than this are built in the calling process: starting or feeding workers
#: would cost more than it saves.
MIN_PARALLEL_ITEMS = 64


class GraphReport(NamedTuple):
    """What :meth:`CrystalGraphTransformer.transform_report` made of the items of ``X``.

    Every item is either in ``index`` or in ``errors``, never in both.
    """

    graphs: CrystalGraphs  # of the items that could be read and built, in input order
    index: np.ndarray  # (len(graphs),) int64: start + the position in X of each graph's item
    errors: list[tuple[int, str]]  # (start + position, message) of every other item, in order


class _Built(NamedTuple):
    """What became of one item of ``X``: built in a worker, or found in the cache."""

    parts: GraphParts | None = None  # its graph, None if it has none
    error: ValueError | None = None  # why it has none, naming the item
    unread: bool = False  # the error came while reading the item
    warnings: tuple | list = ()  # given while reading it, recorded (read_recorded)
    name: str | None = None  # "X[i] (formula)", where it was read by a worker
    space_group: int | None = None  # where it was read by a worker, with symmetry=True


def _try_graph(build, crystal, position: int, settings: tuple) -> _Built:
    try:
        return _Built(parts=build(crystal, position, *settings))
    except ValueError as err:  # the crystal's fault: reported, or raised by the caller
        return _Built(error=err)


def _build_item(position: int, item: Any, settings: tuple, symmetry: bool) -> _Built:
    """The graph of one item: a crystal's arrays, a Structure, or a file or text to read."""
    if isinstance(item, CrystalArrays):
        return _try_graph(crystal_graph_from_arrays, item, position, settings)
    if isinstance(item, (Structure, IStructure)):
        return _try_graph(crystal_graph, item, position, settings)
    structure, error, recorded = read_recorded(item, position)
    if structure is None:
        return _Built(error=error, unread=True, warnings=recorded)
    built = _try_graph(crystal_graph, structure, position, settings)
    found = symmetry and built.parts is not None
    return built._replace(
        warnings=recorded,
        name=describe(structure, position),
        space_group=space_group_number(structure) if found else None,
    )


class _Chunk(NamedTuple):
    """Items of ``X`` sent to a worker in one piece."""

    positions: list[int]  # start + i of each item: first the crystals, then the others
    crystals: Packed  # the CrystalArrays of structures held in memory, packed
    others: list  # structures whose species are not all elements, files and texts


def _chunk(tasks: list[tuple[int, Any]]) -> _Chunk:
    """``(position, item)`` pairs as a chunk, the crystals' arrays packed."""
    crystals = [(p, item) for p, item in tasks if isinstance(item, CrystalArrays)]
    others = [(p, item) for p, item in tasks if not isinstance(item, CrystalArrays)]
    return _Chunk(
        [p for p, _ in crystals + others],
        pack(CrystalArrays, [crystal for _, crystal in crystals]),
        [item for _, item in others],
    )


def _build_chunk(chunk: _Chunk, settings: tuple, symmetry: bool) -> tuple:
    """In a worker: the positions of a chunk's items, their graphs packed, and what
    became of each item (its graph left out)."""
    items = [*unpack(chunk.crystals), *chunk.others]
    built = [
        _build_item(position, item, settings, symmetry)
        for position, item in zip(chunk.positions, items, strict=True)
    ]
    parts = pack(GraphParts, [item.parts for item in built if item.parts is not None])
    return chunk.positions, parts, [item._replace(parts=None) for item in built]


def _unpacked(result: tuple) -> zip:
    """The position of each item of a :func:`_build_chunk` result, and what became of it."""
    positions, packed, built = result
    parts = iter(unpack(packed))
    built = [item if item.error is not None else item._replace(parts=next(parts)) for item in built]
    return zip(positions, built, strict=True)


def _space_group_chunk(structures: list[Structure]) -> list[int]:
    return [space_group_number(s) for s in structures]


def _split(tasks: list, n_jobs: int) -> list[list]:
    """``tasks`` in consecutive chunks, :data:`CHUNKS_PER_WORKER` for each worker."""
    if not tasks:
        return []
    pieces = np.array_split(np.arange(len(tasks)), min(len(tasks), CHUNKS_PER_WORKER * n_jobs))
    return [tasks[piece[0] : piece[-1] + 1] for piece in pieces]


def _in_memory(item: Any, position: int) -> Reading | None:
    """The structure of an item held in memory, read here so that its graph is cached;
    None for a file or text, which the workers read where they build its graph."""
    if isinstance(item, (Structure, IStructure)):
        return Reading(item, None, [])
    if isinstance(item, (str, os.PathLike)):
        return None
    return read_recorded(item, position)  # an ASE Atoms, or something that is no crystal


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
        Processes used to build graphs (joblib semantics: None means 1, -1 all cores),
        through whichever joblib backend is active (loky by default; dask or ray under
        ``joblib.parallel_config``). Workers receive each structure as plain arrays
        (lattice, coordinates, species), or read files and texts themselves, in chunks;
        errors and warnings are those of one process, in item order. Fewer than
        :data:`MIN_PARALLEL_ITEMS` items are built in the calling process. Speed-ups are
        measured in docs/benchmarks.md (speed_graphs).
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

    def _settings(self) -> tuple:
        """The arguments of :func:`~skcrystal.graphs.build.crystal_graph` after ``index``."""
        return (
            float(self.cutoff),
            int(self.max_neighbors),
            float(self.min_distance_ratio),
            bool(self.check_periodicity),
            self.neighbor_rule,
        )

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
            one CIF, ...), or when an element has no atom feature data: the first item
            that cannot be read, else the first whose graph cannot be built, else the
            first with such an element.

        Warns
        -----
        StructureWarning
            Naming the item, for pymatgen's notes on a CIF it reads, and for a neighbour
            graph that does not repeat in all three directions.
        """
        return self._report(X, 0, strict=True).graphs

    def transform_report(self, X: Any, start: int = 0) -> GraphReport:
        """Build the graphs of the crystals in ``X`` that can be, and say why not for the others.

        Where :meth:`transform` raises for the first bad item, this reports every item it
        could not read or build, or whose elements have no atom feature data, and builds
        the others. Errors in the parameters or in the shape of ``X`` still raise.

        Parameters
        ----------
        X : sequence of crystals
            As for :meth:`transform`.
        start : int, default=0
            Position of ``X[0]`` in a longer stream that ``X`` is a chunk of: items are
            named ``X[start + i]`` in messages and warnings, and numbered so in the report.

        Returns
        -------
        GraphReport
            ``graphs``: the graphs of the items that could be built, in input order (an
            empty :class:`CrystalGraphs` if none could); ``index``: ``start`` plus the
            position of each graph's item in ``X`` (int64); ``errors``: ``(start + i,
            message)`` for every other item, in order, each message what :meth:`transform`
            would raise for it.

        Warns
        -----
        StructureWarning
            As :meth:`transform`, for every item.

        Examples
        --------
        >>> from pymatgen.core import Lattice, Structure
        >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        >>> fe = Structure(Lattice.cubic(0.8), ["Fe"], [[0, 0, 0]])
        >>> report = CrystalGraphTransformer().transform_report([cscl, fe, 42], start=120)
        >>> len(report.graphs), report.index.tolist()
        (1, [120])
        >>> for position, message in report.errors:
        ...     print(position, message.split(",")[0])
        121 X[121] (Fe): site 0 (Fe) is 0.800 Å from its own image
        122 X[122]: expected a pymatgen Structure
        """
        if not isinstance(start, numbers.Integral) or start < 0:
            raise ValueError(f"start must be an int >= 0, got {start!r}")
        return self._report(X, int(start), strict=False)

    def _report(self, X: Any, start: int, strict: bool) -> GraphReport:
        """:meth:`transform_report`; with ``strict``, raise where :meth:`transform` does.

        The checks come in the order in which they were once made on all items at a time
        (reading, then building, then elements): ``strict`` raises the first error of the
        first stage that has one, and gives only the warnings that came before it.
        """
        table = self._check_params()
        items = as_item_list(X)
        built, structures = self._build_items(items, start)
        errors: list[tuple[int, ValueError]] = []
        for position, item in enumerate(built, start):
            give_warnings(item.warnings)
            if item.unread:
                if strict:
                    raise item.error
                errors.append((position, item.error))
        failed = [
            (position, item.error)
            for position, item in enumerate(built, start)
            if item.error is not None and not item.unread
        ]
        if strict and failed:
            raise failed[0][1]
        ok = [i for i, item in enumerate(built) if item.parts is not None]

        def name(i: int) -> str:  # worked out for messages only: it costs a formula
            return built[i].name or describe(structures[i], start + i)

        for i in ok:  # here, not in the workers: they do not forward warnings
            if built[i].parts.warning is not None:
                message = f"{name(i)}: {built[i].parts.warning}"
                warnings.warn(message, StructureWarning, stacklevel=3)
        graphs = CrystalGraphs.from_parts(
            [built[i].parts for i in ok],
            table,
            *self._settings()[:2],
            self.neighbor_rule,
            space_group=self._space_groups(built, structures, ok) if self.symmetry else None,
        )
        rows, z = _unknown_elements(graphs)
        unknown = [
            (start + ok[row], ValueError(_no_element_data(name(ok[row]), element, table)))
            for row, element in zip(rows.tolist(), z.tolist(), strict=True)
        ]
        if strict and unknown:
            raise unknown[0][1]
        if unknown:
            kept = np.setdiff1d(np.arange(len(graphs)), rows)
            graphs, ok = graphs[kept], [ok[row] for row in kept.tolist()]
        errors = sorted([*errors, *failed, *unknown], key=lambda error: error[0])
        index = np.asarray(ok, dtype=np.int64) + start
        return GraphReport(graphs, index, [(p, str(error)) for p, error in errors])

    def _build_items(self, items: list, start: int) -> tuple[list[_Built], list]:
        """What became of each item, and the structure of each one held in memory (None
        for a file or text, which the workers read).

        Structures are sent to the workers as their arrays, which pickle fast; files and
        texts as they are, for the workers to read; a structure whose species are not all
        plain elements as it is, so that messages name its ions as it does. Chunks are
        made as the workers ask for work, so that they build while this process makes
        the next.
        """
        settings = self._settings()
        key_settings = (*settings[:4], NEIGHBOR_RULES.index(self.neighbor_rule))
        readings = [_in_memory(item, start + i) for i, item in enumerate(items)]
        built: list[_Built | None] = [None] * len(items)
        keys: dict[int, bytes | None] = {}

        def task(i: int) -> tuple[int, Any] | None:
            """What to send a worker for item ``i``; None if its outcome is known here."""
            if readings[i] is None:  # a file or text: read where it is built, not cached
                return start + i, items[i]
            structure, error, recorded = readings[i]
            if structure is None:
                built[i] = _Built(error=error, unread=True, warnings=recorded)
                return None
            crystal = crystal_arrays(structure)
            if self.cache and crystal.elements_only:
                keys[i] = crystal_key(crystal, *key_settings)
            elif self.cache:
                keys[i] = structure_key(structure, *key_settings)
            cached = GRAPH_CACHE.get(keys[i]) if self.cache else None
            if cached is not None:
                built[i] = _Built(parts=cached, warnings=recorded)
                return None
            return start + i, crystal if crystal.elements_only else structure

        def chunks():  # consumed by joblib as the workers ask for work
            for piece in _split(range(len(items)), n_jobs):
                tasks = [t for t in map(task, piece) if t is not None]
                if tasks:
                    yield _chunk(tasks)

        n_jobs = self._n_jobs(len(items))
        args = (settings, self.symmetry)
        with tqdm(total=len(items), disable=not self.verbose, desc="crystal graphs") as bar:
            done = []
            for result in self._in_chunks(_build_chunk, chunks(), n_jobs, *args):
                done.append(result)
                bar.update(len(result[0]))
        for result in done:  # all chunks made: the cache is this thread's again
            for position, item in _unpacked(result):
                i = position - start
                if readings[i] is not None:  # in memory: the warnings given reading it here
                    item = item._replace(warnings=readings[i].warnings)
                if keys.get(i) is not None and item.parts is not None:
                    GRAPH_CACHE.put(keys[i], item.parts)
                built[i] = item
        return built, [None if reading is None else reading.structure for reading in readings]

    def _space_groups(self, built: list[_Built], structures: list, ok: list[int]) -> np.ndarray:
        """Space group of each item in ``ok``: found by the worker that read it, or here."""
        in_memory = [i for i in ok if structures[i] is not None]
        keys = [structure_key(structures[i]) for i in in_memory] if self.cache else []
        numbers = [SPACE_GROUP_CACHE.get(k) for k in keys] or [None] * len(in_memory)
        missing = [structures[i] for i, n in zip(in_memory, numbers, strict=True) if n is None]
        n_jobs = self._n_jobs(len(missing))
        chunks = _split(missing, n_jobs)
        done = self._in_chunks(_space_group_chunk, chunks, n_jobs)
        progress = tqdm(done, total=len(chunks), disable=not self.verbose, desc="space groups")
        found = (number for chunk in progress for number in chunk)
        for j, number in enumerate(numbers):
            if number is None:
                numbers[j] = next(found)
                if self.cache:
                    SPACE_GROUP_CACHE[keys[j]] = numbers[j]
        of_item = dict(zip(in_memory, numbers, strict=True))
        return np.asarray([of_item.get(i, built[i].space_group) for i in ok], dtype=np.int16)

    def _n_jobs(self, n_tasks: int) -> int:
        """Processes to share ``n_tasks`` items among: 1, this one, for few items."""
        return 1 if n_tasks < MIN_PARALLEL_ITEMS else effective_n_jobs(self.n_jobs)

    def _in_chunks(self, work, chunks, n_jobs: int, *args):
        """``work(chunk, *args)`` for each chunk, in joblib workers if ``n_jobs`` > 1: an
        iterator over the results, in order.

        ``Parallel`` is given ``n_jobs`` only, so that ``joblib.parallel_config`` picks the
        backend (loky processes, threads, dask, ...).
        """
        if n_jobs == 1:
            return (work(chunk, *args) for chunk in chunks)
        jobs = (delayed(work)(chunk, *args) for chunk in chunks)
        return Parallel(n_jobs=self.n_jobs, return_as="generator")(jobs)


def _unknown_elements(graphs: CrystalGraphs) -> tuple[np.ndarray, np.ndarray]:
    """The crystals with an element that has no data in their atom feature table, and the
    atomic number of the first such element of each."""
    table = graphs.atom_features
    z = graphs.species_z.astype(np.int64)
    known = np.zeros(len(z), dtype=bool)
    in_table = z < len(table.known)
    known[in_table] = table.known[z[in_table]]
    entries = np.flatnonzero(~known)
    sites = np.searchsorted(graphs.species_ptr, entries, side="right") - 1
    crystals = np.searchsorted(graphs.node_ptr, sites, side="right") - 1
    rows, first = np.unique(crystals, return_index=True)
    return rows, z[entries[first]]


def _no_element_data(name: str, z: int, table: AtomFeatureTable) -> str:
    return (
        f"{name}: element {Element.from_Z(z).symbol} has no data in the atom feature "
        f"table {table.name!r}; remove the structure or use another atom_features table"
    )
