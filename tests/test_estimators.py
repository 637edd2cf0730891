"""The scikit-learn contract of CGCNNRegressor, on real Materials Project crystals."""

import importlib.metadata
import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline

from skcrystal import CGCNNRegressor, CrystalGraphTransformer

FAST = dict(max_epochs=2, batch_size=32, early_stopping=False, random_state=0)


@pytest.fixture(scope="module")
def data(mp_subset):
    crystals = mp_subset.structure.iloc[:96].tolist()
    return crystals, mp_subset.e_form.to_numpy()[:96]


@pytest.fixture(scope="module")
def graphs(data):
    return CrystalGraphTransformer().transform(data[0])


@pytest.fixture(scope="module")
def fitted(graphs, data):
    return CGCNNRegressor(**FAST).fit(graphs, data[1])


def test_fit_returns_self_and_predict_needs_fit(graphs, data):
    reg = CGCNNRegressor(**FAST)
    with pytest.raises(NotFittedError):
        reg.predict(graphs)
    assert reg.fit(graphs, data[1]) is reg
    assert reg.predict(graphs).shape == (len(graphs),)


def test_params_clone_and_nested_params():
    reg = CGCNNRegressor(n_conv=2, lr=3e-3, optimizer__weight_decay=1e-5)
    params = reg.get_params()
    assert params["n_conv"] == 2 and params["lr"] == 3e-3
    assert params["optimizer__weight_decay"] == 1e-5
    twin = clone(reg)
    assert twin is not reg and twin.get_params()["n_conv"] == 2
    twin.set_params(module__h_fea_len=16, iterator_train__shuffle=False, atom_fea_len=32)
    assert twin.get_params()["module__h_fea_len"] == 16
    assert twin.atom_fea_len == 32 and not hasattr(twin, "module_")


def test_nested_module_params_reach_the_network(graphs, data):
    reg = CGCNNRegressor(module__h_fea_len=16, n_conv=2, **FAST).fit(graphs, data[1])
    assert reg.module_.conv_to_fc.out_features == 16
    assert len(reg.module_.convs) == 2


def test_same_random_state_gives_identical_models(graphs, data):
    a = CGCNNRegressor(**FAST).fit(graphs, data[1]).predict(graphs)
    b = CGCNNRegressor(**FAST).fit(graphs, data[1]).predict(graphs)
    np.testing.assert_array_equal(a, b)
    state = torch.random.get_rng_state()
    CGCNNRegressor(**FAST).fit(graphs[:40], data[1][:40])
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG must be untouched"


def test_pickle_and_joblib_round_trips(fitted, graphs, tmp_path):
    expected = fitted.predict(graphs)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict(graphs), expected)
    joblib.dump(fitted, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict(graphs), expected)


def test_sample_order_and_batch_size_do_not_change_predictions(fitted, graphs, data):
    expected = fitted.predict(graphs)
    order = np.random.default_rng(1).permutation(len(graphs))
    np.testing.assert_allclose(fitted.predict(graphs[order]), expected[order], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        fitted.predict([data[0][i] for i in order]), expected[order], rtol=1e-5, atol=1e-6
    )
    fitted.set_params(batch_size=7)
    try:
        np.testing.assert_allclose(fitted.predict(graphs), expected, rtol=1e-5, atol=1e-6)
    finally:
        fitted.set_params(batch_size=FAST["batch_size"])


def test_raw_structures_and_object_arrays(data):
    crystals, y = data
    reg = CGCNNRegressor(**FAST).fit(np.array(crystals, dtype=object), y)
    assert reg.predict(crystals[:5]).shape == (5,)
    assert isinstance(reg.graph_builder_, CrystalGraphTransformer)


def test_multi_target_regression(graphs, data):
    y = np.column_stack([data[1], 2 * data[1] + 1])
    reg = CGCNNRegressor(**FAST).fit(graphs, y)
    assert reg.predict(graphs).shape == (len(graphs), 2)
    np.testing.assert_allclose(reg.target_mean_, y.mean(axis=0))


