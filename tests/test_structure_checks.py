"""Structures that are not crystals, and files that do not say what they seem to (issue 15).

Overlapping atoms are refused, a neighbour graph that does not repeat in three
directions is warned about, pymatgen's notes on a CIF reach the user, and POSCAR text,
dummy species, exact occupancies and scikit-learn's set_output are handled.
"""

import tarfile
import warnings

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import DummySpecies, Lattice, Structure
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar
from sklearn.pipeline import Pipeline

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.graphs.build import StructureWarning
from skcrystal.graphs.cache import GRAPH_CACHE


def rocksalt(a=5.64, species=("Na", "Cl")):
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def with_extra_atom(structure, offset_angstrom):
    """``structure`` with a copy of its site 0 moved by ``offset_angstrom`` along x."""
    twin = structure.copy()
    twin.append(structure[0].specie, structure[0].coords + np.array([offset_angstrom, 0, 0]), True)
    return twin


def carbon_monoxide_in_a_box():
    return Structure(Lattice.cubic(15.0), ["C", "O"], [[0, 0, 0], [1.128 / 15, 0, 0]])


@pytest.fixture(scope="module")
def obelix_cifs(data_home, tmp_path_factory):
    """The 321 OBELiX CIFs (measured, mostly disordered Li-ion conductors), extracted."""
    folder = tmp_path_factory.mktemp("obelix")
    with tarfile.open(data_home / "obelix" / "obelix_all_randomized_cifs.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    return sorted(str(p) for p in folder.rglob("*.cif"))


# --- item 1: overlapping atoms --------------------------------------------------------------
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda s: with_extra_atom(s["Si"], 0.0),
            r"X\[1\] \(Si\): sites 0 \(Si\) and 2 \(Si\) are 0\.000 Å apart, less than "
            r"min_distance_ratio=0\.5 times the sum of their covalent radii",
        ),
        (
            lambda s: with_extra_atom(s["Si"], 0.08),
            r"X\[1\] \(Si\): sites 0 \(Si\) and 2 \(Si\) are 0\.080 Å apart",
        ),
        (
            lambda s: Structure(Lattice.cubic(0.8), ["Fe"], [[0, 0, 0]]),
            r"X\[1\] \(Fe\): site 0 \(Fe\) is 0\.800 Å from its own image",
        ),
    ],
    ids=["same position", "0.08 Å apart", "Fe in a 0.8 Å cell"],
)
def test_overlapping_atoms_are_refused_naming_sites_and_distance(
    pymatgen_structures, make, message
):
    impossible = make(pymatgen_structures)
    GRAPH_CACHE.clear()
    with pytest.raises(ValueError, match=message):
        CrystalGraphTransformer().transform([rocksalt(), impossible])
    with pytest.raises(ValueError, match=message):  # also from worker processes
        CrystalGraphTransformer(n_jobs=2).transform([rocksalt(), impossible] + [rocksalt()] * 63)
    graphs = CrystalGraphTransformer(min_distance_ratio=0).transform([impossible])
    assert graphs.n_atoms.tolist() == [len(impossible)]


def test_real_crystals_pass_with_a_margin(mp_subset, pymatgen_structures):
    """The default 0.5 is well below real bonds: 400 MP crystals pass even at 0.6."""
    crystals = [*mp_subset.structure, *pymatgen_structures.values()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StructureWarning)  # the Si/SiO2 slab
        graphs = CrystalGraphTransformer(min_distance_ratio=0.6, cache=False).transform(crystals)
    assert len(graphs) == len(crystals)


