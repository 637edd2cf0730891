"""Saving/loading models as safetensors, bundled models, and the `skcrystal` command."""

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from skcrystal import CGCNNRegressor, CrysAEPretrainer, CrystalGraphTransformer
from skcrystal.cli import _load_data, main
from skcrystal.hub import available_models, load_model, model_card, save_model


@pytest.fixture(scope="module")
def small_model(mp_subset):
    crystals = mp_subset.structure.iloc[:64].tolist()
    y = mp_subset.e_form.to_numpy()[:64]
    reg = CGCNNRegressor(max_epochs=1, early_stopping=False, random_state=0, n_conv=2)
    return reg.fit(crystals, y), crystals


def test_save_and_load_give_identical_predictions(small_model, tmp_path):
    reg, crystals = small_model
    path = save_model(reg, tmp_path / "m.safetensors", data="64 MP crystals")
    restored = load_model(path)
    np.testing.assert_array_equal(restored.predict(crystals), reg.predict(crystals))
    assert restored.n_conv == 2
    assert model_card(path)["card"] == {"data": "64 MP crystals"}
    graphs = CrystalGraphTransformer().transform(crystals[:3])
    np.testing.assert_array_equal(restored.predict(graphs), reg.predict(crystals[:3]))


def test_unknown_model_and_non_skcrystal_file_are_refused(tmp_path):
    with pytest.raises(ValueError, match="neither a model file nor a bundled model"):
        load_model("no-such-model")
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a skcrystal model file"):
        load_model(tmp_path / "other.safetensors")


def test_estimators_load_named_models_of_their_own_class_without_the_hub():
    """Encoders and teachers are read by the estimators themselves, as the class they need."""
    from skcrystal import CrysXPPRegressor
    from skcrystal.estimators.crysgnn import load_crysgnn
    from skcrystal.model_files import load_as

    teacher = load_as(CrysAEPretrainer, "crysgnn-mp")  # a subclass is one too
    assert type(teacher).__name__ == "CrysGNNPretrainer"
    assert type(load_crysgnn("crysgnn-mp")) is type(teacher)
    reg = CrysXPPRegressor(encoder="cgcnn-mp-formation-energy")
    with pytest.raises(
        ValueError,
        match=r"^cgcnn-mp-formation-energy holds a CGCNNRegressor, not a CrysAEPretrainer$",
    ):
        reg._encoder_state()
    with pytest.raises(
        ValueError, match=r"^encoder 'crysae-mp' holds a CrysAEPretrainer, not a CrysGNNPretrainer$"
    ):
        load_crysgnn("crysae-mp", role="encoder")


def test_bundled_model_predicts_formation_energies():
    assert "cgcnn-mp-formation-energy" in available_models()
    card = model_card("cgcnn-mp-formation-energy")["card"]
    assert card["test_mae"] < 0.127
    model = load_model("cgcnn-mp-formation-energy")
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]])
    e_nacl, e_si = model.predict([nacl, si])
    assert -2.6 < e_nacl < -1.6  # MP (PBE): about -2.1 eV/atom
    assert abs(e_si) < 0.2  # an element in its ground state: 0 by definition


def test_cli_predict_writes_csv(small_model, tmp_path, capsys):
    reg, crystals = small_model
    model = save_model(reg, tmp_path / "m.safetensors")
    files = []
    for i, crystal in enumerate(crystals[:2]):
        files.append(tmp_path / f"{i}.cif")
        crystal.to(filename=str(files[-1]))
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(model), *map(str, files), "--csv", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "file,prediction" and len(lines) == 3
    expected = reg.predict(crystals[:2])
    assert float(lines[1].split(",")[1]) == pytest.approx(expected[0], abs=1e-5)


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif")
    assert main(["predict", "cgcnn-mp-formation-energy", str(bad)]) == 1
    listed, summary = capsys.readouterr().err.strip().split("\n")  # one line each
    assert listed.startswith(f"{bad}: X[0]")
    assert summary.startswith("skcrystal predict: error: 1 of 1 files could not be predicted")


