"""Parity with the authors' CGCNN: their pre-trained weights in CGCNNRegressor."""

from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
import torch
from authors_reference import authors_forward

from skcrystal import CGCNNRegressor
from skcrystal.checkpoints import read_foreign_checkpoint
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.estimators import regressors

N_CRYSTALS = 300
# MAE (eV/atom) on the first 300 crystals, measured: 0.0761 with the authors' table, 0.0918
# with ours. These 300 (mp-100xxxx) are mostly hypothetical binaries in simple prototypes,
# harder than the whole set (see docs/benchmarks.md, parity_cgcnn, for all 36,737).
MAX_MAE_AUTHORS_TABLE = 0.09
MAX_MAE_OUR_TABLE = 0.11


@pytest.fixture(scope="module")
def weights(data_home):
    folder = data_home / "reference_weights" / "cgcnn_original"
    assert folder.is_dir(), f"{folder} not found"
    return folder


@pytest.fixture(scope="module")
def formation_energy(weights):
    return weights / "formation-energy-per-atom.pth.tar"


@pytest.fixture(scope="module")
def crystals(data_home):
    return load_mp_formation_energy(limit=N_CRYSTALS)


def test_loads_architecture_and_normalizer(formation_energy):
    reg = CGCNNRegressor.from_cgcnn_checkpoint(formation_energy)
    assert (reg.atom_fea_len, reg.n_conv, reg.h_fea_len, reg.n_h) == (64, 4, 32, 1)
    assert len(reg.module_.convs) == 4 and not reg.module_.training
    assert reg.graph_settings_ == (8.0, 12, "cgcnn-authors", "nearest")  # its table
    assert reg.target_mean_ == pytest.approx([-1.699178719088435])
    assert reg.target_scale_ == pytest.approx([1.0563029540802564])
    state = read_foreign_checkpoint(formation_energy)["state_dict"]
    assert torch.equal(reg.module_.convs[3].bn2.running_var, state["convs.3.bn2.running_var"])


def test_matches_authors_forward_pass(formation_energy, atom_init, crystals):
    ckpt = read_foreign_checkpoint(formation_energy)
    reg = CGCNNRegressor.from_cgcnn_checkpoint(formation_energy, atom_features=atom_init)
    table = {int(z): row for z, row in json.loads(atom_init.read_text()).items()}
    structures = crystals["structure"].iloc[:20].tolist()
    expected = []
    for s in structures:  # the authors' CIFData: sorted get_all_neighbors, 12 per atom
        nbrs = [sorted(n, key=lambda nb: nb[1])[:12] for n in s.get_all_neighbors(8.0)]
        assert all(len(n) == 12 for n in nbrs)  # no padding in these crystals
        out = authors_forward(
            ckpt["state_dict"],
            torch.tensor([table[site.specie.Z] for site in s], dtype=torch.float32),
            torch.tensor([[nb.index for nb in n] for n in nbrs]),
            torch.tensor([[nb.nn_distance for nb in n] for n in nbrs], dtype=torch.float64),
        )
        expected.append(float(out) * ckpt["normalizer"]["std"] + ckpt["normalizer"]["mean"])
    np.testing.assert_allclose(reg.predict(structures), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("table", "max_mae"), [("authors", MAX_MAE_AUTHORS_TABLE), ("cgcnn", MAX_MAE_OUR_TABLE)]
)
def test_mae_on_materials_project(formation_energy, crystals, table, max_mae):
    """The default table is the authors' ("cgcnn-authors"): the weights' own inputs."""
    params = {} if table == "authors" else {"atom_features": "cgcnn"}
    reg = CGCNNRegressor.from_cgcnn_checkpoint(formation_energy, **params)
    expected = "cgcnn-authors" if table == "authors" else "cgcnn"
    assert reg.graph_builder_.fit().atom_feature_table_.name == expected
    predictions = reg.predict(crystals["structure"].tolist())
    y = crystals["e_form"].to_numpy()
    mae = np.abs(predictions - y).mean()
    assert mae < max_mae
    assert mae < 0.15 * np.abs(y - y.mean()).mean()  # far better than the mean predictor


def test_refuses_classifier(weights):
    with pytest.raises(ValueError, match="classifier"):
        CGCNNRegressor.from_cgcnn_checkpoint(weights / "semi-metal-classification.pth.tar")


def test_wrong_edge_length(formation_energy, tmp_path):
    ckpt = read_foreign_checkpoint(formation_energy)
    state = dict(ckpt["state_dict"])
    for k in range(4):  # as if trained with a 6 Å cutoff: 31 Gaussians instead of 41
        state[f"convs.{k}.fc_full.weight"] = state[f"convs.{k}.fc_full.weight"][:, :159]
    path = tmp_path / "cutoff6.pth.tar"
    torch.save({"state_dict": state, "normalizer": ckpt["normalizer"]}, path)
    with pytest.raises(ValueError, match=r"edge features of length 31.*gives 41.*6 Å"):
        CGCNNRegressor.from_cgcnn_checkpoint(path)
    reg = CGCNNRegressor.from_cgcnn_checkpoint(path, cutoff=6.0)
    assert reg.graph_builder_.cutoff == 6.0 and reg.module_.expansion.n_features == 31


def test_refuses_atom_table_of_other_width(formation_energy):
    with pytest.raises(ValueError, match="expects 92 atom features"):
        CGCNNRegressor.from_cgcnn_checkpoint(formation_energy, atom_features={"1": [0.0, 1.0]})


def test_docstring_example(data_home):
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    method = CGCNNRegressor.from_cgcnn_checkpoint
    for test in finder.find(method, "from_cgcnn_checkpoint", globs=vars(regressors).copy()):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_refuses_checkpoint_without_normalizer(formation_energy, tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(read_foreign_checkpoint(formation_energy)["state_dict"], path)
    with pytest.raises(ValueError, match="no normalizer"):
        CGCNNRegressor.from_cgcnn_checkpoint(path)
