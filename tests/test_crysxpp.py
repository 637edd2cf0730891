"""CrysXPP: CrysAE pretraining, encoder transfer, feature selection, the authors' weights."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from authors_reference import authors_forward
from pymatgen.core import Lattice, Structure
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from skorch.callbacks import Callback
from torch.nn import functional as F

from skcrystal import CrysAEPretrainer, CrystalGraphs, CrystalGraphTransformer, CrysXPPRegressor
from skcrystal.checkpoints import read_foreign_checkpoint
from skcrystal.datasets import load_mp_formation_energy
from skcrystal.estimators.data import CrystalGraphDataset
from skcrystal.explain import MaskNotSelectiveWarning
from skcrystal.graphs.atom_features import cgcnn_atom_features
from skcrystal.nn.crysae import CrysAE, CrysAELoss, connectivity_pairs

N_TRAIN = 120
AE_FAST = dict(max_epochs=4, batch_size=32, early_stopping=False, random_state=0)
REG_FAST = dict(max_epochs=2, batch_size=32, early_stopping=False, random_state=0)
# MAE (eV/atom) of the authors' model_best.pth.tar on the first 300 MP crystals, with their
# atom_init.json: measured 0.256. These crystals (mp-100xxxx, mostly hypothetical binaries)
# are harder than the set as a whole: on 1,000 crystals drawn at random the same model
# gives 0.131, against the 0.142 the authors recorded on their 70% test split (and the
# original CGCNN 0.076 on these 300 against 0.042 at random).
MAX_MAE_AUTHORS = 0.28


@pytest.fixture(scope="module")
def data(mp_subset):
    return mp_subset.structure.iloc[:N_TRAIN].tolist(), mp_subset.e_form.to_numpy()[:N_TRAIN]


@pytest.fixture(scope="module")
def graphs(data):
    return CrystalGraphTransformer().transform(data[0])


@pytest.fixture(scope="module")
def pretrainer(graphs):
    return CrysAEPretrainer(**AE_FAST).fit(graphs)


@pytest.fixture(scope="module")
def weights(data_home):
    folder = data_home / "reference_weights" / "crysxpp"
    assert folder.is_dir(), f"{folder} not found"
    return folder


def _batch(graphs, indices=None):
    indices = range(len(graphs)) if indices is None else indices
    return CrystalGraphDataset(graphs).collate(list(indices))[0]


# --- connectivity targets and pair sampling ----------------------------------------------
def _adjacency(graphs, k, n_classes=6):
    """Brute force: edge counts of crystal k, capped as the authors' get_molecular_adj."""
    n = int(graphs.n_atoms[k])
    edges = slice(graphs.edge_ptr[k], graphs.edge_ptr[k + 1])
    counts = np.zeros((n, n), dtype=int)
    np.add.at(counts, (graphs.center[edges], graphs.neighbor[edges]), 1)
    return np.minimum(counts, n_classes - 1)


def test_connectivity_targets_match_brute_force(graphs):
    cubic = Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])  # 12 images of itself
    both = CrystalGraphs.concatenate([graphs[:30], CrystalGraphTransformer().transform([cubic])])
    batch = _batch(both)
    first, second, target, weight, crystal = connectivity_pairs(
        batch.center, batch.neighbor, batch.n_atoms, max_pairs=None
    )
    assert len(first) == int((both.n_atoms**2).sum()) and torch.all(weight == 1)
    start = np.cumsum(both.n_atoms) - both.n_atoms
    for k in range(len(both)):
        rows = (crystal == k).numpy()
        dense = np.zeros_like(_adjacency(both, k))
        dense[first[rows] - start[k], second[rows] - start[k]] = target[rows]
        np.testing.assert_array_equal(dense, _adjacency(both, k))
    assert _adjacency(both, len(both) - 1).tolist() == [[5]]  # 12 edges to itself, capped


