"""Turn what users pass as ``X`` into a list of pymatgen Structures, or say which item is bad."""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pymatgen.core import IStructure, PeriodicSite, Structure

from skcrystal.graphs.build import StructureWarning

ACCEPTED = (
    "a pymatgen Structure, an ASE Atoms, a path to a structure file (CIF, POSCAR, ...), "
    "or the text of a CIF or POSCAR file"
)

#: pymatgen's notes on a CIF that are not passed on: they change nothing that matters
#: (coordinates such as 0.3333 made exactly 1/3; a check that could not be made; a P1
#: CIF that lists its one symmetry operation on one line).
QUIET_NOTES = (
    "fractional coordinates rounded to ideal values to avoid issues with finite precision",
    "Skipping relative stoichiometry check because CIF does not contain formula keys",
    "A 1-line symmetry op P1 CIF is detected!",
)

#: pymatgen's warning that it made elements up (H, He, ...) for a POSCAR that names none.
_INVENTED_ELEMENTS = "Elements in POSCAR cannot be determined"

#: Held while warnings are recorded: ``warnings.catch_warnings`` changes the state of the
#: whole process, which two threads (joblib's threading backend) must not do at once.
RECORDING = threading.RLock()


def as_item_list(X: Any) -> list:
    """Return the items of ``X`` (list, tuple, 1-D array, pandas Series or DataFrame column).

    ``np.array(structures, dtype=object)`` of equal-size structures becomes a 2-D array of
    sites (numpy iterates each Structure); its rows are turned back into Structures.
    """
    if isinstance(X, (Structure, IStructure, str, os.PathLike)):
        raise ValueError(
            f"X must be a sequence of crystals (list, array, pandas Series), got a single "
            f"{type(X).__name__}; wrap it in a list"
        )
    if hasattr(X, "columns"):  # a one-column DataFrame, e.g. df[["structure"]]
        if X.shape[1] != 1:
            raise ValueError(
                f"X is a DataFrame with {X.shape[1]} columns {list(X.columns)}; pass the "
                "column that holds the structures, e.g. df['structure']"
            )
        X = X.iloc[:, 0]
    if hasattr(X, "to_numpy"):  # pandas Series
        X = X.to_numpy()
    if isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] > 0 and isinstance(X.flat[0], PeriodicSite):
            return [Structure.from_sites(list(row)) for row in X]
        if X.ndim == 2 and X.shape[1] == 1:
            X = X[:, 0]
        if X.ndim != 1:
            raise ValueError(
                f"X is a {X.ndim}-D array of shape {X.shape}; expected a 1-D sequence of "
                f"crystals, each {ACCEPTED}"
            )
    if not isinstance(X, Iterable):
        raise ValueError(f"X must be a sequence of crystals, got {type(X).__name__}")
    items = list(X)
    if not items:
        raise ValueError("X is empty: at least one crystal is needed")
    return items


def to_structure(item: Any, index: int) -> Structure:
    """Convert one item of ``X`` to a Structure; ``ValueError`` names ``X[index]`` otherwise.

    pymatgen's warnings while reading a file or text come back as a
    :class:`~skcrystal.graphs.build.StructureWarning` naming the item, except the harmless
    :data:`QUIET_NOTES`.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> from pymatgen.io.vasp import Poscar
    >>> cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> to_structure(Poscar(cscl).get_str(), 0).composition.reduced_formula  # POSCAR text
    'CsCl'
    """
    if isinstance(item, (Structure, IStructure)):
        return item
    ase = sys.modules.get("ase")  # an Atoms can only exist if ase was imported
    if ase is not None and isinstance(item, ase.Atoms):
        return _from_ase(item, index)
    if isinstance(item, (str, os.PathLike)):
        return _from_text_or_path(item, index)
    raise ValueError(f"X[{index}]: expected {ACCEPTED}, got {type(item).__name__}")


def _from_ase(atoms: Any, index: int) -> Structure:
    from pymatgen.io.ase import AseAtomsAdaptor

    if not all(atoms.pbc):
        raise ValueError(
            f"X[{index}]: ASE Atoms {atoms.get_chemical_formula()} is not periodic in all "
            f"three directions (pbc={list(atoms.pbc)}); crystal graphs need a 3-D lattice"
        )
    return AseAtomsAdaptor.get_structure(atoms)


def _is_cif_text(text: str) -> bool:
    return "_cell_length_a" in text


def _is_poscar_text(text: str) -> bool:
    """Line 2 a scale factor, lines 3-5 three numbers each (the lattice vectors)."""
    lines = text.splitlines()
    if len(lines) < 8:  # comment, scale, 3 lattice vectors, counts, mode, a site at least
        return False
    try:
        float(lines[1].split()[0])
        return all(len([float(x) for x in line.split()]) == 3 for line in lines[2:5])
    except (ValueError, IndexError):
        return False