def test_bad_targets_and_mismatched_graphs_are_refused(graphs, data, fitted):
    y = data[1].copy()
    y[5] = np.nan
    with pytest.raises(ValueError, match=r"y\[5\] is not finite"):
        CGCNNRegressor(**FAST).fit(graphs, y)
    with pytest.raises(ValueError, match="96 crystals but y has 95 rows"):
        CGCNNRegressor(**FAST).fit(graphs, data[1][:-1])
    other = CrystalGraphTransformer(cutoff=6.0).transform(data[0][:3])
    with pytest.raises(ValueError, match="cutoff, max_neighbors, atom_features"):
        fitted.predict(other)


def test_validation_data_and_early_stopping(graphs, data):
    reg = CGCNNRegressor(max_epochs=6, n_iter_no_change=2, batch_size=32, random_state=0)
    reg.fit(graphs[:70], data[1][:70], validation_data=(graphs[70:], data[1][70:]))
    maes = reg.history[:, "valid_mae"]
    assert all(np.isfinite(maes))
    best = int(np.argmin(maes))
    # the kept weights are those of the best validation epoch
    kept = np.abs(reg.predict(graphs[70:]) - data[1][70:]).mean()
    assert kept == pytest.approx(maes[best], rel=1e-4)
    internal = CGCNNRegressor(max_epochs=2, batch_size=32, random_state=0).fit(graphs, data[1])
    assert len(internal.history[-1, "batches"]) == 3 + 1  # 86 train crystals, 10 validation


def test_training_batches_are_shuffled_and_partial_fit_continues(graphs, data):
    reg = CGCNNRegressor(**FAST)
    assert reg.get_params()["iterator_train__shuffle"] is True
    reg.fit(graphs, data[1])
    before = {k: v.clone() for k, v in reg.module_.state_dict().items()}
    reg.partial_fit(graphs, data[1])
    assert len(reg.history) == 2 * FAST["max_epochs"]  # continued, not restarted
    assert any(not torch.equal(before[k], v) for k, v in reg.module_.state_dict().items())
    assert reg.warm_start is False


def test_no_early_stopping_trains_all_epochs_on_all_crystals(fitted):
    assert len(fitted.history) == FAST["max_epochs"]
    assert "valid_mae" not in fitted.history[-1]


def test_pipeline_grid_search_and_cross_validation(data):
    crystals, y = data
    pipe = Pipeline([("graph", CrystalGraphTransformer()), ("reg", CGCNNRegressor(**FAST))])
    for n_jobs in (1, 2):
        search = GridSearchCV(
            pipe,
            {"reg__lr": [1e-3, 3e-3], "graph__cutoff": [6.0, 8.0]},
            cv=KFold(2),
            scoring="neg_mean_absolute_error",
            n_jobs=n_jobs,
        ).fit(crystals, y)
        assert len(search.cv_results_["params"]) == 4
        assert search.best_estimator_.predict(crystals[:3]).shape == (3,)
        scores = cross_val_score(
            pipe, crystals, y, cv=KFold(3), scoring="neg_mean_absolute_error", n_jobs=n_jobs
        )
        assert scores.shape == (3,) and np.all(np.isfinite(scores))


def test_regressor_alone_in_cross_validation_on_graphs(graphs, data):
    scores = cross_val_score(CGCNNRegressor(**FAST), graphs, data[1], cv=KFold(2))
    assert np.all(np.isfinite(scores))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_and_predict(graphs, data):
    reg = CGCNNRegressor(device="cuda", **FAST).fit(graphs, data[1])
    assert next(reg.module_.parameters()).is_cuda
    cpu = pickle.loads(pickle.dumps(reg))
    assert np.all(np.isfinite(cpu.predict(graphs)))


