"""``GraphStore``: crystal graphs on disk, built in chunks and read without loading them whole.

A store is a folder. ``store.json`` holds the graph settings, the atom feature table's
names and, for each chunk, its size, the checksums of its files and what it was built
from; every chunk is a sub-folder holding the arrays of one :class:`CrystalGraphs`
(plus each crystal's position in the input) as numpy ``.npy`` files::

    mp.graphs/
        store.json
        atom_features.values.npy   atom_features.known.npy
        chunk-000000/  node_ptr.npy edge_ptr.npy ... vector.npy index.npy
        chunk-000001/  ...

Why ``.npy`` files: numpy memory-maps them itself (``np.load(mmap_mode="r")``), so a
mini-batch reads only the pages of its crystals, with no extra dependency; the format is
numpy's own, stable since 2007 and readable without skcrystal; one array per file makes
the per-chunk checksum a plain sha256 of files. zarr would add a dependency whose format
changed (v2 to v3) in 2024, and LMDB is a key-value store for one record per item, where
these graphs are a few long arrays per chunk.

How a store stays consistent: a chunk is written into a temporary folder, renamed when
complete, and only then added to ``store.json``, which is replaced atomically; so the
manifest never names a partial chunk, a reader (:meth:`GraphStore.open`) sees the chunks
finished when it opened the store, and an interrupted build resumes after the last
finished chunk. Chunk files are never changed after they are written; their sha256 is
checked the first time a process reads the chunk, and a mismatch is an error naming the
chunk and the file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import IStructure, Structure
from sklearn.base import clone

from skcrystal.graphs.atom_features import AtomFeatureTable
from skcrystal.graphs.cache import structure_key
from skcrystal.graphs.container import CrystalGraphs
from skcrystal.graphs.inputs import to_structure
from skcrystal.graphs.transformer import CrystalGraphTransformer

FORMAT = "skcrystal-graph-store"
VERSION = 1
MANIFEST = "store.json"

#: The transformer parameters a store's graphs depend on; a store built with other values
#: cannot be extended or resumed with this transformer.
GRAPH_PARAMS = (
    "cutoff",
    "max_neighbors",
    "neighbor_rule",
    "symmetry",
    "min_distance_ratio",
    "check_periodicity",
)

#: Arrays of a chunk: those of a :class:`CrystalGraphs`, and ``index``, the position of
#: each crystal in the structures the store was built from.
CHUNK_ARRAYS = (*CrystalGraphs._ARRAYS, "index")

#: Arrays of the atom feature table, beside the manifest.
TABLE_ARRAYS = ("values", "known")

#: Per-crystal arrays, read when a store is opened (a few bytes per crystal); the per-atom
#: and per-edge arrays are memory-mapped chunk by chunk when a batch needs them.
_CRYSTAL_ARRAYS = ("node_ptr", "edge_ptr", "space_group", "index")

#: Chunks kept memory-mapped at once; reading another one closes the least recently used,
#: so that streaming through a large store keeps a bounded number of pages mapped.
OPEN_CHUNKS = 4


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fingerprint(item: Any, position: int) -> str:
    """What identifies an input item when a build resumes: a path, or a content digest."""
    if isinstance(item, os.PathLike):
        return "path:" + os.fspath(item)
    if isinstance(item, str):  # a path, or the text of a file: short either way
        return "str:" + hashlib.blake2b(item.encode(), digest_size=16).hexdigest()
    try:
        structure = item if isinstance(item, (Structure, IStructure)) else to_structure(item, 0)
    except ValueError:
        return f"unreadable:{type(item).__name__}:{position}"
    return "structure:" + structure_key(structure).hex()


def _write_json(path: Path, content: dict) -> None:
    """Replace ``path`` by ``content`` atomically: readers see the old or the new file."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "w") as f:
        json.dump(content, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _graph_params(transformer: CrystalGraphTransformer) -> dict[str, Any]:
    """The transformer's :data:`GRAPH_PARAMS`, as JSON values."""
    params = transformer.get_params()
    kinds = (float, int, str, bool, float, bool)
    return {name: kind(params[name]) for name, kind in zip(GRAPH_PARAMS, kinds, strict=True)}


class _WriteLock:
    """An exclusive lock on a store's folder, released when the writing process ends."""

    def __init__(self, folder: Path) -> None:
        self.file = open(folder / ".lock", "w")  # held until release()
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one writer is the user's duty
            return
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise RuntimeError(
                f"another process is writing the graph store {folder}; wait for it to finish"
            ) from None

    def release(self) -> None:
        self.file.close()


class GraphStore:
    """Crystal graphs on disk: built in chunks from a stream, read like :class:`CrystalGraphs`.

    Make one with :meth:`create` (streams the structures, resumes an interrupted build) and
    read it with :meth:`open`. A store behaves like a read-only :class:`CrystalGraphs`:
    ``len(store)``, ``store[i]``, ``store[2:5]``, ``store[[0, 3]]`` and ``store[mask]``
    return an in-memory :class:`CrystalGraphs` of those crystals, and :meth:`batch` gives
    a mini-batch, reading only the pages of its crystals from memory-mapped chunk files. So
    every skcrystal estimator accepts a store wherever it accepts ``CrystalGraphs``
    (``fit``, ``predict``, ``score``, pretraining), and trains or predicts from disk with
    bounded memory. It pickles as its path: the files must stay where they are.

    Parameters
    ----------
    path : str or os.PathLike
        The store's folder. Use :meth:`open` rather than the constructor.

    Attributes
    ----------
    path : pathlib.Path
    atom_features : AtomFeatureTable
    cutoff, max_neighbors, neighbor_rule, symmetry
        The graph settings, as in :class:`CrystalGraphs`.
    index : ndarray of int64, shape (n_crystals,)
        Position of each stored crystal in the structures the store was built from.
    errors : list of (int, str)
        Items that were refused when the store was built with ``errors="report"``: their
        position in the input and why.
    complete : bool
        False while a build is under way or after it was interrupted.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from pymatgen.core import Lattice, Structure
    >>> from skcrystal import CrystalGraphTransformer
    >>> crystals = [Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
    ...             for a in (3.9, 4.0, 4.1, 4.2, 4.3)]
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "cscl.graphs"
    >>> store = GraphStore.create(path, CrystalGraphTransformer(), iter(crystals), chunk_size=2)
    >>> store
    GraphStore('cscl.graphs', n_crystals=5, n_chunks=3, cutoff=8.0, max_neighbors=12, \
neighbor_rule='nearest', atom_features='cgcnn', complete=True)
    >>> store[1:3]
    CrystalGraphs(n_crystals=2, n_atoms=4, n_edges=48, cutoff=8.0, max_neighbors=12, \
neighbor_rule='nearest', atom_features='cgcnn')
    >>> same = GraphStore.open(path)
    >>> bool((same[[4, 0]].distance == CrystalGraphTransformer().transform(
    ...     [crystals[4], crystals[0]]).distance).all())
    True
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{self.path} is not a graph store (no {MANIFEST} in it)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(
                f"{manifest_path} is not a version-{VERSION} skcrystal graph store "
                f"(format {manifest.get('format')!r}, version {manifest.get('version')!r})"
            )
        self._manifest = manifest
        self._params = manifest["graph_params"]
        table = {name: np.load(self.path / f"atom_features.{name}.npy") for name in TABLE_ARRAYS}
        self.atom_features = AtomFeatureTable.from_state(table, manifest["atom_features"])
        self.cutoff = float(self._params["cutoff"])
        self.max_neighbors = int(self._params["max_neighbors"])
        self.neighbor_rule = str(self._params["neighbor_rule"])
        self.symmetry = bool(self._params["symmetry"])
        self.complete = bool(manifest["complete"])
        self.errors = [
            (int(position), str(message))
            for chunk in manifest["chunks"]
            for position, message in chunk["errors"]
        ]
        self._chunks: OrderedDict[int, CrystalGraphs] = OrderedDict()
        self._verified: set[int] = set()
        self._species: dict[str, np.ndarray] = {}
        per_crystal = [self._crystal_arrays(k) for k in range(self.n_chunks)]
        self._starts = np.zeros(self.n_chunks + 1, dtype=np.int64)
        np.cumsum([len(arrays["index"]) for arrays in per_crystal], out=self._starts[1:])

        def joined(name: str, dtype: type) -> np.ndarray:
            return np.concatenate([a[name] for a in per_crystal] or [np.zeros(0, dtype)])

        n_atoms = joined("n_atoms", np.int64)
        self.node_ptr = np.zeros(len(n_atoms) + 1, dtype=np.int64)
        np.cumsum(n_atoms, out=self.node_ptr[1:])
        self.n_atoms = n_atoms
        self.n_edges = joined("n_edges", np.int64)
        self.space_group = joined("space_group", np.int16)
        self.index = joined("index", np.int64)

    # --- making a store ---------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> GraphStore:
        """Open the store at ``path`` for reading: the chunks finished by now."""
        return cls(path)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        transformer: CrystalGraphTransformer,
        structures: Iterable,
        *,
        chunk_size: int = 10_000,
        errors: str = "raise",
    ) -> GraphStore:
        """Build the graphs of ``structures`` into a new store at ``path``, chunk by chunk.

        ``structures`` is read once, lazily (a generator of Structures, a list of CIF
        paths, ...), ``chunk_size`` items at a time, so memory holds one chunk's structures
        and graphs, whatever the total. ``transformer.transform_report`` builds each chunk
        (with the transformer's ``n_jobs``).

        If ``path`` holds a store whose build was interrupted, and ``transformer`` builds
        graphs with the same settings, the build resumes: the items already stored are
        skipped (read, not built) and the last of them is checked to be the one the store
        recorded (the same path, text or structure), so resume with the same structures
        in the same order.

        Parameters
        ----------
        path : str or os.PathLike
            A folder that does not exist yet (or an interrupted store).
        transformer : CrystalGraphTransformer
            Its graph settings are stored with the graphs; ``n_jobs`` and ``verbose`` are
            used for the build.
        structures : iterable of crystals
            Anything ``CrystalGraphTransformer.transform`` accepts, item by item.
        chunk_size : int, default=10_000
            Items per chunk: the unit of writing, resuming and checksumming.
        errors : {"raise", "report"}, default="raise"
            "raise": a crystal that cannot be read or turned into a graph stops the build
            with its ``ValueError`` (naming the item by its position in ``structures``);
            the chunks before it are kept, so a resumed build starts at its chunk.
            "report": it is left out and listed in :attr:`errors` with the reason; every
            other crystal is stored.

        Returns
        -------
        GraphStore
            The finished store, open for reading.

        Raises
        ------
        FileExistsError
            If ``path`` exists and is not an interrupted store (a finished store can be
            extended with :meth:`append`).
        ValueError
            If an interrupted store's settings differ from ``transformer``'s, or the
            structures are not the ones it was built from.
        """
        if not isinstance(transformer, CrystalGraphTransformer):
            raise TypeError(
                f"transformer must be a CrystalGraphTransformer, got {type(transformer).__name__}"
            )
        folder = Path(path)
        if (folder / MANIFEST).is_file():
            store = cls(folder)
            if store.complete:
                raise FileExistsError(
                    f"{folder} is a finished graph store; add crystals with "
                    "GraphStore.open(path).append(structures), or choose a new path"
                )
            store._check_transformer(transformer)
            return store._extend(transformer, structures, chunk_size, errors, resume=True)
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} exists and is not a graph store; choose a new path")
        folder.mkdir(parents=True, exist_ok=True)
        table_arrays, table_info = transformer._check_params().to_state()
        for name, array in table_arrays.items():
            np.save(folder / f"atom_features.{name}.npy", array)
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "graph_params": _graph_params(transformer),
            "atom_features": table_info,
            "n_items": 0,
            "complete": False,
            "chunks": [],
        }
        _write_json(folder / MANIFEST, manifest)
        return cls(folder)._extend(transformer, structures, chunk_size, errors, resume=False)

    def append(
        self,
        structures: Iterable,
        *,
        chunk_size: int = 10_000,
        errors: str = "raise",
        n_jobs: int | None = None,
    ) -> GraphStore:
        """Add the graphs of more structures, built with the store's own settings.

        Their positions (:attr:`index`, messages) continue after the items stored so far.
        Returns the store reopened with the new chunks.
        """
        transformer = self.transformer.set_params(n_jobs=n_jobs)
        return self._extend(transformer, structures, chunk_size, errors, resume=False)

    @property
    def transformer(self) -> CrystalGraphTransformer:
        """A transformer that builds graphs exactly as this store's were built."""
        return CrystalGraphTransformer(atom_features=self.atom_features, **self._params)

    def _check_transformer(self, transformer: CrystalGraphTransformer) -> None:
        ours = self._params
        theirs = _graph_params(transformer)
        different = [f"{n}={theirs[n]!r} (store: {v!r})" for n, v in ours.items() if v != theirs[n]]
        table = transformer._check_params()
        if table.to_state()[1] != self._manifest["atom_features"] or not np.array_equal(
            table.values, self.atom_features.values
        ):
            different.append(f"atom_features={table.name!r} (store: {self.atom_features.name!r})")
        if different:
            raise ValueError(
                f"the graph store {self.path} was built with other settings: "
                f"{', '.join(different)}; resume with the transformer that started it"
            )

    def _extend(
        self,
        transformer: CrystalGraphTransformer,
        structures: Iterable,
        chunk_size: int,
        errors: str,
        resume: bool,
    ) -> GraphStore:
        if errors not in ("raise", "report"):
            raise ValueError(f"errors must be 'raise' or 'report', got {errors!r}")
        if int(chunk_size) != chunk_size or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        transformer = clone(transformer).set_params(cache=False)  # one pass: nothing to reuse
        lock = _WriteLock(self.path)
        try:
            manifest = json.loads((self.path / MANIFEST).read_text())
            self._remove_unfinished(manifest)
            items = iter(structures)
            start = manifest["n_items"]
            if resume:
                self._skip_stored(items, manifest)
            manifest["complete"] = False
            _write_json(self.path / MANIFEST, manifest)
            while chunk := list(itertools.islice(items, int(chunk_size))):
                report = transformer.transform_report(chunk, start=start)
                if report.errors and errors == "raise":
                    raise ValueError(report.errors[0][1])
                manifest["chunks"].append(self._write_chunk(len(manifest["chunks"]), report))
                manifest["chunks"][-1]["last_item"] = _fingerprint(chunk[-1], start + len(chunk))
                start += len(chunk)
                manifest["n_items"] = start
                _write_json(self.path / MANIFEST, manifest)
            manifest["complete"] = True
            _write_json(self.path / MANIFEST, manifest)
        finally:
            lock.release()
        return type(self)(self.path)

    def _remove_unfinished(self, manifest: dict) -> None:
        """Delete chunk folders that the manifest does not list (an interrupted write)."""
        listed = {chunk["name"] for chunk in manifest["chunks"]}
        for entry in self.path.glob("chunk-*"):
            if entry.name not in listed:
                shutil.rmtree(entry)

    def _skip_stored(self, items: Iterator, manifest: dict) -> None:
        """Read past the items already stored, checking that the last one is the same."""
        n_items = manifest["n_items"]
        skipped, last = 0, None
        for item in itertools.islice(items, n_items):
            skipped, last = skipped + 1, item
        if skipped < n_items:
            raise ValueError(
                f"the graph store {self.path} already holds {n_items} items, but the "
                f"structures given have {skipped}; resume with the structures that started it"
            )
        if n_items and _fingerprint(last, n_items) != manifest["chunks"][-1]["last_item"]:
            raise ValueError(
                f"X[{n_items - 1}] is not the item the graph store {self.path} stored at that "
                "position; resume with the same structures in the same order"
            )

    def _write_chunk(self, number: int, report: Any) -> dict:
        name = f"chunk-{number:06d}"
        temporary = self.path / f"{name}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        graphs = report.graphs
        arrays = {array: getattr(graphs, array) for array in CrystalGraphs._ARRAYS}
        arrays["index"] = np.asarray(report.index, dtype=np.int64)
        checksums = {}
        for array, values in arrays.items():
            np.save(temporary / f"{array}.npy", values)
            checksums[array] = _sha256(temporary / f"{array}.npy")
        os.replace(temporary, self.path / name)
        return {
            "name": name,
            "n_crystals": len(graphs),
            "sha256": checksums,
            "errors": [[int(position), message] for position, message in report.errors],
        }

    # --- reading chunks -----------------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        """Number of finished chunks."""
        return len(self._manifest["chunks"])

    def _chunk_file(self, k: int, array: str) -> Path:
        return self.path / self._manifest["chunks"][k]["name"] / f"{array}.npy"

    def _verify(self, k: int, arrays: Iterable[str]) -> None:
        chunk = self._manifest["chunks"][k]
        for array in arrays:
            path = self._chunk_file(k, array)
            if not path.is_file():
                raise ValueError(
                    f"graph store {self.path}: chunk {chunk['name']} is damaged: {path.name} is "
                    "missing; rebuild the store"
                )
            if _sha256(path) != chunk["sha256"][array]:
                raise ValueError(
                    f"graph store {self.path}: chunk {chunk['name']} is damaged: {path.name} "
                    "does not match the checksum recorded when it was written; rebuild the store"
                )

    def _crystal_arrays(self, k: int) -> dict[str, np.ndarray]:
        """The per-crystal arrays of chunk ``k``, checked against their checksums."""
        self._verify(k, _CRYSTAL_ARRAYS)
        node_ptr, edge_ptr, space_group, index = (
            np.load(self._chunk_file(k, array)) for array in _CRYSTAL_ARRAYS
        )
        return {
            "n_atoms": np.diff(node_ptr),
            "n_edges": np.diff(edge_ptr),
            "space_group": space_group,
            "index": index,
        }

    def _chunk(self, k: int) -> CrystalGraphs:
        """Chunk ``k`` as a CrystalGraphs over memory-mapped arrays (checked once)."""
        if k in self._chunks:
            self._chunks.move_to_end(k)
            return self._chunks[k]
        if k not in self._verified:
            self._verify(k, CHUNK_ARRAYS)
            self._verified.add(k)
        arrays = {
            array: np.load(self._chunk_file(k, array), mmap_mode="r")
            for array in CrystalGraphs._ARRAYS
        }
        graphs = CrystalGraphs(
            **arrays,
            atom_features=self.atom_features,
            cutoff=self.cutoff,
            max_neighbors=self.max_neighbors,
            neighbor_rule=self.neighbor_rule,
            symmetry=self.symmetry,
        )
        self._chunks[k] = graphs
        while len(self._chunks) > OPEN_CHUNKS:
            self._chunks.popitem(last=False)
        return graphs

    def verify(self) -> GraphStore:
        """Check every chunk file against its checksum; ``ValueError`` names a damaged one."""
        for k in range(self.n_chunks):
            self._verify(k, CHUNK_ARRAYS)
            self._verified.add(k)
        return self

    # --- the CrystalGraphs interface ----------------------------------------------------
    @property
    def settings(self) -> tuple[float, int, str, str]:
        """``(cutoff, max_neighbors, atom feature table name, neighbor_rule)``, as
        :attr:`CrystalGraphs.settings`."""
        return (self.cutoff, self.max_neighbors, self.atom_features.name, self.neighbor_rule)

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, key: int | slice | np.ndarray) -> CrystalGraphs:
        if not self.n_chunks:
            raise IndexError(f"the graph store {self.path} holds no crystals")
        indices = np.atleast_1d(np.arange(len(self))[key])
        chunk_of = np.searchsorted(self._starts[1:], indices, side="right")
        order = np.argsort(chunk_of, kind="stable")
        pieces = [
            self._chunk(int(k))[indices[chunk_of == k] - self._starts[k]]
            for k in np.unique(chunk_of)
        ] or [self._chunk(0)[np.zeros(0, dtype=np.int64)]]
        graphs = CrystalGraphs.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        if np.any(np.diff(order) < 0):  # crystals from several chunks, not in chunk order
            graphs = graphs[np.argsort(order)]
        return graphs

    def __iter__(self) -> Iterator[CrystalGraphs]:
        return (self[i] for i in range(len(self)))

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            f"a GraphStore of {len(self)} crystal graphs cannot be converted to a numpy array: "
            "index it with store[indices] (a CrystalGraphs) or take a batch with "
            "store.batch(indices)"
        )

    def batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """A mini-batch of the chosen crystals, as :meth:`CrystalGraphs.batch` gives it."""
        return self[np.asarray(indices, dtype=np.int64)].batch(np.arange(len(indices)))

    def composition(self, indices: np.ndarray) -> np.ndarray:
        """Element fractions of the chosen crystals, as :meth:`CrystalGraphs.composition`."""
        return self[np.asarray(indices, dtype=np.int64)].composition(np.arange(len(indices)))

    def _species_array(self, name: str) -> np.ndarray:
        if name not in self._species:
            parts = [np.load(self._chunk_file(k, name)) for k in range(self.n_chunks)]
            for k in range(self.n_chunks):
                self._verify(k, (name,))
            self._species[name] = np.concatenate(parts) if parts else np.zeros(0)
        return self._species[name]

    @property
    def species_z(self) -> np.ndarray:
        """Atomic number of every species entry of every crystal, in order (read whole)."""
        return self._species_array("species_z")

    @property
    def species_occupancy(self) -> np.ndarray:
        """Occupancy of every species entry, aligned with :attr:`species_z` (read whole)."""
        return self._species_array("species_occupancy")

    def load(self) -> CrystalGraphs:
        """All the graphs in memory, as one :class:`CrystalGraphs`."""
        return self[:]

    @property
    def nbytes(self) -> int:
        """Size of the chunk files on disk, in bytes."""
        return sum(
            self._chunk_file(k, array).stat().st_size
            for k in range(self.n_chunks)
            for array in CHUNK_ARRAYS
        )

    def __reduce__(self):
        return (type(self).open, (str(self.path),))

    def __repr__(self) -> str:
        return (
            f"GraphStore({self.path.name!r}, n_crystals={len(self)}, n_chunks={self.n_chunks}, "
            f"cutoff={self.cutoff}, max_neighbors={self.max_neighbors}, "
            f"neighbor_rule={self.neighbor_rule!r}, atom_features={self.atom_features.name!r}, "
            f"complete={self.complete})"
        )
