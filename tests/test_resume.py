"""Resuming an interrupted fit from ``checkpoint``: the same model as an uninterrupted fit."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, LRScheduler

from skcrystal import CGCNNRegressor, CrystalGraphTransformer


@pytest.fixture(scope="module")
def crystals(mp_subset):
    rows = mp_subset.iloc[:96]
    return CrystalGraphTransformer().transform(rows.structure.tolist()), rows.e_form.to_numpy()


class Interrupt(Callback):
    """Raise ``error`` at the end of epoch ``at`` (before the checkpoint, which runs last)."""

    def __init__(self, at, error=RuntimeError):
        self.at, self.error = at, error

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.at:
            raise self.error("interrupted")


def curve(reg):
    keys = ("epoch", "train_loss", "valid_loss", "valid_mae", "lr", "valid_loss_best")
    return [tuple(epoch.get(key) for key in keys) for epoch in reg.history_]


SMALL = dict(random_state=0, batch_size=16, atom_fea_len=16, n_conv=2, h_fea_len=16)


@pytest.mark.parametrize(
    "schedule",
    ["cosine", "onecycle", "plateau", LRScheduler("MultiStepLR", milestones=[3], gamma=0.1)],
    ids=["cosine", "onecycle", "plateau", "skorch-MultiStepLR"],
)
def test_resumed_fit_equals_uninterrupted_fit(crystals, tmp_path, schedule):
    graphs, y = crystals
    params = dict(max_epochs=7, n_iter_no_change=7, lr_schedule=schedule, **SMALL)
    whole = CGCNNRegressor(**params).fit(graphs, y)
    path = tmp_path / "fit.pt"
    killed = CGCNNRegressor(checkpoint=path, callbacks=[("kill", Interrupt(4))], **params)
    with pytest.raises(RuntimeError, match="interrupted"):
        killed.fit(graphs, y)
    assert torch.load(path, weights_only=True)["epochs"] == 3  # epoch 4 died before saving
    resumed = CGCNNRegressor(checkpoint=path, **params).fit(graphs, y)
    assert curve(resumed) == curve(whole)
    np.testing.assert_array_equal(resumed.predict(graphs), whole.predict(graphs))
    assert (resumed.n_epochs_, resumed.best_epoch_) == (whole.n_epochs_, whole.best_epoch_)


def test_early_stopping_after_resuming_and_a_finished_checkpoint(crystals, tmp_path):
    graphs, y = crystals
    params = dict(max_epochs=30, n_iter_no_change=2, lr=0.05, lr_schedule="constant", **SMALL)
    whole = CGCNNRegressor(**params).fit(graphs, y)
    assert whole.n_epochs_ < 30, "the comparison needs a fit that stops early"
    path = tmp_path / "fit.pt"
    with pytest.raises(RuntimeError):
        CGCNNRegressor(checkpoint=path, callbacks=[("kill", Interrupt(2))], **params).fit(graphs, y)
    resumed = CGCNNRegressor(checkpoint=path, **params).fit(graphs, y)
    assert curve(resumed) == curve(whole)
    assert (resumed.n_epochs_, resumed.best_epoch_) == (whole.n_epochs_, whole.best_epoch_)
    assert torch.load(path, weights_only=True)["finished"]
    # A finished checkpoint gives back the finished model without training again.
    again = CGCNNRegressor(checkpoint=path, **params).fit(graphs, y)
    np.testing.assert_array_equal(again.predict(graphs), whole.predict(graphs))
    assert curve(again) == curve(whole) and again.best_epoch_ == whole.best_epoch_


def test_ctrl_c_is_not_the_end_of_training(crystals, tmp_path):
    """skorch ends a fit quietly on KeyboardInterrupt; the checkpoint must not say finished."""
    graphs, y = crystals
    params = dict(max_epochs=5, **SMALL)
    path = tmp_path / "fit.pt"
    CGCNNRegressor(
        checkpoint=path, callbacks=[("kill", Interrupt(3, KeyboardInterrupt))], **params
    ).fit(graphs, y)
    state = torch.load(path, weights_only=True)
    assert (state["epochs"], state["finished"]) == (2, False)
    resumed = CGCNNRegressor(checkpoint=path, **params).fit(graphs, y)
    assert resumed.n_epochs_ == 5
    assert curve(resumed) == curve(CGCNNRegressor(**params).fit(graphs, y))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("GATGNNRegressor", dict(width=16, n_layers=1, heads=2)),
        ("MEGNetRegressor", dict(width=16, n_blocks=1)),
        ("DistilledRegressor", dict(alpha=0.5)),
    ],
)
def test_other_models_resume_too(mp_subset, tmp_path, name, params):
    import skcrystal

    rows = mp_subset.iloc[1:65]  # row 0, a lone Cs atom, has no neighbour within MEGNet's 5 Å
    X, y = rows.structure.tolist(), rows.e_form.to_numpy()
    cls, params = (
        getattr(skcrystal, name),
        dict(max_epochs=4, random_state=0, batch_size=16, **params),
    )
    whole = cls(**params).fit(X, y)
    path = tmp_path / "fit.pt"
    with pytest.raises(RuntimeError):
        cls(checkpoint=path, callbacks=[("kill", Interrupt(3))], **params).fit(X, y)
    resumed = cls(checkpoint=path, **params).fit(X, y)
    assert curve(resumed) == curve(whole)
    np.testing.assert_array_equal(resumed.predict(X), whole.predict(X))


class EpochCount(Callback):
    """A callback of one's own with state, and no way to save it."""

    def initialize(self):
        self.seen_ = []
        return self

    def on_epoch_end(self, net, **kwargs):
        self.seen_.append(len(net.history))