# --- warm_start, train_split=None, sample_weight (issue 15, items 7-9) --------------------
def test_warm_start_refuses_another_number_of_targets(graphs, data):
    reg = CGCNNRegressor(warm_start=True, **FAST).fit(graphs, data[1])
    two = np.column_stack([data[1], data[1]])
    with pytest.raises(ValueError, match=r"y has 2 target columns .* has 1 output"):
        reg.fit(graphs, two)
    with pytest.raises(ValueError, match=r"y has 2 target columns"):
        reg.partial_fit(graphs, two)
    assert reg.module_.fc_out.out_features == 1
    reg.set_params(warm_start=False).fit(graphs, two)  # a new network is fine
    assert reg.predict(graphs).shape == (len(graphs), 2)


def test_train_split_none_turns_early_stopping_off_with_a_warning(graphs, data):
    reg = CGCNNRegressor(max_epochs=2, batch_size=32, train_split=None, random_state=0)
    with pytest.warns(UserWarning, match="train_split=None .* early stopping is off"):
        reg.fit(graphs, data[1])
    assert len(reg.history) == 2 and "valid_mae" not in reg.history[-1]
    assert len(reg.history[-1, "batches"]) == 3  # all 96 crystals train
    with pytest.raises(ValueError, match="validation_data needs train_split='auto'"):
        reg.fit(graphs[:80], data[1][:80], validation_data=(graphs[80:], data[1][80:]))


def _clean_mae(reg, graphs, y, rows):
    return float(np.abs(reg.predict(graphs[rows]) - y[rows]).mean())


def test_zero_sample_weight_rows_do_not_count(graphs, data):
    y = data[1].copy()
    clean = np.arange(len(y)) % 2 == 0
    y[~clean] += 5.0  # wrong targets on every other crystal
    weight = clean.astype(float)
    params = dict(FAST, max_epochs=5)
    weighted = CGCNNRegressor(**params).fit(graphs, y, sample_weight=weight)
    np.testing.assert_allclose(weighted.target_mean_, [y[clean].mean()])
    np.testing.assert_allclose(weighted.target_scale_, [y[clean].std()])
    alone = CGCNNRegressor(**params).fit(graphs[clean], y[clean])
    unweighted = CGCNNRegressor(**params).fit(graphs, y)
    mae = {
        name: _clean_mae(reg, graphs, y, clean)
        for name, reg in [("weighted", weighted), ("alone", alone), ("unweighted", unweighted)]
    }
    assert mae["unweighted"] > 1.5  # pulled toward the wrong targets
    assert abs(mae["weighted"] - mae["alone"]) < 0.25 * mae["unweighted"], mae


def test_sample_weight_scale_does_not_matter_and_bad_weights_are_refused(graphs, data):
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(graphs))
    a = CGCNNRegressor(**FAST).fit(graphs, data[1], sample_weight=weight).predict(graphs)
    b = CGCNNRegressor(**FAST).fit(graphs, data[1], sample_weight=10 * weight).predict(graphs)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    bad = weight.copy()
    bad[3] = -1.0
    with pytest.raises(ValueError, match=r"sample_weight\[3\] = -1"):
        CGCNNRegressor(**FAST).fit(graphs, data[1], sample_weight=bad)
    with pytest.raises(ValueError, match=r"shape \(96,\)"):
        CGCNNRegressor(**FAST).fit(graphs, data[1], sample_weight=weight[:-1])


def test_weighted_validation_mae(graphs, data):
    weight = np.where(np.arange(len(graphs)) < 48, 1.0, 3.0)
    reg = CGCNNRegressor(max_epochs=1, batch_size=32, random_state=0)
    reg.fit(graphs[:70], data[1][:70], validation_data=(graphs[70:], data[1][70:], weight[70:]))
    errors = np.abs(reg.predict(graphs[70:]) - data[1][70:])
    expected = np.average(errors, weights=weight[70:])
    assert reg.history[-1, "valid_mae"] == pytest.approx(expected, rel=1e-4)


