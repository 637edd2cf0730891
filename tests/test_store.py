"""GraphStore: graphs on disk that read back exactly, resume, refuse damage, and train."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.graphs import CrystalGraphs, GraphStore
from skcrystal.graphs.store import OPEN_CHUNKS


@pytest.fixture(scope="module")
def crystals(mp_subset):
    return mp_subset.structure.tolist()


@pytest.fixture(scope="module")
def graphs(crystals):
    return CrystalGraphTransformer(cache=False).transform(crystals)


@pytest.fixture(scope="module")
def store(crystals, tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "mp.graphs"
    return GraphStore.create(path, CrystalGraphTransformer(), iter(crystals), chunk_size=150)


def assert_same_graphs(a: CrystalGraphs, b: CrystalGraphs) -> None:
    assert a.settings == b.settings and len(a) == len(b)
    for name in CrystalGraphs._ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_store_round_trips_exactly(store, graphs):
    assert (len(store), store.n_chunks, store.complete) == (400, 3, True)
    assert_same_graphs(store.load(), graphs)
    rows = [399, 0, 151, 5, 300, 150]  # across chunks, out of order
    assert_same_graphs(store[rows], graphs[rows])
    assert_same_graphs(store[10:20], graphs[10:20])
    batch, expected = store.batch(rows), graphs.batch(rows)
    for name in expected:
        np.testing.assert_array_equal(batch[name], expected[name], err_msg=name)
    np.testing.assert_array_equal(store.n_atoms, graphs.n_atoms)
    np.testing.assert_array_equal(store.index, np.arange(400))
    np.testing.assert_array_equal(store.species_z, graphs.species_z)
    assert len(store._chunks) <= OPEN_CHUNKS
    assert_same_graphs(pickle.loads(pickle.dumps(store))[rows], graphs[rows])
    assert len(pickle.dumps(store)) < 1000  # a path, not the graphs
    with pytest.raises(TypeError, match="cannot be converted to a numpy array"):
        np.asarray(store)


def test_a_finished_store_is_not_rebuilt_but_can_grow(store, crystals, graphs, tmp_path):
    with pytest.raises(FileExistsError, match="finished graph store"):
        GraphStore.create(store.path, CrystalGraphTransformer(), crystals)
    path = tmp_path / "grow.graphs"
    small = GraphStore.create(path, CrystalGraphTransformer(), crystals[:30], chunk_size=20)
    grown = small.append(crystals[30:50], chunk_size=20)
    assert (len(grown), grown.n_chunks) == (50, 3)
    np.testing.assert_array_equal(grown.index, np.arange(50))
    assert_same_graphs(grown.load(), graphs[:50])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a graph store"):
        GraphStore.create(tmp_path / "other", CrystalGraphTransformer(), crystals)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_refused_items_are_reported_or_stop_the_build(crystals, tmp_path):
    fe = Structure(Lattice.cubic(0.8), ["Fe"], [[0, 0, 0]])  # overlapping images
    items = [*crystals[:25], fe, *crystals[25:40], "not a crystal", *crystals[40:45]]
    report = GraphStore.create(
        tmp_path / "report.graphs", CrystalGraphTransformer(), items, chunk_size=10,
        errors="report",
    )  # fmt: skip
    assert len(report) == 45 and [p for p, _ in report.errors] == [25, 41]
    assert report.errors[0][1].startswith("X[25] (Fe): site 0 (Fe) is 0.800 Å from its own")
    assert report.errors[1][1].startswith("X[41]")
    np.testing.assert_array_equal(report.index, [*range(25), *range(26, 41), *range(42, 47)])
    with pytest.raises(ValueError, match=r"^X\[25\] \(Fe\): site 0"):
        GraphStore.create(tmp_path / "raise.graphs", CrystalGraphTransformer(), items, chunk_size=9)
    stopped = GraphStore.open(tmp_path / "raise.graphs")
    assert (len(stopped), stopped.complete) == (18, False)  # the chunks before it are kept


def test_a_damaged_chunk_is_an_error_naming_it(crystals, tmp_path):
    path = tmp_path / "damaged.graphs"
    GraphStore.create(path, CrystalGraphTransformer(), crystals[:60], chunk_size=20)
    target = path / "chunk-000001" / "distance.npy"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF
    target.write_bytes(bytes(data))
    store = GraphStore.open(path)
    assert len(store[:20]) == 20  # chunk 0 is intact
    with pytest.raises(ValueError, match=r"chunk chunk-000001 is damaged: distance\.npy does not"):
        store[25]
    with pytest.raises(ValueError, match="chunk-000001 is damaged"):
        GraphStore.open(path).verify()


def test_a_killed_build_resumes_to_the_same_store(crystals, tmp_path):
    items = tmp_path / "items.pkl"
    items.write_bytes(pickle.dumps(crystals[:240]))
    path = tmp_path / "killed.graphs"
    script = """
import pickle, sys, time
from skcrystal import CrystalGraphTransformer
from skcrystal.graphs import GraphStore

def slow(crystals):  # three chunks at once, then one crystal a second
    for i, crystal in enumerate(crystals):
        if i >= 120:
            time.sleep(1)
        yield crystal

crystals = pickle.loads(open(sys.argv[1], "rb").read())
GraphStore.create(sys.argv[2], CrystalGraphTransformer(), slow(crystals), chunk_size=40)
"""
    build = subprocess.Popen([sys.executable, "-c", script, str(items), str(path)])
    manifest = path / "store.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if manifest.exists() and len(json.loads(manifest.read_text())["chunks"]) >= 3:
            break
        time.sleep(0.2)
    time.sleep(1.5)  # into the slow fourth chunk
    os.kill(build.pid, signal.SIGKILL)
    build.wait()
    interrupted = GraphStore.open(path)  # readable as it was left: the finished chunks
    assert (interrupted.n_chunks, interrupted.complete) == (3, False)
    with pytest.raises(ValueError, match=r"cutoff=6\.0 \(store: 8\.0\)"):
        GraphStore.create(path, CrystalGraphTransformer(cutoff=6.0), crystals[:240])
    with pytest.raises(ValueError, match=r"X\[119\] is not the item"):
        GraphStore.create(path, CrystalGraphTransformer(), crystals[1:241])
    (path / "chunk-000003.tmp").mkdir()  # as a kill while writing a chunk leaves it
    resumed = GraphStore.create(path, CrystalGraphTransformer(), crystals[:240], chunk_size=40)
    fresh = GraphStore.create(
        tmp_path / "fresh.graphs", CrystalGraphTransformer(), crystals[:240], chunk_size=40
    )
    assert resumed.complete and not list(path.glob("*.tmp"))
    assert_same_graphs(resumed.load(), fresh.load())
    chunks = [json.loads((s.path / "store.json").read_text())["chunks"] for s in (resumed, fresh)]
    assert [c["sha256"] for c in chunks[0]] == [c["sha256"] for c in chunks[1]]


def test_estimators_train_and_predict_from_a_store(store, graphs, mp_subset):
    y = mp_subset.e_form.to_numpy()
    params = dict(max_epochs=2, early_stopping=False, random_state=0, n_conv=2, batch_size=64)
    from_store = CGCNNRegressor(**params).fit(store, y)
    from_memory = CGCNNRegressor(**params).fit(graphs, y)
    np.testing.assert_array_equal(from_store.predict(store), from_memory.predict(graphs))
    np.testing.assert_array_equal(from_store.predict(store), from_store.predict(graphs))
    assert len(store._chunks) <= OPEN_CHUNKS