def test_pair_sampling_keeps_every_edge_and_is_unbiased(graphs):
    big = [int(k) for k in np.argsort(graphs.n_atoms)[-4:]]  # the largest cells
    sub = graphs[big]
    batch = _batch(sub)
    n = int(sub.n_atoms.sum())
    torch.manual_seed(0)
    model = CrysAE(92, cutoff=8.0).eval()
    no_edge_weight = CrysAELoss().no_edge_weight
    # the loss term of every pair of the 4 crystals, from all pairs decoded once
    with torch.no_grad():
        atom_fea = model.encode(batch)
        first, second, target, _, crystal = connectivity_pairs(
            batch.center, batch.neighbor, batch.n_atoms, max_pairs=None
        )
        nll = F.cross_entropy(
            model.decode_connectivity(atom_fea, first, second), target, reduction="none"
        )
    term = torch.zeros(n * n)
    term[first * n + second] = nll * torch.where(target == 0, no_edge_weight, 1.0)
    exact = torch.zeros(4).index_add_(0, crystal, term[first * n + second])

    generator = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(300):
        first, second, target, weight, crystal = connectivity_pairs(
            batch.center, batch.neighbor, batch.n_atoms, 6, 8, generator
        )
        draws.append(torch.zeros(4).index_add_(0, crystal, term[first * n + second] * weight))
    # every edge pair is there, and at most 8 no-edge pairs per crystal
    n_edge_pairs = sum(int((_adjacency(sub, k) > 0).sum()) for k in range(4))
    assert int((target > 0).sum()) == n_edge_pairs
    assert torch.bincount(crystal[target == 0], minlength=4).max() <= 8
    assert int(sub.n_atoms.min()) ** 2 - 12 * int(sub.n_atoms.min()) > 8  # sampling happened
    # weighted sums over the sampled pairs estimate those over all pairs without bias
    np.testing.assert_allclose(torch.stack(draws).mean(0), exact, rtol=0.03)


def test_eval_mode_loss_is_reproducible(graphs):
    model = CrysAE(92, cutoff=8.0, max_pairs=4).eval()
    batch = _batch(graphs, range(40))
    with torch.no_grad():
        assert float(CrysAELoss()(model(batch))) == float(CrysAELoss()(model(batch)))


# --- pretraining ---------------------------------------------------------------------------
def test_pretraining_lowers_reconstruction_loss(pretrainer):
    losses = pretrainer.history[:, "train_loss"]
    assert len(losses) == AE_FAST["max_epochs"]
    assert losses[-1] < 0.5 * losses[0]  # measured 15.6 -> 3.3


def test_transform_gives_mean_pooled_embeddings(pretrainer, graphs, data):
    embeddings = pretrainer.transform(graphs)
    assert embeddings.shape == (N_TRAIN, 64) and np.isfinite(embeddings).all()
    np.testing.assert_allclose(pretrainer.transform(data[0][:10]), embeddings[:10], atol=1e-6)
    batch = _batch(graphs, [3])
    with torch.no_grad():
        atoms = pretrainer.module_.encode(batch)
    np.testing.assert_allclose(embeddings[3], atoms.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    assert pretrainer.fit_transform is not None  # pipelines use fit_transform


def test_early_stopping_on_validation_loss_and_seeding(graphs):
    state = torch.random.get_rng_state()
    a = CrysAEPretrainer(max_epochs=2, n_iter_no_change=1, batch_size=32, random_state=1)
    a.fit(graphs[:60])
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG must be untouched"
    valid = a.history[:, "valid_loss"]
    assert all(np.isfinite(valid)) and len(a.history[-1, "batches"]) == 2 + 1  # 54 + 6
    # the same random_state gives the same model
    b = CrysAEPretrainer(max_epochs=2, n_iter_no_change=1, batch_size=32, random_state=1)
    np.testing.assert_array_equal(b.fit(graphs[:60]).transform(graphs), a.transform(graphs))
    with pytest.raises(ValueError, match="validation_fraction"):
        CrysAEPretrainer(validation_fraction=0.001).fit(graphs[:20])


def test_validation_data_and_score(graphs, pretrainer):
    ae = CrysAEPretrainer(max_epochs=2, n_iter_no_change=5, batch_size=32, random_state=0)
    ae.fit(graphs[:50], validation_data=graphs[100:])
    best = int(np.argmin(ae.history[:, "valid_loss"]))
    assert -ae.score(graphs[100:]) == pytest.approx(ae.history[best, "valid_loss"], rel=1e-5)


def test_bce_refuses_features_outside_unit_interval(data):
    table = {str(z): [float(z), 0.0] for z in range(1, 101)}
    graphs = CrystalGraphTransformer(atom_features=table).transform(data[0][:20])
    with pytest.raises(ValueError, match="feature_loss='mse'"):
        CrysAEPretrainer(**AE_FAST).fit(graphs)
    ae = CrysAEPretrainer(criterion__feature_loss="mse", **{**AE_FAST, "max_epochs": 1})
    assert ae.fit(graphs).transform(graphs).shape == (20, 64)


def test_pretrainer_pickle_and_clone(pretrainer, graphs):
    expected = pretrainer.transform(graphs[:20])
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(pretrainer)).transform(graphs[:20]), expected
    )
    twin = clone(pretrainer)
    assert not hasattr(twin, "module_") and twin.get_params()["max_pairs"] == 1024