class SavedEpochCount(EpochCount):
    """The same, following the protocol that carries its state in the checkpoint."""

    def get_training_state(self):
        return {"seen": [np.int64(epoch) for epoch in self.seen_]}  # numpy scalars are fine

    def set_training_state(self, net, state):
        self.seen_ = state["seen"]


@pytest.mark.parametrize("cls", [SavedEpochCount, EpochCount])
def test_a_users_callback_keeps_its_state_through_the_protocol(crystals, tmp_path, cls):
    graphs, y = crystals
    params = dict(max_epochs=5, **SMALL)
    path = tmp_path / "fit.pt"
    with pytest.raises(RuntimeError):
        CGCNNRegressor(
            checkpoint=path, callbacks=[("count", cls()), ("kill", Interrupt(4))], **params
        ).fit(graphs, y)
    resumed = CGCNNRegressor(checkpoint=path, callbacks=[("count", cls())], **params)
    if cls is SavedEpochCount:
        resumed.fit(graphs, y)
        assert dict(resumed.callbacks_)["count"].seen_ == [1, 2, 3, 4, 5]
    else:
        with pytest.warns(UserWarning, match=r"callback 'count' \(EpochCount\) restarts"):
            resumed.fit(graphs, y)
        assert dict(resumed.callbacks_)["count"].seen_ == [4, 5]


class UnsavableState(EpochCount):
    def get_training_state(self):
        return {"seen": set(self.seen_)}

    def set_training_state(self, net, state):
        raise AssertionError("never reached")


def test_a_state_that_cannot_be_saved_is_refused_when_written(crystals, tmp_path):
    graphs, y = crystals
    reg = CGCNNRegressor(
        checkpoint=tmp_path / "fit.pt",
        callbacks=[("count", UnsavableState())],
        max_epochs=2,
        **SMALL,
    )
    with pytest.raises(TypeError, match="callback 'count' holds a set"):
        reg.fit(graphs, y)


