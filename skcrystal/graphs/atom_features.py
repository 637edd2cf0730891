"""Element feature tables: the 92-dim CGCNN atom features, rebuilt or the authors' own.

CGCNN (Xie & Grossman, PRL 120, 145301 (2018), Table S2 of the supplement) and CrysXPP
describe each element by nine properties, each one-hot encoded over a fixed set of
categories or bins, concatenated into a 92-dim 0/1 vector. The authors ship the result
as ``atom_init.json``. Two tables are available by name (``atom_features=``):

- ``"cgcnn"`` (:func:`cgcnn_atom_features`) rebuilds that table from element data (no row
  of the authors' file is stored in this package): pymatgen's periodic table, and three
  properties from the `mendeleev` package, written once by ``tools/element_data.py`` into
  ``element_data.csv`` beside this module, so that mendeleev is not needed at run time.
- ``"cgcnn-authors"`` (:func:`cgcnn_authors_atom_features`) is the authors' file itself,
  read (checksum-verified) from matminer's package data or the data home; published
  CGCNN-family weights were trained with it.

Layout (column ranges inclusive):

=======  =======================  ======================================  =========================
columns  property                 source                                  categories / bins
=======  =======================  ======================================  =========================
0-18     group                    pymatgen ``Element.group``              none (f block), 1-18
19-25    period                   pymatgen ``Element.row``                1-7
26-35    electronegativity        mendeleev ``en_pauling``                10 bins, 0.5-4.0
36-45    covalent_radius          mendeleev ``covalent_radius_pyykko``    10 bins, 25-250 pm
46-57    valence_electrons        pymatgen ``full_electronic_structure``  1-12
58-67    first_ionization_energy  pymatgen ``ionization_energies[0]``     10 bins, ln(E/eV) 1.3-3.3
68-77    electron_affinity        mendeleev ``electron_affinity``         10 bins, -3.0 to 3.7 eV
78-81    block                    pymatgen group, see below               s, p, d, f
82-91    atomic_volume            pymatgen ``molar_volume``               10 bins, ln(V) 1.5-4.3
=======  =======================  ======================================  =========================

(V in cm^3/mol; mendeleev gives electronegativity on the Pauling scale and Pyykko's
single-bond covalent radii.)

Rules:

- **Continuous bins.** Edges are ``numpy.linspace(lo, hi, 11)`` (on ``ln x`` for the two
  logarithmic properties); bin ``i`` holds ``edges[i] < x <= edges[i + 1]`` (right closed,
  as in the authors' table: Si, Cu, Re, Hg and Bi with electronegativity 1.9 fall in
  ``(1.55, 1.9]``). Ties are decided by the float edges that ``linspace`` returns. A value
  outside ``[lo, hi]`` goes to the first or last bin. Bin edges, rounded:

  - electronegativity: 0.50, 0.85, 1.20, 1.55, 1.90, 2.25, 2.60, 2.95, 3.30, 3.65, 4.00
  - covalent radius (pm): 25.0, 47.5, 70.0, 92.5, 115.0, 137.5, 160.0, 182.5, 205.0,
    227.5, 250.0
  - first ionisation energy, ln(E/eV): 1.3, 1.5, ..., 3.3 (step 0.2), that is E = 3.67,
    4.48, 5.47, 6.69, 8.17, 9.97, 12.18, 14.88, 18.17, 22.20, 27.11 eV
  - electron affinity (eV): -3.00, -2.33, -1.66, -0.99, -0.32, 0.35, 1.02, 1.69, 2.36,
    3.03, 3.70
  - atomic volume, ln(V/cm^3 mol^-1): 1.50, 1.78, ..., 4.30 (step 0.28), that is V = 4.48,
    5.93, 7.85, 10.38, 13.74, 18.17, 24.05, 31.82, 42.10, 55.70, 73.70 cm^3/mol

- **Block and group.** The f block is La-Yb and Ac-No; Lu and Lr are d-block elements of
  group 3 (the layout the authors' table uses). f-block elements have no group number and
  take the ``group=none`` column. All other groups are pymatgen's. He is s block (its
  valence shell is 1s2), the other noble gases p block.
- **Valence electrons** are counted in pymatgen's ground-state configuration: the ns and
  np electrons of the element's period n, plus the (n-1)d electrons for d-block
  elements. That gives 2 for every f-block element, 3 for Lu, 12 for Zn, Cd and Hg.
- **Missing values.** When a dependency has no value of a property for an element, that
  property's segment stays all zero and the element is still known (CGCNN does the
  same). In this table: electronegativity for He, Ne, Ar, Kr, Rn, Pm, Eu, Tb, Yb, Am-Fm;
  electron affinity for Ne, Mg, Mn, Zn, Cd, Hg, Kr, Rn, Pm, Sm, Gd, Ho, Er, Th-Fm;
  atomic volume for At, Fr, Fm. Valence electrons, group, period, block, covalent radius
  and ionisation energy exist for all.
- **Coverage.** Rows 1-100 (H to Fm), as in CGCNN, are known. Rows 101-118 exist (zeros)
  with ``known`` False: beyond Fm the dependencies hold only sparse theoretical
  estimates.

Agreement of ``"cgcnn"`` with the authors' ``atom_init.json`` (Z = 1-100), measured with
the pymatgen 2026.10.24 and mendeleev 1.3.0 data:
**78 of 100 rows are identical**. Elements that differ, by property:

- group, period, covalent radius, electronegativity, first ionisation energy, block: 0.
- valence electrons: 1 (Pd: [Kr] 4d10 gives 10; the authors have 12).
- electron affinity: 3. He (-19.7 eV) and Ar (-11.5 eV) are below the range and take
  the first bin, the authors have no value; Ac (0.35 eV) sits on an edge and falls one
  bin lower.
- atomic volume: 20. The authors' source gives the liquid volume at the boiling point
  for the gaseous elements, pymatgen the molar volume of the solid, one bin lower for
  H, He, N, F, Ne, Cl, Ar, Kr and Xe. Tm, Ra, Am and Cm differ by one bin, Np by two;
  pymatgen has values for Pm, Rn, Pu, Bk, Cf and Es that the authors lack.

Of elements common in oxides and intermetallics, only Pd (valence), Tm (atomic volume)
and the anions N, F, Cl and H (atomic volume, one bin) differ from the authors' rows.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TABLE_NAMES",
    "AtomFeatureTable",
    "atomic_number_features",
    "cgcnn_atom_features",
    "cgcnn_authors_atom_features",
    "get_atom_feature_table",
]

#: Largest atomic number a table built here has a row for (Og).
MAX_Z = 118
#: Largest atomic number with data in :func:`cgcnn_atom_features` (Fm, as in CGCNN).
CGCNN_MAX_KNOWN_Z = 100


def _symbol(z: int) -> str:
    """Element symbol of ``z``, or ``"Z=<z>"`` where there is no such element."""
    if 1 <= z <= MAX_Z:
        from pymatgen.core import Element

        return Element.from_Z(z).symbol
    return f"Z={z}"


@dataclass(frozen=True, eq=False)
class AtomFeatureTable:
    """Element -> feature vector lookup.

    Parameters
    ----------
    name : str
        Short identifier, used to tell tables apart (for example in graph settings).
    values : ndarray of shape (max_z + 1, n_features)
        Row ``Z`` is the feature vector of element ``Z``; row 0 is unused. Stored as a
        read-only float32 copy.
    known : ndarray of bool, shape (max_z + 1,)
        False where the table has no data for the element (always False for row 0).
    feature_names : tuple of str
        One human-readable name per column, for example ``"group=16"``.
    properties : tuple of str
        For each column, the element property it encodes, for example ``"group"``.

    Examples
    --------
    >>> import numpy as np
    >>> table = AtomFeatureTable(
    ...     name="toy",
    ...     values=np.array([[0, 0], [1, 0], [0, 1]]),
    ...     known=np.array([False, True, True]),
    ...     feature_names=("a", "b"),
    ...     properties=("p", "p"),
    ... )
    >>> table.n_features, table.max_z
    (2, 2)
    >>> table.lookup([2, 1, 2])
    array([[0., 1.],
           [1., 0.],
           [0., 1.]], dtype=float32)
    """

    name: str
    values: np.ndarray
    known: np.ndarray
    feature_names: tuple[str, ...]
    properties: tuple[str, ...]

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=np.float32)
        known = np.array(self.known, dtype=bool)
        if values.ndim != 2 or values.shape[0] < 2:
            raise ValueError(
                f"values must have shape (max_z + 1, n_features) with max_z >= 1, "
                f"got shape {values.shape}"
            )
        if known.shape != (values.shape[0],):
            raise ValueError(
                f"known must have shape ({values.shape[0]},) to match values, got {known.shape}"
            )
        if known[0]:
            raise ValueError("known[0] must be False: row 0 is not an element")
        if not np.isfinite(values).all():
            raise ValueError("values contain NaN or inf")
        feature_names = tuple(str(f) for f in self.feature_names)
        properties = tuple(str(p) for p in self.properties)
        for label, seq in (("feature_names", feature_names), ("properties", properties)):
            if len(seq) != values.shape[1]:
                raise ValueError(
                    f"{label} has {len(seq)} entries for {values.shape[1]} feature columns"
                )
        values.setflags(write=False)
        known.setflags(write=False)
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "known", known)
        object.__setattr__(self, "feature_names", feature_names)
        object.__setattr__(self, "properties", properties)

    @property
    def n_features(self) -> int:
        """Length of one element's feature vector."""
        return int(self.values.shape[1])

    @property
    def max_z(self) -> int:
        """Largest atomic number with a row (known or not)."""
        return int(self.values.shape[0] - 1)

    def to_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The table as arrays (``values``, ``known``) and JSON-ready text, for a file.

        :meth:`from_state` makes the same table again; model files and graph stores keep
        their table this way, so that they never depend on how a table was made.

        Examples
        --------
        >>> table = cgcnn_atom_features()
        >>> same = AtomFeatureTable.from_state(*table.to_state())
        >>> same.name, bool((same.values == table.values).all() & (same.known == table.known).all())
        ('cgcnn', True)
        """
        arrays = {"values": np.array(self.values), "known": self.known.astype(np.uint8)}
        info = {
            "name": self.name,
            "feature_names": list(self.feature_names),
            "properties": list(self.properties),
        }
        return arrays, info

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> AtomFeatureTable:
        """The table that :meth:`to_state` gave ``arrays`` and ``info`` for."""
        return cls(
            name=info["name"],
            values=np.asarray(arrays["values"]),
            known=np.asarray(arrays["known"]).astype(bool),
            feature_names=tuple(info["feature_names"]),
            properties=tuple(info["properties"]),
        )

    def __repr__(self) -> str:
        return (
            f"AtomFeatureTable(name={self.name!r}, n_features={self.n_features}, "
            f"n_known={int(self.known.sum())}, max_z={self.max_z})"
        )

    def lookup(self, atomic_numbers: Any) -> np.ndarray:
        """Feature vectors of the given elements.

        Parameters
        ----------
        atomic_numbers : array-like of int, shape (n,)
            Atomic numbers, repeats allowed.

        Returns
        -------
        ndarray of float32, shape (n, n_features)

        Raises
        ------
        ValueError
            If an atomic number is not an integer, or names an element without data in
            this table; the message names the element symbol(s).

        Examples
        --------
        >>> table = cgcnn_atom_features()
        >>> table.lookup([8, 26]).shape
        (2, 92)
        >>> table.lookup([101])
        Traceback (most recent call last):
        ...
        ValueError: atom feature table 'cgcnn' has no data for element(s) Md (Z=101)
        """
        z = np.asarray(atomic_numbers)
        if z.ndim == 0:
            z = z.reshape(1)
        if z.ndim != 1:
            raise ValueError(f"atomic_numbers must be one-dimensional, got shape {z.shape}")
        if z.size == 0:
            return np.zeros((0, self.n_features), dtype=np.float32)
        if z.dtype.kind not in "iu":
            if z.dtype.kind != "f" or not np.all(np.isfinite(z)) or np.any(z != np.round(z)):
                raise ValueError(
                    f"atomic_numbers must be integers, got {z.dtype} values such as {z[0]!r}"
                )
        z = z.astype(np.int64)
        in_range = (z >= 0) & (z <= self.max_z)
        ok = np.zeros(len(z), dtype=bool)
        ok[in_range] = self.known[z[in_range]]
        if not ok.all():
            bad = sorted({int(v) for v in z[~ok]})
            listed = ", ".join(
                f"{_symbol(v)} (Z={v})" if 1 <= v <= MAX_Z else _symbol(v) for v in bad
            )
            raise ValueError(
                f"atom feature table {self.name!r} has no data for element(s) {listed}"
            )
        return self.values[z]

    def to_mapping(self) -> dict[str, list[float]]:
        """The known rows in CGCNN ``atom_init.json`` form, ``{"Z": [floats]}``.

        Examples
        --------
        >>> table = AtomFeatureTable.from_json({"1": [1.0, 0.0], "8": [0.0, 1.0]})
        >>> table.to_mapping()
        {'1': [1.0, 0.0], '8': [0.0, 1.0]}
        """
        return {str(int(z)): self.values[z].tolist() for z in np.flatnonzero(self.known)}

    @classmethod
    def from_json(
        cls, path_or_mapping: str | os.PathLike | Mapping[Any, Any], name: str | None = None
    ) -> AtomFeatureTable:
        """Read a table in CGCNN ``atom_init.json`` format.

        Parameters
        ----------
        path_or_mapping : path-like or mapping
            A JSON file, or the already-parsed mapping, ``{"Z": [floats], ...}`` keyed by
            atomic number (a string or an int), every row of the same length.
        name : str, optional
            Table name. Default: the file stem (or ``"custom"`` for a mapping) followed by
            the first 8 hex digits of a hash of the contents, so that different tables
            get different names.

        Returns
        -------
        AtomFeatureTable
            Elements present in the mapping are known; columns are named
            ``feature_<i>`` (both ``feature_names`` and ``properties``).

        Raises
        ------
        ValueError
            For a malformed mapping (bad key, rows of unequal length, non-finite values).

        Examples
        --------
        >>> table = AtomFeatureTable.from_json({"1": [1, 0, 0], "8": [0, 1, 1]}, name="toy")
        >>> table.values.shape, table.known[[1, 2, 8]].tolist()
        ((9, 3), [True, False, True])
        >>> table.properties
        ('feature_0', 'feature_1', 'feature_2')
        """
        if isinstance(path_or_mapping, Mapping):
            mapping, stem = path_or_mapping, "custom"
        elif isinstance(path_or_mapping, (str, os.PathLike)):
            path = Path(path_or_mapping)
            with path.open(encoding="utf-8") as fh:
                mapping = json.load(fh)
            if not isinstance(mapping, Mapping):
                raise ValueError(f"{path}: expected a JSON object {{'Z': [floats]}}")
            stem = path.stem
        else:
            raise TypeError(
                f"from_json takes a path or a mapping, got {type(path_or_mapping).__name__}"
            )
        if not mapping:
            raise ValueError("the atom feature mapping is empty")
        rows: dict[int, np.ndarray] = {}
        for key, row in mapping.items():
            try:
                z = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"key {key!r} is not an atomic number") from None
            if not 1 <= z <= MAX_Z:
                raise ValueError(f"key {key!r} is not an atomic number in 1..{MAX_Z}")
            if z in rows:
                raise ValueError(f"atomic number {z} appears twice")
            arr = np.asarray(row, dtype=np.float64)
            if arr.ndim != 1 or arr.size == 0:
                raise ValueError(f"row {key!r} must be a non-empty list of numbers")
            rows[z] = arr
        lengths = {len(r) for r in rows.values()}
        if len(lengths) != 1:
            raise ValueError(f"rows have different lengths: {sorted(lengths)}")
        (n_features,) = lengths
        values = np.zeros((max(rows) + 1, n_features), dtype=np.float32)
        known = np.zeros(max(rows) + 1, dtype=bool)
        for z, row in rows.items():
            values[z] = row
            known[z] = True
        if not np.isfinite(values).all():
            raise ValueError("the atom feature mapping contains NaN, inf or out-of-range values")
        if name is None:
            digest = hashlib.sha256(values.tobytes() + known.tobytes()).hexdigest()[:8]
            name = f"{stem}-{digest}"
        columns = tuple(f"feature_{i}" for i in range(n_features))
        return cls(name=name, values=values, known=known, feature_names=columns, properties=columns)


# --------------------------------------------------------------------------- CGCNN table

# property -> (lo, hi, binned on ln x, unit, label format) for the continuous properties.
_N_BINS = 10
_BINNED = {
    "electronegativity": (0.5, 4.0, False, "", "{:.2f}"),
    "covalent_radius": (25.0, 250.0, False, " pm", "{:.1f}"),
    "first_ionization_energy": (1.3, 3.3, True, " eV", "{:.2f}"),
    "electron_affinity": (-3.0, 3.7, False, " eV", "{:.2f}"),
    "atomic_volume": (1.5, 4.3, True, " cm^3/mol", "{:.2f}"),
}
_GROUPS = ("none", *range(1, 19))
_PERIODS = tuple(range(1, 8))
_VALENCE = tuple(range(1, 13))
_BLOCKS = ("s", "p", "d", "f")
# Raw values of the integer categories, in column order (group 0: f block, no group).
_CATEGORY_VALUES = {"group": (0, *range(1, 19)), "period": _PERIODS, "valence_electrons": _VALENCE}
#: Segment order of the CGCNN vector, with the number of columns of each.
_LAYOUT = (
    ("group", len(_GROUPS)),
    ("period", len(_PERIODS)),
    ("electronegativity", _N_BINS),
    ("covalent_radius", _N_BINS),
    ("valence_electrons", len(_VALENCE)),
    ("first_ionization_energy", _N_BINS),
    ("electron_affinity", _N_BINS),
    ("block", len(_BLOCKS)),
    ("atomic_volume", _N_BINS),
)


def _edges(prop: str) -> np.ndarray:
    lo, hi, _, _, _ = _BINNED[prop]
    return np.linspace(lo, hi, _N_BINS + 1)


def _bin_index(prop: str, value: float) -> int | None:
    """Right-closed bin of ``value`` (first/last bin outside the range); None if missing."""
    if value is None or not math.isfinite(value):
        return None
    _, _, log, _, _ = _BINNED[prop]
    if log:
        if value <= 0:
            return None
        value = math.log(value)
    i = int(np.searchsorted(_edges(prop), value, side="left")) - 1
    return min(max(i, 0), _N_BINS - 1)


def _bin_names(prop: str) -> list[str]:
    _, _, log, unit, fmt = _BINNED[prop]
    edges = np.exp(_edges(prop)) if log else _edges(prop)
    return [
        f"{prop} ({fmt.format(a)}, {fmt.format(b)}]{unit}" for a, b in itertools.pairwise(edges)
    ]


def _feature_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    names: list[str] = []
    props: list[str] = []
    categories = {
        "group": _GROUPS,
        "period": _PERIODS,
        "valence_electrons": _VALENCE,
        "block": _BLOCKS,
    }
    for prop, width in _LAYOUT:
        cols = [f"{prop}={c}" for c in categories[prop]] if prop in categories else _bin_names(prop)
        assert len(cols) == width
        names += cols
        props += [prop] * width
    return tuple(names), tuple(props)


def _is_f_block(z: int) -> bool:
    """La-Yb and Ac-No; Lu and Lr belong to the d block (group 3)."""
    return 57 <= z <= 70 or 89 <= z <= 102


def _block(z: int, group: int) -> str:
    if _is_f_block(z):
        return "f"
    if group in (1, 2) or z == 2:
        return "s"
    return "d" if 3 <= group <= 12 else "p"


def _valence_electrons(period: int, block: str, configuration: Any) -> int:
    """ns + np electrons of the period (plus (n-1)d for the d block)."""
    occupancy: dict[tuple[int, str], int] = {}
    for n, orbital, electrons in configuration:
        key = (int(n), str(orbital))
        occupancy[key] = occupancy.get(key, 0) + int(electrons)
    count = occupancy.get((period, "s"), 0) + occupancy.get((period, "p"), 0)
    if block == "d":
        count += occupancy.get((period - 1, "d"), 0)
    return count


def _float_or_nan(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


ELEMENT_DATA = Path(__file__).with_name("element_data.csv")


@functools.cache
def _mendeleev_properties() -> dict[str, np.ndarray]:
    """The three mendeleev properties by Z (NaN where missing), from :data:`ELEMENT_DATA`."""
    rows = [
        line.split(",")
        for line in ELEMENT_DATA.read_text(encoding="utf-8").splitlines()[2:]
        if line
    ]
    size = max(int(row[0]) for row in rows) + 1
    columns = {"electronegativity": 2, "covalent_radius": 3, "electron_affinity": 4}
    values = {prop: np.full(size, np.nan) for prop in columns}
    for row in rows:
        for prop, column in columns.items():
            if row[column]:
                values[prop][int(row[0])] = float(row[column])
    return values


def _element_properties(max_z: int) -> dict[str, np.ndarray]:
    """Raw property values for Z = 0..max_z (NaN where missing) from the element data."""
    from pymatgen.core import Element

    size = max_z + 1
    raw = {prop: np.full(size, np.nan) for prop, _ in _LAYOUT}
    raw["block"] = np.full(size, "", dtype=object)
    for prop, values in _mendeleev_properties().items():
        raw[prop][:size] = values[:size]
    for z in range(1, size):
        with warnings.catch_warnings():  # pymatgen warns on each missing datum
            warnings.simplefilter("ignore")
            element = Element.from_Z(z)
            period, group = int(element.row), int(element.group)
            block = _block(z, group)
            energies = element.ionization_energies
            raw["group"][z] = 0 if block == "f" else group
            raw["period"][z] = period
            raw["block"][z] = block
            raw["valence_electrons"][z] = _valence_electrons(
                period, block, element.full_electronic_structure
            )
            raw["first_ionization_energy"][z] = _float_or_nan(energies[0] if energies else None)
            raw["atomic_volume"][z] = _float_or_nan(element.molar_volume)
    return raw


def _one_hot_index(prop: str, value: Any) -> int | None:
    if prop == "block":
        return _BLOCKS.index(value) if value in _BLOCKS else None
    if prop in _BINNED:
        return _bin_index(prop, value)
    if not math.isfinite(value):
        return None
    categories = _CATEGORY_VALUES[prop]
    return categories.index(int(value)) if int(value) in categories else None


@functools.cache
def cgcnn_atom_features() -> AtomFeatureTable:
    """The 92-dim CGCNN / CrysXPP atom features, built from pymatgen and mendeleev data.

    The mendeleev values are read from the shipped ``element_data.csv``.

    The layout, sources, bins and the agreement with the authors' ``atom_init.json`` are
    documented in :mod:`skcrystal.graphs.atom_features`. Built once per process (about a
    second) and cached; the returned table is read-only.

    Returns
    -------
    AtomFeatureTable
        Named ``"cgcnn"``; rows 0-118, known for Z = 1-100 (H to Fm).

    Examples
    --------
    >>> table = cgcnn_atom_features()
    >>> table.n_features, table.max_z, int(table.known.sum())
    (92, 118, 100)
    >>> oxygen = table.lookup([8])[0]
    >>> [table.feature_names[i] for i in oxygen.nonzero()[0]][:2]
    ['group=16', 'period=2']
    >>> [table.feature_names[i] for i in oxygen.nonzero()[0]][-2:]
    ['block=p', 'atomic_volume (13.74, 18.17] cm^3/mol']
    """
    feature_names, properties = _feature_names()
    raw = _element_properties(CGCNN_MAX_KNOWN_Z)
    values = np.zeros((MAX_Z + 1, len(feature_names)), dtype=np.float32)
    known = np.zeros(MAX_Z + 1, dtype=bool)
    known[1 : CGCNN_MAX_KNOWN_Z + 1] = True
    start = 0
    for prop, width in _LAYOUT:
        for z in range(1, CGCNN_MAX_KNOWN_Z + 1):
            i = _one_hot_index(prop, raw[prop][z])
            if i is not None:
                values[z, start + i] = 1.0
        start += width
    return AtomFeatureTable(
        name="cgcnn",
        values=values,
        known=known,
        feature_names=feature_names,
        properties=properties,
    )


#: sha256 of the authors' ``atom_init.json`` (the same bytes in every copy: the CGCNN repo's
#: sample data, the CrysXPP data folder, matminer's ``cgcnn_atom_feature.json``).
CGCNN_AUTHORS_SHA256 = "cb90bd2257dbf8cfc4e6b2b6d4348d4616e8e9680f1339b1461137032e0f1894"


def _matminer_copy() -> Path | None:
    """matminer's copy of the authors' table, if matminer is installed (not imported)."""
    import importlib.util

    spec = importlib.util.find_spec("matminer")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "utils/data_files/cgcnn_atom_feature.json"
    return path if path.is_file() else None


@functools.cache
def cgcnn_authors_atom_features() -> AtomFeatureTable:
    """The authors' own CGCNN ``atom_init.json``, for parity with published CGCNN-family models.

    The same 92 columns as :func:`cgcnn_atom_features` (same layout and names), with the
    authors' values: they differ from the rebuilt table in 22 elements (see the module
    docstring). Every published CGCNN, CrysXPP and CrysGNN checkpoint was trained with it.
    The file is not shipped with skcrystal; it is read, checksum-verified, from matminer's
    package data (``pip install matminer``: ``cgcnn_atom_feature.json``) when matminer is
    installed, else from the Materials Project CGCNN set in the data home (the
    ``atom_init.json`` of :func:`~skcrystal.datasets.load_mp_formation_energy`'s archive,
    downloaded from its public original when missing).

    Returns
    -------
    AtomFeatureTable
        Named ``"cgcnn-authors"``; rows 0-100, known for Z = 1-100 (H to Fm).

    Raises
    ------
    ValueError
        If the file found does not have the expected sha256.

    Examples
    --------
    >>> authors = cgcnn_authors_atom_features()
    >>> authors.name, authors.n_features, int(authors.known.sum())
    ('cgcnn-authors', 92, 100)
    >>> ours = cgcnn_atom_features()
    >>> int((authors.values[1:101] != ours.values[1:101]).any(axis=1).sum())  # rows that differ
    22
    """
    path = _matminer_copy()
    if path is not None:
        data = path.read_bytes()
    else:
        from skcrystal.datasets import read_cgcnn_atom_init

        data = read_cgcnn_atom_init()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CGCNN_AUTHORS_SHA256:
        source = path or "the data home's MP CGCNN archive"
        raise ValueError(
            f"the authors' atom_init.json from {source} has sha256 {digest}, expected "
            f"{CGCNN_AUTHORS_SHA256}"
        )
    table = AtomFeatureTable.from_json(json.loads(data), name="cgcnn-authors")
    feature_names, properties = _feature_names()
    return AtomFeatureTable(
        name=table.name,
        values=table.values,
        known=table.known,
        feature_names=feature_names,
        properties=properties,
    )


#: Largest atomic number of :func:`atomic_number_features` (Pu, as MEGNet's 95-entry
#: element embedding).
ATOMIC_NUMBER_MAX_Z = 94


@functools.cache
def atomic_number_features() -> AtomFeatureTable:
    """One column per element, H to Pu: the atomic number one-hot encoded.

    A linear layer without bias on these vectors is an element embedding (a lookup by
    atomic number), as MEGNet's (Chen et al., 2019); a disordered site gets the
    occupancy-weighted sum of its elements' embeddings.

    Returns
    -------
    AtomFeatureTable
        Named ``"atomic-number"``; 94 features, known for Z = 1-94.

    Examples
    --------
    >>> table = atomic_number_features()
    >>> table.n_features, int(table.lookup([8])[0].argmax()), table.feature_names[7]
    (94, 7, 'Z=8')
    """
    values = np.zeros((ATOMIC_NUMBER_MAX_Z + 1, ATOMIC_NUMBER_MAX_Z), dtype=np.float32)
    values[np.arange(1, ATOMIC_NUMBER_MAX_Z + 1), np.arange(ATOMIC_NUMBER_MAX_Z)] = 1.0
    known = np.arange(ATOMIC_NUMBER_MAX_Z + 1) > 0
    names = tuple(f"Z={z}" for z in range(1, ATOMIC_NUMBER_MAX_Z + 1))
    return AtomFeatureTable(
        name="atomic-number",
        values=values,
        known=known,
        feature_names=names,
        properties=("atomic_number",) * ATOMIC_NUMBER_MAX_Z,
    )


#: Tables available by name, for ``atom_features=``.
TABLE_NAMES = {
    "cgcnn": cgcnn_atom_features,
    "cgcnn-authors": cgcnn_authors_atom_features,
    "atomic-number": atomic_number_features,
}


def get_atom_feature_table(spec: Any) -> AtomFeatureTable:
    """Resolve an ``atom_features`` setting to a table.

    Parameters
    ----------
    spec : {"cgcnn", "cgcnn-authors", "atomic-number"}, AtomFeatureTable, path-like or mapping
        ``"cgcnn"`` for :func:`cgcnn_atom_features` (rebuilt from element data),
        ``"cgcnn-authors"`` for :func:`cgcnn_authors_atom_features` (the authors' own
        ``atom_init.json``), ``"atomic-number"`` for :func:`atomic_number_features`; a
        table is returned as is; a path to a CGCNN ``atom_init.json`` file, or an
        already-parsed ``{"Z": [floats]}`` mapping, is read with
        :meth:`AtomFeatureTable.from_json`.

    Returns
    -------
    AtomFeatureTable

    Raises
    ------
    ValueError
        For any other value, including a string that is neither a table name nor an
        existing file.

    Examples
    --------
    >>> get_atom_feature_table("cgcnn").name
    'cgcnn'
    >>> get_atom_feature_table({"1": [1.0], "2": [0.5]}).n_features
    1
    >>> get_atom_feature_table("magpie")
    Traceback (most recent call last):
    ...
    ValueError: atom_features='magpie' is neither a table name ('cgcnn', 'cgcnn-authors', \
'atomic-number') nor an existing atom_init.json file
    """
    if isinstance(spec, AtomFeatureTable):
        return spec
    if isinstance(spec, str) and spec.strip().lower() in TABLE_NAMES:
        return TABLE_NAMES[spec.strip().lower()]()
    if isinstance(spec, (str, os.PathLike)):
        if Path(spec).is_file():
            return AtomFeatureTable.from_json(spec)
        names = ", ".join(repr(n) for n in TABLE_NAMES)
        raise ValueError(
            f"atom_features={spec!r} is neither a table name ({names}) nor an existing "
            "atom_init.json file"
        )
    if isinstance(spec, Mapping):
        return AtomFeatureTable.from_json(spec)
    raise ValueError(
        "atom_features must be a table name, an AtomFeatureTable, a path to a CGCNN "
        f"atom_init.json file or a {{'Z': [floats]}} mapping; got {type(spec).__name__}"
    )
