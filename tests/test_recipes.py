"""The training recipe: schedules, epochs from the data size, weight decay, named recipes."""

from __future__ import annotations

import argparse
import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import Callback, LRScheduler

from skcrystal import CGCNNRegressor, CrysAEPretrainer, CrystalGraphTransformer
from skcrystal.cli import _epochs
from skcrystal.distributed import fit_data_parallel
from skcrystal.estimators.callbacks import warmup_cosine_factor
from skcrystal.hub import load_model, save_model
from skcrystal.recipes import auto_max_epochs, auto_n_iter_no_change, recipe

FAST = dict(batch_size=16, random_state=0)


@pytest.fixture(scope="module")
def data(mp_subset):
    crystals = mp_subset.structure.iloc[:40].tolist()
    return CrystalGraphTransformer().transform(crystals), mp_subset.e_form.to_numpy()[:40]


def per_epoch_lr(reg):
    return np.asarray(reg.history_[:, "lr"])


def test_defaults_are_the_measured_recipe():
    reg = CGCNNRegressor()
    assert reg.optimizer is torch.optim.AdamW and reg.lr == 3e-3
    assert reg.lr_schedule == "cosine" and reg.batch_size == 64
    assert reg.max_epochs == "auto" and reg.n_iter_no_change == "auto" and reg.restore_best
    # the pretrainers keep the authors' pretraining recipe
    ae = CrysAEPretrainer()
    assert (ae.optimizer, ae.lr_schedule, ae.max_epochs) == (torch.optim.Adam, "constant", 100)


def test_auto_epochs_follow_the_data_size_and_are_recorded(data):
    graphs, y = data
    reg = CGCNNRegressor(validation_fraction=0.25, **FAST)
    reg.set_params(n_iter_no_change=3)
    # 30 of 40 crystals train: auto_max_epochs(30) = 500, stopped early after 3 epochs
    reg.fit(graphs, y)
    assert reg.max_epochs == "auto"  # the parameter is not changed by fit
    assert reg.max_epochs_ == auto_max_epochs(30) == 500
    assert reg.n_iter_no_change_ == 3 and reg.n_epochs_ == len(reg.history_) < 500
    valid = reg.history_[:, "valid_mae"]
    assert reg.best_epoch_ == int(np.argmin(valid)) + 1
    assert reg.n_epochs_ - reg.best_epoch_ == 3  # stopped 3 epochs after the best one
    # the schedule spans the 500 epochs it would have run: still near the top
    assert per_epoch_lr(reg)[-1] > 0.99 * 3e-3


def test_auto_rules():
    assert [auto_max_epochs(n) for n in (10, 90, 190, 562, 563, 1000, 7000, 10**6)] == [
        500, 500, 345, 201, 200, 200, 200, 200,
    ]  # fmt: skip
    assert auto_n_iter_no_change(30) == 20 and auto_n_iter_no_change(151) == 76


def test_cosine_schedule_is_stepped_per_batch(data):
    graphs, y = data
    reg = CGCNNRegressor(max_epochs=4, early_stopping=False, **FAST).fit(graphs, y)
    steps = math.ceil(40 / 16)  # 3 mini-batches per epoch, 12 steps
    expected = [3e-3 * warmup_cosine_factor(e * steps, total_steps=12, warmup_steps=0,
                                            decay=True) for e in range(4)]  # fmt: skip
    np.testing.assert_allclose(per_epoch_lr(reg), expected, rtol=1e-6)
    assert expected[-1] < 0.2 * 3e-3  # the last epoch starts near 0
    assert reg.optimizer_.param_groups[0]["lr"] == 3e-3  # the optimizer's own lr is back
    assert reg.n_epochs_ == reg.best_epoch_ == 4