def _is_cif_file(path: str) -> bool:
    """pymatgen's own rule: the file name matches ``*.cif*`` or ``*.mcif*``, in any case."""
    name = os.path.basename(path).lower()
    return fnmatch(name, "*.cif*") or fnmatch(name, "*.mcif*")


def _from_text_or_path(item: str | os.PathLike, index: int) -> Structure:
    text = str(item)
    if "\n" in text:  # the contents of a file, not its name
        if _is_cif_text(text):
            return _read(lambda: _parse_cif(text, from_file=False), "CIF text", index)
        if _is_poscar_text(text):
            return _read(lambda: _parse_other(text, from_file=False), "POSCAR text", index)
        raise ValueError(
            f"X[{index}]: a text of {len(text.splitlines())} lines that is neither CIF (no "
            "_cell_length_a) nor POSCAR (line 2 a scale factor, lines 3-5 the lattice "
            "vectors), nor the name of a file"
        )
    if not Path(text).is_file():
        raise ValueError(f"X[{index}]: no such file {text!r} (and not CIF or POSCAR text)")
    parse = _parse_cif if _is_cif_file(text) else _parse_other
    return _read(lambda: parse(text, from_file=True), f"file {text!r}", index)


class _Refused(ValueError):
    """A file or text that pymatgen reads, but not as one crystal."""


def _parse_cif(source: str, from_file: bool) -> tuple[Structure, list[str]]:
    """The one structure of a CIF, and pymatgen's notes on it."""
    from pymatgen.io.cif import CifParser

    parser = CifParser(source) if from_file else CifParser.from_str(source)
    try:
        structures = parser.parse_structures(primitive=False, on_error="ignore")
    except ValueError as err:  # no block holds a structure: say why for each
        raise ValueError("; ".join([str(err), *parser.warnings])) from err
    if len(structures) > 1:
        raise _Refused(
            f"the CIF has {len(parser.as_dict())} data blocks holding {len(structures)} "
            "structures, and each item of X is one crystal: split it into one CIF per "
            "structure (pymatgen's CifParser(...).parse_structures(primitive=False) reads "
            "them all)"
        )
    return structures[0], parser.warnings


def _parse_other(source: str, from_file: bool) -> tuple[Structure, list[str]]:
    """A structure from any file pymatgen reads, or from POSCAR text."""
    if from_file:
        return Structure.from_file(source), []
    return Structure.from_str(source, fmt="poscar"), []


def _read(parse: Callable[[], tuple[Structure, list[str]]], what: str, index: int) -> Structure:
    """``parse()``, with pymatgen's warnings passed on and its errors naming the item."""
    try:
        with RECORDING, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            structure, notes = parse()
    except _Refused as err:
        raise ValueError(f"X[{index}] ({what}): {err}") from None
    except Exception as err:  # pymatgen raises many types for unreadable files
        reason = " ".join(str(err).split())  # one line: pymatgen's may hold line breaks
        raise ValueError(f"X[{index}]: could not read a structure from {what}: {reason}") from err
    for warning in caught:
        if not issubclass(warning.category, UserWarning):  # not about the data: as it was
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
        elif str(warning.message).startswith(_INVENTED_ELEMENTS):
            raise ValueError(
                f"X[{index}] ({what}): the sites' elements are not given (a VASP 4 POSCAR "
                "without its line of element symbols), and pymatgen would make them up; "
                "add that line"
            )
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    for note in dict.fromkeys([*messages, *notes]):  # pymatgen often says it twice
        if not any(quiet in note for quiet in QUIET_NOTES):
            warnings.warn(f"X[{index}] ({what}): {note}", StructureWarning, stacklevel=2)
    return structure


class Reading(NamedTuple):
    """What :func:`read_recorded` made of one item of ``X``."""

    structure: Structure | None  # None if it could not be read
    error: ValueError | None  # why not, naming the item
    warnings: list[tuple[Warning, str, int]]  # given while reading: (warning, file, line)


def read_recorded(item: Any, index: int) -> Reading:
    """:func:`to_structure`, with the warnings it gives recorded instead of given.

    A worker process reads items this way: its warnings would not reach the user, so it
    returns them, and the main process gives them (:func:`give_warnings`) in item order.

    Examples
    --------
    >>> reading = read_recorded("data_x\\n_cell_length_a 3\\n", 7)
    >>> reading.structure, str(reading.error)[:46]
    (None, 'X[7]: could not read a structure from CIF text')
    """
    with RECORDING, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            structure, error = to_structure(item, index), None
        except ValueError as err:
            structure, error = None, err
    return Reading(structure, error, [(w.message, w.filename, w.lineno) for w in caught])


def give_warnings(recorded: list[tuple[Warning, str, int]]) -> None:
    """Give the warnings that :func:`read_recorded` recorded, as where they were first given."""
    for message, filename, lineno in recorded:
        warnings.warn_explicit(message, type(message), filename, lineno)
