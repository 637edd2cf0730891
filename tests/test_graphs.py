"""Crystal graph construction: neighbours, inputs, errors, container, caching."""

import pickle

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from skcrystal import CrystalGraphs, CrystalGraphTransformer
from skcrystal.graphs.atom_features import cgcnn_atom_features
from skcrystal.graphs.build import StructureWarning
from skcrystal.graphs.cache import GRAPH_CACHE


def rocksalt(a=5.64, species=("Na", "Cl")):
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def test_neighbors_match_pymatgen_reference(pymatgen_structures):
    """The kept edges are, per atom, the 12 shortest of pymatgen's get_all_neighbors."""
    structures = list(pymatgen_structures.values())
    with pytest.warns(StructureWarning, match=r"\(Si13O12\): .* slab"):  # Si_SiO2_Interface
        graphs = CrystalGraphTransformer(cache=False).transform(structures)
    for i, structure in enumerate(structures):
        g = graphs[i]
        assert len(g.distance) == g.n_edges[0]
        reference = structure.get_all_neighbors(8.0)
        for site, neighbors in enumerate(reference):
            expected = np.sort([n.nn_distance for n in neighbors])[:12]
            mine = np.sort(g.distance[g.center == site])
            np.testing.assert_allclose(mine, expected, rtol=1e-5)


def test_atoms_with_few_neighbors_keep_what_they_have():
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    graphs = CrystalGraphTransformer(cutoff=3.6).transform([cscl])
    # 8 Cs-Cl bonds of 3.55 Å per atom, nothing else within 3.6 Å, and no padding.
    assert graphs.n_edges.tolist() == [16]
    assert np.all(graphs.distance < 3.6)


def test_isolated_atom_names_structure_and_suggests_cutoff():
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match=r"X\[1\] \(CsCl\): site 0 .*larger cutoff"):
        CrystalGraphTransformer(cutoff=3.0).transform([rocksalt(), cscl])


def test_disordered_site_gets_occupancy_weighted_features():
    lattice = Lattice.cubic(3.0)
    alloy = Structure(lattice, [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    graphs = CrystalGraphTransformer().transform([alloy])
    table = cgcnn_atom_features()
    expected = 0.5 * table.values[26] + 0.5 * table.values[27]
    np.testing.assert_allclose(graphs.batch([0])["atom_features"][0], expected)


def test_partial_occupancy_scales_features():
    vacancy = Structure(Lattice.cubic(3.0), [{"Fe": 0.75}], [[0, 0, 0]])
    graphs = CrystalGraphTransformer().transform([vacancy])
    np.testing.assert_allclose(
        graphs.batch([0])["atom_features"][0], 0.75 * cgcnn_atom_features().values[26]
    )


@pytest.mark.parametrize(
    ("bad_item", "message"),
    [
        (42, r"X\[1\]: expected .* got int"),
        (Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]), r"X\[1\]: expected .* Molecule"),
        ("/no/such/file.cif", r"X\[1\]: no such file"),
        ("data_x\n_cell_length_a 3\n", r"X\[1\]: could not read a structure from CIF text"),
    ],
)
def test_bad_items_are_named(bad_item, message):
    with pytest.raises(ValueError, match=message):
        CrystalGraphTransformer().transform([rocksalt(), bad_item])


def test_empty_and_invalid_cif_files_are_named(tmp_path):
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"X\[0\]: could not read a structure from file .*empty"):
        CrystalGraphTransformer().transform([str(empty)])