# --- CrysXPP regressor ---------------------------------------------------------------------
class _Snapshot(Callback):
    """Keep a copy of the network as it is when training begins (after initialisation)."""

    def on_train_begin(self, net, **kwargs):
        self.state_ = {k: v.clone() for k, v in net.module_.state_dict().items()}


def test_encoder_weights_are_transferred(pretrainer, graphs, data):
    snapshot = _Snapshot()
    reg = CrysXPPRegressor(encoder=pretrainer, callbacks=[("snapshot", snapshot)], **REG_FAST)
    reg.fit(graphs, data[1])
    encoder = pretrainer.module_.state_dict()
    conv_keys = [k for k in encoder if k.startswith("convs.")]
    assert len(conv_keys) == 3 * 12
    for key in conv_keys:
        assert torch.equal(snapshot.state_[key], encoder[key]), key
    assert torch.equal(snapshot.state_["embedding.weight"], encoder["embedding.weight"])
    assert torch.all(snapshot.state_["embedding.bias"] == 0)  # CrysAE's embedding has none
    assert torch.all(snapshot.state_["mask"] == 1)
    assert set(reg.transferred_params_) == {*conv_keys, "embedding.weight", "embedding.bias"}
    # ... and training then moved them
    assert not torch.equal(
        reg.module_.state_dict()["convs.0.fc_full.weight"], encoder["convs.0.fc_full.weight"]
    )

    # the untrained regressor encodes exactly as the pretrained encoder
    fresh = CrysXPPRegressor(encoder=pretrainer, **{**REG_FAST, "max_epochs": 0}).fit(
        graphs, data[1]
    )
    batch = _batch(graphs, range(16))
    fresh.module_.eval()
    with torch.no_grad():
        np.testing.assert_allclose(
            fresh.module_.encode(batch), pretrainer.module_.encode(batch), rtol=1e-5, atol=1e-6
        )
    plain = CrysXPPRegressor(encoder=pretrainer, transfer_embedding=False, **REG_FAST)
    assert (
        "embedding.weight"
        not in plain.set_params(max_epochs=0).fit(graphs, data[1]).transferred_params_
    )


def test_l1_penalty_is_added_to_the_training_loss_only(pretrainer, graphs, data):
    reg = CrysXPPRegressor(encoder=pretrainer, l1=0.5, **{**REG_FAST, "max_epochs": 0})
    reg.fit(graphs, data[1])
    with torch.no_grad():
        reg.module_.mask.mul_(0.5)
    y_pred, y_true = torch.zeros(4, 1), torch.ones(4, 1)
    plain = reg.get_loss(y_pred, y_true, training=False)
    assert float(plain) == pytest.approx(1.0)
    penalised = reg.get_loss(y_pred, y_true, training=True).detach()
    assert float(penalised) == pytest.approx(1.0 + 0.5 * 0.5)


def test_strong_l1_shrinks_the_mask_and_the_fit_still_beats_the_mean(pretrainer, graphs, data):
    y = data[1]
    # The mask gets a larger learning rate than the rest (Adam moves each entry by about
    # the learning rate per step, so 1e-3 needs thousands of steps to empty it).
    reg = CrysXPPRegressor(
        encoder=pretrainer,
        l1=92.0,
        lr=3e-3,
        optimizer__param_groups=[("mask", {"lr": 0.05})],
        max_epochs=8,
        batch_size=16,
        early_stopping=False,
        random_state=0,
    ).fit(graphs, y)
    importances = reg.feature_importances_
    assert importances.shape == (92,) and (importances < 0.1).sum() >= 10
    mae = np.abs(reg.predict(graphs) - y).mean()
    assert mae < 0.9 * np.abs(y - y.mean()).mean()  # measured 0.80 of the mean predictor's
    weak = CrysXPPRegressor(encoder=pretrainer, l1=0.0, **REG_FAST).fit(graphs, y)
    assert np.all(np.abs(weak.feature_importances_ - 1) < 0.1)


