"""Turn what users pass as ``X`` into a list of pymatgen Structures, or say which item is bad."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import IStructure, PeriodicSite, Structure

ACCEPTED = "a pymatgen Structure, an ASE Atoms, a path to a CIF/POSCAR file or CIF text"


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
    """Convert one item of ``X`` to a Structure; ``ValueError`` names ``X[index]`` otherwise."""
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


def _from_text_or_path(item: str | os.PathLike, index: int) -> Structure:
    text = str(item)
    is_cif_text = "\n" in text and "_cell_length_a" in text
    if not is_cif_text and not Path(text).is_file():
        raise ValueError(f"X[{index}]: no such file {text!r} (and not CIF text)")
    what = "CIF text" if is_cif_text else f"file {text!r}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns on harmless CIF quirks
            if is_cif_text:
                return Structure.from_str(text, fmt="cif")
            return Structure.from_file(text)
    except Exception as err:  # pymatgen raises many types for unreadable files
        raise ValueError(f"X[{index}]: could not read a structure from {what}: {err}") from err