def test_unknown_element_is_named():
    einsteinium_free = Structure(Lattice.cubic(4.0), ["Md"], [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"X\[1\] \(Md\): element Md has no data"):
        CrystalGraphTransformer().transform([rocksalt(), einsteinium_free])


def test_nan_coordinates_and_degenerate_lattice_are_refused():
    nan_site = Structure(Lattice.cubic(4.0), ["Na"], [[0, 0, 0]])
    nan_site.replace(0, "Na", [np.nan, 0, 0])
    with pytest.raises(ValueError, match=r"X\[0\] .*NaN or inf"):
        CrystalGraphTransformer().transform([nan_site])
    flat = Structure(Lattice([[3, 0, 0], [0, 3, 0], [3, 3, 0]]), ["Na"], [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"X\[0\] .*degenerate lattice"):
        CrystalGraphTransformer().transform([flat])


def test_empty_input_and_single_structure_are_refused():
    with pytest.raises(ValueError, match="X is empty"):
        CrystalGraphTransformer().transform([])
    with pytest.raises(ValueError, match="single Structure; wrap it in a list"):
        CrystalGraphTransformer().transform(rocksalt())
    with pytest.raises(ValueError, match=r"X\[0\].*no sites"):
        CrystalGraphTransformer().transform([Structure(Lattice.cubic(3), [], [])])


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="cutoff must be a positive"):
        CrystalGraphTransformer(cutoff=-1).transform([rocksalt()])
    with pytest.raises(ValueError, match="max_neighbors must be a positive int"):
        CrystalGraphTransformer(max_neighbors=0).fit([rocksalt()])


def test_all_input_containers_give_the_same_graphs(tmp_path, pymatgen_structures):
    from pymatgen.io.ase import AseAtomsAdaptor

    crystals = [pymatgen_structures["Si"], pymatgen_structures["SiO2"], rocksalt()]
    reference = CrystalGraphTransformer(cache=False).transform(crystals)
    cif = tmp_path / "si.cif"
    crystals[0].to(filename=str(cif))
    poscar = tmp_path / "POSCAR"
    crystals[1].to(filename=str(poscar), fmt="poscar")
    series = pd.DataFrame({"structure": crystals}).structure
    variants = {
        "tuple": tuple(crystals),
        "series": series,
        "frame column": series.to_frame(),
        "1-D object array": np.array([*crystals, None], dtype=object)[:3],
        "files and ase": [str(cif), poscar, AseAtomsAdaptor.get_atoms(crystals[2])],
    }
    for name, X in variants.items():
        graphs = CrystalGraphTransformer(cache=False).transform(X)
        np.testing.assert_allclose(graphs.distance, reference.distance, rtol=1e-5, err_msg=name)
        assert graphs.species_z.tolist() == reference.species_z.tolist(), name


def test_equal_size_structures_in_a_numpy_array_are_rebuilt():
    crystals = [rocksalt(5.6), rocksalt(5.7)]
    X = np.array(crystals, dtype=object)  # numpy makes this a (2, 8) array of sites
    assert X.ndim == 2
    graphs = CrystalGraphTransformer().transform(X)
    reference = CrystalGraphTransformer().transform(crystals)
    np.testing.assert_array_equal(graphs.distance, reference.distance)


def test_user_files_are_not_modified(tmp_path, pymatgen_structures):
    cif = tmp_path / "lfp.cif"
    pymatgen_structures["LiFePO4"].to(filename=str(cif))
    before = (cif.read_bytes(), cif.stat().st_mtime_ns, sorted(tmp_path.iterdir()))
    CrystalGraphTransformer().transform([str(cif)])
    assert (cif.read_bytes(), cif.stat().st_mtime_ns, sorted(tmp_path.iterdir())) == before


def test_container_slicing_concatenation_and_pickle(pymatgen_structures):
    crystals = list(pymatgen_structures.values())
    graphs = CrystalGraphTransformer(check_periodicity=False).transform(crystals)
    assert len(graphs) == len(crystals)
    subset = graphs[[3, 1]]
    assert subset.n_atoms.tolist() == [len(crystals[3]), len(crystals[1])]
    np.testing.assert_array_equal(subset[1].distance, graphs[1].distance)
    mask = np.zeros(len(graphs), bool)
    mask[[0, 2]] = True
    assert graphs[mask].n_atoms.tolist() == graphs[[0, 2]].n_atoms.tolist()
    assert graphs[2:5].n_edges.tolist() == graphs.n_edges[2:5].tolist()
    joined = CrystalGraphs.concatenate([graphs[:4], graphs[4:]])
    for name in CrystalGraphs._ARRAYS:
        np.testing.assert_array_equal(getattr(joined, name), getattr(graphs, name))
    restored = pickle.loads(pickle.dumps(graphs))
    np.testing.assert_array_equal(restored.batch([0, 5])["center"], graphs.batch([0, 5])["center"])
    other = CrystalGraphTransformer(cutoff=6.0).transform(crystals[:1])
    with pytest.raises(ValueError, match=r"cutoff=6\.0"):
        CrystalGraphs.concatenate([graphs, other])


def test_batch_merges_crystals_into_one_graph(pymatgen_structures):
    crystals = [pymatgen_structures["Si"], pymatgen_structures["LiFePO4"]]
    graphs = CrystalGraphTransformer().transform(crystals)
    batch = graphs.batch([1, 0])
    n_lfp, n_si = len(crystals[1]), len(crystals[0])
    assert batch["atom_features"].shape == (n_lfp + n_si, 92)
    assert batch["crystal_index"].tolist() == [0] * n_lfp + [1] * n_si
    assert batch["n_atoms"].tolist() == [n_lfp, n_si]
    edges_of_si = batch["center"] >= n_lfp  # Si's edges stay inside Si's atoms
    assert np.all(batch["neighbor"][edges_of_si] >= n_lfp)
    assert batch["center"].max() < n_lfp + n_si


def test_cache_reuses_graphs_and_parallel_build_is_identical(mp_subset):
    crystals = mp_subset.structure.iloc[:120].tolist()
    GRAPH_CACHE.clear()
    serial = CrystalGraphTransformer(cache=False).transform(crystals)
    assert len(GRAPH_CACHE) == 0
    parallel = CrystalGraphTransformer(n_jobs=2).transform(crystals)
    assert len(GRAPH_CACHE) == 120
    cached = CrystalGraphTransformer().transform(crystals)
    for name in CrystalGraphs._ARRAYS:
        np.testing.assert_array_equal(getattr(parallel, name), getattr(serial, name))
        np.testing.assert_array_equal(getattr(cached, name), getattr(serial, name))


def test_mp_graphs_are_compact(mp_subset):
    graphs = CrystalGraphTransformer().transform(mp_subset.structure)
    per_crystal = graphs.nbytes / len(graphs)
    # ~36,737 crystals must fit well under 1 GB
    assert per_crystal * 36_737 < 0.5e9
    assert np.all(graphs.n_edges <= 12 * graphs.n_atoms)