def test_explain_ranks_by_mean_not_by_column_count(pretrainer, graphs, data):
    """A property's importance is its columns' mean |mask|, not their sum (group has 19)."""
    reg = CrysXPPRegressor(encoder=pretrainer, l1=0.1, **REG_FAST).fit(graphs, data[1])
    table = reg.explain()
    importances = reg.feature_importances_
    properties = np.array(cgcnn_atom_features().properties)
    assert table.index[0] in properties and table.index.is_unique
    assert table["n_columns"].sum() == 92 and set(table.index) == set(properties)
    for prop, row in table.iterrows():
        assert row["importance"] == pytest.approx(importances[properties == prop].mean())
        assert row["total"] == pytest.approx(importances[properties == prop].sum())
    assert table["importance"].is_monotonic_decreasing
    assert 0 < table.attrs["uniformity"] <= 1
    with pytest.raises(ValueError, match="3 entries for 92"):
        reg.explain(properties=["a", "b", "c"])


def test_explain_on_crystals_weights_the_columns_by_their_atoms(pretrainer, graphs, data):
    """explain(X): the mean gate over X's atoms; bins no atom of X has do not count."""
    reg = CrysXPPRegressor(encoder=pretrainer, l1=0.1, **REG_FAST).fit(graphs, data[1])
    crystals = graphs[:5]
    table = reg.explain(crystals)
    features = crystals.atom_features.lookup(crystals.species_z)
    counts = (features * crystals.species_occupancy[:, None]).sum(axis=0)
    properties = np.array(cgcnn_atom_features().properties)
    importances = reg.feature_importances_
    for prop, row in table.iterrows():
        columns = properties == prop
        expected = (importances[columns] * counts[columns]).sum() / counts[columns].sum()
        assert row["importance"] == pytest.approx(expected)
    # one atom, one column per property: the weighted mean is the mask of that column
    oxygen_row = cgcnn_atom_features().lookup([8])[0].astype(bool)
    structure = Structure(Lattice.cubic(3.0), ["O"], [[0, 0, 0]])
    single = reg.explain([structure])
    for prop, row in single.iterrows():
        column = oxygen_row & (properties == prop)
        if column.any():
            assert row["importance"] == pytest.approx(importances[column][0])
        else:  # oxygen has no value in this property
            assert np.isnan(row["importance"])


def test_explain_warns_when_the_mask_does_not_select(pretrainer, graphs, data):
    """Without a penalty the mask stays near its uniform start: explain() says so."""
    reg = CrysXPPRegressor(encoder=pretrainer, l1=0.0, **REG_FAST).fit(graphs, data[1])
    with pytest.warns(MaskNotSelectiveWarning, match="nearly uniform"):
        table = reg.explain()
    assert table.attrs["uniformity"] > 0.9


def test_default_encoder_is_the_bundled_crysae_and_none_is_random_init(graphs, data):
    from skcrystal.hub import load_model

    reg = CrysXPPRegressor(**{**REG_FAST, "max_epochs": 0}).fit(graphs[:60], data[1][:60])
    assert reg.encoder == "crysae-mp" and "convs.0.fc_full.weight" in reg.transferred_params_
    crysae = load_model("crysae-mp").module_.state_dict()
    key = "convs.2.bn2.weight"
    torch.testing.assert_close(reg.module_.state_dict()[key], crysae[key])
    trained = CrysXPPRegressor(**REG_FAST).fit(graphs[:60], data[1][:60])
    assert np.isfinite(trained.predict(graphs[:60])).all()
    scratch = CrysXPPRegressor(encoder=None, **REG_FAST).fit(graphs[:60], data[1][:60])
    assert scratch.transferred_params_ == ()
    first = scratch.module_.convs[0].fc_full.weight
    assert not torch.equal(first, reg.module_.convs[0].fc_full.weight)


def test_encoder_must_fit(graphs, data, pretrainer, weights):
    with pytest.raises(ValueError, match=r"3 convolutions.*n_conv=2"):
        CrysXPPRegressor(encoder=weights / "model_pretrain.pth", n_conv=2, **REG_FAST).fit(
            graphs[:20], data[1][:20]
        )
    with pytest.raises(ValueError, match=r"convs\.0\.fc_full\.weight has shape"):
        CrysXPPRegressor(encoder=pretrainer, atom_fea_len=32, **REG_FAST).fit(
            graphs[:20], data[1][:20]
        )
    short = CrystalGraphTransformer(cutoff=6.0).transform(data[0][:20])
    with pytest.raises(ValueError, match=r"cutoff=8\.0.*cutoff=6\.0"):
        CrysXPPRegressor(encoder=pretrainer, **REG_FAST).fit(short, data[1][:20])
    with pytest.raises(ValueError, match="not fitted"):
        CrysXPPRegressor(encoder=CrysAEPretrainer(), **REG_FAST).fit(graphs[:20], data[1][:20])


