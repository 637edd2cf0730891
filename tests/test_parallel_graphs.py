"""Graphs built in worker processes, and the error report (issue 14).

Workers get each crystal as plain arrays (or read its file themselves) and must give the
graphs, errors and warnings of a single process, bit for bit, with any joblib backend.
``transform_report`` builds what it can and says why not for the rest.
"""

import re
import tarfile
import threading
import warnings

import numpy as np
import pytest
from joblib import parallel_config
from pymatgen.core import DummySpecies, Lattice, Structure
from pymatgen.io.cif import CifWriter

import skcrystal.graphs.transformer as transformer_module
from skcrystal import CrystalGraphs, CrystalGraphTransformer
from skcrystal.graphs import GraphReport
from skcrystal.graphs.arrays import crystal_arrays
from skcrystal.graphs.build import StructureWarning
from skcrystal.graphs.cache import GRAPH_CACHE
from skcrystal.graphs.inputs import to_structure
from skcrystal.graphs.neighbors import neighbor_pairs

N_PARALLEL = transformer_module.MIN_PARALLEL_ITEMS  # fewer items are built in-process


def rocksalt(a=5.64, species=("Na", "Cl")):
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def carbon_monoxide_in_a_box():
    return Structure(Lattice.cubic(15.0), ["C", "O"], [[0, 0, 0], [1.128 / 15, 0, 0]])


def assert_same_graphs(graphs, expected):
    for name in CrystalGraphs._ARRAYS:
        mine, theirs = getattr(graphs, name), getattr(expected, name)
        assert mine.dtype == theirs.dtype, name
        np.testing.assert_array_equal(mine, theirs, err_msg=name)
    assert graphs.settings == expected.settings
    assert graphs.symmetry == expected.symmetry


def report_and_warnings(transformer, X, start=0):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = transformer.transform_report(X, start=start)
    return report, [(w.category, str(w.message)) for w in caught]


def assert_same_reports(report, expected):
    assert_same_graphs(report.graphs, expected.graphs)
    assert report.index.dtype == np.int64
    assert report.index.tolist() == expected.index.tolist()
    assert report.errors == expected.errors


@pytest.fixture(scope="module")
def mp_crystals(mp_subset):
    return mp_subset.structure.iloc[:150].tolist()


@pytest.fixture(scope="module")
def mp_cif_files(data_home, tmp_path_factory):
    """The first 80 CIFs of the staged MP tarball, as files."""
    folder = tmp_path_factory.mktemp("mp_cifs")
    paths = []
    with tarfile.open(data_home / "mp_cgcnn_formation_energy.tar.xz") as tar:
        for member in tar:
            if member.name.endswith(".cif") and len(paths) < 80:
                path = folder / member.name.rsplit("/", 1)[1]
                path.write_bytes(tar.extractfile(member).read())
                paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def odd_items(tmp_path_factory):
    """One of each kind of crystal the checks warn about or refuse, by name."""
    folder = tmp_path_factory.mktemp("odd")
    hydrated = folder / "hydrated.cif"
    writer = CifWriter(rocksalt(species=("Li", "F")))
    block = next(iter(writer.cif_file.data.values()))
    block.data["_atom_site_attached_hydrogens"] = ["1"] * len(block.data["_atom_site_label"])
    block.loops[-1].append("_atom_site_attached_hydrogens")
    hydrated.write_text(str(writer))
    empty = folder / "empty.cif"
    empty.write_text("")
    ionic_co = carbon_monoxide_in_a_box()
    ionic_co.add_oxidation_state_by_element({"C": 2, "O": -2})
    return {
        "alloy": Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]]),
        "vacancy": Structure(Lattice.cubic(3.0), [{"Fe": 0.75}], [[0, 0, 0]]),
        "molecule": carbon_monoxide_in_a_box(),
        "ionic molecule": ionic_co,
        "ions": rocksalt(species=("Na+", "Cl-")),
        "overlap": Structure(Lattice.cubic(0.8), ["Fe"], [[0, 0, 0]]),
        "dummy": Structure(Lattice.cubic(4.1), ["Cs", DummySpecies("X")], [[0, 0, 0], [0.5] * 3]),
        "no atom data": Structure(Lattice.cubic(4.0), ["Md"], [[0, 0, 0]]),
        "no sites": Structure(Lattice.cubic(3), [], []),
        "not a crystal": 42,
        "unreadable text": "data_x\n_cell_length_a 3\n",
        "empty file": str(empty),
        "file with a note": str(hydrated),
    }


