"""MEGNet (issue 11): the radius graph, the atomic-number embedding, the block's maths, the
regressor's contract, saving, and distillation into it through a projection."""

import pickle

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

from skcrystal import CrystalGraphTransformer, DistilledRegressor, MEGNetRegressor
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.hub import load_model, save_model
from skcrystal.nn.megnet import Dense, MEGNet, softplus2
from skcrystal.recipes import recipe

TINY = dict(n_blocks=1, width=8, hidden=16, readout_width=4, n_gaussians=20)
RADIUS = CrystalGraphTransformer(cutoff=5.0, neighbor_rule="radius", atom_features="atomic-number")


@pytest.fixture(scope="module")
def mp(mp_subset):
    # crystal 0 is bcc Cs, whose nearest neighbours are 5.2 A apart: no 5 A radius graph
    structures = mp_subset.structure.tolist()[1:81]
    return structures, RADIUS.transform(structures), mp_subset.e_form.to_numpy()[1:81]


def test_radius_graphs_hold_every_pair_within_the_cutoff_and_are_symmetric(mp):
    structures, graphs, _ = mp
    for i in (0, 7, 33):
        expected = sum(len(n) for n in structures[i].get_all_neighbors(5.0))
        assert graphs.n_edges[i] == expected
        one = graphs[i]
        ends, length = (one.center.tolist(), one.neighbor.tolist()), one.distance.round(4)
        pairs = sorted(zip(*ends, length, strict=True))
        mirrored = sorted(zip(*ends[::-1], length, strict=True))
        assert pairs == mirrored  # every bond has its reverse
        assert (np.diff(one.center) >= 0).all()  # sorted by center
    assert graphs.settings == (5.0, 12, "atomic-number", "radius")
    # on MP crystals a 5 A radius graph has about three times CGCNN's 12 bonds per atom
    assert 25 < graphs.n_edges.sum() / graphs.n_atoms.sum() < 60


def test_the_embedding_is_a_lookup_by_atomic_number_and_the_gaussians_the_originals(mp):
    _, graphs, _ = mp
    model = MEGNet(n_atom_features=94, n_targets=1, cutoff=5.0)
    inputs, _ = CrystalGraphDataset(graphs[:2], None).collate([0, 1])
    z = inputs.atom_features.argmax(dim=1)  # one-hot: Z - 1
    torch.testing.assert_close(model.embedding(inputs.atom_features), model.embedding.weight.T[z])
    assert len(model.expansion.centres) == 100 and model.expansion.centres[-1] == 6.0
    assert model.expansion(torch.tensor([2.0]))[0, 33].item() == pytest.approx(
        np.exp(-((2.0 - 6.0 * 33 / 99) ** 2) / 0.25), rel=1e-5
    )
    assert softplus2(torch.zeros(1)).item() == pytest.approx(0.0, abs=1e-7)


def test_a_megnet_block_updates_bonds_then_atoms_then_the_state(mp):
    _, graphs, _ = mp
    torch.manual_seed(0)
    model = MEGNet(n_atom_features=94, n_targets=1, cutoff=5.0, n_blocks=2).eval()
    inputs, _ = CrystalGraphDataset(graphs[:3], None).collate([0, 1, 2])
    atoms = torch.rand(len(inputs.atom_features), 32)
    bonds = torch.rand(len(inputs.distance), 32)
    state = torch.rand(3, 32)
    block = model.blocks[1]  # with its pre-dense layers
    a, b, s = (dense(x) for dense, x in zip(block.pre, (atoms, bonds, state), strict=True))
    crystal_of_bond = inputs.crystal_index[inputs.center]
    new_b = block.bond_update(
        torch.cat([a[inputs.center], a[inputs.neighbor], b, s[crystal_of_bond]], 1)
    )
    mean_b = torch.stack([new_b[inputs.center == i].mean(0) for i in range(len(a))])
    new_a = block.atom_update(torch.cat([mean_b, a, s[inputs.crystal_index]], 1))
    per_crystal_b = torch.stack([new_b[crystal_of_bond == c].mean(0) for c in range(3)])
    per_crystal_a = torch.stack([new_a[inputs.crystal_index == c].mean(0) for c in range(3)])
    new_s = block.state_update(torch.cat([per_crystal_b, per_crystal_a, s], 1))
    got = block(atoms, bonds, state, inputs)
    for value, expected in zip(got, (new_a + atoms, new_b + bonds, new_s + state), strict=True):
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-5)
    # readout of another batch than the last encoded one recomputes the bonds and state
    nodes = model.encode(inputs)
    other, _ = CrystalGraphDataset(graphs[:3], None).collate([0, 1, 2])
    torch.testing.assert_close(model.readout(nodes, other), model(inputs))


def test_megnet_defaults_are_the_original_package_and_its_recipe_is_named():
    reg = MEGNetRegressor()
    assert (reg.embedding, reg.width, reg.hidden, reg.readout_width, reg.n_blocks) == (
        16,
        32,
        64,
        16,
        3,
    )
    builder = reg.default_graph_builder()
    assert (builder.cutoff, builder.neighbor_rule, builder.atom_features) == (
        5.0,
        "radius",
        "atomic-number",
    )
    authors = recipe("megnet-authors")
    assert (authors["optimizer"], authors["lr"], authors["batch_size"]) == (
        torch.optim.Adam,
        1e-3,
        128,
    )
    assert (authors["max_epochs"], authors["n_iter_no_change"]) == (1000, 500)