def test_clone_shares_the_encoder_and_pickle_round_trip(pretrainer, graphs, data):
    reg = CrysXPPRegressor(encoder=pretrainer, l1=0.05, **REG_FAST).fit(graphs, data[1])
    twin = clone(reg)
    assert twin.encoder is pretrainer and twin.l1 == 0.05 and not hasattr(twin, "module_")
    np.testing.assert_array_equal(twin.fit(graphs, data[1]).predict(graphs), reg.predict(graphs))
    restored = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(restored.predict(graphs), reg.predict(graphs))
    np.testing.assert_array_equal(restored.feature_importances_, reg.feature_importances_)
    assert restored.encoder.transform(graphs[:5]).shape == (5, 64)


def test_grid_search_over_l1(pretrainer, graphs, data):
    search = GridSearchCV(
        CrysXPPRegressor(encoder=pretrainer, **REG_FAST),
        {"l1": [0.0, 1.0]},
        cv=KFold(2),
        scoring="neg_mean_absolute_error",
    ).fit(graphs[:64], data[1][:64])
    assert len(search.cv_results_["params"]) == 2
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    assert search.best_estimator_.encoder is pretrainer
    assert search.best_estimator_.predict(graphs[:3]).shape == (3,)


# --- the authors' weights -------------------------------------------------------------------
def test_authors_crysae_loads(weights, atom_init, graphs, data):
    path = weights / "model_pretrain.pth"
    ae = CrysAEPretrainer.from_authors_checkpoint(path, atom_features=atom_init)
    state = read_foreign_checkpoint(path)["state_dict"]
    ours = ae.module_.state_dict()
    assert set(ours) - set(state) == {"expansion.centres"}
    for key, value in state.items():
        assert torch.equal(ours[key], value), key
    assert ae.module_.embedding.bias is None and not ae.module_.training
    crystals = data[0][:60]
    assert ae.transform(crystals).shape == (60, 64)
    # It reconstructs real crystals far better than the best constant guesses.
    authors_graphs = ae.graph_builder_.transform(crystals)
    with torch.no_grad():
        out = ae.module_(_batch(authors_graphs))
    connectivity, features = (c.mean() for c in CrysAELoss().components(out))
    target, rate = out.pair_target, out.feature_target.mean()
    prior = torch.bincount(target, weights=torch.where(target == 0, 0.1, 1.0), minlength=6)
    prior = prior / prior.sum()
    assert connectivity < 0.8 * -(prior * prior.log()).sum()  # measured 0.60 vs 0.98
    assert features < 0.7 * -(rate * rate.log() + (1 - rate) * (1 - rate).log())  # 0.17 vs 0.32
    edges = target > 0
    accuracy = (out.pair_logits.argmax(1)[edges] == target[edges]).float().mean()
    assert accuracy > 0.75  # edge multiplicities, measured 0.86
    assert -ae.score(authors_graphs) == pytest.approx(float(0.9 * connectivity + 0.1 * features))
    # and initialises a regressor from the file
    reg = CrysXPPRegressor(encoder=path, **REG_FAST).set_params(max_epochs=0)
    reg.fit(graphs[:20], data[1][:20])
    assert torch.equal(
        reg.module_.state_dict()["convs.2.bn2.running_var"], state["convs.2.bn2.running_var"]
    )


@pytest.fixture(scope="module")
def authors_regressor(weights, atom_init):
    return CrysXPPRegressor.from_authors_checkpoint(
        weights / "model_best.pth.tar", atom_features=atom_init
    )


def test_authors_crysxpp_matches_their_forward_pass(authors_regressor, weights, atom_init, data):
    ckpt = read_foreign_checkpoint(weights / "model_best.pth.tar")
    reg = authors_regressor
    assert (reg.atom_fea_len, reg.n_conv, reg.h_fea_len, reg.n_h) == (64, 3, 128, 1)
    assert torch.equal(reg.module_.mask, ckpt["state_dict"]["mask"])
    table = {int(z): row for z, row in json.loads(atom_init.read_text()).items()}
    structures = data[0][:15]
    expected = []
    for s in structures:
        nbrs = [sorted(n, key=lambda nb: nb[1])[:12] for n in s.get_all_neighbors(8.0)]
        assert all(len(n) == 12 for n in nbrs)
        out = authors_forward(
            ckpt["state_dict"],
            torch.tensor([table[site.specie.Z] for site in s], dtype=torch.float32),
            torch.tensor([[nb.index for nb in n] for n in nbrs]),
            torch.tensor([[nb.nn_distance for nb in n] for n in nbrs], dtype=torch.float64),
        )
        expected.append(float(out) * ckpt["normalizer"]["std"] + ckpt["normalizer"]["mean"])
    np.testing.assert_allclose(reg.predict(structures), expected, atol=1e-4)