def test_cli_demo_runs_offline(tmp_path, capsys):
    out = tmp_path / "demo.png"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "LiFePO4" in printed and "≈0 (element)" in printed and "PBE gap" in printed
    assert out.read_bytes()[:4] == b"\x89PNG"


def _csv_dataset(folder, mp_subset, n=40):
    rows = []
    for i, (structure, value) in enumerate(
        zip(mp_subset.structure[:n], mp_subset.e_form[:n], strict=True)
    ):
        structure.to(filename=str(folder / f"c{i}.cif"))
        rows.append(f"c{i}.cif,{value}")
    data = folder / "data.csv"
    data.write_text("file,e_form\n" + "\n".join(rows) + "\n")
    return data


def test_cli_fit_pretrain_explain_round_trip(tmp_path, mp_subset, capsys):
    data = _csv_dataset(tmp_path, mp_subset)
    encoder = tmp_path / "ae.safetensors"
    assert main(["pretrain", "--data", str(data), "--model", "crysae", "--epochs", "2",
                 "--out", str(encoder)]) == 0  # fmt: skip
    assert isinstance(load_model(encoder), CrysAEPretrainer)
    model = tmp_path / "xpp.safetensors"
    assert main(["fit", "--data", str(data), "--model", "crysxpp", "--encoder", str(encoder),
                 "--epochs", "3", "--out", str(model)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "Validation MAE" in out and model.is_file()
    assert model_card(model)["card"]["target"] == "e_form"
    assert main(["explain", str(model)]) == 0
    assert "electronegativity" in capsys.readouterr().out
    assert main(["predict", str(model), str(tmp_path / "c0.cif")]) == 0


def test_cli_fits_alignn(tmp_path, mp_subset, capsys):
    data = _csv_dataset(tmp_path, mp_subset, n=20)
    model = tmp_path / "alignn.safetensors"
    assert main(["fit", "--data", str(data), "--model", "alignn", "--epochs", "1",
                 "--out", str(model)]) == 0  # fmt: skip
    assert "Validation MAE" in capsys.readouterr().out
    loaded = load_model(model)
    assert type(loaded).__name__ == "ALIGNNRegressor"
    assert loaded.graph_settings_[3] == "shell"


def test_ensembles_and_conformal_models_save_and_load(mp_subset, tmp_path):
    from skcrystal.uncertainty import ConformalRegressor, EnsembleRegressor

    crystals, y = mp_subset.structure.tolist(), mp_subset.e_form.to_numpy()
    member = CGCNNRegressor(max_epochs=2, n_conv=2, random_state=0)
    ensemble = EnsembleRegressor(member, n_estimators=2, random_state=0)
    conformal = ConformalRegressor(ensemble, calibration_fraction=0.3, method="domain")
    conformal.set_params(random_state=0).fit(crystals[:200], y[:200])
    path = save_model(conformal, tmp_path / "conf.safetensors", data="200 MP crystals")
    restored = load_model(path)
    new = crystals[200:230]
    for got, expected in zip(
        restored.predict_interval(new, coverage=0.8),
        conformal.predict_interval(new, coverage=0.8),
        strict=True,
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    fitted = conformal.estimator_
    np.testing.assert_allclose(
        restored.estimator_.applicability(new), fitted.applicability(new), rtol=1e-5
    )
    card = model_card(path)
    assert card["estimator"] == "ConformalRegressor" and card["params"]["method"] == "domain"
    assert card["inner"]["members"][1]["params"]["n_conv"] == 2
    single = save_model(fitted.estimators_[0], tmp_path / "one.safetensors")
    assert type(load_model(single)).__name__ == "CGCNNRegressor"


def test_cli_fits_a_calibrated_ensemble_and_predicts_intervals(tmp_path, mp_subset, capsys):
    data = _csv_dataset(tmp_path, mp_subset, n=60)
    model = tmp_path / "conf.safetensors"
    assert main(["fit", "--data", str(data), "--epochs", "2", "--members", "2",
                 "--calibrate", "0.3", "--out", str(model)]) == 0  # fmt: skip
    assert "18 crystals held out for calibration (normalized)" in capsys.readouterr().out
    table = tmp_path / "intervals.csv"
    files = [str(tmp_path / f"c{i}.cif") for i in range(3)]
    assert main(["predict", str(model), *files, "--interval", "0.8", "--csv", str(table)]) == 0
    frame = pd.read_csv(table, index_col="file")
    assert list(frame.columns) == ["prediction", "lower", "upper"]
    assert (frame.lower < frame.prediction).all() and (frame.prediction < frame.upper).all()
    ensemble = tmp_path / "ens.safetensors"
    save_model(load_model(model).estimator_, ensemble)
    assert main(["predict", str(ensemble), *files, "--csv", str(table)]) == 0
    assert list(pd.read_csv(table, index_col="file").columns) == ["prediction", "std"]
    assert main(["predict", "cgcnn-mp-formation-energy", files[0], "--interval", "0.9"]) == 1
    assert "no calibration for intervals" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's usage error
        main(["predict", str(model), files[0], "--interval", "90"])
    assert "expected a coverage between 0 and 1, got '90'" in capsys.readouterr().err


def test_cli_refuses_what_cannot_work_in_one_line(tmp_path, mp_subset, capsys):
    data = _csv_dataset(tmp_path, mp_subset, n=5)
    cases = [
        (["explain", "cgcnn-mp-formation-energy"], "no feature selector"),
        (["predict", "crysae-mp", str(tmp_path / "c0.cif")], "pretrained encoder"),
        (["fit", "--data", str(data), "--target", "gap", "--out", "x.safetensors"], "'gap'"),
        (["fit", "--data", str(tmp_path / "none.csv"), "--out", "x.safetensors"], "no such"),
    ]
    for argv, reason in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert reason in err and "\n" not in err, err


N_CGCNN = 30


@pytest.fixture(scope="module")
def cgcnn_folder(data_home, tmp_path_factory):
    """The first crystals of the real MP set, in the CGCNN layout (headerless id_prop.csv)."""
    folder = tmp_path_factory.mktemp("cgcnn")
    wanted = {f"mp_cgcnn_formation_energy/{i}.cif" for i in range(N_CGCNN)}
    with tarfile.open(data_home / "mp_cgcnn_formation_energy.tar.xz") as tar:
        for member in tar:
            if member.name in wanted:
                (folder / Path(member.name).name).write_bytes(tar.extractfile(member).read())
            elif member.name.endswith("/id_prop.csv"):
                rows = tar.extractfile(member).read().decode().splitlines()[:N_CGCNN]
    (folder / "id_prop.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def alignn_folder(data_home, tmp_path_factory):
    """The real ALIGNN/JARVIS sample: 70 POSCARs, an id_prop.csv naming 50 of them."""
    root = tmp_path_factory.mktemp("alignn")
    archive = data_home / "jarvis_alignn_sample" / "jarvis_optb88vdw_gap_sample50.tar.xz"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root / "jarvis_alignn_sample"


@pytest.mark.parametrize("layout", ["cgcnn", "alignn"])
def test_id_prop_csv_reads_as_its_folder(layout, cgcnn_folder, alignn_folder):
    folder = cgcnn_folder if layout == "cgcnn" else alignn_folder
    first_id, first_value = (folder / "id_prop.csv").read_text().splitlines()[0].split(",")
    X, y = _load_data(folder / "id_prop.csv", None)
    X_folder, y_folder = _load_data(folder, None)
    assert len(X) == len(y) == {"cgcnn": N_CGCNN, "alignn": 50}[layout]  # no row lost
    assert y.name == "target" and y.index[0] == first_id and y.iloc[0] == float(first_value)
    pd.testing.assert_series_equal(y, y_folder)
    assert all(a == b for a, b in zip(X, X_folder, strict=True))


def test_cli_fit_on_a_cgcnn_id_prop_csv(cgcnn_folder, tmp_path, capsys):
    model = tmp_path / "m.safetensors"
    argv = ["fit", "--data", str(cgcnn_folder / "id_prop.csv"), "--epochs", "2"]
    assert main([*argv, "--out", str(model)]) == 0
    assert model_card(model)["card"]["target"] == "target"


def test_cli_refuses_a_csv_whose_header_is_data(alignn_folder, tmp_path, capsys):
    headerless = tmp_path / "gaps.csv"  # ALIGNN rows, with paths, but no header line
    rows = (alignn_folder / "id_prop.csv").read_text().splitlines()
    headerless.write_text("".join(f"{alignn_folder}/{row}\n" for row in rows))
    assert main(["fit", "--data", str(headerless), "--out", str(tmp_path / "m.st")]) == 1
    err = capsys.readouterr().err.strip()
    first = f"{alignn_folder}/{rows[0].split(',')[0]}"
    assert f"looks like data, not a header ({first!r} is a number or a file)" in err
    assert "\n" not in err
    numeric_ids = tmp_path / "ids.csv"
    numeric_ids.write_text("1,-1.79\n2,-1.25\n")
    assert main(["pretrain", "--data", str(numeric_ids), "--out", str(tmp_path / "m.st")]) == 1
    assert "('1' is a number or a file)" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:.*neighbour graph does not repeat")  # JARVIS 2-D layers
def test_cli_predict_expands_folders_and_patterns(small_model, alignn_folder, tmp_path, capsys):
    reg, _ = small_model
    model = save_model(reg, tmp_path / "m.safetensors")
    out = tmp_path / "out.csv"
    assert main(["predict", str(model), str(alignn_folder), "--csv", str(out)]) == 0
    table = pd.read_csv(out, index_col="file")
    poscars = sorted(alignn_folder.glob("POSCAR-*.vasp"))
    assert table.index.tolist() == [str(p) for p in poscars] and len(poscars) == 70
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    for poscar in poscars[:3]:
        (nested / poscar.name).write_bytes(poscar.read_bytes())
    (nested / "notes.txt").write_text("not a crystal")
    pattern = str(tmp_path / "**" / "*.vasp")  # quoted: the shell leaves it to skcrystal
    assert main(["predict", str(model), pattern, "--csv", str(out)]) == 0
    table = pd.read_csv(out, index_col="file")
    assert table.index.tolist() == [str(nested / p.name) for p in poscars[:3]]
    np.testing.assert_allclose(
        table.prediction, reg.predict([str(p) for p in poscars[:3]]), atol=1e-5
    )


def test_cli_predict_refuses_what_matches_nothing(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a crystal")
    cases = [
        (str(empty), "the folder holds no *.cif, *.vasp, POSCAR*, CONTCAR* file"),
        (str(tmp_path / "**" / "*.cif"), "the pattern matches no file"),
        (str(tmp_path / "missing.cif"), "no such file or folder"),
    ]
    for argument, reason in cases:
        assert main(["predict", "cgcnn-mp-formation-energy", argument]) == 1
        err = capsys.readouterr().err.strip()
        assert f"skcrystal predict: error: {argument}: {reason}" in err and "\n" not in err


def test_cli_fit_writes_a_checkpoint_that_the_same_command_resumes(tmp_path, mp_subset, capsys):
    data = _csv_dataset(tmp_path, mp_subset)
    checkpoint, first, second = (
        tmp_path / "fit.ckpt",
        tmp_path / "a.safetensors",
        tmp_path / "b.safetensors",
    )
    command = ["fit", "--data", str(data), "--epochs", "2", "--checkpoint", str(checkpoint)]
    assert main([*command, "--out", str(first)]) == 0
    assert checkpoint.is_file()
    assert "train_loss" in capsys.readouterr().out  # skorch's table of the epochs
    # the fit had finished: run again, it trains no epoch and saves the same model
    assert main([*command, "--out", str(second)]) == 0
    out = capsys.readouterr().out
    assert "train_loss" not in out and "Validation MAE" in out
    X = [str(tmp_path / "c0.cif")]
    np.testing.assert_array_equal(load_model(first).predict(X), load_model(second).predict(X))
    assert main([*command, "--members", "2", "--out", str(second)]) == 1
    assert "--checkpoint resumes one network's fit" in capsys.readouterr().err
