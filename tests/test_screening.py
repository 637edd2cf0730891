"""Predicting many crystals chunk by chunk: iter_predictions and `skcrystal predict --out`."""

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from skcrystal import CGCNNRegressor, CrystalGraphTransformer
from skcrystal.cli import main
from skcrystal.graphs import GraphStore
from skcrystal.hub import save_model
from skcrystal.screening import iter_predictions

OVERLAPPING = Structure(Lattice.cubic(0.8), ["Fe"], [[0, 0, 0]])


@pytest.fixture(scope="module")
def model(mp_subset):
    crystals = mp_subset.structure.iloc[:64].tolist()
    reg = CGCNNRegressor(max_epochs=1, early_stopping=False, random_state=0, n_conv=2)
    return reg.fit(crystals, mp_subset.e_form.to_numpy()[:64])


@pytest.fixture(scope="module")
def cif_files(mp_subset, tmp_path_factory):
    """30 MP crystals as CIF files, and one unreadable file at position 7."""
    folder = tmp_path_factory.mktemp("cifs")
    files = []
    for i, crystal in enumerate(mp_subset.structure.iloc[100:130]):
        files.append(folder / f"c{i:02d}.cif")
        crystal.to(filename=str(files[-1]))
    files.insert(7, folder / "broken.cif")
    files[7].write_text("data_broken\n_cell_length_a 3\n")
    return files


def test_every_item_is_predicted_or_reported_once(model, mp_subset):
    crystals = mp_subset.structure.iloc[100:125].tolist()
    items = [*crystals[:10], OVERLAPPING, *crystals[10:], "not a crystal"]
    chunks = list(iter_predictions(model, iter(items), chunk_size=4))
    predicted = pd.concat([c.table for c in chunks])
    errors = [e for c in chunks for e in c.errors]
    assert predicted.index.tolist() == [*range(10), *range(11, 26)]
    assert [position for position, _ in errors] == [10, 26]
    assert errors[0][1].startswith("X[10] (Fe): site 0 (Fe) is 0.800 Å")
    np.testing.assert_allclose(predicted.prediction, model.predict(crystals), rtol=1e-6)


def test_predictions_from_a_store_equal_those_from_memory(model, mp_subset, tmp_path):
    crystals = mp_subset.structure.iloc[:50].tolist()
    items = [*crystals[:20], OVERLAPPING, *crystals[20:]]
    store = GraphStore.create(
        tmp_path / "s.graphs", CrystalGraphTransformer(), items, chunk_size=16, errors="report"
    )
    chunks = list(iter_predictions(model, store, chunk_size=7))
    table = pd.concat([c.table for c in chunks])
    assert table.index.tolist() == [*range(20), *range(21, 51)]
    assert [p for c in chunks for p, _ in c.errors] == [20]
    # other batches than predict's: the same up to float32 round-off
    np.testing.assert_allclose(table.prediction, model.predict(crystals), rtol=1e-5)
    np.testing.assert_array_equal(model.predict(store), model.predict(crystals))


def test_cli_writes_every_row_and_reports_the_unreadable_file(model, cif_files, tmp_path, capsys):
    path = save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / "predictions.csv"
    files = [str(f) for f in cif_files]
    code = main(["predict", str(path), *files, "--out", str(out), "--chunk-size", "8"])
    assert code == 1
    assert "1 of 31 files could not be predicted" in capsys.readouterr().err
    table = pd.read_csv(out, index_col="file")
    assert table.index.tolist() == [f for f in files if "broken" not in f]
    np.testing.assert_allclose(table.prediction, model.predict(files[:7] + files[8:]), atol=1e-5)
    errors = pd.read_csv(tmp_path / "predictions.errors.csv")
    assert errors.file.tolist() == [files[7]] and errors.error[0].startswith("X[7]")


def test_cli_resumes_an_interrupted_run(model, cif_files, tmp_path, capsys):
    path = save_model(model, tmp_path / "m.safetensors")
    files = [str(f) for f in cif_files]
    full, part = tmp_path / "full.csv", tmp_path / "part.csv"
    main(["predict", str(path), *files, "--out", str(full)])
    main(["predict", str(path), *files[:12], "--out", str(part), "--chunk-size", "5"])
    with open(part, "a") as f:  # as a run killed while writing a row leaves it
        f.write(files[12][:10])
    listing = cif_files[0].parent / "list.csv"  # the files as a CSV list, relative to it
    listing.write_text("path\n" + "\n".join(f.name for f in cif_files) + "\n")
    assert main(["predict", str(path), str(listing), "--out", str(part), "--resume"]) == 1
    assert "Resuming: 12 of 31 files done before" in capsys.readouterr().out
    resumed, fresh = pd.read_csv(part, index_col="file"), pd.read_csv(full, index_col="file")
    pd.testing.assert_frame_equal(resumed, fresh)
    assert pd.read_csv(tmp_path / "part.errors.csv").file.tolist() == [files[7]]
