"""GATGNN (issue 11): the attention layer's maths, composition attention, the regressor on
real crystals, the scikit-learn contract, saving, and distillation into it."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from torch.nn import functional as F

from skcrystal import CrystalGraphTransformer, DistilledRegressor, GATGNNRegressor
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.hub import load_model, save_model
from skcrystal.nn.gatgnn import GATGNN, AGATConv
from skcrystal.recipes import recipe

TINY = dict(width=16, n_layers=1, heads=2)


@pytest.fixture(scope="module")
def mp(mp_subset):
    structures = mp_subset.structure.tolist()
    graphs = CrystalGraphTransformer().transform(structures)
    return structures, graphs, mp_subset.e_form.to_numpy()


def test_agat_attention_is_a_softmax_over_each_atoms_bonds():
    torch.manual_seed(0)
    conv = AGATConv(width=4, heads=3).eval()
    atoms, bonds = torch.rand(3, 4), torch.rand(5, 4)
    center = torch.tensor([0, 0, 0, 1, 2])
    neighbor = torch.tensor([1, 2, 1, 0, 0])
    out = conv(atoms, center, neighbor, bonds)
    # by hand: transformed ends, scores, softmax over the bonds of each atom, head mean
    weight = conv.weight.weight.T
    ends_i = F.softplus(torch.cat([atoms[center], bonds], 1) @ weight).view(5, 3, 4)
    ends_j = F.softplus(torch.cat([atoms[neighbor], bonds], 1) @ weight).view(5, 3, 4)
    score = (torch.cat([ends_i, ends_j], -1) * conv.attention).sum(-1)
    score = F.softplus(conv.score_norm(F.softplus(score)))
    expected = torch.zeros(3, 4)
    for i in range(3):
        bonds_of_i = center == i
        alpha = torch.softmax(score[bonds_of_i], dim=0)  # (bonds of i, heads)
        expected[i] = (alpha[..., None] * ends_j[bonds_of_i]).sum(0).mean(0)
    torch.testing.assert_close(out, expected + conv.bias, rtol=1e-5, atol=1e-6)


def test_gatgnn_reads_composition_and_does_not_depend_on_atom_order(mp):
    _, graphs, _ = mp
    torch.manual_seed(0)
    model = GATGNN(n_atom_features=92, n_targets=1, cutoff=8.0).eval()
    inputs, _ = CrystalGraphDataset(graphs[:4], None).collate([0, 1, 2, 3])
    weights = model.attention(model.encode(inputs), inputs)
    per_crystal = torch.zeros(4).index_add_(0, inputs.crystal_index, weights[:, 0])
    torch.testing.assert_close(per_crystal, torch.ones(4))  # a softmax over each crystal
    # renumbering the atoms of the batch (and the bonds with them) changes nothing
    order = torch.randperm(len(inputs.atom_features))
    new_index = torch.argsort(order)
    permuted = type(inputs)(
        atom_features=inputs.atom_features[order],
        center=new_index[inputs.center],
        neighbor=new_index[inputs.neighbor],
        distance=inputs.distance,
        crystal_index=inputs.crystal_index[order],
        n_atoms=inputs.n_atoms,
        composition=inputs.composition,
    )
    torch.testing.assert_close(model(permuted), model(inputs), rtol=1e-4, atol=1e-5)
    assert model.attention.hidden.in_features == 64 + 118  # atom vector + element fractions


def test_gatgnn_defaults_are_the_published_network_and_the_authors_recipe_is_named():
    reg = GATGNNRegressor()
    assert (reg.width, reg.n_layers, reg.heads, reg.gaussian_step) == (64, 3, 4, 0.2)
    model = GATGNN(92, 1, 8.0)
    assert model.expansion.n_features == 41 and model.node_width == 64
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(0.13e6, rel=0.1)
    authors = recipe("gatgnn-authors")
    assert authors["criterion"] is torch.nn.SmoothL1Loss
    assert (authors["lr"], authors["weight_decay"], authors["batch_size"]) == (5e-3, 0.1, 256)
    assert authors["lr_schedule"].kwargs == {"milestones": [150], "gamma": 0.3}
    trained = GATGNNRegressor(**TINY, **{**authors, "max_epochs": 2}, random_state=0)
    trained.fit(_cscl(8), np.arange(8.0))
    assert isinstance(trained.criterion_, torch.nn.SmoothL1Loss)
    assert trained.optimizer_.param_groups[0]["weight_decay"] == 0.1


def _cscl(n):
    from pymatgen.core import Lattice, Structure

    return [
        Structure(Lattice.cubic(3.9 + 0.05 * i), ["Cs", "Cl"], [[0, 0, 0], [0.5] * 3])
        for i in range(n)
    ]


def test_gatgnn_follows_the_scikit_learn_contract(mp, tmp_path):
    structures, graphs, y = mp
    reg = GATGNNRegressor(**TINY, max_epochs=2, early_stopping=False, random_state=0)
    assert repr(reg) == (
        "GATGNNRegressor(early_stopping=False, heads=2, max_epochs=2, n_layers=1, "
        "random_state=0, width=16)"
    )
    twin = clone(reg)
    assert twin.get_params()["width"] == 16 and not hasattr(twin, "module_")
    pipe = Pipeline([("graph", CrystalGraphTransformer()), ("reg", reg)])
    pipe.fit(structures[:40], y[:40])
    predicted = pipe.predict(structures[40:50])
    np.testing.assert_allclose(reg.predict(graphs[40:50]), predicted, rtol=1e-5)
    copied = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_allclose(copied.predict(structures[40:50]), predicted)
    loaded = load_model(save_model(reg, tmp_path / "gatgnn.safetensors"))
    assert isinstance(loaded, GATGNNRegressor) and loaded.width == 16
    np.testing.assert_allclose(loaded.predict(graphs[40:50]), predicted, atol=1e-5)
    search = GridSearchCV(
        clone(reg), {"heads": [1, 2]}, cv=KFold(2), scoring="neg_mean_absolute_error"
    ).fit(graphs[:40], y[:40])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_distilled_gatgnn_matches_the_teacher_without_a_projection(mp):
    _, graphs, y = mp
    final = {}
    for alpha in (0.0, 0.9):
        reg = DistilledRegressor(
            student="gatgnn", alpha=alpha, max_epochs=6, early_stopping=False, random_state=0
        ).fit(graphs[:120], y[:120])
        final[alpha] = reg.history_[-1, "embedding_loss"]
    assert isinstance(reg.module_.student, GATGNN)
    assert isinstance(reg.module_.projection, torch.nn.Identity)  # 64 wide, as the teacher
    # the pull of unit vectors is slow (see test_crysgnn); without it nothing pulls
    assert final[0.9] < 0.95 * final[0.0], final
    assert reg.predict(graphs[200:205]).shape == (5,)
