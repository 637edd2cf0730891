"""Tests of skcrystal.graphs.atom_features (the CGCNN element table and its API)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Element

from skcrystal.graphs.atom_features import (
    AtomFeatureTable,
    cgcnn_atom_features,
    get_atom_feature_table,
)

REPO = Path(__file__).resolve().parents[1]
TARBALL = "mp_cgcnn_formation_energy.tar.xz"
MEMBER = "mp_cgcnn_formation_energy/atom_init.json"

# (property, number of columns) in CGCNN order.
LAYOUT = [
    ("group", 19),
    ("period", 7),
    ("electronegativity", 10),
    ("covalent_radius", 10),
    ("valence_electrons", 12),
    ("first_ionization_energy", 10),
    ("electron_affinity", 10),
    ("block", 4),
    ("atomic_volume", 10),
]


@pytest.fixture(scope="module")
def table() -> AtomFeatureTable:
    return cgcnn_atom_features()


def active(table: AtomFeatureTable, symbol: str) -> dict[str, str]:
    """Property -> name of the hot column, for one element (missing properties absent)."""
    row = table.lookup([Element(symbol).Z])[0]
    return {table.properties[i]: table.feature_names[i] for i in np.flatnonzero(row)}


# ------------------------------------------------------------------ shape and layout


def test_shapes_and_dtypes(table):
    assert table.name == "cgcnn"
    assert table.n_features == 92
    assert table.values.shape == (119, 92)
    assert table.values.dtype == np.float32
    assert table.known.shape == (119,)
    assert table.known.dtype == np.bool_
    assert not table.known[0]
    assert table.known[1:101].all()
    assert not table.known[101:].any()
    assert not table.values[0].any()
    assert not table.values[101:].any()
    assert set(np.unique(table.values)) <= {0.0, 1.0}
    assert len(table.feature_names) == len(table.properties) == 92
    assert len(set(table.feature_names)) == 92


def test_layout_one_hot_per_property(table):
    expected = [prop for prop, width in LAYOUT for _ in range(width)]
    assert list(table.properties) == expected
    start = 0
    for prop, width in LAYOUT:
        hot = table.values[1:101, start : start + width].sum(axis=1)
        assert hot.max() == 1, prop  # at most one hot column per property
        start += width
    # These properties have a value for every element H-Fm.
    always = ("group", "period", "valence_electrons", "block")
    for prop in (*always, "covalent_radius", "first_ionization_energy"):
        columns = np.array(table.properties) == prop
        assert (table.values[1:101][:, columns].sum(axis=1) == 1).all(), prop


def test_table_is_read_only_and_cached(table):
    assert cgcnn_atom_features() is table
    with pytest.raises(ValueError):
        table.values[8, 0] = 1.0
    with pytest.raises(ValueError):
        table.known[101] = True


# ------------------------------------------------------------------ hand-checked elements


def test_oxygen(table):
    features = active(table, "O")
    assert features["group"] == "group=16"
    assert features["period"] == "period=2"
    assert features["block"] == "block=p"
    assert features["valence_electrons"] == "valence_electrons=6"
    assert features["electronegativity"] == "electronegativity (3.30, 3.65]"  # 3.44
    assert features["covalent_radius"] == "covalent_radius (47.5, 70.0] pm"  # 63 pm
    assert features["electron_affinity"] == "electron_affinity (1.02, 1.69] eV"  # 1.46 eV
    assert features["first_ionization_energy"] == "first_ionization_energy (12.18, 14.88] eV"


def test_iron_sodium_and_helium(table):
    iron = active(table, "Fe")
    assert (iron["group"], iron["period"], iron["block"]) == ("group=8", "period=4", "block=d")
    assert iron["valence_electrons"] == "valence_electrons=8"  # 3d6 4s2
    sodium = active(table, "Na")
    assert (sodium["group"], sodium["period"], sodium["block"]) == (
        "group=1",
        "period=3",
        "block=s",
    )
    assert sodium["valence_electrons"] == "valence_electrons=1"
    helium = active(table, "He")
    assert helium["block"] == "block=s"
    assert helium["group"] == "group=18"
    assert "electronegativity" not in helium  # no Pauling value: segment stays zero


def test_f_block_convention(table):
    lanthanum = active(table, "La")
    assert lanthanum["group"] == "group=none"
    assert lanthanum["block"] == "block=f"
    assert lanthanum["period"] == "period=6"
    assert lanthanum["valence_electrons"] == "valence_electrons=2"
    lutetium = active(table, "Lu")
    assert (lutetium["group"], lutetium["block"]) == ("group=3", "block=d")
    assert lutetium["valence_electrons"] == "valence_electrons=3"
    uranium = active(table, "U")
    assert (uranium["group"], uranium["block"], uranium["period"]) == (
        "group=none",
        "block=f",
        "period=7",
    )


# ------------------------------------------------------------------ lookup


def test_lookup_rows_and_dtype(table):
    out = table.lookup([8, 26, 8])
    assert out.shape == (3, 92)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, table.values[[8, 26, 8]])
    assert table.lookup(np.array([], dtype=np.int64)).shape == (0, 92)
    np.testing.assert_array_equal(table.lookup(np.array([8.0])), table.values[[8]])


def test_lookup_names_unknown_elements(table):
    with pytest.raises(ValueError, match=r"Md \(Z=101\)") as info:
        table.lookup([8, 101, 8])
    assert "'cgcnn'" in str(info.value)
    with pytest.raises(ValueError, match=r"Og \(Z=118\)"):
        table.lookup([118])
    with pytest.raises(ValueError, match="Z=0"):
        table.lookup([0])
    with pytest.raises(ValueError, match="Z=200"):
        table.lookup([200])
    with pytest.raises(ValueError, match="integers"):
        table.lookup([8.5])


# ------------------------------------------------------------------ from_json


def test_from_json_round_trip(tmp_path):
    mapping = {"1": [1.0, 0.0, 0.5], "3": [0.0, 1.0, 0.25], "8": [0.0, 0.0, 1.0]}
    table = AtomFeatureTable.from_json(mapping, name="toy")
    assert table.name == "toy"
    assert table.values.shape == (9, 3)
    assert table.values.dtype == np.float32
    assert table.known.tolist() == [False, True, False, True, False, False, False, False, True]
    assert table.properties == ("feature_0", "feature_1", "feature_2")
    assert table.feature_names == table.properties
    assert table.to_mapping() == mapping
    np.testing.assert_array_equal(table.lookup([8, 1]), [[0, 0, 1], [1, 0, 0.5]])
    with pytest.raises(ValueError, match=r"Be \(Z=4\)"):  # Li (Z=3) is known, Be not
        table.lookup([3, 4])

    path = tmp_path / "atom_init.json"
    path.write_text(json.dumps(mapping))
    from_file = AtomFeatureTable.from_json(path)
    np.testing.assert_array_equal(from_file.values, table.values)
    np.testing.assert_array_equal(from_file.known, table.known)
    assert from_file.name.startswith("atom_init-")
    # Different contents give different default names.
    other = AtomFeatureTable.from_json({**mapping, "8": [1.0, 1.0, 1.0]})
    assert other.name != AtomFeatureTable.from_json(mapping).name


def test_cgcnn_table_round_trips_through_json(table, tmp_path):
    path = tmp_path / "cgcnn.json"
    path.write_text(json.dumps(table.to_mapping()))
    again = AtomFeatureTable.from_json(path)
    np.testing.assert_array_equal(again.values, table.values[:101])
    np.testing.assert_array_equal(again.known, table.known[:101])


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({}, "empty"),
        ({"H": [1.0]}, "not an atomic number"),
        ({"0": [1.0]}, "not an atomic number"),
        ({"1": [1.0], "2": [1.0, 0.0]}, "different lengths"),
        ({"1": [float("nan")]}, "NaN"),
        ({"1": []}, "non-empty"),
    ],
)
def test_from_json_rejects_malformed(mapping, message):
    with pytest.raises(ValueError, match=message):
        AtomFeatureTable.from_json(mapping)


# ------------------------------------------------------------------ get_atom_feature_table


def test_get_atom_feature_table(table, tmp_path):
    assert get_atom_feature_table("cgcnn") is table
    assert get_atom_feature_table("CGCNN") is table
    custom = AtomFeatureTable.from_json({"1": [1.0]}, name="x")
    assert get_atom_feature_table(custom) is custom
    assert get_atom_feature_table({"1": [1.0], "2": [0.0]}).n_features == 1
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"26": [0.0, 1.0]}))
    assert get_atom_feature_table(path).known[26]
    assert get_atom_feature_table(str(path)).known[26]
    names = r"\('cgcnn', 'cgcnn-authors', 'atomic-number'\)"
    with pytest.raises(ValueError, match=rf"neither a table name {names}"):
        get_atom_feature_table("magpie")
    with pytest.raises(ValueError, match="must be a table name"):
        get_atom_feature_table(3)


# ------------------------------------------------------------------ agreement with CGCNN

# Measured with pymatgen 2026.10 + mendeleev 1.3.0: 78 of 100 rows identical; per
# property: valence electrons 1 (Pd), electron affinity 3 (He, Ar, Ac), atomic volume 20,
# all other properties 0. Limits leave a margin for updates of the element data.
MIN_IDENTICAL_ROWS = 75
MAX_MISMATCHES = {
    "group": 0,
    "period": 0,
    "block": 0,
    "electronegativity": 2,
    "covalent_radius": 2,
    "valence_electrons": 2,
    "first_ionization_energy": 2,
    "electron_affinity": 5,
    "atomic_volume": 23,
}
# Elements frequent in oxides and intermetallics whose rows match the authors' exactly.
COMMON = (
    "Li Be B C O Na Mg Al Si P S K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Rb Sr Y Zr "
    "Nb Mo Ru Rh Ag Cd In Sn Sb Te Cs Ba La Ce Pr Nd Sm Eu Gd Hf Ta W Re Os Ir Pt Au Hg "
    "Tl Pb Bi"
).split()


@pytest.fixture(scope="module")
def authors_table(tmp_path_factory) -> np.ndarray:
    """The authors' atom_init.json, read from the shared data tarball (must exist)."""
    root = os.environ.get("SKCRYSTAL_DATA")
    data = Path(root) if root else REPO.parent / "shared" / "data"
    tarball = data / TARBALL
    assert tarball.is_file(), (
        f"{tarball} is missing: set SKCRYSTAL_DATA to the folder holding {TARBALL}"
    )
    target = tmp_path_factory.mktemp("cgcnn") / "atom_init.json"
    with tarfile.open(tarball, "r:xz") as archive:
        for member in archive:  # stop at the member instead of indexing the whole archive
            if member.name == MEMBER:
                source = archive.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
                break
    assert target.is_file(), f"{TARBALL} has no member {MEMBER}"
    mapping = json.loads(target.read_text())
    assert sorted(int(z) for z in mapping) == list(range(1, 101))
    reference = np.zeros((101, 92), dtype=np.float32)
    for z, row in mapping.items():
        reference[int(z)] = row
    return reference