def test_a_checkpoint_of_another_fit_is_refused(crystals, tmp_path):
    graphs, y = crystals
    path = tmp_path / "fit.pt"
    CGCNNRegressor(checkpoint=path, max_epochs=2, **SMALL).fit(graphs, y)
    with pytest.raises(ValueError, match=r"another fit \(lr: '0.003' there, '0.01' now\)"):
        CGCNNRegressor(checkpoint=path, max_epochs=2, lr=0.01, **SMALL).fit(graphs, y)
    with pytest.raises(ValueError, match=r"another fit \(atom_fea_len: '16' there, '8' now\)"):
        CGCNNRegressor(checkpoint=path, max_epochs=2, **{**SMALL, "atom_fea_len": 8}).fit(graphs, y)
    with pytest.raises(ValueError, match=r"another fit \(target_mean_"):
        CGCNNRegressor(checkpoint=path, max_epochs=2, **SMALL).fit(graphs, y + 1)
    with pytest.raises(ValueError, match=r"another fit \(max_epochs: '2' there, '3' now\)"):
        CGCNNRegressor(checkpoint=path, max_epochs=3, **SMALL).fit(graphs, y)
    other = tmp_path / "notes.txt"
    other.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read as a training checkpoint"):
        CGCNNRegressor(checkpoint=other, max_epochs=2, **SMALL).fit(graphs, y)
    assert other.read_text() == "not a checkpoint"


def test_checkpoint_with_warm_start_is_refused(crystals, tmp_path):
    graphs, y = crystals
    reg = CGCNNRegressor(max_epochs=1, **SMALL).fit(graphs, y)
    reg.set_params(warm_start=True, checkpoint=tmp_path / "fit.pt")
    with pytest.raises(ValueError, match="cannot continue the current network"):
        reg.fit(graphs, y)


@pytest.mark.parametrize("pretrainer", ["CrysAEPretrainer", "CrysGNNPretrainer"])
def test_pretraining_resumes(mp_subset, tmp_path, pretrainer):
    import skcrystal

    structures = mp_subset.structure.tolist()[:48]
    params = dict(max_epochs=4, random_state=0, batch_size=16, atom_fea_len=16)
    cls = getattr(skcrystal, pretrainer)
    graphs = cls().default_graph_builder().transform(structures)
    whole = cls(**params).fit(graphs)
    path = tmp_path / "pretrain.pt"
    with pytest.raises(RuntimeError):
        cls(checkpoint=path, callbacks=[("kill", Interrupt(3))], **params).fit(graphs)
    resumed = cls(checkpoint=path, **params).fit(graphs)
    assert curve(resumed) == curve(whole)
    np.testing.assert_array_equal(resumed.transform(graphs), whole.transform(graphs))


def test_the_fingerprint_is_the_same_in_another_process():
    """Objects among the parameters are described by their parameters, not their address."""
    import subprocess
    import sys

    from skcrystal.estimators.resume import fit_fingerprint

    code = (
        "from skorch.callbacks import LRScheduler; from skcrystal import CGCNNRegressor; "
        "from skcrystal.estimators.resume import fit_fingerprint; "
        "reg = CGCNNRegressor(lr_schedule=LRScheduler('MultiStepLR', milestones=[3])); "
        "reg.max_epochs_ = 5; print(repr(fit_fingerprint(reg, 10, None)))"
    )
    reg = CGCNNRegressor(lr_schedule=LRScheduler("MultiStepLR", milestones=[3]))
    reg.max_epochs_ = 5
    here = fit_fingerprint(reg, 10, None)
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == repr(here)
    assert "milestones=[3]" in here["lr_schedule"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_fit_interrupted_on_a_gpu_continues_on_the_cpu(crystals, tmp_path):
    graphs, y = crystals
    params = dict(max_epochs=4, **SMALL)
    path = tmp_path / "fit.pt"
    with pytest.raises(RuntimeError):
        CGCNNRegressor(
            checkpoint=path, device="cuda", callbacks=[("kill", Interrupt(3))], **params
        ).fit(graphs, y)
    assert "cuda" in torch.load(path, weights_only=True)["rng"]
    resumed = CGCNNRegressor(checkpoint=path, device="cpu", **params).fit(graphs, y)
    assert resumed.n_epochs_ == 4 and len(resumed.history_) == 4
    assert np.isfinite(resumed.predict(graphs)).all()
