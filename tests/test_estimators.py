"""The scikit-learn contract of CGCNNRegressor, on real Materials Project crystals."""

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