# --- the arrays are pymatgen's ----------------------------------------------------------------
def test_crystal_arrays_and_neighbors_are_pymatgens(mp_crystals, odd_items):
    for structure in [*mp_crystals[:40], odd_items["alloy"], odd_items["ions"]]:
        crystal = crystal_arrays(structure)
        np.testing.assert_array_equal(crystal.lattice, structure.lattice.matrix)
        np.testing.assert_array_equal(crystal.frac_coords, structure.frac_coords)
        np.testing.assert_array_equal(crystal.cart_coords, structure.cart_coords)
        center, neighbor, image, distance = structure.get_neighbor_list(r=8.0)
        pairs = neighbor_pairs(crystal, 8.0)
        for mine, theirs in zip(pairs, (center, neighbor, distance, image), strict=True):
            np.testing.assert_array_equal(mine, theirs)
    assert crystal_arrays(odd_items["ions"]).species_z.tolist()[:2] == [11, 11]
    assert not crystal_arrays(odd_items["ions"]).elements_only
    assert crystal_arrays(odd_items["dummy"]).species_z.tolist() == [55, 0]


# --- workers give the graphs of one process -----------------------------------------------------
@pytest.mark.parametrize(("rule", "cutoff"), [("nearest", 8.0), ("shell", 8.0), ("radius", 6.0)])
def test_workers_build_the_graphs_of_one_process(mp_crystals, rule, cutoff):
    settings = {"neighbor_rule": rule, "cutoff": cutoff, "cache": False}
    serial = CrystalGraphTransformer(n_jobs=1, **settings).transform(mp_crystals)
    parallel = CrystalGraphTransformer(n_jobs=2, **settings).transform(mp_crystals)
    assert_same_graphs(parallel, serial)
    assert len(parallel) == len(mp_crystals)


def test_odd_crystals_get_the_same_errors_and_warnings_in_workers(odd_items):
    X = [rocksalt(), *odd_items.values(), *[rocksalt(5.7)] * N_PARALLEL]
    serial = report_and_warnings(CrystalGraphTransformer(n_jobs=1, cache=False), X, 120_000)
    report, given = report_and_warnings(CrystalGraphTransformer(n_jobs=2, cache=False), X, 120_000)
    assert_same_reports(report, serial[0])
    assert given == serial[1]
    # every item is in the index or in the errors, once, named by its place in the stream
    errors = dict(report.errors)
    assert sorted([*errors, *report.index.tolist()]) == list(range(120_000, 120_000 + len(X)))
    expected_errors = [
        r"X\[120006\] \(Fe\): site 0 \(Fe\) is 0\.800 Å from its own image",
        r"X\[120007\] \(XCs\): site 1 holds X0\+, which is not a chemical element",
        r"X\[120008\] \(Md\): element Md has no data in the atom feature table 'cgcnn'",
        r"X\[120009\] \(\): the structure has no sites",
        r"X\[120010\]: expected a pymatgen Structure",
        r"X\[120011\]: could not read a structure from CIF text",
        r"X\[120012\]: could not read a structure from file '.*empty\.cif'",
    ]
    assert list(errors) == list(range(120_006, 120_013))
    for pattern, message in zip(expected_errors, errors.values(), strict=True):
        assert re.match(pattern, message), message
    notes = [message for category, message in given if category is StructureWarning]
    assert len(notes) == 3
    assert re.match(
        r"X\[120013\] \(file '.*hydrated\.cif'\): Structure has implicit hydrogens", notes[0]
    )
    assert re.match(r"X\[120003\] \(CO\): .* linked to site 0 \(C\) form a molecule", notes[1])
    assert re.match(r"X\[120004\] \(CO\): .* linked to site 0 \(C2\+\) form a molecule", notes[2])