def test_authors_crysxpp_mae_on_materials_project(authors_regressor, data_home):
    crystals = load_mp_formation_energy(limit=300)
    y = crystals["e_form"].to_numpy()
    mae = np.abs(authors_regressor.predict(crystals["structure"].tolist()) - y).mean()
    assert mae < MAX_MAE_AUTHORS
    assert mae < 0.5 * np.abs(y - y.mean()).mean()
    with pytest.warns(MaskNotSelectiveWarning):  # released mask near 1: trained without L1
        table = authors_regressor.explain(properties=cgcnn_atom_features().properties)
    assert len(table) == 9
    assert np.all(np.abs(authors_regressor.feature_importances_ - 1) < 0.05)


def test_authors_training_log_is_read_as_printed(data_home, tmp_path, benchmark_script):
    import gzip

    seeds_table2 = benchmark_script("seeds_table2")
    authors_run = seeds_table2.authors_run
    run = authors_run(data_home / seeds_table2.AUTHORS_LOG)
    assert (run["n_train"], run["n_test"], run["epochs"], run["lr"]) == (7347, 29390, 200, 0.01)
    assert (run["best_epoch"], round(run["best_test_mae"], 4)) == (135, 0.0828)
    assert run["best_test_mae"] < run["median_last_20"] and run["last_test_mae"] > 0.1
    lines = ["Learning Rate : 0.01", "Train size 10", "Test size 40"] + [
        f"Epoch :{k} Train Loss : 1 Train MAE : 1 Test MAE : {mae} Best Test MAE : 0.2"
        for k, mae in ((1, 0.3), (2, 0.2))
    ]
    forged = tmp_path / "log.txt.gz"
    forged.write_bytes(gzip.compress("\n".join([*lines, "Best Test MAE :0.25"]).encode()))
    with pytest.raises(ValueError, match="not the lowest of its epochs"):
        authors_run(forged)


def test_authors_crysxpp_fine_tunes_with_warm_start(weights, atom_init, data):
    reg = CrysXPPRegressor.from_authors_checkpoint(
        weights / "model_best.pth.tar", atom_features=atom_init
    )
    mean = reg.target_mean_.copy()
    reg.set_params(warm_start=True, max_epochs=1, batch_size=32)
    reg.fit(data[0][:40], data[1][:40])
    np.testing.assert_array_equal(reg.target_mean_, mean)
    assert len(reg.history) == 1


def test_refuses_plain_cgcnn_checkpoint(data_home):
    path = data_home / "reference_weights" / "cgcnn_original" / "formation-energy-per-atom.pth.tar"
    with pytest.raises(ValueError, match="no feature selector 'mask'"):
        CrysXPPRegressor.from_authors_checkpoint(path)
    with pytest.raises(ValueError, match="does not hold CrysAE weights"):
        CrysAEPretrainer.from_authors_checkpoint(path)


def test_hub_round_trip(authors_regressor, data, tmp_path):
    from skcrystal.hub import load_model, save_model

    path = save_model(authors_regressor, tmp_path / "crysxpp.safetensors")
    restored = load_model(path)
    assert isinstance(restored, CrysXPPRegressor)
    assert restored.encoder is None and authors_regressor.encoder is None  # weights from files
    np.testing.assert_array_equal(
        restored.feature_importances_, authors_regressor.feature_importances_
    )
    np.testing.assert_allclose(
        restored.predict(data[0][:10]), authors_regressor.predict(data[0][:10]), atol=1e-6
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_pretrain_transfer_and_predict(graphs, data):
    ae = CrysAEPretrainer(device="cuda", **{**AE_FAST, "max_epochs": 2}).fit(graphs)
    assert next(ae.module_.parameters()).is_cuda
    assert ae.transform(graphs).shape == (N_TRAIN, 64)
    reg = CrysXPPRegressor(encoder=ae, device="cuda", **REG_FAST).fit(graphs, data[1])
    assert np.all(np.isfinite(reg.predict(graphs))) and reg.feature_importances_.shape == (92,)
    cpu = pickle.loads(pickle.dumps(reg))
    assert np.all(np.isfinite(cpu.predict(graphs)))