def test_warmup_constant_onecycle(data):
    graphs, y = data
    warm = CGCNNRegressor(max_epochs=3, early_stopping=False, lr_schedule="constant",
                          warmup_epochs=2, **FAST).fit(graphs, y)  # fmt: skip
    np.testing.assert_allclose(per_epoch_lr(warm), [3e-3 / 6, 3e-3 * 4 / 6, 3e-3], rtol=1e-6)
    cycle = CGCNNRegressor(max_epochs=10, early_stopping=False, lr_schedule="onecycle",
                           **FAST).fit(graphs, y)  # fmt: skip
    lrs = per_epoch_lr(cycle)
    assert lrs[0] == pytest.approx(3e-3 / 25) and lrs.max() <= 3e-3 + 1e-12
    assert np.argmax(lrs) in (2, 3) and lrs[-1] < lrs.max() / 10


def test_plateau_halves_after_ten_epochs_without_progress(data):
    graphs, y = data
    # an lr too small to move the weights: the validation MAE never improves
    reg = CGCNNRegressor(lr=1e-12, max_epochs=14, lr_schedule="plateau",
                         validation_fraction=0.25, n_iter_no_change=100, **FAST)  # fmt: skip
    reg.fit(graphs, y)
    lrs = per_epoch_lr(reg)
    assert np.all(lrs[:12] == 1e-12) and lrs[-1] == pytest.approx(0.5e-12)


class Snapshots(Callback):
    """The weights at the end of every epoch."""

    def on_train_begin(self, net, **kwargs):
        self.states = []

    def on_epoch_end(self, net, **kwargs):
        self.states.append({k: v.clone() for k, v in net.module_.state_dict().items()})


@pytest.mark.parametrize("restore_best", [True, False])
def test_restore_best_chooses_the_weights_kept(data, restore_best):
    graphs, y = data
    snapshots = Snapshots()
    reg = CGCNNRegressor(max_epochs=8, validation_fraction=0.25, restore_best=restore_best,
                         lr=3e-2, lr_schedule="constant", callbacks=[("snapshots", snapshots)],
                         **FAST)  # fmt: skip
    reg.fit(graphs, y)
    best = int(np.argmin(reg.history_[:, "valid_mae"])) + 1
    assert best < 8  # at a constant lr 3e-2, the last epoch is not the best
    assert reg.best_epoch_ == (best if restore_best else 8)
    kept = snapshots.states[reg.best_epoch_ - 1]
    assert all(torch.equal(v, kept[k]) for k, v in reg.module_.state_dict().items())


def test_weight_decay_spares_biases_and_norms(data):
    graphs, y = data
    reg = CGCNNRegressor(max_epochs=1, early_stopping=False, weight_decay=1e-4, **FAST)
    reg.fit(graphs, y)
    groups = reg.optimizer_.param_groups
    decayed = [p for g in groups if g["weight_decay"] == 1e-4 for p in g["params"]]
    spared = [p for g in groups if g["weight_decay"] == 0.0 for p in g["params"]]
    assert decayed and spared and all(p.ndim == 2 for p in decayed)
    assert all(p.ndim == 1 for p in spared)
    assert len(decayed) + len(spared) == len(list(reg.module_.parameters()))
    # AdamW's own default decay (0.01) is never applied behind the user's back
    plain = CGCNNRegressor(max_epochs=1, early_stopping=False, **FAST).fit(graphs, y)
    assert {g["weight_decay"] for g in plain.optimizer_.param_groups} == {0.0}
    with pytest.raises(ValueError, match="set weight_decay"):
        CGCNNRegressor(max_epochs=1, optimizer__weight_decay=1e-3, **FAST).fit(graphs, y)