def test_transform_raises_what_it_did_in_the_order_it_did(odd_items):
    overlap, unknown = odd_items["overlap"], odd_items["no atom data"]
    filler = [rocksalt(5.7)] * N_PARALLEL
    for n_jobs in (1, 2):
        transformer = CrystalGraphTransformer(n_jobs=n_jobs, cache=False)
        # an item that cannot be read is refused before any graph is built...
        with pytest.raises(ValueError, match=r"^X\[2\]: expected a pymatgen Structure"):
            transformer.transform([unknown, overlap, 42, *filler])
        # ...a graph that cannot be built before an element without data
        with pytest.raises(ValueError, match=r"^X\[1\] \(Fe\): site 0 \(Fe\) is 0\.800 Å"):
            transformer.transform([unknown, overlap, *filler])
        with pytest.raises(ValueError, match=r"^X\[0\] \(Md\): element Md has no data"):
            transformer.transform([unknown, *filler])


def test_cif_files_are_read_in_workers(mp_cif_files, odd_items):
    files = [*mp_cif_files, odd_items["file with a note"], odd_items["empty file"]]
    serial = report_and_warnings(CrystalGraphTransformer(n_jobs=1, cache=False), files)
    parallel = report_and_warnings(CrystalGraphTransformer(n_jobs=2, cache=False), files)
    assert_same_reports(parallel[0], serial[0])
    assert parallel[1] == serial[1]
    assert parallel[0].index.tolist() == list(range(len(mp_cif_files) + 1))
    assert [p for p, _ in parallel[0].errors] == [len(files) - 1]
    note = [m for c, m in parallel[1] if c is StructureWarning and "implicit hydrogens" in m]
    assert note == [m for c, m in serial[1] if c is StructureWarning and "implicit" in m]
    assert note[0].startswith(f"X[{len(mp_cif_files)}] (file '")
    read_here = [to_structure(path, i) for i, path in enumerate(mp_cif_files)]
    in_memory = CrystalGraphTransformer(cache=False).transform(read_here)
    assert_same_graphs(parallel[0].graphs[: len(mp_cif_files)], in_memory)


# --- joblib backends ----------------------------------------------------------------------------
def test_loky_backend(mp_crystals):
    expected = CrystalGraphTransformer(n_jobs=1, cache=False).transform(mp_crystals)
    with parallel_config(backend="loky"):
        graphs = CrystalGraphTransformer(n_jobs=2, cache=False).transform(mp_crystals)
    assert_same_graphs(graphs, expected)


def test_threading_backend_passes_on_every_note(mp_cif_files, odd_items, monkeypatch):
    files = [*mp_cif_files[:N_PARALLEL], *[odd_items["file with a note"]] * 8]
    expected = report_and_warnings(CrystalGraphTransformer(n_jobs=1, cache=False), files)
    threads = set()
    build_chunk = transformer_module._build_chunk

    def recording_build_chunk(*args):
        threads.add(threading.get_ident())
        return build_chunk(*args)

    monkeypatch.setattr(transformer_module, "_build_chunk", recording_build_chunk)
    with parallel_config(backend="threading"):
        report = report_and_warnings(CrystalGraphTransformer(n_jobs=2, cache=False), files)
    assert threading.get_ident() not in threads and threads
    assert_same_reports(report[0], expected[0])
    assert report[1] == expected[1]
    with pytest.warns(UserWarning, match="still reaches"):  # recording threads restored it
        warnings.warn("still reaches the user", UserWarning, stacklevel=1)