def test_agreement_with_authors_table(table, authors_table):
    ours = table.values[: len(authors_table)]
    identical = [z for z in range(1, 101) if np.array_equal(ours[z], authors_table[z])]
    assert len(identical) >= MIN_IDENTICAL_ROWS, (
        f"only {len(identical)} of 100 rows match the authors' atom_init.json"
    )
    properties = np.array(table.properties)
    for prop, limit in MAX_MISMATCHES.items():
        columns = properties == prop
        differ = [
            Element.from_Z(z).symbol
            for z in range(1, 101)
            if not np.array_equal(ours[z, columns], authors_table[z, columns])
        ]
        assert len(differ) <= limit, f"{prop}: {len(differ)} elements differ: {differ}"
    differ_common = [s for s in COMMON if Element(s).Z not in identical]
    assert not differ_common, f"rows differ for common elements {differ_common}"


def test_authors_table_is_not_shipped():
    """The package rebuilds the table; no copy of atom_init.json may be committed."""
    package = REPO / "skcrystal"
    assert not list(package.rglob("atom_init*.json"))


def test_authors_table_by_name(authors_table):
    """'cgcnn-authors' is the authors' file exactly, with the column names of 'cgcnn'."""
    from skcrystal.graphs.atom_features import cgcnn_authors_atom_features

    authors = get_atom_feature_table("cgcnn-authors")
    assert authors is cgcnn_authors_atom_features()
    assert authors.name == "cgcnn-authors"
    np.testing.assert_array_equal(authors.values, authors_table)
    assert authors.known[1:].all() and authors.max_z == 100
    assert authors.feature_names == cgcnn_atom_features().feature_names