def test_authors_recipe_by_name(data):
    graphs, y = data
    params = recipe("cgcnn-authors")
    assert params["optimizer"] is torch.optim.SGD and params["optimizer__momentum"] == 0.9
    assert (params["lr"], params["max_epochs"], params["batch_size"]) == (0.01, 300, 256)
    assert params["lr_schedule"].kwargs == {"milestones": [100], "gamma": 0.1}
    params["lr_schedule"].kwargs["milestones"].append(5)
    assert recipe("cgcnn-authors")["lr_schedule"].kwargs["milestones"] == [100]  # a copy
    # the same machinery with an earlier milestone, so that the step shows in 4 epochs
    reg = CGCNNRegressor(
        **{
            **recipe("cgcnn-authors"),
            "max_epochs": 4,
            "batch_size": 16,
            "lr_schedule": LRScheduler("MultiStepLR", milestones=[2]),
        }
    )
    reg.fit(graphs, y)
    assert reg.optimizer_.param_groups[0]["momentum"] == 0.9
    np.testing.assert_allclose(reg.history_[:, "event_lr"], [0.01, 0.01, 0.001, 0.001])
    assert recipe("skcrystal-0.1")["lr_schedule"] == "constant"
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        recipe("nope")


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lr_schedule": "linear"}, "lr_schedule must be one of"),
        ({"lr_schedule": "onecycle", "warmup_epochs": 2}, "warms up by itself"),
        ({"warmup_epochs": -1}, "warmup_epochs must be"),
        ({"weight_decay": -0.1}, "weight_decay must be"),
        ({"max_epochs": -1}, "max_epochs must be an integer >= 0 or 'auto'"),
        ({"n_iter_no_change": 0}, "n_iter_no_change must be an integer >= 1"),
        ({"n_iter_no_change": "soon"}, "n_iter_no_change must be"),
    ],
)
def test_bad_recipe_parameters_are_refused(data, params, match):
    graphs, y = data
    with pytest.raises(ValueError, match=match):
        CGCNNRegressor(**{**FAST, **params}).fit(graphs[:20], y[:20])


def test_clone_pickle_and_save_keep_the_recipe(data, tmp_path):
    graphs, y = data
    reg = CGCNNRegressor(max_epochs=2, early_stopping=False, lr_schedule="onecycle",
                         weight_decay=1e-5, warmup_epochs=0, **FAST)  # fmt: skip
    reg.fit(graphs, y)
    twin = pickle.loads(pickle.dumps(reg))
    np.testing.assert_allclose(twin.predict(graphs[:4]), reg.predict(graphs[:4]))
    step = clone(CGCNNRegressor(lr_schedule=LRScheduler("MultiStepLR", milestones=[7])))
    assert step.lr_schedule.kwargs == {"milestones": [7]}
    loaded = load_model(save_model(reg, tmp_path / "m.safetensors"))
    assert (loaded.lr_schedule, loaded.weight_decay, loaded.max_epochs) == ("onecycle", 1e-5, 2)


def test_partial_fit_restarts_the_schedule_and_counts_its_epochs(data):
    graphs, y = data
    reg = CGCNNRegressor(max_epochs=2, early_stopping=False, lr_schedule="onecycle", **FAST)
    reg.fit(graphs, y)
    assert reg.optimizer_.param_groups[0]["betas"] == (0.9, 0.999)  # one-cycle's undone
    reg.partial_fit(graphs, y)
    assert len(reg.history_) == 4 and reg.n_epochs_ == 2
    np.testing.assert_allclose(per_epoch_lr(reg)[2:], per_epoch_lr(reg)[:2])  # from the top
    reg.set_params(lr=1e-3, lr_schedule="constant").partial_fit(graphs, y)
    np.testing.assert_allclose(per_epoch_lr(reg)[4:], [1e-3, 1e-3])  # the new lr is used


def test_cli_epochs_and_distributed_refuse_what_they_cannot_run():
    assert _epochs("auto") == "auto" and _epochs("12") == 12
    with pytest.raises(argparse.ArgumentTypeError):
        _epochs("0")
    with pytest.raises(ValueError, match="constant learning rate"):
        fit_data_parallel(CrysAEPretrainer(lr_schedule="cosine"), [])