def test_dask_backend(mp_crystals):
    distributed = pytest.importorskip("distributed")
    expected = CrystalGraphTransformer(n_jobs=1, cache=False).transform(mp_crystals)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as tasks,
        parallel_config(backend="dask"),
    ):
        graphs = CrystalGraphTransformer(n_jobs=2, cache=False).transform(mp_crystals)
    assert_same_graphs(graphs, expected)
    assert tasks.data, "no task ran on the dask workers"


# --- the report ---------------------------------------------------------------------------------
def test_report_of_crystals_none_of_which_can_be_built(odd_items):
    bad = [odd_items[name] for name in ("overlap", "dummy", "no atom data", "not a crystal")]
    for symmetry in (False, True):
        transformer = CrystalGraphTransformer(cutoff=6.0, symmetry=symmetry)
        report = transformer.transform_report(bad, start=7)
        assert isinstance(report, GraphReport)
        assert len(report.graphs) == 0 and report.graphs.settings == (6.0, 12, "cgcnn", "nearest")
        assert report.graphs.symmetry == symmetry
        assert report.index.dtype == np.int64 and report.index.tolist() == []
        assert [position for position, _ in report.errors] == [7, 8, 9, 10]


def test_report_refuses_bad_parameters_and_shapes():
    with pytest.raises(ValueError, match="cutoff must be a positive"):
        CrystalGraphTransformer(cutoff=-1).transform_report([rocksalt()])
    with pytest.raises(ValueError, match="X is empty"):
        CrystalGraphTransformer().transform_report([])
    with pytest.raises(ValueError, match="single Structure; wrap it in a list"):
        CrystalGraphTransformer().transform_report(rocksalt())
    with pytest.raises(ValueError, match="start must be an int >= 0"):
        CrystalGraphTransformer().transform_report([rocksalt()], start=-1)


def test_space_groups_of_the_report_are_those_of_transform(mp_crystals, mp_cif_files):
    crystals = mp_crystals[:N_PARALLEL]
    expected = CrystalGraphTransformer(symmetry=True, cache=False).transform(crystals)
    assert np.count_nonzero(expected.space_group) == len(crystals)
    X = [*crystals[:10], 42, *crystals[10:]]
    for n_jobs in (1, 2):
        report = CrystalGraphTransformer(symmetry=True, n_jobs=n_jobs).transform_report(X)
        assert_same_graphs(report.graphs, expected)
        assert [p for p, _ in report.errors] == [10]
    files = mp_cif_files[:N_PARALLEL]
    from_files = CrystalGraphTransformer(symmetry=True, n_jobs=2).transform(files)
    read_here = [to_structure(path, i) for i, path in enumerate(files)]
    in_memory = CrystalGraphTransformer(symmetry=True, cache=False).transform(read_here)
    assert_same_graphs(from_files, in_memory)


def test_cache_tells_ions_apart_and_keeps_no_views():
    GRAPH_CACHE.clear()
    ionic = carbon_monoxide_in_a_box()
    ionic.add_oxidation_state_by_element({"C": 2, "O": -2})
    for structure, name in ((carbon_monoxide_in_a_box(), "C"), (ionic, "C2+")):
        for _ in range(2):  # built, then from the cache
            with pytest.warns(
                StructureWarning, match=rf"linked to site 0 \({re.escape(name)}\) form"
            ):
                CrystalGraphTransformer().transform([structure])
    CrystalGraphTransformer(n_jobs=2).transform([rocksalt(5.0 + i / 100) for i in range(70)])
    parts = [GRAPH_CACHE.get(key) for key in list(GRAPH_CACHE._store)]
    assert len(parts) == 72
    assert all(a.base is None for p in parts for a in (p.center, p.vector, p.species_z))