def test_authors_table_in_graphs(pymatgen_structures):
    """Graphs built with the authors' table carry its rows: F differs from the rebuilt table."""
    from skcrystal import CrystalGraphTransformer

    structure = pymatgen_structures["La2CoO4F"]
    fluorine = np.array([site.specie.Z == 9 for site in structure])
    rows = {}
    for name in ("cgcnn", "cgcnn-authors"):
        graphs = CrystalGraphTransformer(atom_features=name).transform([structure])
        assert graphs.atom_features.name == name
        rows[name] = graphs.atom_features.lookup(graphs.species_z)
    np.testing.assert_array_equal(
        rows["cgcnn-authors"][fluorine][0], get_atom_feature_table("cgcnn-authors").values[9]
    )
    assert not np.array_equal(rows["cgcnn"][fluorine], rows["cgcnn-authors"][fluorine])
    np.testing.assert_array_equal(rows["cgcnn"][~fluorine], rows["cgcnn-authors"][~fluorine])


def test_shipped_element_data_matches_mendeleev():
    """skcrystal/graphs/element_data.csv is what tools/element_data.py writes from mendeleev."""
    import importlib.util

    pytest.importorskip("mendeleev", reason="mendeleev is part of the [test] extra")
    spec = importlib.util.spec_from_file_location("element_data", REPO / "tools/element_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = (REPO / "skcrystal" / "graphs" / "element_data.csv").read_text()
    assert shipped == module.element_data_csv()


def test_no_mendeleev_at_run_time():
    """Building the table reads the shipped element data; mendeleev is not a dependency."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['mendeleev'] = None\n"
        "from skcrystal.graphs.atom_features import cgcnn_atom_features\n"
        "print(int(cgcnn_atom_features().known.sum()))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "100"