def test_sample_weight_through_pipeline_and_cross_validation(data):
    import sklearn

    crystals, y = data
    weight = np.where(np.arange(len(y)) % 3 == 0, 0.0, 1.0)
    pipe = Pipeline([("graph", CrystalGraphTransformer()), ("reg", CGCNNRegressor(**FAST))])
    pipe.fit(crystals, y, reg__sample_weight=weight)
    np.testing.assert_allclose(pipe[-1].target_mean_, [y[weight > 0].mean()])
    scores = cross_val_score(pipe, crystals, y, cv=KFold(2), params={"reg__sample_weight": weight})
    assert np.all(np.isfinite(scores))
    with sklearn.config_context(enable_metadata_routing=True):
        reg = CGCNNRegressor(**FAST).set_fit_request(sample_weight=True)
        reg.set_score_request(sample_weight=True)
        routed = Pipeline([("graph", CrystalGraphTransformer()), ("reg", reg)])
        scores = cross_val_score(routed, crystals, y, cv=KFold(2), params={"sample_weight": weight})
    assert np.all(np.isfinite(scores))


# --- non-negative targets (issue 15, item 4) ----------------------------------------------
@pytest.fixture(scope="module")
def gaps(data_home):
    from skcrystal.datasets import load_mp_band_gap

    df = load_mp_band_gap(limit=200)
    return CrystalGraphTransformer().transform(df.structure.tolist()), df.gap_pbe.to_numpy()


@pytest.mark.parametrize("option", ["clip", "softplus"])
def test_nonnegative_models_never_predict_below_zero(gaps, pymatgen_structures, option):
    graphs, y = gaps
    reg = CGCNNRegressor(nonnegative=option, **FAST).fit(graphs[:120], y[:120])
    assert reg.predict(graphs).min() >= 0
    assert reg.predict(list(pymatgen_structures.values())).min() >= 0


def test_softplus_output_trains_on_band_gaps(gaps):
    graphs, y = gaps
    train, test = slice(0, 120), slice(120, None)
    reg = CGCNNRegressor(nonnegative="softplus", **dict(FAST, max_epochs=15, lr=3e-3))
    predictions = reg.fit(graphs[train], y[train]).predict(graphs[test])
    mean_predictor = np.abs(y[test] - y[train].mean()).mean()
    assert np.abs(predictions - y[test]).mean() < 0.8 * mean_predictor
    # the network's standardised output maps to softplus(mean + scale * z) > 0
    z = torch.tensor([[-50.0], [0.0], [50.0]])
    out = reg._softplus_in_units(z) * reg.target_scale_[0] + reg.target_mean_[0]
    assert out[0] >= 0 and out[2] == pytest.approx(reg.target_mean_[0] + 50 * reg.target_scale_[0])


def test_nonnegative_refuses_negative_targets_and_unknown_options(graphs, data):
    with pytest.raises(ValueError, match=r"y\[1\] is negative .* nonnegative='clip'"):
        CGCNNRegressor(nonnegative="clip", **FAST).fit(graphs, data[1])
    with pytest.raises(ValueError, match="nonnegative must be False, 'clip' or 'softplus'"):
        CGCNNRegressor(nonnegative=True, **FAST).fit(graphs, np.abs(data[1]))