def test_split_sites_of_disordered_crystals_are_exempt(obelix_cifs):
    """Every OBELiX CIF is accepted, though 130 have split sites closer than the limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", StructureWarning)  # and none is warned about
        graphs = CrystalGraphTransformer(cache=False).transform(obelix_cifs)
    assert len(graphs) == len(obelix_cifs) == 321
    # Li10Ge(PS6)2: two Li sites of occupancy 0.54 each, 0.42 Å apart (alternatives).
    lithium = Structure.from_file(next(p for p in obelix_cifs if p.endswith("mtn.cif")))
    assert lithium.distance_matrix[np.triu_indices(len(lithium), 1)].min() < 0.45
    ordered = Structure(  # the same sites, each fully occupied by one element
        lithium.lattice, [site.species.elements[0] for site in lithium], lithium.frac_coords
    )
    with pytest.raises(ValueError, match=r"X\[0\] .*\(Li\) .* Å apart"):
        CrystalGraphTransformer().transform([ordered])


def test_partial_sites_that_could_be_occupied_together_are_refused():
    halves = Structure(Lattice.cubic(5.0), [{"Li": 0.5}, {"Li": 0.5}], [[0, 0, 0], [0.04, 0, 0]])
    CrystalGraphTransformer(cache=False).transform([halves])  # alternatives 0.2 Å apart
    full = Structure(Lattice.cubic(5.0), [{"Li": 0.9}, {"Li": 0.9}], [[0, 0, 0], [0.04, 0, 0]])
    with pytest.raises(ValueError, match=r"sites 0 \(Li:0\.9\) and 1 \(Li:0\.9\) are 0\.200 Å"):
        CrystalGraphTransformer(cache=False).transform([full])


# --- item 1: vacuum and fragments -----------------------------------------------------------
def test_molecule_slab_and_fragments_are_warned_about(pymatgen_structures):
    slab = pymatgen_structures["Si_SiO2_Interface"]
    two_molecules = carbon_monoxide_in_a_box()
    two_molecules.append("C", [0.5, 0.5, 0.5])
    two_molecules.append("O", [0.5 + 1.128 / 15, 0.5, 0.5])
    expected = [
        r"X\[1\] \(CO\): its neighbour graph does not repeat in all three directions: the 2 "
        r"site\(s\) linked to site 0 \(C\) form a molecule or cluster, repeating in 0",
        r"X\[2\] \(Si13O12\): .* form a slab or layer, repeating in 2 direction\(s\) only",
        r"X\[3\] \(CO\): .* molecule or cluster, .* \(2 fragments in all\)",
    ]
    with pytest.warns(StructureWarning) as caught:
        CrystalGraphTransformer().transform(
            [rocksalt(), carbon_monoxide_in_a_box(), slab, two_molecules]
        )
    messages = [str(w.message) for w in caught if issubclass(w.category, StructureWarning)]
    assert len(messages) == 3
    for pattern, message in zip(expected, messages, strict=True):
        assert pd.Series([message]).str.contains(pattern).all(), message


def test_bulk_crystals_are_not_warned_about(mp_subset, pymatgen_structures):
    bulk = [s for name, s in pymatgen_structures.items() if name != "Si_SiO2_Interface"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", StructureWarning)
        CrystalGraphTransformer(cache=False).transform([*mp_subset.structure, *bulk])


def test_warnings_reach_the_user_from_workers_and_cache(mp_subset):
    crystals = [*mp_subset.structure.iloc[:70], carbon_monoxide_in_a_box()]
    GRAPH_CACHE.clear()
    for n_jobs in (2, 1):  # built in worker processes, then taken from the cache
        with pytest.warns(StructureWarning, match=r"X\[70\] \(CO\): its neighbour graph"):
            CrystalGraphTransformer(n_jobs=n_jobs).transform(crystals)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StructureWarning)
        CrystalGraphTransformer(check_periodicity=False).transform(crystals)


def test_cache_key_holds_the_check_settings(pymatgen_structures):
    overlapping = with_extra_atom(pymatgen_structures["Si"], 0.0)
    GRAPH_CACHE.clear()
    CrystalGraphTransformer(min_distance_ratio=0).transform([overlapping])
    with pytest.raises(ValueError, match=r"0\.000 Å apart"):
        CrystalGraphTransformer().transform([overlapping])
    with warnings.catch_warnings():
        warnings.simplefilter("error", StructureWarning)
        CrystalGraphTransformer(check_periodicity=False).transform([carbon_monoxide_in_a_box()])
    with pytest.warns(StructureWarning, match="molecule or cluster"):
        CrystalGraphTransformer().transform([carbon_monoxide_in_a_box()])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"min_distance_ratio": -0.1}, "min_distance_ratio must be a number >= 0"),
        ({"min_distance_ratio": float("nan")}, "min_distance_ratio must be a number >= 0"),
        ({"check_periodicity": "yes"}, "check_periodicity must be True or False"),
    ],
)
def test_bad_check_settings_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        CrystalGraphTransformer(**params).fit([rocksalt()])


# --- item 2: what pymatgen says about a CIF -------------------------------------------------
def _cif_with_implicit_hydrogens(structure):
    writer = CifWriter(structure)
    block = next(iter(writer.cif_file.data.values()))
    n_sites = len(block.data["_atom_site_label"])
    block.data["_atom_site_attached_hydrogens"] = ["1"] * n_sites
    block.loops[-1].append("_atom_site_attached_hydrogens")
    return str(writer)


def test_pymatgen_cif_notes_are_passed_on_naming_the_item(tmp_path, pymatgen_structures):
    cif = tmp_path / "hydrated.cif"
    cif.write_text(_cif_with_implicit_hydrogens(pymatgen_structures["Li2O"]))
    note = "Structure has implicit hydrogens defined"
    with pytest.warns(StructureWarning, match=rf"X\[1\] \(file '.*hydrated\.cif'\): {note}"):
        CrystalGraphTransformer().transform([rocksalt(), str(cif)])
    with pytest.warns(StructureWarning, match=rf"X\[0\] \(CIF text\): {note}"):
        CrystalGraphTransformer().transform([cif.read_text()])


def test_harmless_cif_notes_stay_quiet(tmp_path):
    magnesium = Structure.from_spacegroup(
        "P6_3/mmc", Lattice.hexagonal(3.21, 5.21), ["Mg"], [[1 / 3, 2 / 3, 0.25]]
    )
    cif = tmp_path / "mg.cif"
    cif.write_text(str(CifWriter(magnesium)))  # 0.33333333: pymatgen rounds it to 1/3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        graphs = CrystalGraphTransformer().transform([str(cif)])
    assert graphs.n_atoms.tolist() == [2]


def test_multi_block_cif_is_refused_naming_the_blocks(tmp_path, pymatgen_structures):
    both = tmp_path / "two.cif"
    both.write_text(
        str(CifWriter(pymatgen_structures["Si"])) + str(CifWriter(pymatgen_structures["SiO2"]))
    )
    message = r"X\[1\] \(file '.*two\.cif'\): the CIF has 2 data blocks holding 2 structures"
    with pytest.raises(ValueError, match=rf"{message}.*split it into one CIF per structure"):
        CrystalGraphTransformer().transform([rocksalt(), str(both)])
    with pytest.raises(ValueError, match=r"X\[0\] \(CIF text\): the CIF has 2 data blocks"):
        CrystalGraphTransformer().transform([both.read_text()])


def test_unreadable_cif_text_says_why():
    why = r"(?s)X\[0\]: could not read .* CIF text: .*Defaulting to P1.*_atom_site_label"
    with pytest.raises(ValueError, match=why):
        CrystalGraphTransformer().transform(["data_x\n_cell_length_a 3\n"])


# --- item 5: exact occupancies in the cache key ---------------------------------------------
def test_cache_keys_on_exact_occupancies():
    def alloy(lithium):
        return rocksalt(species=({"Li": lithium, "Na": 1 - lithium}, "Cl"))

    GRAPH_CACHE.clear()
    first = CrystalGraphTransformer().transform([alloy(0.5001)])
    second = CrystalGraphTransformer().transform([alloy(0.5004)])
    assert first.species_occupancy[:2].tolist() == pytest.approx([0.5001, 0.4999])
    assert second.species_occupancy[:2].tolist() == pytest.approx([0.5004, 0.4996])


# --- item 12: POSCAR text and dummy species -------------------------------------------------
def test_poscar_text_is_read_like_cif_text(data_home):
    table = pd.read_csv(data_home / "matminer_legacy" / "dielectric_constant.csv.gz", comment="#")
    poscars = table.poscar.iloc[:20]
    reference = [Poscar.from_str(text).structure for text in poscars]
    graphs = CrystalGraphTransformer(cache=False).transform(poscars)
    expected = CrystalGraphTransformer(cache=False).transform(reference)
    np.testing.assert_array_equal(graphs.distance, expected.distance)
    assert graphs.species_z.tolist() == expected.species_z.tolist()


def test_text_that_is_neither_cif_nor_poscar_is_refused():
    with pytest.raises(ValueError, match=r"X\[1\]: a text of 3 lines that is neither CIF"):
        CrystalGraphTransformer().transform([rocksalt(), "Na Cl\nnot a structure\nat all"])
    lines = Poscar(rocksalt()).get_str().splitlines()
    # VASP 4: no line of element symbols, nor a symbol after each site's coordinates
    vasp4 = [*lines[:5], *lines[6:8], *(" ".join(line.split()[:3]) for line in lines[8:])]
    with pytest.raises(ValueError, match=r"X\[0\] \(POSCAR text\): the sites' elements are"):
        CrystalGraphTransformer().transform(["\n".join(vasp4)])


@pytest.mark.parametrize(
    "dummy",
    [DummySpecies("X"), "X0+", {"X0+": 0.5, "Cl": 0.5}],
    ids=["DummySpecies", "X0+ string", "disordered"],
)
def test_dummy_species_are_refused_naming_the_site(dummy):
    structure = Structure(Lattice.cubic(4.1), ["Cs", dummy], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"X\[1\] .*: site 1 holds X0\+, which is not a chemical"):
        CrystalGraphTransformer().transform([rocksalt(), structure])


# --- item 15: scikit-learn interplay ----------------------------------------------------------
def test_pipeline_set_output_pandas_fits_and_predicts(mp_subset):
    data = mp_subset.iloc[:40]
    pipe = Pipeline(
        [
            ("graph", CrystalGraphTransformer()),
            ("reg", CGCNNRegressor(max_epochs=2, batch_size=16, random_state=0)),
        ]
    ).set_output(transform="pandas")
    pipe.fit(data.structure, data.e_form)
    assert pipe.predict(data.structure.iloc[:3]).shape == (3,)
    assert type(pipe[0].transform(data.structure.iloc[:2])).__name__ == "CrystalGraphs"


def test_graphs_refuse_to_become_a_numpy_array(mp_subset):
    graphs = CrystalGraphTransformer().transform(mp_subset.structure.iloc[:5])
    with pytest.raises(TypeError, match="cannot be converted to a numpy array: index it"):
        np.asarray(graphs)


def test_read_errors_are_one_line(monkeypatch):
    """A parser's message with line breaks (pymatgen's CIF errors have them) becomes one
    line, so the CLI's error report and stderr keep one line per file."""
    import skcrystal.graphs.inputs as inputs

    def parse_badly(source, from_file):
        raise ValueError("No structure parsed for section 1 in CIF.\n'_atom_site_label'")

    monkeypatch.setattr(inputs, "_parse_cif", parse_badly)
    with pytest.raises(ValueError) as caught:
        inputs.to_structure("data_x\n_cell_length_a 3\n", 4)
    assert str(caught.value) == (
        "X[4]: could not read a structure from CIF text: No structure parsed for section 1 "
        "in CIF. '_atom_site_label'"
    )