def test_megnet_follows_the_scikit_learn_contract(mp, tmp_path):
    structures, graphs, y = mp
    reg = MEGNetRegressor(**TINY, max_epochs=2, early_stopping=False, random_state=0)
    twin = clone(reg)
    assert twin.get_params()["width"] == 8 and not hasattr(twin, "module_")
    pipe = Pipeline([("graph", clone(RADIUS)), ("reg", reg)]).fit(structures[:40], y[:40])
    predicted = pipe.predict(structures[40:50])
    np.testing.assert_allclose(reg.predict(structures[40:50]), predicted, rtol=1e-5)
    copied = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_allclose(copied.predict(structures[40:50]), predicted)
    loaded = load_model(save_model(reg, tmp_path / "megnet.safetensors"))
    assert isinstance(loaded, MEGNetRegressor) and loaded.graph_settings_[3] == "radius"
    np.testing.assert_allclose(loaded.predict(graphs[40:50]), predicted, atol=1e-5)
    with pytest.raises(ValueError, match="neighbor_rule"):
        reg.predict(
            CrystalGraphTransformer(atom_features="atomic-number").transform(structures[:2])
        )
    search = GridSearchCV(
        clone(reg), {"n_blocks": [1, 2]}, cv=KFold(2), scoring="neg_mean_absolute_error"
    ).fit(graphs[:40], y[:40])
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_distilled_megnet_reads_the_teachers_graphs_through_a_projection(mp):
    structures, _, y = mp
    reg = DistilledRegressor(
        student="megnet", student_params=TINY, max_epochs=2, early_stopping=False, random_state=0
    ).fit(structures[:40], y[:40])
    assert isinstance(reg.module_.student, MEGNet)
    assert reg.module_.projection.weight.shape == (64, 8)  # 8-wide student, 64-wide teacher
    assert reg.graph_settings_[1:] == (12, "cgcnn", "nearest")  # the teacher's graphs
    assert len(reg.history_[:, "embedding_loss"]) == 2
    assert reg.predict(structures[50:53]).shape == (3,)


def test_a_site_without_neighbours_in_the_radius_is_refused():
    lonely = Structure(Lattice.cubic(6.0), ["Cs"], [[0, 0, 0]])
    with pytest.raises(ValueError, match=r"X\[0\] \(Cs\): site 0 \(Cs\) has no neighbour"):
        RADIUS.transform([lonely])


def test_norm_batch_normalises_the_atom_and_bond_layers_only(mp, tmp_path):
    _, graphs, y = mp
    plain = MEGNet(n_atom_features=94, n_targets=1, cutoff=5.0)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())
    net = MEGNet(n_atom_features=94, n_targets=1, cutoff=5.0, norm="batch")
    normalised = {
        name.rsplit(".", 2)[0]
        for name, m in net.named_modules()
        if isinstance(m, torch.nn.BatchNorm1d)
    }
    # input pairs, block pre-dense pairs (atoms 0, bonds 1) and the bond and atom updates
    assert normalised == {
        "atom_dense",
        "bond_dense",
        *(f"blocks.{b}.{u}" for b in range(3) for u in ("bond_update", "atom_update")),
        *(f"blocks.{b}.pre.{i}" for b in (1, 2) for i in (0, 1)),
    }
    with pytest.raises(ValueError, match="norm must be None or 'batch', got 'layer'"):
        MEGNetRegressor(**TINY, norm="layer", max_epochs=1).fit(graphs[:8], y[:8])
    reg = MEGNetRegressor(**TINY, norm="batch", max_epochs=2, early_stopping=False)
    reg.fit(graphs[:40], y[:40])
    loaded = load_model(save_model(reg, tmp_path / "norm.safetensors"))
    assert loaded.norm == "batch"
    np.testing.assert_allclose(loaded.predict(graphs[40:50]), reg.predict(graphs[40:50]), atol=1e-5)


@pytest.mark.parametrize("norm", [False, True])
def test_dense_on_gathered_parts_equals_dense_on_their_concatenation(norm):
    torch.manual_seed(0)
    dense = Dense(4 + 3 + 2, (8, 5), norm).eval()
    for name, buffer in dense.named_buffers():  # batch-norm statistics that change values
        if name.endswith(("running_mean", "running_var")):
            buffer.uniform_(0.5, 2.0)
    atoms, bonds, state = torch.rand(6, 4), torch.rand(10, 3), torch.rand(2, 2)
    rows, crystal = torch.randint(0, 6, (10,)), torch.randint(0, 2, (10,))
    expected = dense(torch.cat([atoms[rows], bonds, state[crystal]], dim=1))
    got = dense.forward_gathered([(atoms, rows), (bonds, None), (state, crystal)])
    torch.testing.assert_close(got, expected)