# --- save_model / load_model keep the training parameters (issue 15, item 11) -------------
def test_save_and_load_keep_training_parameters_and_versions(gaps, tmp_path):
    from skcrystal.hub import load_model, model_card, save_model

    graphs, y = gaps
    reg = CGCNNRegressor(
        nonnegative="softplus",
        optimizer=torch.optim.AdamW,
        weight_decay=1e-4,
        optimizer__betas=(0.8, 0.99),
        lr=3e-3,
        batch_size=16,
        max_epochs=1,
        n_iter_no_change=7,
        early_stopping=False,
        random_state=3,
    ).fit(graphs[:40], y[:40])
    path = save_model(reg, tmp_path / "gap.safetensors")
    card = model_card(path)
    assert set(card["versions"]) >= {"skcrystal", "torch", "skorch", "scikit-learn", "numpy"}
    assert card["versions"]["torch"] == importlib.metadata.version("torch")
    restored = load_model(path)
    for name in (
        "nonnegative",
        "lr",
        "weight_decay",
        "batch_size",
        "max_epochs",
        "n_iter_no_change",
    ):
        assert getattr(restored, name) == getattr(reg, name), name
    assert restored.optimizer is torch.optim.AdamW and restored.random_state == 3
    assert restored.early_stopping is False
    np.testing.assert_array_equal(restored.predict(graphs), reg.predict(graphs))
    restored.set_params(warm_start=True).fit(graphs[:40], y[:40])  # continues with them
    group = restored.optimizer_.param_groups[0]
    assert isinstance(restored.optimizer_, torch.optim.AdamW)
    assert group["weight_decay"] == 1e-4 and tuple(group["betas"]) == (0.8, 0.99)
    assert restored.history_[-1, "lr"] == 3e-3  # the epoch started at lr (cosine decay)


def test_unstorable_training_parameters_warn_and_old_files_load(fitted, tmp_path):
    from skorch.dataset import ValidSplit

    from skcrystal.hub import load_model, save_model

    fitted.set_params(train_split=ValidSplit(5))
    try:
        with pytest.warns(UserWarning, match=r"save_model stores no train_split \(a ValidSplit\)"):
            path = save_model(fitted, tmp_path / "m.safetensors")
    finally:
        fitted.set_params(train_split="auto")
    assert load_model(path).train_split == "auto"
    old = load_model("cgcnn-mp-formation-energy")  # written before training parameters
    assert old.lr == CGCNNRegressor().lr and old.nonnegative is False


# --- BatchNorm and 1-atom crystals (issue 15, item 12) ------------------------------------
def _bcc_fe_primitive():
    from pymatgen.core import Lattice, Structure

    bcc = Structure.from_spacegroup("Im-3m", Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])
    primitive = bcc.get_primitive_structure()
    assert len(primitive) == 1
    return primitive


def test_last_batch_of_one_single_atom_crystal_trains(mp_subset, pymatgen_structures):
    crystals = [*mp_subset.structure.iloc[:128], _bcc_fe_primitive()]
    y = [*mp_subset.e_form.iloc[:128], 0.0]
    reg = CGCNNRegressor(
        max_epochs=1,
        batch_size=128,
        early_stopping=False,
        random_state=0,
        iterator_train__shuffle=False,
    )
    reg.fit(crystals, y)  # batches of 128 and of the 1-atom Fe cell
    assert len(reg.history[-1, "batches"]) == 2
    helium = pymatgen_structures["He_BCC"]
    assert len(helium) == 1
    assert np.isfinite(reg.predict([helium])).all() and reg.predict([crystals[-1]]).shape == (1,)
    single = CGCNNRegressor(batch_size=1, max_epochs=1, early_stopping=False, random_state=0)
    assert np.isfinite(single.fit([crystals[-1], helium], [0.0, 0.1]).predict([helium])).all()


def test_batch_norm_of_one_row_uses_the_running_statistics():
    from skcrystal.nn.layers import BatchNorm1d

    norm = BatchNorm1d(3).train()
    reference = torch.nn.BatchNorm1d(3).train()
    rows = torch.randn(5, 3)
    torch.testing.assert_close(norm(rows), reference(rows))  # torch's for several rows
    mean, var = norm.running_mean.clone(), norm.running_var.clone()
    one = torch.randn(1, 3)
    torch.testing.assert_close(norm(one), norm.eval()(one))
    torch.testing.assert_close(norm.running_mean, mean)
    torch.testing.assert_close(norm.running_var, var)
